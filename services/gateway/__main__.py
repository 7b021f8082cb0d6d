"""``python -m gateway``: serve the gateway with the settings from the environment."""

from gateway.app import create_app
from gateway.settings import Settings
from shopkit.serve import serve

if __name__ == "__main__":
    # The gateway is the edge: it decides itself whether X-Forwarded-For is trusted
    # (MICROSHOP_TRUST_FORWARDED_FOR), so uvicorn must not rewrite the client address first.
    serve(create_app, Settings(), proxy_headers=False)
