"""The layout stage: a page's lines grouped into blocks and put in reading order, and the page text.

It works on the polygons of the image the OCR stage read (the flat page after
dewarping), where text lines run level.

Reading order (``layout.reading_order: columns``) is a recursive XY cut of the
page's line boxes that prefers columns: a region is split at a column gutter
when one runs down it with text columns on both sides (several lines each,
lines that fill their column), read left to right; otherwise it is split at
its widest full-width horizontal gap, read top to bottom; a region that splits
neither way is one row, read left to right. So a full-width headline is cut
off above its columns first, and each column is read to its end before the
next. A line that crosses a gutter (two columns' lines detected as one) is cut
there, between its words. ``rows`` reads the whole page row by row instead.

Blocks are the columns' paragraphs (a new block where a column changes or the
gap to the line above is larger than the median line height), each with a
kind (:data:`~pipeline.types.BLOCK_KINDS`): a running header or footer (a
short block alone at the top or bottom of the page), a page number (such a
block that is only a number), a heading (a block of few lines much taller than
the page's median line) or text.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Sequence

import numpy as np

from pipeline.types import Block, Line, Page, Word, polygon_box

__all__ = ["LayoutStage", "order_lines"]

log = logging.getLogger(__name__)

#: A column gutter is at least this many median line heights wide; lines the detector joined across it
#: (at most this share of the region's lines) are cut there, between their words.
_GUTTER_MIN = 0.15
_CROSSING_SHARE = 0.35
#: Horizontal gaps are looked for between the lines' cores: their boxes less this share of their
#: height at the top and bottom.
_CORE = 0.15
#: A full-width horizontal gap this many median line heights tall ends a section (a masthead, a
#: headline, a story): it is cut before any column gutter.
_SECTION_GAP = 1.5
#: A region is cut at every horizontal gap at least this share as tall as its tallest one.
_BAND_GAP = 0.8
#: Deeper than this the cuts stop and the rest is read row by row.
_MAX_DEPTH = 60
#: A text column holds at least this many lines, whose median width is at least this many times their
#: height (a dozen characters or so: running text, not a form's labels or a table's cells).
_COLUMN_MIN_LINES = 3
_COLUMN_ASPECT = 6.0
#: Headers and footers lie within this share of the page height from its edge.
_MARGIN_BAND = 0.1
_PAGE_NUMBER = re.compile(r"^[\s\-–—.(\[]*(?:(?:page|seite|p\.|s\.)\s*)?(?:\d{1,4}|[ivxlcdm]{1,7})[\s\-–—.)\]]*$",
                          re.IGNORECASE)


class _Boxes:
    """The axis-aligned boxes of a page's lines."""

    def __init__(self, lines: Sequence[Line]):
        quads = np.asarray([line.polygon for line in lines], np.float64).reshape(len(lines), 4, 2)
        self.x0, self.x1 = quads[:, :, 0].min(axis=1), quads[:, :, 0].max(axis=1)
        self.y0, self.y1 = quads[:, :, 1].min(axis=1), quads[:, :, 1].max(axis=1)
        self.h = np.maximum(self.y1 - self.y0, 1.0)
        self.median_h = float(np.median(self.h)) if len(lines) else 1.0
        # where the ink is: the words' extent (fitted to it) where a line has words; detection boxes
        # reach past the ink and narrow the gutters between columns
        self.ink0, self.ink1 = self.x0.copy(), self.x1.copy()
        for i, line in enumerate(lines):
            if line.words:
                xs = np.asarray([w.polygon for w in line.words], np.float64).reshape(-1, 2)[:, 0]
                self.ink0[i], self.ink1[i] = max(self.x0[i], xs.min()), min(self.x1[i], xs.max())


def _gaps(starts: np.ndarray, ends: np.ndarray) -> list[tuple[float, float]]:
    """The intervals no ``[start, end]`` covers, between the first start and the last end."""
    order = np.argsort(starts, kind="stable")
    gaps, reach = [], None
    for i in order:
        if reach is not None and starts[i] > reach:
            gaps.append((float(reach), float(starts[i])))
        reach = ends[i] if reach is None else max(reach, ends[i])
    return gaps


class _Reader:
    """One page's reading order (see the module docstring). Lines cut at a gutter are appended to
    ``lines`` (their pieces) and the cut line is left out of every region."""

    def __init__(self, lines: list[Line]):
        self.lines = list(lines)
        self.b = _Boxes(self.lines)
        self.median_h = self.b.median_h

    def _is_column(self, idx: list[int]) -> bool:
        """Whether lines are one or more columns of running text: enough of them, and long."""
        b = self.b
        if len(idx) < _COLUMN_MIN_LINES:
            return False
        return float(np.median((b.x1[idx] - b.x0[idx]) / b.h[idx])) >= _COLUMN_ASPECT

    def _candidates(self, idx: list[int]) -> list[float]:
        """x positions where few lines run compared with the columns on both sides (at most
        ``_CROSSING_SHARE`` of the fewer: lines joined across a gutter), each the middle of the least
        covered stretch of such a run."""
        b = self.b
        xs = np.unique(np.concatenate([b.ink0[idx], b.ink1[idx]]))
        if len(xs) < 3:
            return []
        mids = (xs[:-1] + xs[1:]) / 2
        cover = np.array([int(((b.ink0[idx] < m) & (b.ink1[idx] > m)).sum()) for m in mids])
        left_max = np.maximum.accumulate(cover)
        right_max = np.maximum.accumulate(cover[::-1])[::-1]
        sides = np.minimum(left_max, right_max)
        low = (sides >= _COLUMN_MIN_LINES) & (cover <= _CROSSING_SHARE * sides)
        out, k = [], 0
        while k < len(mids):
            if not low[k]:
                k += 1
                continue
            j = k
            while j + 1 < len(mids) and low[j + 1]:
                j += 1
            run = range(k, j + 1)
            least = min(cover[r] for r in run)
            widest = max((r for r in run if cover[r] == least), key=lambda r: xs[r + 1] - xs[r])
            out.append(float(mids[widest]))
            k = j + 1
        return out

    def _split_at(self, idx: list[int], x: float) -> tuple[float, list[int], list[int], dict] | None:
        """The region split at ``x``: (gutter width, left lines, right lines, {crossing line: its pieces}),
        or None when the lines beside ``x`` leave no gutter or a line crossing it has no word gap there."""
        b = self.b
        left = [i for i in idx if b.ink1[i] <= x]
        right = [i for i in idx if b.ink0[i] >= x]
        crossing = [i for i in idx if b.ink0[i] < x < b.ink1[i]]
        if not left or not right:
            return None
        corridor0, corridor1 = float(b.ink1[left].max()), float(b.ink0[right].min())
        if corridor1 - corridor0 < _GUTTER_MIN * self.median_h:
            return None
        cuts = {}
        for i in crossing:
            pieces = _cut_line(self.lines[i], corridor0, corridor1)
            if pieces is None:
                return None
            cuts[i] = pieces
        return corridor1 - corridor0, left, right, cuts

    def _gutter(self, idx: list[int]) -> tuple[float, float, list[int], list[int], dict] | None:
        """The widest column gutter of a region: (its width, its x, lines left of it, lines right of it,
        {line crossing it: its pieces})."""
        best = None
        for x in self._candidates(idx):
            split = self._split_at(idx, x)
            if split is None:
                continue
            width, left, right, cuts = split
            pieces_left = [p for ps in cuts.values() for p in ps if _ink(p)[1] <= x]
            if len(left) + len(pieces_left) < _COLUMN_MIN_LINES:
                continue
            if self._is_column(left) and self._is_column(right) and (best is None or width > best[0]):
                best = (width, x, left, right, cuts)
        return best

    def _apply(self, x: float, left: list[int], right: list[int], cuts: dict) -> None:
        """Put the pieces of the lines cut at the gutter ``x`` on the side they lie on."""
        for pieces in cuts.values():
            for piece in pieces:
                self.lines.append(piece)
                (left if _ink(piece)[1] <= x else right).append(len(self.lines) - 1)
        if cuts:
            self.b = _Boxes(self.lines)

    def _rows_cut(self, idx: list[int]) -> tuple[float, list[list[int]]] | None:
        """The region cut at its widest full-width horizontal gaps (those at least ``_BAND_GAP`` of the
        widest, so a column of evenly spaced lines is cut into rows at once): (the widest gap's height,
        the bands top to bottom)."""
        b = self.b
        # the lines' cores: detection boxes of consecutive lines often overlap by a few pixels
        gaps = _gaps(b.y0[idx] + _CORE * b.h[idx], b.y1[idx] - _CORE * b.h[idx])
        if not gaps:
            return None
        widest = max(g1 - g0 for g0, g1 in gaps)
        cuts = sorted((g0 + g1) / 2 for g0, g1 in gaps if g1 - g0 >= _BAND_GAP * widest)
        middle = (b.y0 + b.y1) / 2
        bands: list[list[int]] = [[] for _ in range(len(cuts) + 1)]
        for i in idx:
            bands[int(np.searchsorted(cuts, middle[i]))].append(i)
        return widest, [band for band in bands if band]

    def regions(self, idx: list[int], depth: int = 0) -> list[list[list[int]]]:
        """The regions (columns, in reading order) of the lines ``idx``, each a list of rows.

        A region is cut at its section gaps (full-width horizontal gaps of ``_SECTION_GAP`` line
        heights: a running header or headline above the columns comes off first), else at its widest
        column gutter, else at its widest horizontal gaps; what none cuts is read row by row."""
        if not idx:
            return []
        if depth > _MAX_DEPTH:  # a pathological page: read what is left row by row
            return [_group_rows(self.b, idx)]
        cut = self._rows_cut(idx)
        section = cut is not None and len(cut[1]) > 1 and cut[0] >= _SECTION_GAP * self.median_h
        gutter = None if section else self._gutter(idx)
        if gutter is not None:
            _, x, left, right, cuts = gutter
            self._apply(x, left, right, cuts)
            return self.regions(left, depth + 1) + self.regions(right, depth + 1)
        if cut is None or len(cut[1]) == 1:  # rows that overlap: each left to right
            return [_group_rows(self.b, idx)]
        out: list[list[list[int]]] = []
        for band in cut[1]:
            parts = self.regions(band, depth + 1)
            if out and parts and self._same_column(out[-1], parts[0]):
                out[-1] = out[-1] + parts[0]
                parts = parts[1:]
            out += parts
        return out

    def _same_column(self, upper: list[list[int]], lower: list[list[int]]) -> bool:
        """Whether two regions one above the other continue one column (their extents overlap mostly)."""
        b = self.b
        u, w = [i for row in upper for i in row], [i for row in lower for i in row]
        ux0, ux1, lx0, lx1 = b.x0[u].min(), b.x1[u].max(), b.x0[w].min(), b.x1[w].max()
        overlap = min(ux1, lx1) - max(ux0, lx0)
        return overlap >= 0.5 * min(ux1 - ux0, lx1 - lx0)


def _group_rows(b: _Boxes, idx: list[int]) -> list[list[int]]:
    """Lines grouped into visual rows (vertical extents overlapping by at least half the smaller height),
    top to bottom, each left to right."""
    rows: list[list[int]] = []
    top = bottom = 0.0
    for i in sorted(idx, key=lambda i: (b.y0[i] + b.y1[i]) / 2):
        if rows and min(bottom, b.y1[i]) - max(top, b.y0[i]) >= 0.5 * min(bottom - top, b.h[i]):
            rows[-1].append(i)
            continue
        rows.append([i])
        top, bottom = float(b.y0[i]), float(b.y1[i])
    return [sorted(row, key=lambda i: b.x0[i]) for row in rows]


def _paragraphs(b: _Boxes, regions: list[list[list[int]]]) -> list[list[list[int]]]:
    """Each region's rows split into blocks where the gap to the row above exceeds the median line height."""
    spans: list[list[list[int]]] = []
    for rows in regions:
        current: list[list[int]] = []
        prev_bottom = None
        for row in rows:
            if current and float(b.y0[row].min()) - prev_bottom > b.median_h:
                spans.append(current)
                current = []
            current.append(row)
            prev_bottom = float(b.y1[row].max())
        if current:
            spans.append(current)
    return spans


def _ink(line: Line) -> tuple[float, float]:
    """The x extent of a line's words (of its box when it has none)."""
    if not line.words:
        x0, _, x1, _ = polygon_box(line.polygon)
        return x0, x1
    xs = np.asarray([w.polygon for w in line.words], np.float64).reshape(-1, 2)[:, 0]
    return float(xs.min()), float(xs.max())


def _cut_line(line: Line, c0: float, c1: float) -> list[Line] | None:
    """``line`` cut at a gap between its words that covers most of ``[c0, c1]`` (a gutter), or None when
    it has no such gap (a headline across the columns, or a line without words)."""
    words = line.words
    if len(words) < 2:
        return None
    boxes = [polygon_box(w.polygon) for w in words]
    order = sorted(range(len(words)), key=lambda k: boxes[k][0])
    for a, c in itertools.pairwise(order):
        gap0, gap1 = boxes[a][2], boxes[c][0]
        if gap1 > gap0 and min(gap1, c1) - max(gap0, c0) >= 0.5 * (c1 - c0):
            cut = order.index(c)
            left, right = tuple(words[k] for k in order[:cut]), tuple(words[k] for k in order[cut:])
            if not any(w.in_text for w in left) or not any(w.in_text for w in right):
                return None  # a side with no text: nothing to keep apart
            return [_line_of(left, line), _line_of(right, line)]
    return None


def _line_of(words: tuple[Word, ...], line: Line) -> Line:
    """The part of ``line`` made of ``words``: the text and mean confidence of those in its text, the line's band
    over their extent."""
    boxes = np.asarray([w.polygon for w in words], np.float64).reshape(len(words), 4, 2)
    x0, x1 = float(boxes[:, :, 0].min()), float(boxes[:, :, 0].max())
    quad = np.asarray(line.polygon, np.float64).reshape(4, 2)
    y0, y1 = float(quad[:, 1].min()), float(quad[:, 1].max())
    polygon = ((x0, y0), (x1, y0), (x1, y1), (x0, y1))
    text_words = [w for w in words if w.in_text]
    confidence = float(np.mean([w.confidence for w in text_words]))
    return Line(" ".join(w.text for w in text_words), confidence, polygon, words)


def _kind(block_lines: list[Line], heights: np.ndarray, rows: int, median_h: float, band: str | None) -> str:
    """What a block is: ``heights`` are its lines' heights; ``band`` says whether it opens (``top``) or
    closes (``bottom``) the page's reading order inside the page's top or bottom margin band."""
    text = " ".join(ln.text for ln in block_lines)
    if rows <= 3 and float(np.median(heights)) >= 1.4 * median_h:
        return "heading"
    if band is not None and rows <= 2:
        return "page-number" if _PAGE_NUMBER.match(text) else ("header" if band == "top" else "footer")
    return "text"


def order_lines(lines: Sequence[Line], page_height: float | None = None,
                reading_order: str = "columns") -> tuple[tuple[Block, ...], str]:
    """Put lines in reading order, group them into blocks, and build the page text.

    Args:
        lines: the page's lines, in any order.
        page_height: the page's height in the lines' pixels (for headers, footers and page numbers).
        reading_order: ``columns`` (see the module docstring) or ``rows`` (the page read row by row).

    Returns:
        The blocks in reading order, and the page text: lines of one row joined by a space, rows by
        a newline, blocks by a blank line.
    """
    lines = list(lines)
    if not lines:
        return (), ""
    if reading_order == "rows":  # one region, the whole page, in rows; every block plain text
        b = _Boxes(lines)
        spans = _paragraphs(b, [_group_rows(b, list(range(len(lines))))])
        return (tuple(Block(tuple(lines[i] for row in rows for i in row)) for rows in spans),
                _text(lines, spans))
    reader = _Reader(lines)
    regions = reader.regions(list(range(len(lines))))
    lines, b = reader.lines, reader.b  # with the pieces of lines cut at gutters
    spans = _paragraphs(b, regions)
    # A row alone at the top or bottom of the page (a running header beside its page number) is a
    # block per line.
    for k in (0, -1):
        rows = spans[k]
        if page_height and len(spans) > 1 and len(rows) == 1 and len(rows[0]) > 1:
            band = b.y1[rows[0]].max() <= _MARGIN_BAND * page_height if k == 0 else \
                b.y0[rows[0]].min() >= (1 - _MARGIN_BAND) * page_height
            if band:
                spans[k:len(spans) + k + 1 if k else 1] = [[[i]] for i in rows[0]]
    bands: list[str | None] = [None] * len(spans)
    if page_height:
        for k, rows in enumerate(spans):  # the blocks that open the page inside its top margin band
            if max(b.y1[i] for row in rows for i in row) > _MARGIN_BAND * page_height or k == len(spans) - 1:
                break
            bands[k] = "top"
        for k in range(len(spans) - 1, 0, -1):  # and those that close it inside the bottom one
            if bands[k] or min(b.y0[i] for row in spans[k] for i in row) < (1 - _MARGIN_BAND) * page_height:
                break
            bands[k] = "bottom"
    blocks = []
    for k, rows in enumerate(spans):
        ids = [i for row in rows for i in row]
        block_lines = [lines[i] for i in ids]
        blocks.append(Block(tuple(block_lines), _kind(block_lines, b.h[ids], len(rows), b.median_h, bands[k])))
    return tuple(blocks), _text(lines, spans)


def _text(lines: list[Line], spans: list[list[list[int]]]) -> str:
    """The page text: a row's lines joined by a space, rows by a newline, blocks by a blank line."""
    return "\n\n".join("\n".join(" ".join(lines[i].text for i in row) for row in rows) for rows in spans)


class LayoutStage:
    """Order the lines of a batch of read pages (:func:`order_lines`); failed pages pass through."""

    def __init__(self, reading_order: str = "columns"):
        self.reading_order = reading_order

    def __call__(self, pages: Sequence[Page]) -> list[Page]:
        out = []
        for page in pages:
            if page.status != "ok":
                out.append(page)
                continue
            # the height of the image the polygons are in: the dewarped page's while it has a geometry
            size = getattr(page.geometry, "size", None)
            height = size[0] if size and size[0] else page.height
            blocks, text = order_lines(page.lines, height, self.reading_order)
            out.append(page.replace(blocks=blocks, text=text))
        return out
