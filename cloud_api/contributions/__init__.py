"""Time and skills contributions: hours a resident gave, confirmed by both parties, approved by a
social worker like an item, and credited once as ``time_credit`` / ``skill_credit``."""
