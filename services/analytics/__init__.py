"""The analytics service: aggregates of orders, revenue, products and stock fed by events, and the admin dashboard."""
