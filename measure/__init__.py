"""Measuring tools, kept apart from the product: synthetic documents and the hostile-input corpus,
readers of labelled sets, scoring, peer systems, ``folio eval`` and ``folio bench``.

They use the product (``pipeline``, ``flows``); nothing in the product imports
them (an import-linter contract in ``pyproject.toml`` checks it).
"""
