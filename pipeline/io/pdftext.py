"""A PDF page's own text: read it, and decide whether it can stand in for OCR.

A PDF that a program wrote holds its text exactly, with every character's
position: reading it costs milliseconds and makes no recognition errors. But a
PDF's text is not always what the page shows. :func:`read_text_layer` reads a
page's characters from PDFium's text page and keeps only those a reader sees
and can trust:

* **seen**: drawn in a visible text render mode, not in white where nothing
  dark lies beneath, not under an image drawn after it, inside the page's box.
  Invisible text (render mode 3, what OCR programs lay over a scan) and hidden
  text are left out: an earlier OCR is what reprocessing replaces.
* **trusted**: with a Unicode mapping (PDFium reports none for glyphs it cannot
  map), not private-use, replacement or control characters, and, where the
  page has enough words for it to say anything, words that read as words:
  a wrong ``ToUnicode`` map gives strings like ``Jowpjdf`` that are words of
  no language; text decoded in the wrong encoding gives ``Ã©``-style mojibake.

It then says where the page's text comes from (:attr:`TextLayer.source`):

* ``pdf``: the visible text, and no image that could hold more;
* ``pdf+ocr``: the visible text, plus the page's image regions (a scanned
  signature, a stamp, an attached scan) for OCR to read what the text lacks;
* ``ocr``: no visible text (an image page, or one whose only text is an
  invisible OCR layer), or text that cannot be trusted.

Lines and words come in the pixels of the page rendered at the decode
resolution (the same pixels OCR would read), with confidence 1.0. A line is
what PDFium's text page puts between line breaks, cut where a gap of more than
two line heights separates its words (table cells on one baseline), as the
detector would see them. Words are what lies between spaces, so the words are
exactly those of the file's text.

The caller holds the PDFium lock (:mod:`pipeline.io.decode`).
"""

from __future__ import annotations

import ctypes
import functools
import gzip
import math
import re
import unicodedata
from dataclasses import dataclass
from pathlib import Path

import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c

from pipeline.types import Line, Polygon, Word, box_polygon

__all__ = ["TextLayer", "read_text_layer", "text_is_words"]

#: A page whose glyphs are more than this share untrusted characters is OCR'd.
_MAX_UNTRUSTED = 0.05
#: The words check needs this many words of three letters or more in scripts it knows.
_MIN_WORDS = 12
#: ... and at least this share of them must be common words of a language it knows.
_MIN_COMMON = 0.10
#: Mojibake of UTF-8 read as Latin-1 or Windows-1252 (``Ã©``, ``â€™``, ``Â ``).
_MOJIBAKE = re.compile("Ã[\u0080-\u00bf]|â€|Â[\u00a0-\u00bf]")
#: An image smaller than this (points) holds no text line worth reading.
_MIN_IMAGE_W, _MIN_IMAGE_H = 16.0, 8.0
#: Fill colour channels at least this light count as white.
_WHITE = 245
#: A line is cut where a gap between its words is wider than this many line heights.
_CELL_GAP = 2.0
_SCRIPTS = ("LATIN", "CYRILLIC", "ARABIC")


@dataclass(frozen=True)
class TextLayer:
    """What a PDF page's text says, and where the page's text should come from.

    Attributes:
        source: ``pdf``, ``pdf+ocr`` or ``ocr`` (see the module docstring).
        reason: why, in a few words (for logs).
        lines: the visible, trusted text's lines, in the file's order, in pixels at ``dpi``.
        ocr_regions: the image regions OCR should read (``pdf+ocr``), in the same pixels.
        width / height: the page's size in those pixels.
        dpi: the resolution the pixels are at.
        visible_chars / hidden_chars / untrusted_chars: the page's characters by kind.
    """

    source: str
    reason: str
    lines: tuple[Line, ...]
    ocr_regions: tuple[Polygon, ...]
    width: int
    height: int
    dpi: float
    visible_chars: int = 0
    hidden_chars: int = 0
    untrusted_chars: int = 0


@functools.cache
def _common_words() -> frozenset[str]:
    path = Path(__file__).parent / "data" / "common_words.txt.gz"
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return frozenset(fh.read().split())


def text_is_words(text: str) -> tuple[bool, str]:
    """Whether a text reads as words rather than mojibake: ``(ok, why not)``.

    Texts with fewer than a dozen words of three letters or more in the Latin,
    Cyrillic or Arabic script pass unless they hold mojibake sequences; others must
    have at least a tenth of those words among the 3000 most common words of
    one of twelve languages (the word lists of ``pyspellchecker``).
    """
    tokens = text.split()
    if tokens and len(_MOJIBAKE.findall(text)) >= max(2, 0.02 * len(tokens)):
        return False, "the text layer holds mojibake (UTF-8 read in another encoding)"
    words = []
    for token in tokens:
        core = token.strip(".,;:!?\"'()[]{}<>«»„“”‘’-–—/*#%")
        if len(core) >= 3 and core.isalpha() and unicodedata.name(core[0], "").split(" ")[0] in _SCRIPTS:
            words.append(core.lower())
    if len(words) < _MIN_WORDS:
        return True, ""
    common = _common_words()
    share = sum(w in common for w in words) / len(words)
    if share < _MIN_COMMON:
        return False, (f"the text layer's words are not words ({share:.0%} of {len(words)} are common words "
                       "of a known language): its Unicode mapping is likely wrong")
    return True, ""


def _untrusted(code: int) -> bool:
    if code == 0 or code == 0xFFFD or 0xE000 <= code <= 0xF8FF or code >= 0xF0000:
        return True
    try:
        return unicodedata.category(chr(code)) in ("Cc", "Cn", "Co", "Cs")
    except (ValueError, OverflowError):
        return True


class _Affine:
    """Page space to the pixels of the page rendered at ``scale`` (rotation and crop box included),
    as PDFium maps them."""

    _SUB = 1024  # PDFium's mapping gives integers: map onto a 1024 times finer grid

    def __init__(self, page: pdfium.PdfPage, width_px: int, height_px: int):
        sub = self._SUB
        x, y = ctypes.c_int(), ctypes.c_int()

        def dev(px: float, py: float) -> tuple[float, float]:
            pdfium_c.FPDF_PageToDevice(page.raw, 0, 0, width_px * sub, height_px * sub, 0, px, py, x, y)
            return x.value / sub, y.value / sub

        ox, oy = dev(0.0, 0.0)
        ax, ay = dev(1000.0, 0.0)
        bx, by = dev(0.0, 1000.0)
        self.m = ((ax - ox) / 1000, (bx - ox) / 1000, ox, (ay - oy) / 1000, (by - oy) / 1000, oy)

    def box(self, left: float, bottom: float, right: float, top: float) -> tuple[float, float, float, float]:
        """An axis-aligned page-space box as an axis-aligned pixel box (x0, y0, x1, y1)."""
        a, b, c, d, e, f = self.m
        xs = [a * px + b * py + c for px, py in ((left, bottom), (right, top))]
        ys = [d * px + e * py + f for px, py in ((left, bottom), (right, top))]
        return min(xs), min(ys), max(xs), max(ys)


def _objects(page: pdfium.PdfPage) -> tuple[dict[int, int], list[tuple[int, tuple]], list[tuple]]:
    """The page's top-level objects: {address: z-index}, images (z-index, page-space bounds), and the
    bounds of filled non-white paths and images (what white text may be drawn on)."""
    index: dict[int, int] = {}
    images: list[tuple[int, tuple]] = []
    backdrops: list[tuple] = []
    left, bottom, right, top = (ctypes.c_float() for _ in range(4))
    r, g, b, a = (ctypes.c_uint() for _ in range(4))
    fill, stroke = ctypes.c_int(), ctypes.c_int()
    for i in range(pdfium_c.FPDFPage_CountObjects(page.raw)):
        obj = pdfium_c.FPDFPage_GetObject(page.raw, i)
        if not obj:
            continue
        index[ctypes.cast(obj, ctypes.c_void_p).value or 0] = i
        kind = pdfium_c.FPDFPageObj_GetType(obj)
        if kind not in (pdfium_c.FPDF_PAGEOBJ_IMAGE, pdfium_c.FPDF_PAGEOBJ_FORM, pdfium_c.FPDF_PAGEOBJ_PATH):
            continue
        if not pdfium_c.FPDFPageObj_GetBounds(obj, left, bottom, right, top):
            continue
        bounds = (left.value, bottom.value, right.value, top.value)
        if kind == pdfium_c.FPDF_PAGEOBJ_PATH:
            if (pdfium_c.FPDFPath_GetDrawMode(obj, fill, stroke) and fill.value
                    and pdfium_c.FPDFPageObj_GetFillColor(obj, r, g, b, a) and a.value > 0
                    and min(r.value, g.value, b.value) < _WHITE):
                backdrops.append(bounds)
            continue
        if kind == pdfium_c.FPDF_PAGEOBJ_FORM and not _form_has_image(obj):
            continue
        images.append((i, bounds))
        backdrops.append(bounds)
    return index, images, backdrops


def _form_has_image(form, depth: int = 0) -> bool:
    if depth > 8:
        return False
    for k in range(pdfium_c.FPDFFormObj_CountObjects(form)):
        obj = pdfium_c.FPDFFormObj_GetObject(form, k)
        kind = pdfium_c.FPDFPageObj_GetType(obj) if obj else None
        if kind == pdfium_c.FPDF_PAGEOBJ_IMAGE:
            return True
        if kind == pdfium_c.FPDF_PAGEOBJ_FORM and _form_has_image(obj, depth + 1):
            return True
    return False


def _inside(x: float, y: float, bounds: tuple) -> bool:
    return bounds[0] <= x <= bounds[2] and bounds[1] <= y <= bounds[3]


def read_text_layer(page: pdfium.PdfPage, dpi: float) -> TextLayer:
    """Read one PDF page's text and decide where its text comes from (see the module docstring).

    Args:
        page: the loaded page (the caller holds the PDFium lock).
        dpi: the resolution the page would be rendered at for OCR; lines and words come in its pixels.

    Raises:
        pypdfium2.PdfiumError: PDFium cannot load the page's text.
    """
    width_pt, height_pt = page.get_size()
    scale = dpi / 72
    width_px, height_px = math.ceil(width_pt * scale), math.ceil(height_pt * scale)
    to_px = _Affine(page, width_px, height_px)
    crop = page.get_cropbox()
    index, images, backdrops = _objects(page)
    textpage = page.get_textpage()
    try:
        glyphs, hidden, untrusted = _glyphs(textpage, index, images, backdrops, crop, to_px)
    finally:
        textpage.close()
    visible = sum(1 for g in glyphs if isinstance(g, tuple) and not g[2])
    regions = tuple(
        box_polygon(to_px.box(*bounds)) for _, bounds in images
        if bounds[2] - bounds[0] >= _MIN_IMAGE_W and bounds[3] - bounds[1] >= _MIN_IMAGE_H
    )

    def layer(source: str, reason: str, lines: tuple[Line, ...] = ()) -> TextLayer:
        return TextLayer(source, reason, lines, regions if source == "pdf+ocr" else (), width_px, height_px,
                         float(dpi), visible, hidden, untrusted)

    if visible == 0:
        if hidden:
            return layer("ocr", "its only text is invisible or hidden (an earlier OCR layer)")
        return layer("ocr", "the file has no usable text on it" if untrusted else "the file has no text on it")
    if untrusted > _MAX_UNTRUSTED * (visible + untrusted):
        return layer("ocr", f"{untrusted} of its {visible + untrusted} glyphs have no usable Unicode mapping")
    lines = _lines(glyphs)
    ok, why = text_is_words(" ".join(line.text for line in lines))
    if not ok:
        return layer("ocr", why)
    if regions:
        return layer("pdf+ocr", f"text in the file, and {len(regions)} image region(s) to read", lines)
    return layer("pdf", "text in the file", lines)


#: A glyph: (character, pixel box, untrusted); None: a break between words; "\n": a line break.
_Glyph = tuple[str, tuple[float, float, float, float], bool]


def _glyphs(textpage, index, images, backdrops, crop, to_px) -> tuple[list, int, int]:
    """The page's characters in the file's order as glyphs and breaks, and the counts of hidden and
    untrusted ones (hidden ones become breaks; untrusted ones stay, flagged)."""
    raw = textpage.raw
    out: list = []
    hidden = untrusted = 0
    rect = pdfium_c.FS_RECTF()
    r, g, b, a = (ctypes.c_uint() for _ in range(4))
    modes: dict[int, tuple[int, int]] = {}  # text object address: (render mode, z-index)
    for i in range(pdfium_c.FPDFText_CountChars(raw)):
        code = pdfium_c.FPDFText_GetUnicode(raw, i)
        if code == 2 and pdfium_c.FPDFText_IsHyphen(raw, i) == 1:
            code = ord("-")  # PDFium's mark for a hyphen that ends a line: the page shows a hyphen
        ch = chr(code) if 0 <= code <= 0x10FFFF else "\ufffd"
        if ch in "\r\n":
            out.append("\n")
            continue
        if pdfium_c.FPDFText_IsGenerated(raw, i) or ch.isspace():
            out.append(None)
            continue
        obj = pdfium_c.FPDFText_GetTextObject(raw, i)
        address = ctypes.cast(obj, ctypes.c_void_p).value or 0 if obj else 0
        if address not in modes:
            mode = pdfium_c.FPDFTextObj_GetTextRenderMode(obj) if obj else 0
            modes[address] = (mode, index.get(address, -1))
        mode, z = modes[address]
        if not pdfium_c.FPDFText_GetLooseCharBox(raw, i, rect):
            out.append(None)
            continue
        cx, cy = (rect.left + rect.right) / 2, (rect.top + rect.bottom) / 2
        seen = mode not in (pdfium_c.FPDF_TEXTRENDERMODE_INVISIBLE, pdfium_c.FPDF_TEXTRENDERMODE_CLIP)
        seen = seen and crop[0] <= cx <= crop[2] and crop[1] <= cy <= crop[3]
        if seen and pdfium_c.FPDFText_GetFillColor(raw, i, r, g, b, a):
            if a.value == 0 and mode in (pdfium_c.FPDF_TEXTRENDERMODE_FILL, pdfium_c.FPDF_TEXTRENDERMODE_FILL_CLIP):
                seen = False
            elif min(r.value, g.value, b.value) >= _WHITE and mode in (
                    pdfium_c.FPDF_TEXTRENDERMODE_FILL, pdfium_c.FPDF_TEXTRENDERMODE_FILL_CLIP):
                seen = any(_inside(cx, cy, bounds) for bounds in backdrops)  # white on something dark
        if seen and z >= 0:  # drawn before an image that covers it
            seen = not any(k > z and _inside(cx, cy, bounds) for k, bounds in images)
        if not seen:
            hidden += 1
            out.append(None)
            continue
        bad = bool(pdfium_c.FPDFText_HasUnicodeMapError(raw, i) == 1) or _untrusted(code)
        untrusted += bad
        out.append((ch, to_px.box(rect.left, rect.bottom, rect.right, rect.top), bad))
    return out, hidden, untrusted


def _lines(glyphs: list) -> tuple[Line, ...]:
    """Lines of words from the glyph stream: a word ends at a break or an untrusted glyph, a line at a
    line break or where the next glyph is not on the same line; lines are cut at wide gaps."""
    lines: list[list[list[_Glyph]]] = []
    words: list[list[_Glyph]] = []
    word: list[_Glyph] = []

    def end_word() -> None:
        nonlocal word
        if word:
            words.append(word)
            word = []

    def end_line() -> None:
        nonlocal words
        end_word()
        if words:
            lines.append(words)
            words = []

    for glyph in glyphs:
        if glyph == "\n":
            end_line()
        elif glyph is None or glyph[2]:
            end_word()
        else:
            last = word[-1] if word else (words[-1][-1] if words else None)
            if last is not None and not _same_line(last[1], glyph[1]):
                end_line()
            word.append(glyph)
    end_line()
    out = []
    for line_words in lines:
        for piece in _cut_at_gaps([_word(w) for w in line_words]):
            out.append(_line(piece))
    return tuple(out)


def _same_line(a: tuple, b: tuple) -> bool:
    """Whether glyph box ``b`` continues the line of glyph box ``a`` (overlapping heights, not behind it)."""
    h = max(min(a[3] - a[1], b[3] - b[1]), 1e-6)
    overlap = min(a[3], b[3]) - max(a[1], b[1])
    return overlap >= 0.5 * h and b[0] >= a[0] - 0.5 * h


def _word(glyphs: list[_Glyph]) -> Word:
    box = (min(g[1][0] for g in glyphs), min(g[1][1] for g in glyphs),
           max(g[1][2] for g in glyphs), max(g[1][3] for g in glyphs))
    return Word("".join(g[0] for g in glyphs), 1.0, box_polygon(box))


def _cut_at_gaps(words: list[Word]) -> list[list[Word]]:
    pieces: list[list[Word]] = [[words[0]]]
    for prev, word in zip(words, words[1:]):
        height = max(prev.polygon[2][1] - prev.polygon[0][1], word.polygon[2][1] - word.polygon[0][1])
        if word.polygon[0][0] - prev.polygon[1][0] > _CELL_GAP * height:
            pieces.append([])
        pieces[-1].append(word)
    return pieces


def _line(words: list[Word]) -> Line:
    box = (min(w.polygon[0][0] for w in words), min(w.polygon[0][1] for w in words),
           max(w.polygon[2][0] for w in words), max(w.polygon[2][1] for w in words))
    return Line(" ".join(w.text for w in words), 1.0, box_polygon(box), tuple(words), source="pdf")
