"""Page geometry: straightened line crops, where a crop's pixels lie on the page, and a page's
polygons mapped back to its original pixels.

:func:`crop_quad` cuts a detected line out of a page as an upright
rectangle; the :class:`CropFrame` it returns maps any point of that crop (or of
a piece :func:`split_at_gaps` cut from it) back to page pixels, which is how
word boxes found in a crop become page polygons. :func:`page_to_original`
maps a page read from a dewarped image back through the dewarping.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pipeline.types import Block, Line, Page, Word

__all__ = ["CropFrame", "crop_quad", "crop_with_frame", "split_at_gaps", "word_boxes", "page_to_original"]


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
    """Boxes ``(x0, y0, x1, y1)``, in crop pixels, around the ink of each word of a line crop.

    ``spans`` are the words' ``[start, end)`` columns, left to right, where the
    recognizer's frames put their characters. A word owns the columns from the
    middle of the gap before it to the middle of the gap after it (the crop's
    ends for the first and last word); its box is the ink it has there (dark
    pixels by Otsu's threshold on the crop), so a box hugs the word whether the
    frames fell early or late on its first or last letter. A word with no ink
    in its columns keeps its span, the crop's full height.
    """
    h, w = crop.shape[:2]
    if not spans:
        return []
    bounds = [0.0]
    for (_, end), (start, _) in zip(spans[:-1], spans[1:]):
        bounds.append(min(max((end + start) / 2, bounds[-1]), float(w)))
    bounds.append(float(w))
    gray = cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY) if crop.ndim == 3 else crop
    ink = None
    if h >= 4 and w >= 4 and int(gray.max()) - int(gray.min()) >= 32:
        _, ink = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY_INV + cv2.THRESH_OTSU)
    boxes = []
    for i, (start, end) in enumerate(spans):
        lo, hi = int(np.floor(bounds[i])), int(np.ceil(bounds[i + 1]))
        box = (max(0.0, float(start)), 0.0, min(float(w), float(end)), float(h))
        if ink is not None and hi > lo:
            region = ink[:, lo:hi]
            cols = np.flatnonzero(region.any(axis=0))
            if cols.size:
                rows = np.flatnonzero(region[:, cols[0] : cols[-1] + 1].any(axis=1))
                box = (float(lo + cols[0]), float(rows[0]), float(lo + cols[-1] + 1), float(rows[-1] + 1))
        boxes.append(box)
    return boxes


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
             tuple(Word(w.text, w.confidence, next(mapped_words)) for w in line.words))
        for line, poly in zip(lines, mapped_lines)
    ])
    blocks = tuple(Block(tuple(next(new_lines) for _ in block.lines), block.kind) for block in page.blocks)
    return page.replace(blocks=blocks, geometry=None)


def _mapped(geometry, polygons) -> list[tuple[tuple[float, float], ...]]:
    out = geometry.map_quads(np.asarray(polygons, np.float64))
    return [tuple((float(x), float(y)) for x, y in poly) for poly in out]
