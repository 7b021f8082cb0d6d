"""The orders service: order placement, the order state machine and the orders side of the saga."""
