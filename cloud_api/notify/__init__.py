"""Notifications to residents: a durable outbox, a notifier port, and its adapters."""
