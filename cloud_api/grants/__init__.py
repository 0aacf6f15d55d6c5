"""Grants, their derived codes, and the signed grant lists for controllers."""
