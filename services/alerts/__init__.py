"""The alerts service: per-recipient alerts from order and stock events, and their live WebSocket push."""
