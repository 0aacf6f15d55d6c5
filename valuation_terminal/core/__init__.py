"""The terminal's pure core (valuation rules, weight stability), issue #9. Imports only ``linli``."""
