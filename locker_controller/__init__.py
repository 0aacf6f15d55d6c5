"""The locker controller daemon: a pure core run by one thread, and the adapters around it."""
