"""The resident's web pages (server-rendered, Chinese first, for phones and for the elderly)."""
