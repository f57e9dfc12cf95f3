"""Page geometry: straightened line crops, where a crop's pixels lie on the page, and a page's
polygons mapped back to its original pixels.

:func:`crop_quad` cuts a detected line out of a page as an upright
rectangle; the :class:`CropFrame` it returns maps any point of that crop (or of
a piece :func:`split_at_gaps` cut from it) back to page pixels, which is how
word boxes found in a crop become page polygons. :func:`crop_band` cuts a bent
line along its bend instead, column by column (:class:`BandFrame`). :func:`page_to_original`
maps a page read from a dewarped image back through the dewarping.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.types import Block, Line, Page, Word

__all__ = ["BandFrame", "CropFrame", "Shift", "crop_band", "crop_quad", "crop_with_frame", "split_at_gaps",
           "text_ink", "word_boxes", "page_to_original"]


@dataclass(frozen=True)
class CropFrame:
    """Where the pixels of a crop lie on the page: a 3x3 projective map from crop coordinates
    (x right, y down, in crop pixels) to page coordinates."""

    matrix: np.ndarray

    def to_page(self, points: np.ndarray) -> np.ndarray:
        """Map (..., 2) crop points to page points."""
        pts = np.asarray(points, np.float64)
        flat = pts.reshape(-1, 2)
        m = self.matrix
        den = flat @ m[2, :2] + m[2, 2]
        out = (flat @ m[:2, :2].T + m[:2, 2]) / den[:, None]
        return out.reshape(pts.shape)

    def shifted(self, dx: float) -> CropFrame:
        """The frame of the piece of this crop that starts ``dx`` pixels to the right."""
        return CropFrame(self.matrix @ np.array([[1.0, 0.0, dx], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]))


def crop_with_frame(image: np.ndarray, quad: np.ndarray) -> tuple[np.ndarray, CropFrame]:
    """Straighten one quadrilateral of ``image`` into an upright rectangle, and say where it lies.

    The output size follows the quad's longer edges; a crop that comes out much
    taller than wide is vertical text and is turned 90 degrees (counterclockwise).
    """
    quad = np.asarray(quad, np.float32).reshape(4, 2)
    width = int(round(max(np.linalg.norm(quad[0] - quad[1]), np.linalg.norm(quad[3] - quad[2]))))
    height = int(round(max(np.linalg.norm(quad[0] - quad[3]), np.linalg.norm(quad[1] - quad[2]))))
    width, height = max(width, 1), max(height, 1)
    target = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    matrix = cv2.getPerspectiveTransform(quad, target)
    crop = cv2.warpPerspective(image, matrix, (width, height), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE)
    to_page = np.linalg.inv(matrix.astype(np.float64))
    if height >= 1.5 * width:
        crop = np.ascontiguousarray(np.rot90(crop))
        # A point (x', y') of the turned crop is (width - y', x') of the crop before the turn.
        to_page = to_page @ np.array([[0.0, -1.0, float(width)], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    return crop, CropFrame(to_page)


@dataclass(frozen=True, eq=False)
class BandFrame:
    """Where the pixels of a bent line's crop (:func:`crop_band`) lie on the page.

    Crop column ``u`` is ``s = u + offset`` pixels along the line's rectangle (from its top-left
    corner ``origin``, in direction ``along``); crop row ``v`` is ``t = centre(s) - height / 2 + v``
    pixels across it (direction ``across``), where ``centre`` follows the bend.
    """

    origin: np.ndarray
    along: np.ndarray
    across: np.ndarray
    centre: np.ndarray
    height: float
    offset: float = 0.0

    def to_page(self, points: np.ndarray) -> np.ndarray:
        """Map (..., 2) crop points to page points."""
        pts = np.asarray(points, np.float64)
        flat = pts.reshape(-1, 2)
        s = flat[:, 0] + self.offset
        t = np.interp(s, np.arange(len(self.centre)), self.centre) - self.height / 2 + flat[:, 1]
        out = self.origin + s[:, None] * self.along + t[:, None] * self.across
        return out.reshape(pts.shape)

    def shifted(self, dx: float) -> BandFrame:
        """The frame of the piece of this crop that starts ``dx`` pixels to the right."""
        return BandFrame(self.origin, self.along, self.across, self.centre, self.height, self.offset + dx)


def crop_band(image: np.ndarray, quad: np.ndarray, band: np.ndarray) -> tuple[np.ndarray, BandFrame] | None:
    """Straighten a bent line: cut it out of ``image`` along its text region's outline ``band`` (page
    pixels), column by column across its rectangle ``quad``, each column centred on the band there.

    The crop is as long as the band and as tall as it is thick (its 90th percentile, so
    tall letters are kept), so the recognizer sees a straight line instead of a rectangle through the
    bend, with the lines above and below it. None where the band is nearly as thick as the rectangle
    (not bent enough to gain) or covers too little of it (cut the line as one rectangle then).
    """
    quad = np.asarray(quad, np.float64).reshape(4, 2)
    along, across = quad[1] - quad[0], quad[3] - quad[0]
    length, depth = float(np.linalg.norm(along)), float(np.linalg.norm(across))
    if length < 2 or depth < 2:
        return None
    along = along / length
    across = np.array([-along[1], along[0]]) * (1.0 if np.dot([-along[1], along[0]], across) >= 0 else -1.0)
    rel = np.asarray(band, np.float64).reshape(-1, 2) - quad[0]
    st = np.stack([rel @ along, rel @ across], axis=1)
    low = np.floor(st.min(axis=0))
    origin = quad[0] + low[0] * along + low[1] * across  # the band's own extent (a quad clipped at the page edge
    st -= low  # is no rectangle)
    w, h = int(np.ceil(st[:, 0].max())) + 1, int(np.ceil(st[:, 1].max())) + 1
    mask = np.zeros((h, w), np.uint8)
    cv2.fillPoly(mask, [np.round(st).astype(np.int32)], 1)
    covered = np.flatnonzero(mask.any(axis=0))
    if covered.size < 0.5 * w:
        return None
    top = mask[:, covered].argmax(axis=0)
    bottom = h - 1 - mask[::-1, covered].argmax(axis=0)
    thickness = float(np.percentile(bottom - top + 1, 90))
    if thickness > 0.85 * depth:
        return None
    centre = np.interp(np.arange(w), covered, (top + bottom) / 2.0)
    k = max(3, int(thickness) | 1)  # smooth the centre over about a line height: ragged ink edges are not the bend
    centre = np.convolve(np.pad(centre, k // 2, mode="edge"), np.ones(k) / k, mode="valid")
    height = int(np.ceil(thickness))
    u, v = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(height, dtype=np.float64))
    t = centre[None, :] - thickness / 2 + v
    page = origin + u[..., None] * along + t[..., None] * across
    crop = cv2.remap(image, page[..., 0].astype(np.float32), page[..., 1].astype(np.float32), cv2.INTER_CUBIC,
                     borderMode=cv2.BORDER_REPLICATE)
    return crop, BandFrame(origin, along, across, centre, thickness)


def crop_quad(image: np.ndarray, quad: np.ndarray) -> np.ndarray:
    """:func:`crop_with_frame`'s crop alone."""
    return crop_with_frame(image, quad)[0]


def split_at_gaps(crop: np.ndarray, quad: np.ndarray, min_gap: float) -> list[tuple[np.ndarray, np.ndarray, int]]:
    """Cut a straightened line crop where its ink has a gap wider than ``min_gap`` x its height.

    Detectors join fields that share a baseline (``Date: ____ 12-4-87`` on a
    form, columns of a table row); read as one line, the wide gap comes out as
    no space at all and the fields run together. Ink is measured in the middle
    band of the crop, so underlines and rules along the bottom do not bridge
    the gap. Normal word spaces (about half the line height) are far below the
    threshold.

    Args:
        crop: (h, w, 3) upright crop from :func:`crop_quad`.
        quad: the page quadrilateral it came from (clockwise from top-left).
        min_gap: gap width, in multiples of the crop height, that splits; 0 disables.

    Returns:
        ``(crop, quad, x0)`` pieces, left to right, ``x0`` where each starts in ``crop``;
        the input alone when nothing splits.
    """
    h, w = crop.shape[:2]
    if min_gap <= 0 or w < 3 * h or h < 8:
        return [(crop, quad, 0)]
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)
    band = gray[h // 4 : h - h // 4]
    _, ink = cv2.threshold(band, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    cols = ink.sum(axis=0) > 0
    if not cols.any():
        return [(crop, quad, 0)]
    gap = int(min_gap * h)
    # runs of empty columns between the first and last inked column
    first, last = int(np.argmax(cols)), int(w - 1 - np.argmax(cols[::-1]))
    cuts = []
    run_start = None
    for x in range(first, last + 1):
        if not cols[x]:
            if run_start is None:
                run_start = x
        elif run_start is not None:
            if x - run_start >= gap:
                cuts.append((run_start, x))
            run_start = None
    if not cuts:
        return [(crop, quad, 0)]
    pad = max(2, h // 6)
    bounds = []
    start = max(0, first - pad)
    for a, b in cuts:
        bounds.append((start, min(w, a + pad)))
        start = max(0, b - pad)
    bounds.append((start, min(w, last + 1 + pad)))
    q = np.asarray(quad, np.float32).reshape(4, 2)
    pieces = []
    for x0, x1 in bounds:
        t0, t1 = x0 / w, x1 / w
        top0, top1 = q[0] + (q[1] - q[0]) * t0, q[0] + (q[1] - q[0]) * t1
        bot0, bot1 = q[3] + (q[2] - q[3]) * t0, q[3] + (q[2] - q[3]) * t1
        pieces.append((crop[:, x0:x1], np.stack([top0, top1, bot1, bot0]), x0))
    return pieces


def word_boxes(crop: np.ndarray, spans: list[tuple[float, float]]) -> list[tuple[float, float, float, float]]:
    """Boxes ``(x0, y0, x1, y1)``, in crop pixels, around each word of a line crop.

    ``spans`` are the words' ``[start, end)`` columns, left to right, where the
    recognizer's frames put their characters. The ink is :func:`text_ink`'s.

    - Across: a word's box is the ink it has between the middles of the gaps
      to its neighbours (the crop's ends for the first and last word), no
      further than a quarter of the crop's height beyond its span, so the box
      hugs the word whether the frames fell early or late on its first or last
      letter. A word with no ink there keeps its span.
    - Down: every word of the line gets the line's text band, from the highest
      to the lowest ink of the line, so a hyphen or an ``mm`` is as high as
      its line, as a reader would box it.
    """
    h, w = crop.shape[:2]
    if not spans:
        return []
    bounds = [0.0]
    for (_, end), (start, _) in zip(spans[:-1], spans[1:]):
        bounds.append(min(max((end + start) / 2, bounds[-1]), float(w)))
    bounds.append(float(w))
    ink = text_ink(crop)
    top, bottom = 0, h
    if ink is not None:
        lo, hi = int(max(0.0, spans[0][0])), int(min(float(w), spans[-1][1])) + 1
        rows = np.flatnonzero(ink[:, lo:hi].any(axis=1))
        if rows.size:
            top, bottom = int(rows[0]), int(rows[-1]) + 1
    pad = 0.25 * h
    boxes = []
    for i, (start, end) in enumerate(spans):
        x0, x1 = max(0.0, float(start)), min(float(w), float(end))
        lo = int(np.floor(max(bounds[i], start - pad)))
        hi = int(np.ceil(min(bounds[i + 1], end + pad)))
        if ink is not None and hi > lo:
            cols = np.flatnonzero(ink[top:bottom, lo:hi].any(axis=0))
            if cols.size:
                x0, x1 = float(lo + cols[0]), float(lo + cols[-1] + 1)
        boxes.append((x0, float(top), x1, float(bottom)))
    return boxes


def text_ink(crop: np.ndarray) -> np.ndarray | None:
    """The pixels of a line crop that belong to its glyphs, as a 0/1 array; None for a crop too small
    or too flat to tell ink from paper.

    Otsu's threshold separates ink from paper; a glyph's edge pixels, only
    partly inked, are paler than that, so a pixel counts when it is darker
    than halfway between the threshold and the paper. Thin horizontal runs
    longer than the crop is high (underlines, form lines, table borders) are
    rules, not text, and are left out.
    """
    h, w = crop.shape[:2]
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
    if h < 4 or w < 4 or int(gray.max()) - int(gray.min()) < 32:
        return None
    threshold, _ = cv2.threshold(gray, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    light = gray[gray > threshold]
    paper = float(np.median(light)) if light.size else 255.0
    ink = (gray < (threshold + paper) / 2).astype(np.uint8)
    long_runs = cv2.morphologyEx(ink, cv2.MORPH_OPEN, np.ones((1, max(h, 8)), np.uint8))
    thick = cv2.morphologyEx(long_runs, cv2.MORPH_OPEN, np.ones((max(3, h // 3), 1), np.uint8))
    return ink & (1 - (long_runs & (1 - thick)))


class Shift:
    """The geometry of a window cut from a page: its pixels map to the page's by an offset.

    Attributes:
        dx / dy: where the window's top-left pixel lies on the page.
        size: the window's (height, width).
    """

    identity = False

    def __init__(self, dx: float, dy: float, size: tuple[int, int]):
        self.dx, self.dy, self.size = float(dx), float(dy), size

    def map_quads(self, quads: np.ndarray) -> np.ndarray:
        return np.asarray(quads, np.float64) + np.array([self.dx, self.dy])


def page_to_original(page: Page) -> Page:
    """The page with every polygon mapped from the dewarped image it was read from to original
    pixels through ``page.geometry``, which is then cleared; a page without one is returned as it is."""
    geometry = page.geometry
    if geometry is None:
        return page
    lines = page.lines
    if not lines or getattr(geometry, "identity", False):
        return page.replace(geometry=None)
    mapped_lines = _mapped(geometry, [line.polygon for line in lines])
    word_polys = [w.polygon for line in lines for w in line.words]
    mapped_words = iter(_mapped(geometry, word_polys) if word_polys else [])
    new_lines = iter([
        Line(line.text, line.confidence, poly,
             tuple(Word(w.text, w.confidence, next(mapped_words), w.in_text) for w in line.words), line.source)
        for line, poly in zip(lines, mapped_lines)
    ])
    blocks = tuple(Block(tuple(next(new_lines) for _ in block.lines), block.kind) for block in page.blocks)
    return page.replace(blocks=blocks, geometry=None)


def _mapped(geometry, polygons) -> list[tuple[tuple[float, float], ...]]:
    out = geometry.map_quads(np.asarray(polygons, np.float64))
    return [tuple((float(x), float(y)) for x, y in poly) for poly in out]
