"""shopkit: the code every microshop service shares, written once.

Settings, logging, problem+json errors, request ids, health, Mongo/Redis/RabbitMQ
wiring, the CloudEvents envelope and JWT verification live here; services hold
only their domain code.
"""
