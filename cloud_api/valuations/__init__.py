"""Valuation proposals, the approval queue, decisions and learning (issue #9)."""
