"""Operator commands over the whole shop (``python -m shopctl.dlq``).

They need every service's app, so they live above the services, never in the kit (which imports no
service). Part of the shop image, so they run inside a service's pod with its credentials.
"""
