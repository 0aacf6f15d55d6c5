"""The terminal's pure core, issue #9: valuation rules (``rules.py``), what they learn from
decisions (``learning.py``), photo usability and preparation (``images.py``). No I/O: ``linli``,
and numpy and Pillow for ``images.py`` only (array arithmetic on decoded images)."""
