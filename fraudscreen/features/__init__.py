"""Feature definitions (the one source of truth), a batch path and an online path."""
