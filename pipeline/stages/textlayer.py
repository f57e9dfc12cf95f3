"""A PDF page's own text joined with what OCR read in its image regions (``pdf+ocr`` pages).

The decode stage reads a born-digital page's text from the file
(:mod:`pipeline.io.pdftext`); where the page also has image regions (a scanned
signature, a stamp, a logo, an attached scan), it renders the page and sends
OCR only the window around those regions, everything in it but the regions
white (:func:`ocr_window`), with the file's lines attached
(``PageImage.text_layer``). :func:`merge_text_layer` then keeps the OCR lines
that lie in an image region and do not repeat text the file already has, and
puts them beside the file's lines; the layout stage orders them all.
"""

from __future__ import annotations

import logging

import numpy as np

from pipeline.imaging.geometry import Shift, page_to_original
from pipeline.types import Block, Line, Page, PageImage, Polygon, polygon_box

__all__ = ["merge_text_layer", "ocr_window"]

log = logging.getLogger(__name__)

#: Room left around the image regions in the window OCR reads (pixels).
_MARGIN = 16

#: An OCR line that has this share of its box under the file's words repeats them and is dropped.
_REPEATS = 0.3


def _overlap(a: tuple, b: tuple) -> float:
    return max(0.0, min(a[2], b[2]) - max(a[0], b[0])) * max(0.0, min(a[3], b[3]) - max(a[1], b[1]))


def ocr_window(image: np.ndarray, regions: tuple[Polygon, ...]) -> tuple[np.ndarray, Shift]:
    """The part of a page image OCR should read: the window around the regions' boxes, white outside
    them, and the geometry that maps its pixels back to the page's."""
    h, w = image.shape[:2]
    boxes = []
    for region in regions:
        x0, y0, x1, y1 = polygon_box(region)
        x0, y0 = max(0, int(np.floor(x0))), max(0, int(np.floor(y0)))
        x1, y1 = min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1)))
        if x1 > x0 and y1 > y0:
            boxes.append((x0, y0, x1, y1))
    if not boxes:
        return np.full((1, 1, 3), 255, np.uint8), Shift(0, 0, (1, 1))
    wx0, wy0 = max(0, min(b[0] for b in boxes) - _MARGIN), max(0, min(b[1] for b in boxes) - _MARGIN)
    wx1, wy1 = min(w, max(b[2] for b in boxes) + _MARGIN), min(h, max(b[3] for b in boxes) + _MARGIN)
    out = np.full((wy1 - wy0, wx1 - wx0, 3), 255, np.uint8)
    for x0, y0, x1, y1 in boxes:
        out[y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0] = image[y0:y1, x0:x1]
    return out, Shift(wx0, wy0, out.shape[:2])


def merge_text_layer(image: PageImage, page: Page) -> Page:
    """The page OCR read from ``image`` (a ``pdf+ocr`` page), with the file's lines and only the OCR
    lines that lie in an image region and do not repeat the file's words; one block, for the layout
    stage to order. Pages of other sources are returned as they are. Where OCR failed on the image
    regions, the page keeps the file's text (``text_source`` ``pdf``) rather than failing."""
    if image.text_source != "pdf+ocr":
        return page
    if page.status != "ok":
        log.warning("OCR of the image regions of page %s of %s failed (%s: %s); the page keeps the file's text",
                    image.page_index, image.key, page.error_code, page.error_message)
        return Page(image.key, image.doc_id, image.page_index, image.width, image.height, image.dpi,
                    blocks=(Block(tuple(image.text_layer)),) if image.text_layer else (), timings=page.timings,
                    text_source="pdf")
    page = page_to_original(page)  # from the window's pixels to the page's, where the file's lines are
    regions = [polygon_box(r) for r in image.ocr_regions]
    known = [polygon_box(w.polygon) for line in image.text_layer for w in (line.words or (line,))]
    kept: list[Line] = []
    for line in page.lines:
        box = polygon_box(line.polygon)
        cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
        if not any(r[0] <= cx <= r[2] and r[1] <= cy <= r[3] for r in regions):
            continue
        area = max((box[2] - box[0]) * (box[3] - box[1]), 1e-6)
        if sum(_overlap(box, k) for k in known) >= _REPEATS * area:
            continue
        kept.append(line)
    lines = tuple(image.text_layer) + tuple(kept)
    return page.replace(blocks=(Block(lines),) if lines else (), text_source="pdf+ocr")
