"""Bytes in and out: object storage (local folders, S3) and decoding documents into page images."""
