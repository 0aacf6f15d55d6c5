"""Alerts that reach a person: rules over device messages, response clocks, the on-call roster
(docs/decisions/0022-alerts.md)."""
