"""pytest configuration for tether's suite.

Shared helpers (timeouts, paths, Node.js lookup) live in ``helpers.py``; import
them with ``from helpers import timeout``.
"""
