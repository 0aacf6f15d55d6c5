"""The terminal's pure core, issue #9: valuation rules (``rules.py``), what they learn from
decisions (``learning.py``), the factors' reasons in the reader's language (``explain.py``), photo
usability and preparation (``images.py``), the kiosk's screens (``flow.py``). No I/O: ``linli``,
and numpy and Pillow for ``images.py`` only (array arithmetic on decoded images)."""
