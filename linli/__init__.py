"""Linli (邻里): the shared contract between devices and cloud, the CLI, ids, clock and i18n.

This package imports only the standard library, pydantic and cryptography, so that a locker's
Raspberry Pi, the valuation terminal and the cloud can all import it without pulling in each
other's dependencies (docs/decisions/0001-linli-contract-package.md). A test walks its imports.
"""

__version__ = "0.1.0"
