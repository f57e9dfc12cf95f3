"""Fault-injecting OCR stages for tests, loaded through the production seam ``plugins.stage``."""
