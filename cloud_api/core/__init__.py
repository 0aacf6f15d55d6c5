"""The cloud's pure rules (settlement). Imports only ``linli``; checked by tests/test_imports.py."""
