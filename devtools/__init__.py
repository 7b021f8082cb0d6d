"""Developer tooling: the local runner behind ``make dev`` and the process helpers the tests share.

Not part of any service image.
"""
