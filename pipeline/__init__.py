"""Folio: distributed batch OCR for scanned documents.

The library is runner-agnostic: stages are callable classes that run in a plain
loop (``pipeline.runner.local``) or in Ray actors (``pipeline.runner.ray_data``).
"""

__version__ = "0.1.0"
