"""Items, reservations and their settlement from device events."""
