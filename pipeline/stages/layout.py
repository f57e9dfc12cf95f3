"""The layout stage: a page's lines grouped into blocks and put in reading order, and the page text.

It works on the polygons of the image the OCR stage read (the flat page after
dewarping), where text lines run level.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np

from pipeline.types import Block, Line, Page

__all__ = ["LayoutStage", "order_lines"]

log = logging.getLogger(__name__)


def order_lines(lines: Sequence[Line]) -> tuple[tuple[Block, ...], str]:
    """Put lines in reading order, group them into blocks, and build the page text.

    Lines are grouped into visual rows (boxes whose vertical extents overlap by
    at least half the smaller height); rows are read top to bottom and boxes in
    a row left to right. A new block starts where the gap to the previous row is
    larger than the median line height. In the page text, boxes of one row are
    joined by a space, rows by a newline and blocks by a blank line.

    Returns:
        The blocks in reading order, and the page text.
    """
    n = len(lines)
    if n == 0:
        return (), ""
    quads = np.asarray([line.polygon for line in lines], np.float32).reshape(n, 4, 2)
    y0, y1 = quads[:, :, 1].min(axis=1), quads[:, :, 1].max(axis=1)
    x0 = quads[:, :, 0].min(axis=1)
    heights = np.maximum(y1 - y0, 1.0)
    rows: list[list[int]] = []
    row_top = row_bottom = 0.0
    for i in np.argsort((y0 + y1) / 2, kind="stable").tolist():
        if rows:
            overlap = min(row_bottom, y1[i]) - max(row_top, y0[i])
            if overlap >= 0.5 * min(row_bottom - row_top, heights[i]):
                rows[-1].append(i)
                continue
        rows.append([i])
        row_top, row_bottom = float(y0[i]), float(y1[i])
    median_h = float(np.median(heights))
    blocks: list[list[Line]] = [[]]
    parts: list[str] = []
    prev_bottom = None
    for row in rows:
        top = float(y0[row].min())
        if prev_bottom is not None:
            if top - prev_bottom > median_h:
                blocks.append([])
                parts.append("\n\n")
            else:
                parts.append("\n")
        prev_bottom = float(y1[row].max())
        ordered = sorted(row, key=lambda j: x0[j])
        parts.append(" ".join(lines[i].text for i in ordered))
        blocks[-1].extend(lines[i] for i in ordered)
    return tuple(Block(tuple(block)) for block in blocks), "".join(parts)


class LayoutStage:
    """Order the lines of a batch of read pages (:func:`order_lines`); failed pages pass through."""

    def __call__(self, pages: Sequence[Page]) -> list[Page]:
        out = []
        for page in pages:
            if page.status != "ok":
                out.append(page)
                continue
            blocks, text = order_lines(page.lines)
            out.append(page.replace(blocks=blocks, text=text))
        return out
