"""Messaging: the names on RabbitMQ (``topology``), the event bus (``bus``), dead letters and the outbox."""
