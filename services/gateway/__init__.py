"""The API gateway: the shop's single HTTP entry point (``/api/...``).

It routes each request to the service that owns the path, verifies the caller's token,
validates request bodies against the shared contracts, rate-limits per caller in Redis and
answers every error as problem+json. See ``docs/gateway.md``.
"""
