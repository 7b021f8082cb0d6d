"""Public request contracts (pydantic), shared by the owning service and the gateway's body validation.

One module per domain. The gateway validates a body against the same model the service
uses, so a bad request is refused at the edge with the same problem+json the service gives.
"""
