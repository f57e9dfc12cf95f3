"""Plain data passed between stages: planned documents and recognised text lines.

These are frozen dataclasses so they are hashable, picklable (they cross Ray
process boundaries) and cannot be changed behind a stage's back.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["DocumentRef", "TextLine"]


@dataclass(frozen=True)
class DocumentRef:
    """One input object, as planned before it is read.

    Attributes:
        uri: full local path or ``s3://bucket/key``.
        size: size in bytes when the listing knows it.
        etag: object-store ETag (or a local mtime-based stand-in) when known.
    """

    uri: str
    size: int | None = None
    etag: str | None = None


@dataclass(frozen=True)
class TextLine:
    """One recognised line.

    Attributes:
        text: recognised characters.
        confidence: mean per-character probability of the CTC path, 0..1.
        polygon: four (x, y) corners, clockwise from top-left, in pixels of the
            original page image (before any resizing or dewarping).
        block_index: index of the text block (paragraph) in reading order.
        line_index: index of the line on the page in reading order.
    """

    text: str
    confidence: float
    polygon: tuple[tuple[float, float], ...]
    block_index: int = 0
    line_index: int = 0

    def to_row(self) -> dict:
        return {
            "text": self.text,
            "confidence": float(self.confidence),
            "polygon": [[float(x), float(y)] for x, y in self.polygon],
            "block_index": int(self.block_index),
            "line_index": int(self.line_index),
        }
