"""The valuation terminal's HTTP API (docs/terminal-api.md)."""
