"""The products service: the catalog, its Redis read-through cache, and stock reservations for the order saga."""
