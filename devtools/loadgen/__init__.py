"""The load generator: ``make load`` (Locust). The traffic: charts/microshop/files/locustfile.py."""
