"""The load generator: ``make load`` (Locust). See locustfile.py for the traffic and __main__.py for the runner."""
