"""Synthetic scanned documents with exact ground truth.

Tests and benchmarks need documents whose text is known exactly. This module
renders invoices, forms, book pages, newspaper pages (3-4 columns) and journal
articles (2 columns) with TrueType fonts, optionally "scans"
them (skew, blur, noise, uneven lighting, bleed-through, JPEG artefacts) and
writes each document as PNG, JPEG, multi-page TIFF or raster PDF together with
a JSON file holding every text line and its polygon in the pixels of the page
as written, in reading order (the order the lines were drawn: on multi-column
pages header, headline, then each column top to bottom, page number last).

The ``pdf-text`` format is the born-digital twin of the raster ``pdf``: the
same pages (same seed, same content) written as real PDF text, selectable and
extractable, in the same TrueType fonts embedded as subsets (Type0/CIDFontType2,
Identity-H, ToUnicode), with rules, boxes and checkbox crosses as vector paths.
Every drawing call on a page is recorded and replayed in PDF points (pixels
times 72 / dpi), each glyph where Pillow drew it, so the JSON polygons (in
pixels at the document's dpi) hold for the PDF text too. Born-digital pages
are never damaged (no scan) and cannot be distorted.

Ground truth is exact by construction: every line is drawn with one
``ImageDraw.text`` call (or one call per word for justified prose) and its box
is the font's ``textbbox`` of what was drawn; skew moves the polygons with the
same affine matrix that moves the pixels.

Everything is seeded: the same arguments give byte-identical files on the same
machine (the fonts found on the machine are part of the input).

Example::

    from measure.synth import generate
    paths = generate("/tmp/docs", pages=10, kind="invoice", seed=7)
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import hashlib
import importlib.util
import io
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

__all__ = ["KINDS", "FORMATS", "DISTORTIONS", "ANOMALIES", "INVOICE_FIELDS", "generate", "available_fonts"]

log = logging.getLogger(__name__)

KINDS = ("invoice", "form", "book", "newspaper", "journal")
#: Geometric distortions ``generate(distort=...)`` applies on top of a page (``"all"`` writes one folder each).
DISTORTIONS = ("perspective", "rotate", "skew", "curl", "curl-strong")
"""Document kinds :func:`generate` can render."""

FORMATS = ("png", "tiff", "pdf", "jpeg", "pdf-text")
"""Output formats; png and jpeg documents have one page, tiff, pdf and pdf-text 1-3.

``pdf`` is a scan (one raster image per page); ``pdf-text`` is its born-digital
twin: the same pages as real, extractable PDF text in embedded fonts with
vector rules, never damaged or distorted.
"""

_EXT = {"png": "png", "tiff": "tif", "pdf": "pdf", "jpeg": "jpg", "pdf-text": "pdf"}
_FORMAT_ALIASES = {"jpg": "jpeg", "tif": "tiff"}
_MULTI_PAGE = ("tiff", "pdf", "pdf-text")
_BORN_DIGITAL = ("pdf-text",)
_MAX_PAGES_PER_DOC = 3
_JPEG_QUALITY = 85
# Fixed PDF dates: Pillow would otherwise stamp the wall clock into the file.
_PDF_TIME = time.gmtime(1_700_000_000)

# --------------------------------------------------------------------------- fonts

_FONT_DIRS = (
    "/usr/share/fonts/truetype/dejavu",
    "/usr/share/fonts/truetype/liberation2",
    "/usr/share/fonts/truetype/liberation",
    "/usr/share/fonts/truetype/freefont",
)
_FONT_PACKAGES = "fonts-dejavu-core fonts-liberation fonts-freefont-ttf"

# (family, style, regular file, bold file, smallest point size that stays legible)
_FAMILY_FILES = (
    ("DejaVu Sans", "sans", "DejaVuSans.ttf", "DejaVuSans-Bold.ttf", 9.0),
    ("DejaVu Serif", "serif", "DejaVuSerif.ttf", "DejaVuSerif-Bold.ttf", 9.0),
    ("DejaVu Sans Mono", "mono", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf", 9.0),
    ("Liberation Sans", "sans", "LiberationSans-Regular.ttf", "LiberationSans-Bold.ttf", 9.0),
    ("Liberation Serif", "serif", "LiberationSerif-Regular.ttf", "LiberationSerif-Bold.ttf", 9.5),
    ("Liberation Mono", "mono", "LiberationMono-Regular.ttf", "LiberationMono-Bold.ttf", 9.5),
    (
        "Liberation Sans Narrow",
        "sans",
        "LiberationSansNarrow-Regular.ttf",
        "LiberationSansNarrow-Bold.ttf",
        10.0,
    ),
    ("FreeSans", "sans", "FreeSans.ttf", "FreeSansBold.ttf", 9.5),
    ("FreeSerif", "serif", "FreeSerif.ttf", "FreeSerifBold.ttf", 10.0),
    # FreeMono has hairline strokes: only used at larger sizes.
    ("FreeMono", "mono", "FreeMono.ttf", "FreeMonoBold.ttf", 12.0),
)


@dataclass(frozen=True)
class _Family:
    name: str
    style: str  # "sans" | "serif" | "mono"
    regular: str
    bold: str
    min_pt: float = 9.0


def _font_dirs() -> list[Path]:
    dirs = [Path(d) for d in _FONT_DIRS]
    # matplotlib bundles DejaVu; find it without importing matplotlib.
    spec = importlib.util.find_spec("matplotlib")
    if spec is not None and spec.origin:
        dirs.append(Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf")
    return [d for d in dirs if d.is_dir()]


@functools.lru_cache(maxsize=1)
def _families() -> tuple[_Family, ...]:
    """Discover the usable font families once per process, in a fixed order."""
    dirs = _font_dirs()
    found: list[_Family] = []
    for name, style, regular, bold, min_pt in _FAMILY_FILES:
        for d in dirs:
            reg = d / regular
            if reg.is_file():
                bold_path = d / bold
                found.append(
                    _Family(name, style, str(reg), str(bold_path if bold_path.is_file() else reg), min_pt)
                )
                break
    if not found:
        # Unknown layout: take any TrueType file, one family per file.
        for d in dirs:
            for ttf in sorted(d.glob("*.ttf")):
                found.append(_Family(ttf.stem, "sans", str(ttf), str(ttf), 10.0))
    if not found:
        raise RuntimeError(
            "measure.synth found no TrueType font (looked in "
            + ", ".join(_FONT_DIRS)
            + f" and matplotlib's mpl-data). Install them with: apt-get install -y {_FONT_PACKAGES}"
        )
    log.debug("synth fonts: %s", ", ".join(f.name for f in found))
    return tuple(found)


def available_fonts() -> list[str]:
    """Names of the font families :func:`generate` draws from on this machine.

    Returns:
        Family names such as ``"DejaVu Sans"``, in the fixed order they are used.

    Raises:
        RuntimeError: no TrueType font was found; the message names the Debian
            packages to install.
    """
    return [f.name for f in _families()]


@functools.lru_cache(maxsize=512)
def _load_font(path: str, px: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(path, size=px)


# --------------------------------------------------------------------------- style


@dataclass
class _Style:
    """Per-document look: page geometry, fonts, ink and paper."""

    w: int
    h: int
    dpi: int
    body: _Family
    head: _Family
    mono: _Family
    base_pt: float
    ink: int
    paper: int
    rgb: bool
    tint: tuple[float, float, float]

    def font(self, pt: float, bold: bool = False, fam: _Family | None = None) -> ImageFont.FreeTypeFont:
        fam = fam or self.body
        pt = max(pt, fam.min_pt)
        px = max(8, round(pt * self.dpi / 72.0))
        return _load_font(fam.bold if bold else fam.regular, px)

    def px(self, pt: float) -> float:
        return pt * self.dpi / 72.0


def _pick_style(kind: str, rnd: random.Random, dpi: int) -> _Style:
    fams = _families()
    by_style: dict[str, list[_Family]] = {}
    for f in fams:
        by_style.setdefault(f.style, []).append(f)
    prefer = {"invoice": "sans", "form": "sans", "book": "serif", "newspaper": "serif", "journal": "serif"}[kind]
    style = prefer if rnd.random() < 0.75 else ("serif" if prefer == "sans" else "sans")
    pool = by_style.get(style) or by_style.get(prefer) or list(fams)
    body = rnd.choice(pool)
    text_fams = by_style.get("sans", []) + by_style.get("serif", [])
    head = body if rnd.random() < 0.6 or not text_fams else rnd.choice(text_fams)
    mono = rnd.choice(by_style["mono"]) if by_style.get("mono") else body
    # One draw whatever the kind: the streams of the older kinds stay as they were.
    if kind == "book":
        base_pt = rnd.uniform(10.0, 12.5)
    elif kind == "newspaper":
        base_pt = rnd.uniform(8.5, 10.0)  # raised to the family's legible minimum by _Style.font
    elif kind == "journal":
        base_pt = rnd.uniform(9.5, 11.0)
    else:
        base_pt = rnd.uniform(9.5, 12.0)
    rgb = rnd.random() < 0.4
    warm = rnd.uniform(0.0, 0.05)
    st = _Style(
        w=round(210.0 / 25.4 * dpi),
        h=round(297.0 / 25.4 * dpi),
        dpi=dpi,
        body=body,
        head=head,
        mono=mono,
        base_pt=base_pt,
        ink=rnd.randint(0, 60),
        paper=rnd.randint(238, 255),
        rgb=rgb,
        tint=(1.0, 1.0 - warm * 0.4, 1.0 - warm),
    )
    if kind == "newspaper":  # newsprint: greyer paper (an extra draw for this kind only)
        st.paper -= rnd.randint(4, 16)
    return st


# --------------------------------------------------------------------------- canvas


@dataclass
class _Line:
    text: str
    box: tuple[float, float, float, float]  # left, top, right, bottom (ink extent)
    block: int


@dataclass(frozen=True)
class _TextOp:
    """One ``ImageDraw.text`` call as made: the pdf-text writer replays it as PDF text."""

    text: str
    x: float
    y: float  # the baseline
    anchor: str  # Pillow anchor: "ls", "rs" or "ms"
    font: str  # TrueType file
    px: int  # size in pixels per em
    fill: int  # grey level


@dataclass(frozen=True)
class _LineOp:
    """One ``ImageDraw.line`` segment (a rule or a checkbox cross stroke)."""

    start: tuple[float, float]
    end: tuple[float, float]
    width: int
    fill: int


@dataclass(frozen=True)
class _RectOp:
    """One ``ImageDraw.rectangle`` call (a shaded band or a box outline)."""

    box: tuple[float, float, float, float]
    outline: int | None
    fill: int | None
    width: int


class _Canvas:
    """A grayscale page plus the ground-truth lines drawn on it.

    Every drawing call is also recorded, in order, in ``ops`` (text runs,
    line segments and rectangles in page pixels), so the same page can be
    written again as vector PDF (the ``pdf-text`` format).
    """

    def __init__(self, st: _Style):
        self.st = st
        self.img = Image.new("L", (st.w, st.h), st.paper)
        self.draw = ImageDraw.Draw(self.img)
        self.lines: list[_Line] = []
        self.ops: list[_TextOp | _LineOp | _RectOp] = []
        self.block = -1
        # Invoices: the fields this page prints (_layout_invoice), written to its JSON page entry.
        self.invoice: dict | None = None

    def new_block(self) -> None:
        self.block += 1

    def _text(self, x: float, y: float, s: str, font: ImageFont.FreeTypeFont, anchor: str, fill: int) -> None:
        self.draw.text((x, y), s, font=font, fill=fill, anchor=anchor)
        self.ops.append(_TextOp(s, float(x), float(y), anchor, str(font.path), int(font.size), int(fill)))

    def _line(self, start: tuple[float, float], end: tuple[float, float], width: int, fill: int) -> None:
        self.draw.line([start, end], fill=fill, width=width)
        (x0, y0), (x1, y1) = start, end
        self.ops.append(_LineOp((float(x0), float(y0)), (float(x1), float(y1)), int(width), int(fill)))

    def text(
        self,
        x: float,
        y: float,
        s: str,
        font: ImageFont.FreeTypeFont,
        align: str = "left",
        fill: int | None = None,
    ) -> tuple[float, float, float, float] | None:
        """Draw one line with its baseline at ``y``; ``x`` is its left/right/centre."""
        s = " ".join(s.split())
        if not s:
            return None
        anchor = {"left": "ls", "right": "rs", "center": "ms"}[align]
        fill = self.st.ink if fill is None else fill
        self._text(x, y, s, font, anchor, fill)
        box = self.draw.textbbox((x, y), s, font=font, anchor=anchor)
        self.lines.append(_Line(s, _margin(box), self.block))
        return box

    def justified(self, x0: float, x1: float, y: float, words: list[str], font: ImageFont.FreeTypeFont) -> None:
        """Draw words spread to fill ``[x0, x1]``: one line of normal text in the GT."""
        widths = [font.getlength(w) for w in words]
        gap = (x1 - x0 - sum(widths)) / (len(words) - 1)
        x = x0
        boxes = []
        for word, wd in zip(words, widths):
            self._text(x, y, word, font, "ls", self.st.ink)
            boxes.append(self.draw.textbbox((x, y), word, font=font, anchor="ls"))
            x += wd + gap
        box = (boxes[0][0], min(b[1] for b in boxes), boxes[-1][2], max(b[3] for b in boxes))
        self.lines.append(_Line(" ".join(words), _margin(box), self.block))

    def hline(self, x0: float, x1: float, y: float, width: int = 1, fill: int | None = None) -> None:
        self._line((x0, y), (x1, y), width, self.st.ink if fill is None else fill)

    def vline(self, x: float, y0: float, y1: float, width: int = 1, fill: int | None = None) -> None:
        """A vertical rule, e.g. in the gutter between newspaper columns (not text)."""
        self._line((x, y0), (x, y1), width, self.st.ink if fill is None else fill)

    def rect(self, box: Sequence[float], outline: int | None = None, fill: int | None = None, width: int = 1) -> None:
        self.draw.rectangle(list(box), outline=outline, fill=fill, width=width)
        x0, y0, x1, y1 = (float(v) for v in box)
        self.ops.append(_RectOp((x0, y0, x1, y1), outline, fill, int(width)))

    def checkbox(self, x: float, y: float, size: float, checked: bool) -> None:
        """Square box sitting on baseline ``y``; a drawn cross when checked (not text)."""
        x0, y0, x1, y1 = x, y - size, x + size, y
        # A mark, not text: an empty-text GT line is a "don't care" region for scoring.
        self.lines.append(_Line("", _margin((x0, y0, x1, y1)), self.block))
        lw = max(1, round(size / 12))
        self.rect((x0, y0, x1, y1), outline=self.st.ink, width=lw)
        if checked:
            p = size * 0.2
            self._line((x0 + p, y0 + p), (x1 - p, y1 - p), lw + 1, self.st.ink)
            self._line((x0 + p, y1 - p), (x1 - p, y0 + p), lw + 1, self.st.ink)


#: Margin around a line's ink box in its GT polygon, as a fraction of the box height
#: (horizontal, vertical): annotated sets (ICDAR, SROIE) draw boxes with a little
#: room around the text, and detectors trained on them predict such boxes.
_MARGIN = (0.25, 0.1)


def _margin(box: Sequence[float]) -> tuple[float, float, float, float]:
    x0, y0, x1, y1 = (float(v) for v in box)
    h = y1 - y0
    return (x0 - _MARGIN[0] * h, y0 - _MARGIN[1] * h, x1 + _MARGIN[0] * h, y1 + _MARGIN[1] * h)


def _asc(font: ImageFont.FreeTypeFont) -> int:
    return font.getmetrics()[0]


def _desc(font: ImageFont.FreeTypeFont) -> int:
    return font.getmetrics()[1]


def _lh(font: ImageFont.FreeTypeFont, leading: float = 1.3) -> float:
    a, d = font.getmetrics()
    return (a + d) * leading


def _cw(font: ImageFont.FreeTypeFont) -> float:
    """Average character width, the unit of the 'separate lines' gap rule."""
    return font.getlength("abcdefghijklmnopqrstuvwxyz0123456789") / 36.0


def _wrap(words: list[str], font: ImageFont.FreeTypeFont, width: float, first_indent: float = 0.0) -> list[list[str]]:
    """Greedy word wrap; a word longer than the width gets a line of its own."""
    space = font.getlength(" ")
    lines: list[list[str]] = []
    cur: list[str] = []
    cur_w = 0.0
    avail = width - first_indent
    for word in words:
        ww = font.getlength(word)
        if cur and cur_w + space + ww > avail:
            lines.append(cur)
            cur, cur_w, avail = [], 0.0, width
        cur_w = ww if not cur else cur_w + space + ww
        cur.append(word)
    if cur:
        lines.append(cur)
    return lines


def _fit(s: str, font: ImageFont.FreeTypeFont, width: float) -> str:
    """Drop words (then characters) from the end until ``s`` fits ``width``."""
    words = s.split()
    while len(words) > 1 and font.getlength(" ".join(words)) > width:
        words.pop()
    s = " ".join(words)
    while len(s) > 1 and font.getlength(s) > width:
        s = s[:-1]
    return s.rstrip(" ,-(/")


# --------------------------------------------------------------------------- vocabulary

_FIRST = (
    "Anna Thomas Maria Peter Laura Daniel Sophie Martin Julia Michael Emma James Olivia David Clara "
    "Lucas Sarah Paul Hannah Robert Elena Jonas Grace Henry Alice Oliver Nina Samuel Eva William Lena "
    "George Amelia Victor Rosa Felix Irene Hugo Chloe Simon"
).split()
_LAST = (
    "Weber Smith Muller Johnson Martin Brown Schneider Dubois Fischer Taylor Wagner Wilson Bernard "
    "Becker Davies Hoffmann Evans Petit Schulz Walker Moreau Koch Wright Richter Thompson Klein "
    "Roberts Wolf Clarke Laurent Schroeder Hughes Neumann Green Fontaine Jansen Visser de Vries "
    "Bakker Hall"
).split()
_CO_WORDS = (
    "Northwind Blue Harbor Summit Redwood Silverline Keystone Brightway Oakfield Granite Evergreen "
    "Lakeside Pioneer Horizon Meridian Crescent Falcon Riverside Westbrook Ironbridge Sunrise Atlas "
    "Beacon Cedar Copper Delta"
).split()
_CO_TRADES = (
    "Trading",
    "Logistics",
    "Consulting",
    "Office Supplies",
    "Engineering",
    "Software",
    "Print & Design",
    "Building Services",
    "Electronics",
    "Catering",
    "Media",
    "Tools & Hardware",
    "Cleaning Services",
    "Analytics",
)
_STREETS = (
    "Main",
    "High",
    "Station",
    "Park",
    "Church",
    "Mill",
    "Oak",
    "Victoria",
    "King",
    "Queen",
    "Market",
    "Bridge",
    "Garden",
    "Elm",
    "Lake",
    "Harbour",
    "Chestnut",
    "Linden",
    "Berg",
    "Rosen",
)
_ITEMS = (
    "Consulting services",
    "Software development (hours)",
    "Website maintenance",
    "Office chair, ergonomic",
    "Standing desk 160 x 80 cm",
    "USB-C cable 2 m",
    "Printer paper A4, 500 sheets",
    "Toner cartridge, black",
    "Wireless keyboard and mouse set",
    "LED desk lamp",
    "Installation labour",
    "Shipping and handling",
    "Annual software licence",
    "Cloud hosting, monthly plan",
    "Network switch 24 ports",
    "Laptop stand, aluminium",
    "Project management",
    "On-site support visit",
    "Training workshop, half day",
    "Replacement filter set",
    "Stainless steel screws M6 (100 pcs)",
    "Safety gloves, size L",
    "Coffee beans 1 kg",
    "Whiteboard markers (pack of 12)",
    "Monitor 27 inch",
    "External hard drive 2 TB",
    "Translation services",
    "Graphic design, logo revision",
    "Catering for 20 guests",
    "Conference room rental",
    "Cleaning service, weekly",
    "Spare parts kit",
    "Paint, white matt 10 l",
    "Copper pipe 15 mm, 3 m",
    "Data backup service",
    "Security audit",
    "Delivery charge",
    "Maintenance contract Q2",
    "Business cards (500)",
    "Folding table",
)
_CITIES = {
    "us": (
        ("Springfield", "IL", "62704"),
        ("Portland", "OR", "97205"),
        ("Austin", "TX", "78701"),
        ("Madison", "WI", "53703"),
        ("Denver", "CO", "80202"),
    ),
    "uk": (
        ("London", "", "SW1A 2AA"),
        ("Leeds", "", "LS1 4AP"),
        ("Bristol", "", "BS1 5TR"),
        ("Manchester", "", "M1 3BE"),
        ("York", "", "YO1 7HH"),
    ),
    "de": (("Berlin", "", "10115"), ("Hamburg", "", "20095"), ("Munich", "", "80331"), ("Cologne", "", "50667")),
    "fr": (("Paris", "", "75008"), ("Lyon", "", "69002"), ("Lille", "", "59000"), ("Nantes", "", "44000")),
    "nl": (("Amsterdam", "", "1012 AB"), ("Utrecht", "", "3511 LX"), ("Rotterdam", "", "3011 AD")),
}
# Bank name and BIC per locale.
_BANKS = {
    "us": (("First National Bank", ""), ("City Savings Bank", "")),
    "uk": (("Barclays", "BARCGB22"), ("NatWest", "NWBKGB2L")),
    "de": (("Commerzbank", "COBADEFF"), ("Sparkasse Berlin", "BELADEBE")),
    "fr": (("BNP Paribas", "BNPAFRPP"), ("Credit Agricole", "AGRIFRPP")),
    "nl": (("ING Bank", "INGBNL2A"), ("ABN AMRO", "ABNANL2A")),
}
_COUNTRY = {"us": "USA", "uk": "United Kingdom", "de": "Germany", "fr": "France", "nl": "Netherlands"}
_MONTHS = (
    "January February March April May June July August September October November December"
).split()

# Prose vocabulary for book pages.
_SUBJ = (
    "the old man",
    "the woman",
    "her brother",
    "the captain",
    "my father",
    "the doctor",
    "the children",
    "the stranger",
    "the girl",
    "his mother",
    "they",
    "he",
    "she",
    "we",
)
_VI = (
    "walked waited laughed turned paused listened smiled hesitated returned stood sat wondered "
    "slept worked travelled wandered lingered rested whispered"
).split()
_VT = (
    "opened closed found watched carried remembered noticed lifted followed read wrote heard "
    "answered took left saw touched studied painted mended"
).split()
_ADV = (
    "slowly",
    "quietly",
    "suddenly",
    "carefully",
    "again",
    "softly",
    "at last",
    "for a while",
    "without a word",
    "once more",
    "almost at once",
    "for a long time",
)
_PREP = "toward across along behind beneath beside through into past near over around".split()
_ADJ = (
    "old small narrow cold dark quiet empty distant heavy bright grey wooden long faint broken warm "
    "silent green pale crowded familiar hidden ancient golden wet"
).split()
_NOUN = (
    "window door road river garden house letter lamp table harbour field station kitchen hill "
    "bridge forest room staircase wall boat church market village shore lighthouse orchard valley "
    "chapel cottage meadow courtyard library corridor"
).split()
_TIME = (
    "In the morning",
    "That evening",
    "After a while",
    "By the time the rain stopped",
    "Later",
    "Before dawn",
    "When the bell rang",
    "Some years later",
    "On the third day",
    "At noon",
)
_CONJ = ("and", "but", "while", "as", "because", "though", "until")
_SPEECH = (
    "I will be back before dark",
    "You should have told me sooner",
    "It is not as simple as that",
    "We cannot stay here much longer",
    "Nobody saw anything",
    "Close the door, please",
    "I never wanted any of this",
    "Tell me what happened",
    "The road is longer than you think",
)
_SAID = ("said", "replied", "whispered", "answered", "asked", "murmured")
_BOOK_TITLES = (
    "The Silent Harbour",
    "A Winter in the Valley",
    "The Long Road Home",
    "Letters from the Coast",
    "The Keeper of the Light",
    "Under the Grey Sky",
    "The Orchard House",
    "Distant Bells",
)
_CHAPTER_TITLES = (
    "The Arrival",
    "A Letter",
    "Across the River",
    "The Storm",
    "Old Friends",
    "The Lighthouse",
    "Small Mercies",
    "Night Crossing",
    "What Remained",
    "The Market Day",
)
_NUM_WORDS = "One Two Three Four Five Six Seven Eight Nine Ten Eleven Twelve".split()


def _person(rnd: random.Random) -> str:
    return f"{rnd.choice(_FIRST)} {rnd.choice(_LAST)}"


def _street(rnd: random.Random, loc: str) -> str:
    name = rnd.choice(_STREETS)
    num = rnd.randint(1, 220)
    if loc == "de":
        return f"{name}strasse {num}"
    if loc == "nl":
        return f"{name}straat {num}"
    if loc == "fr":
        return f"{num} rue {rnd.choice(('de la Paix', 'du Moulin', 'Pasteur', 'des Lilas', 'Victor Hugo', 'de la Gare'))}"
    return f"{num} {name} {rnd.choice(('Street', 'Road', 'Avenue', 'Lane'))}"


def _city_line(rnd: random.Random, loc: str) -> str:
    city, state, pc = rnd.choice(_CITIES[loc])
    if loc == "us":
        return f"{city}, {state} {pc}"
    if loc == "uk":
        return f"{city} {pc}"
    return f"{pc} {city}"


def _phone(rnd: random.Random, loc: str) -> str:
    d = lambda n: "".join(str(rnd.randint(0, 9)) for _ in range(n))  # noqa: E731
    return {
        "us": f"({rnd.randint(201, 989)}) {d(3)}-{d(4)}",
        "uk": f"+44 20 {d(4)} {d(4)}",
        "de": f"+49 30 {d(4)} {d(3)}",
        "fr": f"+33 1 {d(2)} {d(2)} {d(2)} {d(2)}",
        "nl": f"+31 20 {d(3)} {d(4)}",
    }[loc]


def _date(rnd: random.Random) -> dt.date:
    return dt.date(rnd.randint(2015, 2025), 1, 1) + dt.timedelta(days=rnd.randint(0, 364))


def _fmt_date(d: dt.date, fmt: str) -> str:
    mon = _MONTHS[d.month - 1]
    return {
        "iso": f"{d.year:04d}-{d.month:02d}-{d.day:02d}",
        "us": f"{d.month:02d}/{d.day:02d}/{d.year:04d}",
        "uk": f"{d.day:02d}/{d.month:02d}/{d.year:04d}",
        "de": f"{d.day:02d}.{d.month:02d}.{d.year:04d}",
        "nl": f"{d.day:02d}-{d.month:02d}-{d.year:04d}",
        "long_us": f"{mon} {d.day}, {d.year}",
        "long_uk": f"{d.day} {mon} {d.year}",
        "short": f"{d.day:02d} {mon[:3]} {d.year}",
        "dash": f"{d.day:02d}-{mon[:3]}-{d.year}",
    }[fmt]


_DATE_FORMATS = {
    "us": ("us", "long_us", "iso"),
    "uk": ("uk", "long_uk", "short"),
    "de": ("de", "iso", "short"),
    "fr": ("uk", "iso", "dash"),
    "nl": ("nl", "iso", "long_uk"),
}


def _group(n: int, sep: str) -> str:
    s = str(n)
    parts = []
    while len(s) > 3:
        parts.insert(0, s[-3:])
        s = s[:-3]
    parts.insert(0, s)
    return sep.join(parts)


def _money(cents: int, loc: str) -> str:
    whole, frac = divmod(abs(cents), 100)
    if loc in ("us", "uk"):
        s = f"{_group(whole, ',')}.{frac:02d}"
    elif loc == "fr":
        s = f"{_group(whole, ' ')},{frac:02d}"
    else:
        s = f"{_group(whole, '.')},{frac:02d}"
    return ("-" if cents < 0 else "") + s


def _iban(rnd: random.Random, loc: str) -> str:
    d = lambda n: "".join(str(rnd.randint(0, 9)) for _ in range(n))  # noqa: E731
    raw = {
        "uk": f"GB{d(2)}NWBK{d(14)}",
        "de": f"DE{d(20)}",
        "fr": f"FR{d(25)}",
        "nl": f"NL{d(2)}ABNA{d(10)}",
    }[loc]
    return " ".join(raw[i : i + 4] for i in range(0, len(raw), 4))


def _sentence(rnd: random.Random) -> str:
    def subj() -> str:
        return rnd.choice(_SUBJ) if rnd.random() < 0.7 else rnd.choice(_FIRST)

    def np_() -> str:
        return f"the {rnd.choice(_ADJ)} {rnd.choice(_NOUN)}" if rnd.random() < 0.5 else f"the {rnd.choice(_NOUN)}"

    t = rnd.randrange(7)
    if t == 0:
        s = f"{subj()} {rnd.choice(_VI)} {rnd.choice(_ADV)} {rnd.choice(_PREP)} {np_()}."
    elif t == 1:
        s = f"{rnd.choice(_TIME)}, {subj()} {rnd.choice(_VT)} {np_()} {rnd.choice(_PREP)} {np_()}."
    elif t == 2:
        s = f"{subj()} {rnd.choice(_VT)} {np_()}, {rnd.choice(_CONJ)} {subj()} {rnd.choice(_VI)} {rnd.choice(_ADV)}."
    elif t == 3:
        s = f'"{rnd.choice(_SPEECH)}," {subj()} {rnd.choice(_SAID)}.'
    elif t == 4:
        s = f"There was {np_().replace('the ', 'a ', 1)} {rnd.choice(_PREP)} {np_()}, and {subj()} {rnd.choice(_VI)}."
    elif t == 5:
        s = f"It was {rnd.choice(_ADJ)} in {np_()}; {subj()} {rnd.choice(_VI)} {rnd.choice(_ADV)}."
    else:
        s = f"{subj()} {rnd.choice(_VI)} {rnd.choice(_PREP)} {np_()} and {rnd.choice(_VT)} {np_()}."
    s = " ".join("an" if w == "a" and nxt[0] in "aeiou" else w for w, nxt in zip(s.split(), s.split()[1:] + ["."]))
    i = 1 if s[0] == '"' else 0
    return s[:i] + s[i].upper() + s[i + 1 :]


def _paragraph(rnd: random.Random) -> list[str]:
    return " ".join(_sentence(rnd) for _ in range(rnd.randint(2, 7))).split()


# --------------------------------------------------------------------------- layouts


@dataclass
class _Frame:
    left: float
    right: float
    top: float
    bottom: float


def _frame(st: _Style, rnd: random.Random) -> _Frame:
    mx = rnd.uniform(0.6, 0.95) * st.dpi
    mt = rnd.uniform(0.55, 0.85) * st.dpi
    mb = rnd.uniform(0.55, 0.85) * st.dpi
    return _Frame(mx, st.w - mx, mt, st.h - mb)


def _invoice_doc(rnd: random.Random) -> dict:
    loc = rnd.choice(("us", "uk", "de", "de", "fr", "nl"))
    co = f"{rnd.choice(_CO_WORDS)} {rnd.choice(_CO_TRADES)}" if rnd.random() < 0.7 else f"{rnd.choice(_LAST)} & Partners"
    co += {
        "us": rnd.choice((" Inc.", " LLC", "")),
        "uk": rnd.choice((" Ltd", " Ltd.", " plc")),
        "de": rnd.choice((" GmbH", " GmbH & Co. KG", " AG")),
        "fr": rnd.choice((" SARL", " SAS")),
        "nl": rnd.choice((" B.V.", "")),
    }[loc]
    domain = co.split()[0].lower().strip("&,.") + rnd.choice((".com", ".net", ".eu"))
    cur = {"us": "USD", "uk": "GBP", "de": "EUR", "fr": "EUR", "nl": "EUR"}[loc]
    sym = {"USD": "$", "GBP": "\u00a3", "EUR": "\u20ac"}[cur]
    # Non-ASCII currency symbols are rare on purpose.
    if cur != "USD" and rnd.random() > 0.2:
        sym = cur
    return {
        "loc": loc,
        "company": co,
        "street": _street(rnd, loc),
        "city": _city_line(rnd, loc),
        "phone": _phone(rnd, loc),
        "email": f"{rnd.choice(('billing', 'info', 'accounts', 'office'))}@{domain}",
        "web": f"www.{domain}",
        "vat_id": {
            "us": f"EIN {rnd.randint(10, 99)}-{rnd.randint(1000000, 9999999)}",
            "uk": f"VAT Reg. No. GB {rnd.randint(100, 999)} {rnd.randint(1000, 9999)} {rnd.randint(10, 99)}",
            "de": f"USt-IdNr. DE{rnd.randint(100000000, 999999999)}",
            "fr": f"TVA FR{rnd.randint(10, 99)}{rnd.randint(100000000, 999999999)}",
            "nl": f"BTW NL{rnd.randint(100000000, 999999999)}B01",
        }[loc],
        "cur": cur,
        "sym": sym,
        "sym_mode": rnd.choice(("header", "prefix", "suffix")),
        "tax": {
            "us": ("Sales tax", rnd.choice((6.25, 7.0, 8.5))),
            "uk": ("VAT", 20),
            "de": ("VAT", 19),
            "fr": ("TVA", 20),
            "nl": ("BTW", 21),
        }[loc],
        "date_fmt": rnd.choice(_DATE_FORMATS[loc]),
        "inv_prefix": rnd.choice(("INV-", "RE-", "", "F", "#")),
        "terms_days": rnd.choice((7, 14, 30, 30, 60)),
        "bank": rnd.choice(_BANKS[loc]),
        "iban": _iban(rnd, loc) if loc != "us" else "",
        "header_shade": rnd.random() < 0.5,
        "row_rules": rnd.random() < 0.35,
        "label_cols": rnd.random() < 0.6,
        "header_center": rnd.random() < 0.35,
    }


def _money_cell(doc: dict, cents: int) -> str:
    s = _money(cents, doc["loc"])
    sym = doc["sym"]
    if len(sym) == 1 and doc["sym_mode"] != "header":  # $12.00, never "12.00 $"
        return f"{sym}{s}"
    if doc["sym_mode"] == "prefix":
        return f"{sym} {s}"
    if doc["sym_mode"] == "suffix":
        return f"{s} {sym}"
    return s


# --------------------------------------------------------------------------- invoice fields
#
# Every invoice page records the fields it prints (``fields``: normalised,
# ``fields_raw``: as drawn) and its line items; _invoice_truth() sums the pages
# up into the document's fields. A page of an invoice document is a whole
# invoice of its own (same supplier; its own number, dates, customer, items and
# totals): items do not continue onto the next page.

#: Field names of the invoice extraction contract, in order.
INVOICE_FIELDS = (
    "supplier_name", "supplier_address", "supplier_tax_id", "customer_name", "document_number", "document_date",
    "due_date", "period_start", "period_end", "currency", "subtotal", "tax", "total",
)
#: ``generate(anomaly=...)``: what is wrong with the invoices, and the review reasons each one should raise.
ANOMALIES = {
    "no-total": ("missing:total",),  # the total line is not drawn
    "two-totals": ("conflicting:total",),  # a "Total" and a later "Amount due" that differs
    "amounts-mismatch": ("totals_mismatch",),  # subtotal (+ shipping) + tax != total as printed
    "date-order": ("ambiguous_date:document_date",),  # document date in the other numeric order, day <= 12
}
#: Order of day, month and year in the numeric date formats of _fmt_date (names of months are not ambiguous).
_DATE_ORDER = {"iso": "YMD", "us": "MDY", "uk": "DMY", "de": "DMY", "nl": "DMY"}
#: The label before the number in _invoice_doc's ``vat_id``.
_TAX_ID_LABEL = {"us": "EIN ", "uk": "VAT Reg. No. ", "de": "USt-IdNr. ", "fr": "TVA ", "nl": "BTW "}
_TOTAL_LABELS_2 = ("Amount due", "Balance due")


def _amount(cents: int) -> str:
    """An amount as a decimal string, no thousands separators: 123456 -> ``"1234.56"``."""
    whole, frac = divmod(abs(cents), 100)
    return ("-" if cents < 0 else "") + f"{whole}.{frac:02d}"


def _ws(s: str) -> str:
    return " ".join(s.split())


def _invoice_truth(pages: Sequence[dict], doc: dict) -> dict:
    """The document's fields from its pages' (``pages``: each ``_Canvas.invoice``).

    A field printed with one value wherever it is printed goes to ``fields``;
    one printed with different values (two totals on a page, or pages that are
    different invoices) to ``conflicts`` (the values in the order drawn, each once).
    Line items are every page's, in order.
    """
    values: dict[str, list[str]] = {}
    raws: dict[str, list[str]] = {}
    for pg in pages:
        found = {**pg["fields"], **pg.get("other_amounts", {})}
        found_raw = pg["fields_raw"]
        for name, vals in pg.get("conflicts", {}).items():
            for v, r in zip(vals, pg["conflicts_raw"][name]):
                values.setdefault(name, []).append(v)
                raws.setdefault(name, []).append(r)
        for name, v in found.items():
            values.setdefault(name, []).append(v)
            raws.setdefault(name, []).append(found_raw.get(name))
    out: dict = {"locale": doc["loc"], "fields": {}, "fields_raw": {}}
    other: dict[str, str] = {}
    conflicts: dict[str, list[str]] = {}
    conflicts_raw: dict[str, list[str]] = {}
    for name in (*INVOICE_FIELDS, *sorted(set(values) - set(INVOICE_FIELDS))):
        if name not in values:
            continue
        distinct = list(dict.fromkeys(values[name]))
        if len(distinct) == 1:
            if name in INVOICE_FIELDS:
                out["fields"][name] = distinct[0]
                out["fields_raw"][name] = raws[name][0]
            else:
                other[name] = distinct[0]
        else:
            conflicts[name] = distinct
            conflicts_raw[name] = [raws[name][values[name].index(v)] for v in distinct]
    out["line_items"] = [it for pg in pages for it in pg["line_items"]]
    if other:
        out["other_amounts"] = other
    if conflicts:
        out["conflicts"] = conflicts
        out["conflicts_raw"] = conflicts_raw
    for key in ("date_order", "date_order_fields"):
        if key in pages[0]:
            out[key] = pages[0][key]
    if len(pages) > 1:
        out["invoice_per_page"] = True
    if doc.get("anomaly"):
        out["anomaly"] = doc["anomaly"]
        out["expected_review"] = list(ANOMALIES[doc["anomaly"]])
    return out


def _layout_invoice(c: _Canvas, st: _Style, doc: dict, rnd: random.Random, page: int, npages: int) -> None:
    fr = _frame(st, rnd)
    L, R = fr.left, fr.right
    base = st.base_pt
    f_body = st.font(base)
    f_bold = st.font(base, bold=True)
    f_small = st.font(max(9.0, base - 1.5))
    f_name = st.font(rnd.uniform(16, 24), bold=True, fam=st.head)
    f_title = st.font(rnd.uniform(18, 28), bold=True, fam=st.head)
    cw = _cw(f_body)
    lh = _lh(f_body, rnd.uniform(1.25, 1.45))
    lhs = _lh(f_small, 1.3)
    loc = doc["loc"]
    title = rnd.choice(("INVOICE", "INVOICE", "Invoice", "TAX INVOICE" if loc == "uk" else "INVOICE"))
    addr = [doc["street"], doc["city"] + (f", {_COUNTRY[loc]}" if rnd.random() < 0.4 else "")]
    addr.append(f"Phone: {doc['phone']}" if rnd.random() < 0.5 else f"Tel. {doc['phone']}")
    addr.append(doc["email"] if rnd.random() < 0.6 else doc["web"])
    anomaly = doc.get("anomaly")
    arnd: random.Random = doc.get("arnd")  # anomalies draw from their own stream: the rest stays as without them
    fields: dict[str, str] = {}
    raw: dict[str, str] = {}
    fields["supplier_name"] = raw["supplier_name"] = _ws(doc["company"])
    fields["supplier_address"] = _ws(f"{addr[0]}, {addr[1]}")
    raw["supplier_address"] = fields["supplier_address"] if doc["header_center"] else f"{_ws(addr[0])}\n{_ws(addr[1])}"

    # Header: company name and address; title beside it or below.
    y = fr.top + _asc(f_name)
    c.new_block()
    if doc["header_center"]:
        c.text(st.w / 2, y, doc["company"], f_name, align="center")
        y += _desc(f_name) + lhs
        c.text(st.w / 2, y, f"{addr[0]}, {addr[1]}", f_small, align="center")
        y += lhs
        c.text(st.w / 2, y, f"{addr[2]}, {addr[3]}", f_small, align="center")
        y += lhs * 0.6
        c.hline(L, R, y, width=max(1, round(st.dpi / 100)))
        y += lhs * 0.6 + _asc(f_title)
        c.new_block()
        c.text(L, y, title, f_title)
        y += _desc(f_title) + lh
    else:
        name_y = y
        c.text(L, y, doc["company"], f_name)
        y += _desc(f_name) + lhs
        for a in addr:
            c.text(L, y, a, f_small)
            y += lhs
        room = R - L - f_name.getlength(doc["company"]) - 6 * cw
        c.new_block()
        if f_title.getlength(title) < room:
            c.text(R, name_y, title, f_title, align="right")
            y += lh * 0.5
        else:
            y += lh * 0.5 + _asc(f_title)
            c.text(L, y, title, f_title)
            y += _desc(f_title) + lh

    # Customer block (left) and invoice details (right), side by side.
    inv_date = _date(rnd)
    date_fmt = doc["date_fmt"]
    if anomaly == "date-order":  # the other numeric order than the locale's, day and month both <= 12
        if inv_date.day > 12 or inv_date.day == inv_date.month:
            inv_date = inv_date.replace(day=arnd.choice([d for d in range(1, 13) if d != inv_date.month]))
        date_fmt = "uk" if loc == "us" else "us"
    due = inv_date + dt.timedelta(days=doc["terms_days"])
    if rnd.random() < 0.6:
        number = f"{doc['inv_prefix']}{inv_date.year}-{rnd.randint(1, 9999):04d}"
    else:
        number = f"{doc['inv_prefix']}{rnd.randint(10000, 999999)}"
    meta = [
        ("Invoice No.:" if rnd.random() < 0.5 else "Invoice number:", number),
        ("Invoice date:" if rnd.random() < 0.5 else "Date:", _fmt_date(inv_date, date_fmt)),
        ("Due date:", _fmt_date(due, doc["date_fmt"])),
    ]
    raw["document_number"] = number
    fields["document_number"] = number.removeprefix("#")  # "#" is the number sign, not part of the number
    fields["document_date"], raw["document_date"] = inv_date.isoformat(), _fmt_date(inv_date, date_fmt)
    fields["due_date"], raw["due_date"] = due.isoformat(), _fmt_date(due, doc["date_fmt"])
    if rnd.random() < 0.6:
        meta.append(("Customer No.:", f"C-{rnd.randint(1000, 99999)}"))
    if rnd.random() < 0.4:
        meta.append(("Order ref.:", f"PO-{rnd.randint(10000, 99999)}"))
    if npages > 1 and rnd.random() < 0.5:
        meta.append(("Page:", f"{page + 1} of {npages}"))
    cust_loc = loc if rnd.random() < 0.8 else rnd.choice(tuple(_CITIES))
    cust = [rnd.choice(("Bill to:", "Invoice to:", "Customer:")), _person(rnd)]
    if rnd.random() < 0.6:
        cust.append(f"{rnd.choice(_CO_WORDS)} {rnd.choice(_CO_TRADES)}")
    cust += [_street(rnd, cust_loc), _city_line(rnd, cust_loc)]
    if cust_loc != loc:
        cust.append(_COUNTRY[cust_loc])
    fields["customer_name"] = raw["customer_name"] = _ws(cust[1])

    y0 = y + _asc(f_body)
    c.new_block()
    yy = y0
    for i, s in enumerate(cust):
        c.text(L, yy, s, f_bold if i == 0 else f_body)
        yy += lh
    y_left = yy
    c.new_block()
    yy = y0
    lab_w = max(f_body.getlength(k) for k, _ in meta)
    val_w = max(f_body.getlength(v) for _, v in meta)
    if doc["label_cols"]:
        x_lab = R - lab_w - 3.5 * cw - val_w
        for k, v in meta:
            c.text(x_lab, yy, k, f_body)
            c.text(R, yy, v, f_body, align="right")
            yy += lh
    else:
        texts = [f"{k} {v}" for k, v in meta]
        x_lab = R - max(f_body.getlength(t) for t in texts)
        for t in texts:
            c.text(x_lab, yy, t, f_body)
            yy += lh
    y = max(y_left, yy) + lh * 0.6

    # Items table.
    cur = doc["cur"]
    hdr_desc = rnd.choice(("Description", "Description", "Item"))
    hdr_qty = rnd.choice(("Qty", "Qty.", "Quantity"))
    hdr_unit = rnd.choice(("Unit price", "Unit Price", "Price"))
    hdr_amt = rnd.choice(("Amount", "Total"))
    if anomaly == "no-total":  # no line labelled total anywhere
        hdr_amt = "Amount"
    if doc["sym_mode"] == "header":
        hdr_amt += f" ({cur})"
    with_pos = rnd.random() < 0.35
    n_items = rnd.randint(5, 15)
    items = []
    for _ in range(n_items):
        desc = rnd.choice(_ITEMS)
        if rnd.random() < 0.25:
            desc = f"{rnd.randint(10000, 99999)} {desc}"
        qty = rnd.choice((1, 1, 1, 2, 3, 4, 5, 10, 12, 20, 25))
        unit = rnd.choice((rnd.randint(150, 9999), rnd.randint(1000, 99999), rnd.randint(5000, 250000)))
        items.append((desc, qty, unit))
    row_h = lh * rnd.uniform(1.1, 1.4)
    totals_h = 4 * lh * 1.25 + lh
    if anomaly == "two-totals":
        totals_h += lh * 1.25
    pay_h = 6 * lhs + 2 * lh
    max_rows = int((fr.bottom - y - lh * 2 - totals_h - pay_h) // row_h)
    items = items[: max(1, min(len(items), max_rows))]

    amt_cells = [_money_cell(doc, q * u) for _, q, u in items]
    unit_cells = [_money_cell(doc, u) for _, _, u in items]
    big_total = sum(q * u for _, q, u in items) * 1.3
    w_amt = max(f_body.getlength(s) for s in [*amt_cells, _money_cell(doc, int(big_total))])
    w_amt = max(w_amt, f_bold.getlength(hdr_amt))
    w_unit = max(max(f_body.getlength(s) for s in unit_cells), f_bold.getlength(hdr_unit))
    w_qty = max(f_body.getlength("999"), f_bold.getlength(hdr_qty))
    gap = 4 * cw
    x_amt = R
    x_unit = x_amt - w_amt - gap
    x_qty = x_unit - w_unit - gap
    x_desc = L + (f_bold.getlength("Pos.") + gap if with_pos else 0)
    desc_max = x_qty - w_qty - gap - x_desc

    c.new_block()
    y += _asc(f_bold)
    if doc["header_shade"]:
        shade = (L - cw * 0.5, y - _asc(f_bold) - lh * 0.25, R + cw * 0.5, y + _desc(f_bold) + lh * 0.25)
        c.rect(shade, fill=max(0, st.paper - 28))
    else:
        c.hline(L, R, y - _asc(f_bold) - lh * 0.3)
    if with_pos:
        c.text(L, y, "Pos.", f_bold)
    c.text(x_desc, y, hdr_desc, f_bold)
    c.text(x_qty, y, hdr_qty, f_bold, align="right")
    c.text(x_unit, y, hdr_unit, f_bold, align="right")
    c.text(x_amt, y, hdr_amt, f_bold, align="right")
    y += _desc(f_bold) + lh * 0.3
    c.hline(L, R, y, width=max(1, round(st.dpi / 100)))
    y += row_h - _desc(f_bold) - lh * 0.3 + lh * 0.15
    line_items = []
    for i, ((desc, qty, unit), unit_s, amt_s) in enumerate(zip(items, unit_cells, amt_cells)):
        if with_pos:
            c.text(L, y, str(i + 1), f_body)
        desc_s = _ws(_fit(desc, f_body, desc_max))
        line_items.append(
            {
                "description": desc_s or None,
                "quantity": str(qty),
                "unit_price": _amount(unit),
                "amount": _amount(qty * unit),
            }
        )
        c.text(x_desc, y, desc_s, f_body)
        c.text(x_qty, y, str(qty), f_body, align="right")
        c.text(x_unit, y, unit_s, f_body, align="right")
        c.text(x_amt, y, amt_s, f_body, align="right")
        if doc["row_rules"] and i < len(items) - 1:
            c.hline(L, R, y + (row_h - _asc(f_body) + _desc(f_body)) / 2, fill=min(255, st.ink + 120))
        y += row_h
    y += -row_h + _desc(f_body) + lh * 0.4
    c.hline(L, R, y, width=max(1, round(st.dpi / 100)))
    y += lh * 0.6

    # Totals: labels under the unit-price column, values under amounts.
    subtotal = sum(q * u for _, q, u in items)
    tax_name, rate = doc["tax"]
    tax = round(subtotal * rate / 100)
    rate_s = f"{rate:g}%" if loc in ("us", "uk") else f"{rate:g}".replace(".", ",") + " %"
    rows = [("Subtotal", subtotal, False)]
    if rnd.random() < 0.3:
        ship = rnd.randint(490, 4990)
        rows.append(("Shipping", ship, False))
        subtotal += ship
        tax = round(subtotal * rate / 100)
    rows.append((f"{tax_name} {rate_s}", tax, False))
    total_label = rnd.choice(("Total", "Total due", "TOTAL", f"Total {cur}"))
    total = subtotal + tax
    if anomaly == "amounts-mismatch":  # off by a few units of the currency
        off = arnd.randint(100, 999)
        total = total - off if total > 2 * off and arnd.random() < 0.5 else total + off
    if anomaly != "no-total":
        rows.append((total_label, total, True))
    if anomaly == "two-totals":  # a later total that differs
        off = arnd.randint(100, max(101, total // 4))
        other = total - off if total > 2 * off and arnd.random() < 0.5 else total + off
        rows.append((arnd.choice(_TOTAL_LABELS_2), other, True))
    fields["currency"] = cur
    raw["currency"] = cur if doc["sym_mode"] == "header" else doc["sym"]
    money = {label: (_amount(cents), _ws(_money_cell(doc, cents))) for label, cents, _ in rows}
    fields["subtotal"], raw["subtotal"] = money["Subtotal"]
    fields["tax"], raw["tax"] = money[f"{tax_name} {rate_s}"]
    c.invoice = {"fields": fields, "fields_raw": raw, "line_items": line_items}
    if "Shipping" in money:
        c.invoice["other_amounts"] = {"shipping": money["Shipping"][0]}
    totals = [money[label] for label, _, bold in rows if bold]
    if len(totals) == 1:
        fields["total"], raw["total"] = totals[0]
    elif totals:
        c.invoice["conflicts"] = {"total": [v for v, _ in totals]}
        c.invoice["conflicts_raw"] = {"total": [r for _, r in totals]}
    if doc["date_fmt"] in _DATE_ORDER:
        c.invoice["date_order"] = _DATE_ORDER[doc["date_fmt"]]
    if date_fmt != doc["date_fmt"]:
        c.invoice["date_order_fields"] = {"document_date": _DATE_ORDER[date_fmt]}
    w_tval = max(f_bold.getlength(_money_cell(doc, cents)) for _, cents, _ in rows)
    w_tlab = max(f_bold.getlength(label) for label, _, _ in rows)
    x_tlab = min(x_unit - w_unit, R - w_tval - gap - w_tlab)
    c.new_block()
    for k, (label, cents, bold) in enumerate(rows):
        f = f_bold if bold else f_body
        if bold:
            c.hline(x_tlab, R, y - lh * 0.15)
            y += lh * 0.2
        y += _asc(f)
        c.text(x_tlab, y, label, f)
        c.text(R, y, _money_cell(doc, cents), f, align="right")
        y += lh - _asc(f)
    y += lh * 0.8

    # Payment terms and bank details.
    c.new_block()
    terms = rnd.choice(
        (
            f"Payment due within {doc['terms_days']} days of the invoice date.",
            f"Terms: net {doc['terms_days']} days.",
            f"Please pay the total amount by {raw['due_date']}.",
        )
    )
    y += _asc(f_small)
    for words in _wrap(terms.split(), f_small, R - L):
        c.text(L, y, " ".join(words), f_small)
        y += lhs
    bank_name, bic = doc["bank"]
    bank = [f"Bank: {bank_name}"]
    if doc["iban"]:
        bank += [f"IBAN: {doc['iban']}", f"BIC: {bic}{rnd.choice(('', 'XXX'))}"]
    else:
        bank += [f"Account no. {rnd.randint(10**9, 10**10 - 1)}", f"Routing no. {rnd.randint(10**8, 10**9 - 1)}"]
    for s in bank:
        if y + lhs > fr.bottom - 2 * lhs:
            break
        c.text(L, y, s, f_small)
        y += lhs
    if rnd.random() < 0.6 and y + lh < fr.bottom - 2 * lhs:
        y += lhs * 0.5
        thanks = ("Thank you for your business!", "Thank you for your order.", "We appreciate your prompt payment.")
        c.text(L, y, rnd.choice(thanks), f_body)

    # Footer.
    c.new_block()
    yf = fr.bottom + _asc(f_small) * 0.2
    foot = f"{doc['company']}, {doc['street']}, {doc['city']}"
    c.text(st.w / 2, yf - lhs, _fit(foot, f_small, R - L), f_small, align="center")
    tax_line = _ws(_fit(f"{doc['vat_id']}, {doc['web']}", f_small, R - L))
    c.text(st.w / 2, yf, tax_line, f_small, align="center")
    vat_id = _ws(doc["vat_id"])
    if tax_line == vat_id or tax_line.startswith(vat_id + ","):  # not cut short to fit the page
        fields["supplier_tax_id"] = vat_id.removeprefix(_TAX_ID_LABEL[loc])
        raw["supplier_tax_id"] = vat_id
    # in the contract's order
    c.invoice["fields"] = {k: fields[k] for k in INVOICE_FIELDS if k in fields}
    c.invoice["fields_raw"] = {k: raw[k] for k in INVOICE_FIELDS if k in raw}


_FORM_TITLES = (
    "APPLICATION FORM",
    "Membership Application",
    "Change of Address Request",
    "Employee Information Form",
    "Customer Registration Form",
    "Tenancy Application",
    "Account Opening Form",
    "VOLUNTEER REGISTRATION",
)
_ORGS = (
    "City of Eastbrook - Department of Housing",
    "Lakeside Community Sports Club",
    "Meridian Insurance Group",
    "Northwind Trading Ltd - Human Resources",
    "Oakfield Public Library",
    "Keystone Savings Bank",
    "Riverside Medical Centre",
)


def _form_sections(rnd: random.Random, loc: str) -> list[tuple[str, list[tuple[str, object]]]]:
    """Section title and fields; a field value is a string or a checkbox spec."""
    dfmt = rnd.choice(_DATE_FORMATS[loc])
    first, last = rnd.choice(_FIRST), rnd.choice(_LAST)

    def checks(*opts: str) -> tuple[tuple[str, ...], int]:
        return (opts, rnd.randrange(len(opts)))

    personal = [
        ("Title", checks("Mr", "Mrs", "Ms", "Dr")),
        ("First name", first),
        ("Last name", last),
        ("Date of birth", _fmt_date(dt.date(rnd.randint(1950, 2004), rnd.randint(1, 12), rnd.randint(1, 28)), dfmt)),
        ("Place of birth", rnd.choice(_CITIES[loc])[0]),
        ("Nationality", rnd.choice(("British", "German", "French", "Dutch", "American", "Irish", "Spanish"))),
        ("ID / Passport number", f"{rnd.choice('CXPLK')}{rnd.randint(1000000, 9999999)}"),
    ]
    contact = [
        ("Street address", _street(rnd, loc)),
        ("Postcode and city", _city_line(rnd, loc)),
        ("Country", _COUNTRY[loc]),
        ("Phone", _phone(rnd, loc)),
        ("Email", f"{first.lower()}.{last.lower().replace(' ', '')}@example.com"),
        ("Preferred contact", checks("Email", "Phone", "Post")),
    ]
    job = [
        ("Employer", f"{rnd.choice(_CO_WORDS)} {rnd.choice(_CO_TRADES)}"),
        ("Job title", rnd.choice(("Accountant", "Nurse", "Teacher", "Engineer", "Sales Manager", "Electrician", "Student"))),
        ("Start date", _fmt_date(_date(rnd), dfmt)),
        ("Employment type", checks("Full-time", "Part-time", "Self-employed")),
        ("Annual income", f"{rnd.randint(18, 95)},{rnd.choice(('000', '500'))}"),
    ]
    emergency = [
        ("Name", _person(rnd)),
        ("Relationship", rnd.choice(("Spouse", "Sister", "Brother", "Mother", "Father", "Friend", "Partner"))),
        ("Phone", _phone(rnd, loc)),
    ]
    bank = [
        ("Account holder", f"{first} {last}"),
        ("Bank name", rnd.choice(("City Savings Bank", "ING Bank", "Barclays", "Commerzbank"))),
        ("IBAN", _iban(rnd, loc if loc != "us" else "uk")),
    ]
    extra = [
        ("Do you hold a valid driving licence?", checks("Yes", "No")),
        ("Have you lived at this address for more than 3 years?", checks("Yes", "No")),
        ("How did you hear about us?", checks("Friend", "Website", "Newspaper", "Other")),
        ("Number of dependants", str(rnd.randint(0, 4))),
    ]
    secs = [
        ("Personal details", personal),
        ("Contact information", contact),
        (rnd.choice(("Employment", "Employment details")), job),
        ("Emergency contact", emergency),
        ("Bank details", bank),
        ("Additional information", extra),
    ]
    head, tail = secs[:2], secs[2:]
    rnd.shuffle(tail)
    return head + tail


def _form_doc(rnd: random.Random) -> dict:
    loc = rnd.choice(("us", "uk", "de", "fr", "nl"))
    return {
        "loc": loc,
        "title": rnd.choice(_FORM_TITLES),
        "org": rnd.choice(_ORGS),
        "code": (
            f"Form {rnd.choice(('HR', 'AP', 'MB', 'CA', 'RG'))}-{rnd.randint(1, 99):02d}"
            f" (rev. {rnd.randint(1, 12):02d}/{rnd.randint(2015, 2024)})"
        ),
        "numbering": rnd.choice(("num", "letter", "section")),
        "shade": rnd.random() < 0.5,
        "caps": rnd.random() < 0.3,
        "value_mono": rnd.random() < 0.4,
        "layout": rnd.choice(("column", "column", "boxed", "inline", "two")),
    }


def _layout_form(c: _Canvas, st: _Style, doc: dict, rnd: random.Random, page: int, npages: int) -> None:
    fr = _frame(st, rnd)
    L, R = fr.left, fr.right
    base = st.base_pt
    f_lab = st.font(base)
    f_small = st.font(max(9.0, base - 1.5))
    f_val = st.font(base + rnd.uniform(0, 1.5), fam=st.mono if doc["value_mono"] else st.body)
    f_head = st.font(base + rnd.uniform(1.5, 3.5), bold=True, fam=st.head)
    f_title = st.font(rnd.uniform(16, 22), bold=True, fam=st.head)
    cw = _cw(f_lab)
    lh = _lh(f_lab, rnd.uniform(1.3, 1.5))
    lhs = _lh(f_small, 1.3)
    row_h = max(lh, _lh(f_val, 1.3)) * rnd.uniform(1.25, 1.6)
    bottom = fr.bottom - 2 * lhs

    # Organisation and form code, then title and instructions.
    y = fr.top + _asc(f_small)
    c.new_block()
    org = _fit(doc["org"], f_small, (R - L) * 0.6)
    c.text(L, y, org, f_small)
    c.new_block()
    c.text(R, y, _fit(doc["code"], f_small, (R - L) * 0.35), f_small, align="right")
    y += lhs * 1.2 + _asc(f_title)
    c.new_block()
    title = doc["title"] + (" (continued)" if page > 0 else "")
    if rnd.random() < 0.5:
        c.text(st.w / 2, y, title, f_title, align="center")
    else:
        c.text(L, y, title, f_title)
    y += _desc(f_title) + lh * 0.8
    if page == 0:
        c.new_block()
        instr = rnd.choice(
            (
                "Please complete all sections in BLOCK CAPITALS and return the signed form to the address below.",
                "Fields marked with an asterisk are mandatory. Incomplete forms may delay the processing of your request.",
                "Please read the notes before completing this form. Use black ink and tick the boxes that apply.",
            )
        )
        y += _asc(f_small)
        for words in _wrap(instr.split(), f_small, R - L):
            c.text(L, y, " ".join(words), f_small)
            y += lhs
        y += lh * 0.3

    sections = _form_sections(rnd, doc["loc"])
    start = page * 3 % len(sections)
    sections = sections[start:] + sections[:start]
    caps = doc["caps"]
    for si, (sec_title, fields) in enumerate(sections):
        fields = [f for f in fields if rnd.random() < 0.85] or fields[:1]
        head_h = lh * 1.8
        if y + head_h + row_h * 2 > bottom:
            break
        # Section heading.
        num = si + 1 + page * 3
        label = {
            "num": f"{num}. {sec_title}",
            "letter": f"{chr(64 + min(num, 26))}. {sec_title}",
            "section": f"Section {num}: {sec_title}",
        }[doc["numbering"]]
        y += _desc(f_lab) + lh * 0.9 + _asc(f_head)
        c.new_block()
        if doc["shade"]:
            c.rect((L - cw * 0.5, y - _asc(f_head) - lh * 0.25, R, y + _desc(f_head) + lh * 0.25), fill=max(0, st.paper - 30))
            c.text(L, y, label, f_head)
        else:
            c.text(L, y, label, f_head)
            c.hline(L, R, y + _desc(f_head) + lh * 0.2, width=max(1, round(st.dpi / 100)))
        y += _desc(f_head) + lh * 0.4

        layout = doc["layout"]
        lab_w = max(f_lab.getlength(k + ":") for k, _ in fields)
        if layout == "two" and lab_w > (R - L) * 0.22:
            layout = "column"
        if layout == "column" and lab_w > (R - L) * 0.45:
            layout = "inline"
        vx = L + lab_w + 3.5 * cw
        i = 0
        while i < len(fields):
            if y + row_h > bottom:
                break
            key, val = fields[i]
            label_s = key if key.endswith("?") else key + ":"
            if isinstance(val, tuple):
                y = _form_checks(c, st, f_lab, label_s, val, L, R, y, row_h, lh, cw)
                i += 1
                continue
            v = val.upper() if caps else val
            c.new_block()
            if layout == "inline":
                y += row_h
                c.text(L, y, _fit(f"{label_s} {v}", f_lab, R - L), f_lab)
                i += 1
            elif layout == "column":
                y += row_h
                c.text(L, y, label_s, f_lab)
                c.text(vx + cw * 0.5, y, _fit(v, f_val, R - vx - cw), f_val)
                c.hline(vx, R, y + _desc(f_val) + 3, fill=min(255, st.ink + 90))
                i += 1
            elif layout == "boxed":
                # One or two boxes per row; a small label inside the top-left of each.
                pair = [fields[i]]
                if i + 1 < len(fields) and not isinstance(fields[i + 1][1], tuple) and rnd.random() < 0.6:
                    pair.append(fields[i + 1])
                box_h = lhs + _lh(f_val, 1.2) + lh * 0.3
                if y + box_h + lh * 0.3 > bottom:
                    break
                y_top = y + lh * 0.3
                bw = (R - L) / len(pair)
                for j, (k2, v2) in enumerate(pair):
                    bx = L + j * bw
                    c.rect((bx, y_top, bx + bw - (cw if j < len(pair) - 1 else 0), y_top + box_h), outline=st.ink)
                    c.text(bx + cw * 0.6, y_top + lhs * 0.25 + _asc(f_small), k2, f_small)
                    v2 = v2.upper() if caps else v2
                    y_val = y_top + lhs * 0.4 + _asc(f_small) + _desc(f_small) + _asc(f_val) + lh * 0.1
                    c.text(bx + cw * 0.6, y_val, _fit(v2, f_val, bw - 3 * cw), f_val)
                y = y_top + box_h
                i += len(pair)
            else:  # "two": two label/value pairs per row when both values fit
                y += row_h
                half = (R - L) / 2
                room = half - lab_w - 8.5 * cw

                def fits(v: object) -> bool:
                    return isinstance(v, str) and f_val.getlength(v.upper() if caps else v) <= room

                pair = [fields[i]]
                if i + 1 < len(fields) and fits(val) and fits(fields[i + 1][1]):
                    pair.append(fields[i + 1])
                for j, (k2, v2) in enumerate(pair):
                    x0 = L + j * half
                    lab = k2 if k2.endswith("?") else k2 + ":"
                    c.text(x0, y, lab, f_lab)
                    xv = x0 + lab_w + 3.5 * cw
                    x_end = x0 + half - 4 * cw if len(pair) == 2 else R
                    v2 = v2.upper() if caps else v2
                    c.text(xv + cw * 0.5, y, _fit(v2, f_val, x_end - xv - cw), f_val)
                    c.hline(xv, x_end, y + _desc(f_val) + 3, fill=min(255, st.ink + 90))
                i += len(pair)
        y += lh * 0.2

    # Declaration and signature on the last page, when it fits.
    if page == npages - 1 and y + 6 * lh < bottom:
        c.new_block()
        y += lh * 0.8 + _asc(f_small)
        decl = "I declare that the information given in this form is correct and complete to the best of my knowledge."
        for words in _wrap(decl.split(), f_small, R - L):
            c.text(L, y, " ".join(words), f_small)
            y += lhs
        y += lh * 1.5
        c.new_block()
        c.text(L, y, "Signature:", f_lab)
        sx = L + f_lab.getlength("Signature:") + 2 * cw
        c.hline(sx, L + (R - L) * 0.5, y + 2)
        dx = L + (R - L) * 0.55
        c.text(dx, y, "Date:", f_lab)
        c.text(dx + f_lab.getlength("Date:") + 4 * cw, y, _fmt_date(_date(rnd), rnd.choice(_DATE_FORMATS[doc["loc"]])), f_val)

    c.new_block()
    yf = fr.bottom
    c.text(L, yf, _fit(doc["code"], f_small, (R - L) * 0.5), f_small)
    c.text(R, yf, f"Page {page + 1} of {npages}", f_small, align="right")


def _form_checks(
    c: _Canvas,
    st: _Style,
    font: ImageFont.FreeTypeFont,
    label: str,
    spec: tuple[tuple[str, ...], int],
    L: float,
    R: float,
    y: float,
    row_h: float,
    lh: float,
    cw: float,
) -> float:
    """A question followed by checkbox options; wraps options onto more rows."""
    opts, chosen = spec
    c.new_block()
    y += row_h
    c.text(L, y, label, font)
    box = _asc(font) * 0.85
    x = L + font.getlength(label) + 4 * cw
    for k, opt in enumerate(opts):
        need = box + cw * 2.5 + font.getlength(opt)
        if x + need > R:
            y += row_h
            x = L + 4 * cw
        c.checkbox(x, y, box, k == chosen)
        c.text(x + box + cw * 2.5, y, opt, font)
        x += need + 4 * cw
    return y


def _book_doc(rnd: random.Random) -> dict:
    return {
        "title": rnd.choice(_BOOK_TITLES),
        "author": _person(rnd),
        "first_page": rnd.randint(3, 320),
        "chapter": rnd.randint(1, 12),
        "header": rnd.choice(("center", "outer", "none")),
        "justify": rnd.random() < 0.65,
        "indent": rnd.random() < 0.75,
        "indent_em": rnd.uniform(1.0, 2.5),
        "leading": rnd.uniform(1.2, 1.45),
        "carry": [],
    }


def _layout_book(c: _Canvas, st: _Style, doc: dict, rnd: random.Random, page: int, npages: int) -> None:
    fr = _frame(st, rnd)
    L, R = fr.left, fr.right
    f_body = st.font(st.base_pt)
    f_small = st.font(max(9.0, st.base_pt - 1.5))
    lh = _lh(f_body, doc["leading"])
    space = f_body.getlength(" ")
    pno = doc["first_page"] + page
    y = fr.top + _asc(f_small)

    # Running header: title or author, page number on the outer edge.
    if doc["header"] != "none":
        c.new_block()
        running = doc["title"] if pno % 2 else doc["author"]
        running = running.upper() if rnd.random() < 0.5 else running
        if doc["header"] == "center":
            c.text(st.w / 2, y, running, f_small, align="center")
        elif pno % 2:
            c.text(L, y, running, f_small)
            c.new_block()
            c.text(R, y, str(pno), f_small, align="right")
        else:
            c.text(L, y, str(pno), f_small)
            c.new_block()
            c.text(R, y, running, f_small, align="right")
        y += lh * 1.5

    carry = doc["carry"]
    if (page == 0 and not carry and rnd.random() < 0.5) or (not carry and rnd.random() < 0.12):
        f_ch = st.font(rnd.uniform(13, 16), fam=st.head, bold=rnd.random() < 0.5)
        f_ct = st.font(rnd.uniform(18, 26), fam=st.head, bold=True)
        y += st.h * rnd.uniform(0.05, 0.15) + _asc(f_ch)
        c.new_block()
        n = doc["chapter"]
        c.text(st.w / 2, y, rnd.choice((f"Chapter {n}", f"CHAPTER {_NUM_WORDS[n - 1].upper()}", f"{n}")), f_ch, align="center")
        y += _desc(f_ch) + lh * 0.5 + _asc(f_ct)
        c.text(st.w / 2, y, rnd.choice(_CHAPTER_TITLES), f_ct, align="center")
        y += _desc(f_ct) + lh * 2
        doc["chapter"] = n % 12 + 1
        first_indent = False
    else:
        y += lh * 0.3
        first_indent = True

    y += _asc(f_body)
    y_stop = fr.bottom - (0.0 if doc["header"] == "outer" else lh)
    indent = f_body.size * doc["indent_em"] if doc["indent"] else 0.0
    width = R - L
    while y <= y_stop:
        if carry:
            words, ind, carry = carry, 0.0, []
        else:
            words = _paragraph(rnd)
            ind = indent if first_indent else 0.0
        first_indent = True
        wrapped = _wrap(words, f_body, width, ind)
        c.new_block()
        for k, line in enumerate(wrapped):
            if y > y_stop:
                carry = [w for rest in wrapped[k:] for w in rest]
                break
            x0 = L + (ind if k == 0 else 0.0)
            last = k == len(wrapped) - 1
            natural = f_body.getlength(" ".join(line))
            slack = (R - x0 - natural) / max(1, len(line) - 1)
            # Justify only when the widened spaces stay word spaces (< ~2 spaces extra).
            if doc["justify"] and not last and len(line) > 1 and slack < 2.0 * space:
                c.justified(x0, R, y, line, f_body)
            else:
                c.text(x0, y, " ".join(line), f_body)
            y += lh
        if not doc["indent"]:
            y += lh * 0.5
    doc["carry"] = carry

    if doc["header"] in ("none", "center"):
        c.new_block()
        c.text(st.w / 2, fr.bottom + lh * 0.5, str(pno), f_small, align="center")


# --------------------------------------------------------------------------- multi-column layouts
#
# Newspaper and journal pages put their text in columns whose lines sit on one
# baseline grid, so a row-by-row reading interleaves the columns. The ground
# truth's order is the reading order: running header, headline or title block,
# then each column top to bottom (story by story), the page number last.

_PAPERS = (
    "The Daily Herald",
    "Morning Chronicle",
    "The Evening Post",
    "Northern Courier",
    "The County Gazette",
    "Weekly Observer",
    "The Valley Tribune",
    "Harbour Times",
    "The City Ledger",
    "Coastal Mail",
)
_WEEKDAYS = "Monday Tuesday Wednesday Thursday Friday Saturday Sunday".split()
_NEWS_SUBJ = (
    "council",
    "city council",
    "harbour board",
    "the mayor",
    "rail workers",
    "farmers",
    "hospital trust",
    "museum",
    "local school",
    "residents",
    "police",
    "ferry operator",
    "football club",
    "market traders",
    "university",
    "water board",
    "fire brigade",
    "library",
)
_NEWS_VERB = (
    "approves rejects delays opens closes plans backs questions wins loses reviews welcomes doubles cuts defends unveils"
).split()
_NEWS_OBJ = (
    "new bridge",
    "budget for next year",
    "plan for the harbour",
    "school expansion",
    "summer festival",
    "road repairs",
    "late-night trains",
    "housing scheme",
    "longer library hours",
    "market square redesign",
    "flood defences",
    "higher bus fares",
    "funding for parks",
    "cycle lanes",
    "hospital wing",
    "ferry timetable",
    "river clean-up",
)
_NEWS_TAIL = ("", "", "", " after long debate", " despite protests", " as costs rise", " in close vote", " amid delays")
_CROSSHEADS = (
    "Long debate",
    "Costs rising",
    "Next steps",
    "Mixed reaction",
    "A new plan",
    "Further delays",
    "Local concern",
    "Looking ahead",
    "No decision yet",
)

_JOURNALS = (
    "Journal of Applied Earth Studies",
    "Annals of Computational Ecology",
    "Transactions on Environmental Data",
    "Review of Regional Science",
    "Journal of Coastal Systems",
    "Quarterly Journal of Survey Methods",
    "Letters in Applied Statistics",
)
_J_LEAD = ("", "", "", "A ", "Towards ", "On ")
_J_ADJ = (
    "Robust",
    "Scalable",
    "Bayesian",
    "Adaptive",
    "Efficient",
    "Sparse",
    "Hierarchical",
    "Probabilistic",
    "Multiscale",
    "Data-Driven",
    "Nonlinear",
    "Distributed",
)
_J_METHOD = (
    "Estimation",
    "Inference",
    "Sampling",
    "Modelling",
    "Clustering",
    "Approximation",
    "Calibration",
    "Forecasting",
    "Segmentation",
    "Reconstruction",
)
_J_TOPIC = (
    "of Sediment Transport in Tidal Estuaries",
    "for Soil Moisture Retrieval",
    "in Heterogeneous Sensor Networks",
    "of Urban Heat Islands",
    "for Early Crop Yield Prediction",
    "of Coastal Erosion from Satellite Images",
    "in Long-Term Ecological Studies",
    "of River Discharge under Sparse Observations",
    "for Historical Document Archives",
    "of Traffic Flow in Medium-Sized Cities",
)
_J_SECTIONS = (
    "Introduction",
    "Related Work",
    "Background",
    "Methods",
    "Data and Study Area",
    "Experiments",
    "Results",
    "Discussion",
    "Limitations",
    "Conclusion",
)
_J_SUBSECTIONS = (
    "Data collection",
    "Model setup",
    "Evaluation protocol",
    "Baselines",
    "Sensitivity analysis",
    "Error sources",
    "Parameter choice",
    "Field measurements",
)
_J_KEYWORDS = (
    "remote sensing",
    "uncertainty",
    "time series",
    "field survey",
    "regression",
    "sampling design",
    "spatial statistics",
    "machine learning",
    "model selection",
    "open data",
)
_DEPTS = (
    "Geography",
    "Computer Science",
    "Civil Engineering",
    "Statistics",
    "Environmental Science",
    "Physics",
    "Earth Sciences",
    "Mathematics",
)
_UNI_CITIES = ("Leeds", "Utrecht", "Bristol", "Lyon", "Hamburg", "Madison", "York", "Portland")


_NEWS_PLURAL = {"rail workers", "farmers", "residents", "police", "market traders"}


def _headline(rnd: random.Random) -> str:
    subj, verb = rnd.choice(_NEWS_SUBJ), rnd.choice(_NEWS_VERB)
    verb = verb[:-1] if subj in _NEWS_PLURAL else verb  # "farmers approve", "council approves"
    s = f"{subj} {verb} {rnd.choice(_NEWS_OBJ)}{rnd.choice(_NEWS_TAIL)}"
    if rnd.random() < 0.35:  # Title Case
        return " ".join(w[0].upper() + w[1:] for w in s.split())
    return s[0].upper() + s[1:]


def _fit_lines(
    st: _Style, words: list[str], pt: float, width: float, max_lines: int, bold: bool, fam: _Family, min_pt: float
) -> tuple[ImageFont.FreeTypeFont, list[list[str]]]:
    """Wrap a heading into at most ``max_lines`` lines: shrink the font, then drop what does not fit."""
    while True:
        font = st.font(pt, bold=bold, fam=fam)
        lines = _wrap(words, font, width)
        if len(lines) <= max_lines or pt <= min_pt:
            break
        pt = max(min_pt, pt - 1.5)
    lines = lines[:max_lines]
    # A single word wider than the line: shorten it rather than let it run out of the frame.
    return font, [
        ln if font.getlength(" ".join(ln)) <= width else _fit(" ".join(ln), font, width).split() for ln in lines
    ]


def _story() -> dict:
    """A text stream being set into columns: what is left of the paragraph in progress, a pending heading."""
    return {"lines": [], "first": False, "ind": 0.0, "width": 0.0, "indent": False, "head": None}


def _justify(words: list[str], font: ImageFont.FreeTypeFont, x0: float, x1: float, last: bool, slack: float) -> bool:
    """Justify a line unless it ends its paragraph or the spaces would widen by ``slack`` spaces or more."""
    if last or len(words) < 2:
        return False
    extra = (x1 - x0 - font.getlength(" ".join(words))) / (len(words) - 1)
    return extra < slack * font.getlength(" ")


def _flow(
    c: _Canvas,
    story: dict,
    slots: Sequence[tuple[float, float, float, int]],
    font: ImageFont.FreeTypeFont,
    lh: float,
    next_item: Callable[[], tuple[str, object]],
    *,
    indent: float,
    slack: float,
    f_head: ImageFont.FreeTypeFont,
    para_gap: bool = False,
    jump: str | None = None,
) -> None:
    """Set a story into column slots, one line per baseline of the grid, in reading order.

    ``slots`` are ``(x0, x1, first baseline, number of baselines)``, filled one
    after the other; baselines are ``lh`` apart, so slots that start on the same
    grid line share all their baselines. ``next_item()`` gives ``("para",
    words)`` or ``("head", text)``; a heading takes a grid line (plus a blank
    one above it inside a column) and never ends a column. Every paragraph and
    every column starts a new block. ``jump`` ("Continued on page 7") replaces
    the last line of the last slot and drops the rest of the story; otherwise
    what does not fit stays in ``story`` for the next page.
    """
    for si, (x0, x1, y0, n) in enumerate(slots):
        width = x1 - x0
        if story["lines"] and abs(story["width"] - width) > 0.5:
            words = [w for ln in story["lines"] for w in ln]
            story["lines"] = _wrap(words, font, width, story["ind"] if story["first"] else 0.0)
        story["width"] = width
        k, used, after_head = 0, False, False
        block = True  # the next text line drawn starts a block: a new column or paragraph
        while k < n:
            if jump is not None and si == len(slots) - 1 and k == n - 1:
                c.new_block()
                c.text(x0, y0 + k * lh, jump, font)
                story["lines"], story["head"] = [], None
                return
            if not story["lines"] and story["head"] is None:
                what, payload = next_item()
                if what == "head":
                    story["head"] = payload
                else:
                    ind = indent if story["indent"] else 0.0
                    story.update(lines=_wrap(list(payload), font, width, ind), first=True, ind=ind)
                    block = True
                    if used and para_gap and not after_head:
                        k += 1
                        continue
            if story["head"] is not None:
                kh = k + 1 if used else k
                if kh + 1 >= n:  # the heading and a line of its text do not fit: next column
                    break
                c.new_block()
                c.text(x0, y0 + kh * lh, story["head"], f_head)
                story["head"], story["indent"] = None, False
                k, used, after_head, block = kh + 1, True, True, True
                continue
            line = story["lines"].pop(0)
            xs = x0 + (story["ind"] if story["first"] else 0.0)
            y = y0 + k * lh
            if block:
                c.new_block()
                block = False
            if _justify(line, font, xs, x1, not story["lines"], slack):
                c.justified(xs, x1, y, line, font)
            else:
                c.text(xs, y, " ".join(line), font)
            story["first"], story["indent"] = False, True
            k, used, after_head = k + 1, True, False


def _centre_or_left(
    c: _Canvas, x0: float, x1: float, y: float, s: str, font: ImageFont.FreeTypeFont, align: str
) -> None:
    if align == "center":
        c.text((x0 + x1) / 2, y, s, font, align="center")
    else:
        c.text(x0, y, s, font)


def _newspaper_doc(rnd: random.Random) -> dict:
    d = _date(rnd)
    masthead = rnd.random() < 0.5
    cols = 4 if rnd.random() < 0.3 else 3
    rules = rnd.random() < 0.45
    return {
        "paper": rnd.choice(_PAPERS),
        "date": f"{_WEEKDAYS[d.weekday()]}, {_fmt_date(d, rnd.choice(('long_uk', 'long_us')))}",
        "vol": rnd.randint(12, 180),
        "no": rnd.randint(1, 365),
        "price": rnd.choice(("1.50", "1.80", "2.00", "2.20", "3.00")),
        # a masthead on the first page: the document starts the paper (page 1)
        "masthead": masthead,
        "mast_pt": rnd.uniform(30.0, 44.0),
        "first_page": 1 if masthead else rnd.randint(2, 40),
        "pno_top": rnd.random() < 0.6,
        "pno_fmt": rnd.choice(("{}", "{}", "Page {}")),
        "hdr_bold": rnd.random() < 0.5,
        "hdr_upper": rnd.random() < 0.5,
        # 4 columns want narrow margins; the layout drops to 3 where columns get too narrow
        "mx": rnd.uniform(0.35, 0.5) if cols == 4 else rnd.uniform(0.4, 0.75),
        "mt": rnd.uniform(0.35, 0.6),
        "mb": rnd.uniform(0.35, 0.6),
        "cols": cols,
        "rules": rules,
        "gutter_em": rnd.uniform(1.5, 2.2) if rules else rnd.uniform(1.1, 2.0),
        "leading": rnd.uniform(1.1, 1.25),
        "para_gap": rnd.random() < 0.2,
        "indent_em": rnd.uniform(1.0, 1.8),
        # narrow columns and no hyphenation: spaces may widen more than in a book before a line goes ragged
        "slack": rnd.uniform(2.5, 4.0),
        "crossheads": rnd.random() < 0.4,
        "head_align": rnd.choice(("left", "center")),
        "carry": None,
    }


def _layout_newspaper(c: _Canvas, st: _Style, doc: dict, rnd: random.Random, page: int, npages: int) -> None:
    """3-4 justified columns on one baseline grid; a second story may span the last two columns below."""
    dpi = st.dpi
    L, R = doc["mx"] * dpi, st.w - doc["mx"] * dpi
    top, bottom = doc["mt"] * dpi, st.h - doc["mb"] * dpi
    W = R - L
    f_body = st.font(st.base_pt)
    f_bold = st.font(st.base_pt, bold=True)
    f_hdr = st.font(st.base_pt, bold=doc["hdr_bold"])
    lh = _lh(f_body, doc["leading"])
    em = float(f_body.size)
    pno = doc["first_page"] + page
    rule_w = max(1, round(dpi / 150))
    y = top

    # Masthead (first page of the paper) or running header, left to right.
    if page == 0 and doc["masthead"]:
        pt = doc["mast_pt"]
        f_m = st.font(pt, bold=True, fam=st.head)
        while f_m.getlength(doc["paper"]) > 0.95 * W and pt > 16:
            pt -= 2.0
            f_m = st.font(pt, bold=True, fam=st.head)
        y += _asc(f_m)
        c.new_block()
        c.text(st.w / 2, y, doc["paper"], f_m, align="center")
        y += _desc(f_m) + 0.4 * lh
        c.hline(L, R, y, width=2 * rule_w)
        y += 0.4 * lh + _asc(f_hdr)
        for x, s, align in (
            (L, f"Vol. {doc['vol']} No. {doc['no']}", "left"),
            (st.w / 2, doc["date"], "center"),
            (R, f"Price {doc['price']}", "right"),
        ):
            c.new_block()
            c.text(x, y, s, f_hdr, align=align)
        y += _desc(f_hdr) + 0.35 * lh
        c.hline(L, R, y, width=rule_w)
        y += 3 * rule_w + 1
        c.hline(L, R, y, width=rule_w)
    else:
        y += _asc(f_hdr)
        name = doc["paper"].upper() if doc["hdr_upper"] else doc["paper"]
        num = doc["pno_fmt"].format(pno)
        if not doc["pno_top"]:
            entries = ((L, name, "left"), (R, doc["date"], "right"))
        elif pno % 2:
            entries = ((L, doc["date"], "left"), (st.w / 2, name, "center"), (R, num, "right"))
        else:
            entries = ((L, num, "left"), (st.w / 2, name, "center"), (R, doc["date"], "right"))
        for x, s, align in entries:
            c.new_block()
            c.text(x, y, s, f_hdr, align=align)
        y += _desc(f_hdr) + 0.35 * lh
        c.hline(L, R, y, width=rule_w)
    y += 0.8 * lh

    # A page either continues the story the last one broke off, or starts with a headline (or not).
    story = doc["carry"] if page > 0 else None
    doc["carry"] = None
    headline = story is None and rnd.random() < (0.9 if page == 0 else 0.65)
    if story is None:
        story = _story()
    align = doc["head_align"]
    if headline:
        pt = rnd.uniform(24.0, 34.0) if page == 0 else rnd.uniform(20.0, 30.0)
        f_h, lines = _fit_lines(st, _headline(rnd).split(), pt, W, 2, True, st.head, 16.0)
        c.new_block()
        for ln in lines:
            y += _asc(f_h)
            _centre_or_left(c, L, R, y, " ".join(ln), f_h, align)
            y += _desc(f_h) + 0.12 * f_h.size
        if rnd.random() < 0.4:  # a deck: one line under the headline
            f_d = st.font(st.base_pt + rnd.uniform(2.5, 4.5), fam=st.head)
            y += 0.2 * lh + _asc(f_d)
            c.new_block()
            _centre_or_left(c, L, R, y, _fit(_sentence(rnd), f_d, W), f_d, align)
            y += _desc(f_d)
        y += 0.6 * lh

    # The baseline grid every column shares.
    y0 = y + _asc(f_body)
    y_last = bottom - _desc(f_body) - (0.0 if doc["pno_top"] else 1.8 * lh)
    n = int((y_last - y0) // lh) + 1
    ncols, g = doc["cols"], doc["gutter_em"] * em
    cw = (W - (ncols - 1) * g) / ncols
    while ncols > 2 and cw < 24.0 * _cw(f_body):  # at least ~24 characters a line
        ncols -= 1
        cw = (W - (ncols - 1) * g) / ncols
    xs = [L + i * (cw + g) for i in range(ncols)]

    # Column 1 may open with a byline or a "continued from" line.
    k0 = 0
    opener = None
    if headline and rnd.random() < 0.6:
        by = f"By {_person(rnd)}"
        opener = by.upper() if rnd.random() < 0.4 else by
    elif not headline and (story["lines"] or story["head"]) and rnd.random() < 0.5:
        opener = f"Continued from page {pno - 1}"
    if opener is not None:
        c.new_block()
        c.text(xs[0], y0, _fit(opener, f_bold, cw), f_bold)
        k0 = 1 + (rnd.random() < 0.4)

    # A second story under a rule and a headline across the last two columns, in the lower half.
    second = None
    if n >= 30 and rnd.random() < 0.45:
        s = ncols - 2
        k_split = int(n * rnd.uniform(0.5, 0.68))
        y_rule = y0 + (k_split - 1) * lh + _desc(f_body) + 0.35 * lh
        span = 2 * cw + g
        f_bh, blines = _fit_lines(st, _headline(rnd).split(), rnd.uniform(14.0, 19.0), span, 2, True, st.head, 12.0)
        hy, base = y_rule + 0.45 * lh, []
        for _ in blines:
            hy += _asc(f_bh)
            base.append(hy)
            hy += _desc(f_bh) + 0.12 * f_bh.size
        k_b = math.ceil((hy + 0.4 * lh + _asc(f_body) - y0) / lh)
        if n - k_b >= 6:
            second = (s, k_split, y_rule, f_bh, blines, base, k_b)

    # Rules: a vertical one in each gutter (broken by a spanning headline), a horizontal one over story 2.
    y_top, y_bot = y0 - _asc(f_body), y0 + (n - 1) * lh + _desc(f_body)
    if doc["rules"]:
        for i in range(ncols - 1):
            x = xs[i] + cw + g / 2
            if second is not None and i == second[0]:
                c.vline(x, y_top, second[2] - 0.3 * lh, width=rule_w)
                c.vline(x, y0 + second[6] * lh - _asc(f_body) - 0.3 * lh, y_bot, width=rule_w)
            else:
                c.vline(x, y_top, y_bot, width=rule_w)
    if second is not None:
        c.hline(xs[second[0]], xs[second[0] + 1] + cw, second[2], width=rule_w)

    def news_items() -> Callable[[], tuple[str, object]]:
        """A story's paragraphs, with a crosshead now and then (after two paragraphs at least)."""
        paras = [0]

        def item() -> tuple[str, object]:
            if doc["crossheads"] and paras[0] >= 2 and rnd.random() < 0.1:
                paras[0] = 0
                return "head", rnd.choice(_CROSSHEADS)
            paras[0] += 1
            return "para", _paragraph(rnd)

        return item

    indent = 0.0 if doc["para_gap"] else doc["indent_em"] * em
    flow = {"indent": indent, "slack": doc["slack"], "f_head": f_bold, "para_gap": doc["para_gap"]}

    # Story 1: column 1 top to bottom, then column 2, ...
    slots = []
    for i, x in enumerate(xs):
        k = k0 if i == 0 else 0
        end = second[1] if second is not None and i >= second[0] else n
        slots.append((x, x + cw, y0 + k * lh, end - k))
    jump = f"Continued on page {pno + rnd.randint(1, 9)}"
    jump1 = jump if rnd.random() < (0.6 if second is not None else 0.4) else None
    _flow(c, story, slots, f_body, lh, news_items(), jump=jump1, **flow)
    last = story if jump1 is None else None

    # Story 2: its headline, then its two columns.
    if second is not None:
        s, _, _, f_bh, blines, base, k_b = second
        x0, x1 = xs[s], xs[s + 1] + cw
        c.new_block()
        for ln, yb in zip(blines, base):
            _centre_or_left(c, x0, x1, yb, " ".join(ln), f_bh, align)
        story2 = _story()
        slots2 = [(xs[i], xs[i] + cw, y0 + k_b * lh, n - k_b) for i in (s, s + 1)]
        jump2 = f"Continued on page {pno + rnd.randint(1, 9)}" if rnd.random() < 0.5 else None
        _flow(c, story2, slots2, f_body, lh, news_items(), jump=jump2, **flow)
        last = story2 if jump2 is None else None
    # The story drawn last and not jumped continues at the top of the next page.
    doc["carry"] = last

    if not doc["pno_top"]:
        c.new_block()
        num = doc["pno_fmt"].format(pno)
        if rnd.random() < 0.5:
            c.text(st.w / 2, bottom - _desc(f_hdr), num, f_hdr, align="center")
        elif pno % 2:
            c.text(R, bottom - _desc(f_hdr), num, f_hdr, align="right")
        else:
            c.text(L, bottom - _desc(f_hdr), num, f_hdr)


def _journal_doc(rnd: random.Random) -> dict:
    title = (
        f"{rnd.choice(_J_LEAD)}{rnd.choice(_J_ADJ)} {rnd.choice(_J_METHOD)} {rnd.choice(_J_TOPIC)}"
    )
    authors = [_person(rnd) for _ in range(rnd.randint(1, 5))]
    first = rnd.randint(1, 900)
    return {
        "journal": rnd.choice(_JOURNALS),
        "vol": rnd.randint(3, 60),
        "year": rnd.randint(2005, 2024),
        "first_page": first,
        "last_page": first + rnd.randint(6, 18),
        "title": title,
        "authors": authors,
        "affil": f"Department of {rnd.choice(_DEPTS)}, University of {rnd.choice(_UNI_CITIES)}",
        "abstract": rnd.random() < 0.75,
        "abs_in": rnd.choice((0.0, 0.0, 0.3, 0.5)),
        "keywords": rnd.sample(_J_KEYWORDS, rnd.randint(3, 5)) if rnd.random() < 0.5 else None,
        "title_pt": rnd.uniform(15.0, 19.0),
        "sec_pt": rnd.uniform(0.0, 1.0),
        "numbered": rnd.random() < 0.8,
        "mx": rnd.uniform(0.6, 0.9),
        "mt": rnd.uniform(0.6, 0.85),
        "mb": rnd.uniform(0.6, 0.85),
        "gutter_in": rnd.uniform(0.2, 0.35),
        "leading": rnd.uniform(1.15, 1.3),
        "indent_em": rnd.uniform(1.0, 1.6),
        "slack": rnd.uniform(2.0, 3.0),
        "pno": rnd.choice(("header", "footer")),
        "rule": rnd.random() < 0.6,
        "section": 0,
        "sub": 0,
        "paras_left": 0,
        "paras_in": 0,
        "story": _story(),
    }


def _layout_journal(c: _Canvas, st: _Style, doc: dict, rnd: random.Random, page: int, npages: int) -> None:
    """Two justified columns on one baseline grid; a title block across both on the first page."""
    dpi = st.dpi
    L, R = doc["mx"] * dpi, st.w - doc["mx"] * dpi
    top, bottom = doc["mt"] * dpi, st.h - doc["mb"] * dpi
    W = R - L
    f_body = st.font(st.base_pt)
    f_small = st.font(st.base_pt - 1.0)
    f_sec = st.font(st.base_pt + doc["sec_pt"], bold=True, fam=st.head)
    lh = _lh(f_body, doc["leading"])
    em = float(f_body.size)
    pno = doc["first_page"] + page
    rule_w = max(1, round(dpi / 150))
    header_pno = doc["pno"] == "header"

    # Running header, left to right.
    y = top + _asc(f_small)
    if page == 0:
        cite = f"{doc['journal']} {doc['vol']} ({doc['year']}) {doc['first_page']}-{doc['last_page']}"
        entries = [(L, cite, "left")] + ([(R, str(pno), "right")] if header_pno else [])
    else:
        authors = doc["authors"]
        last = [a.split()[-1] for a in authors]
        short = last[0] if len(last) == 1 else f"{last[0]} and {last[1]}" if len(last) == 2 else f"{last[0]} et al."
        running = _fit(doc["title"] if pno % 2 else short, f_small, 0.6 * W)
        if not header_pno:
            entries = [(st.w / 2, running, "center")]
        elif pno % 2:
            entries = [(L, running, "left"), (R, str(pno), "right")]
        else:
            entries = [(L, str(pno), "left"), (R, running, "right")]
    for x, s, align in entries:
        c.new_block()
        c.text(x, y, s, f_small, align=align)
    y += _desc(f_small) + 0.3 * lh
    if doc["rule"]:
        c.hline(L, R, y, width=rule_w)
    y += 1.0 * lh

    # Title block across both columns on the first page.
    if page == 0:
        f_t, tlines = _fit_lines(st, doc["title"].split(), doc["title_pt"], 0.85 * W, 3, True, st.head, 13.0)
        c.new_block()
        for ln in tlines:
            y += _asc(f_t)
            c.text(st.w / 2, y, " ".join(ln), f_t, align="center")
            y += _desc(f_t) + 0.15 * f_t.size
        a = doc["authors"]
        names = a[0] if len(a) == 1 else ", ".join(a[:-1]) + " and " + a[-1]
        f_a = st.font(st.base_pt + 1.5, fam=st.head)
        y += 0.6 * lh
        c.new_block()
        for ln in _wrap(names.split(), f_a, 0.85 * W)[:2]:
            y += _asc(f_a)
            c.text(st.w / 2, y, " ".join(ln), f_a, align="center")
            y += _desc(f_a) + 0.2 * f_a.size
        y += _asc(f_small)
        c.new_block()
        c.text(st.w / 2, y, _fit(doc["affil"], f_small, W), f_small, align="center")
        y += _desc(f_small) + 1.0 * lh
        if doc["abstract"]:
            f_ab = st.font(st.base_pt - 0.5)
            lh_ab = _lh(f_ab, doc["leading"])
            ax0, ax1 = L + doc["abs_in"] * dpi, R - doc["abs_in"] * dpi
            y += _asc(f_ab)
            c.new_block()
            c.text(ax0, y, "Abstract", st.font(st.base_pt - 0.5, bold=True))
            y += lh_ab
            c.new_block()
            lines = _wrap(_paragraph(rnd) + _paragraph(rnd), f_ab, ax1 - ax0)
            for i, ln in enumerate(lines):
                if _justify(ln, f_ab, ax0, ax1, i == len(lines) - 1, doc["slack"]):
                    c.justified(ax0, ax1, y, ln, f_ab)
                else:
                    c.text(ax0, y, " ".join(ln), f_ab)
                y += lh_ab
            if doc["keywords"]:
                kw = list(doc["keywords"])
                while len(kw) > 1 and f_ab.getlength("Keywords: " + ", ".join(kw)) > ax1 - ax0:
                    kw.pop()  # whole keywords only
                c.new_block()
                c.text(ax0, y, _fit("Keywords: " + ", ".join(kw), f_ab, ax1 - ax0), f_ab)
                y += lh_ab
            y += -_asc(f_ab) + 0.5 * lh
            c.hline(L, R, y, width=rule_w)
            y += 0.8 * lh

    # Two columns on one baseline grid.
    y0 = y + _asc(f_body)
    y_last = bottom - _desc(f_body) - (1.8 * lh if not header_pno else 0.0)
    n = int((y_last - y0) // lh) + 1
    g = doc["gutter_in"] * dpi
    cw = (W - g) / 2
    slots = [(L, L + cw, y0, n), (R - cw, R, y0, n)]

    def journal_item() -> tuple[str, object]:
        if doc["paras_left"] <= 0:
            doc["section"] += 1
            doc["sub"] = 0
            doc["paras_left"] = rnd.randint(2, 5)
            doc["paras_in"] = 0  # paragraphs since the last heading: no heading right under another
            name = _J_SECTIONS[(doc["section"] - 1) % len(_J_SECTIONS)]
            return "head", f"{doc['section']} {name}" if doc["numbered"] else name
        if doc["section"] > 1 and doc["paras_in"] > 0 and rnd.random() < 0.12:
            doc["sub"] += 1
            doc["paras_in"] = 0
            sub = rnd.choice(_J_SUBSECTIONS)
            return "head", f"{doc['section']}.{doc['sub']} {sub}" if doc["numbered"] else sub
        doc["paras_left"] -= 1
        doc["paras_in"] += 1
        return "para", _paragraph(rnd)

    indent = doc["indent_em"] * em
    _flow(c, doc["story"], slots, f_body, lh, journal_item, indent=indent, slack=doc["slack"], f_head=f_sec)

    if not header_pno:
        c.new_block()
        c.text(st.w / 2, bottom - _desc(f_small), str(pno), f_small, align="center")


_LAYOUTS: dict[str, tuple[Callable[[random.Random], dict], Callable[..., None]]] = {
    "invoice": (_invoice_doc, _layout_invoice),
    "form": (_form_doc, _layout_form),
    "book": (_book_doc, _layout_book),
    "newspaper": (_newspaper_doc, _layout_newspaper),
    "journal": (_journal_doc, _layout_journal),
}

# --------------------------------------------------------------------------- damage


def _damage(
    gray: np.ndarray, polys: np.ndarray, st: _Style, nrng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, dict[str, float]]:
    """Make a clean render look scanned; returns (uint8 image, moved polygons, parameters).

    Order follows the physics: text on the back shows through the paper (a
    faint, blurred, mirrored and shifted copy of this page's ink stands in for
    it), the sheet is skewed on the scanner glass, the lamp lights it unevenly,
    the optics blur, the sensor adds noise and the scanner stores a JPEG.
    """
    h, w = gray.shape
    img = gray.astype(np.float32)
    paper = float(st.paper)

    bleed = 0.0
    if nrng.random() < 0.6:
        bleed = float(nrng.uniform(0.04, 0.11))
        ghost = np.clip(paper - img, 0.0, None)[:, ::-1]
        ghost = np.roll(ghost, (int(nrng.integers(h // 8, h // 2)), int(nrng.integers(-w // 20, w // 20))), axis=(0, 1))
        ghost = cv2.GaussianBlur(ghost, (0, 0), 1.8)
        img -= bleed * ghost

    skew = float(nrng.uniform(-1.5, 1.5))
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), skew, 1.0)
    img = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=paper)
    if len(polys):
        polys = polys @ m[:, :2].T + m[:, 2]

    light = float(nrng.uniform(0.04, 0.2))
    theta = float(nrng.uniform(0.0, 2.0 * math.pi))
    cx, cy = nrng.uniform(0.0, 1.0, 2)
    xs = np.linspace(0.0, 1.0, w, dtype=np.float32)[None, :]
    ys = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None]
    ramp = (math.cos(theta) * xs + math.sin(theta) * ys).astype(np.float32)
    ramp = (ramp - ramp.min()) / max(float(ramp.max() - ramp.min()), 1e-6)
    radial = ((xs - cx) ** 2 + (ys - cy) ** 2) / 2.0
    img *= 1.0 - light * (0.6 * ramp + 0.4 * radial)

    blur = float(nrng.uniform(0.3, 1.0))
    img = cv2.GaussianBlur(img, (0, 0), blur)
    noise = float(nrng.uniform(2.0, 8.0))
    img += nrng.standard_normal(img.shape, dtype=np.float32) * noise

    out = _finish(img, st)
    quality = int(nrng.integers(40, 71))
    buf = io.BytesIO()
    Image.fromarray(out).save(buf, "JPEG", quality=quality)
    buf.seek(0)
    with Image.open(buf) as reread:
        out = np.array(reread)

    params = {
        "skew_deg": round(skew, 4),
        "noise_sigma": round(noise, 3),
        "blur_sigma": round(blur, 3),
        "jpeg_quality": quality,
        "lighting": round(light, 4),
        "bleed_through": round(bleed, 4),
    }
    return out, polys, params


def _finish(img: np.ndarray, st: _Style) -> np.ndarray:
    """Float grayscale -> uint8, tinted RGB for colour documents."""
    if st.rgb:
        img = img[:, :, None] * np.asarray(st.tint, dtype=np.float32)
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------- distortions


def _rgb(img: np.ndarray) -> np.ndarray:
    return img if img.ndim == 3 else np.repeat(img[:, :, None], 3, axis=2)


def _paper_colour(img: np.ndarray) -> tuple[float, ...]:
    """The page's background colour: the median of its border pixels, per channel."""
    border = np.concatenate([img[:4].reshape(-1, *img.shape[2:]), img[-4:].reshape(-1, *img.shape[2:])])
    med = np.median(border, axis=0)
    return tuple(float(v) for v in np.atleast_1d(med))


def _densify(poly: np.ndarray, n: int = 9) -> np.ndarray:
    """A 4-corner box as 2n points along its top and bottom edges, so a curved warp bends it."""
    tl, tr, br, bl = poly
    t = np.linspace(0.0, 1.0, n)[:, None]
    return np.concatenate([tl + (tr - tl) * t, br + (bl - br) * t])


def _background(h: int, w: int, rng: np.random.Generator) -> np.ndarray:
    """A table top: a random colour with low-frequency blotches, grain and a few streaks."""
    base = rng.uniform(35, 150, 3)
    low = cv2.resize(rng.standard_normal((6, 6, 3)).astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
    streaks = np.sin(np.linspace(0, rng.uniform(20, 80), w, dtype=np.float32))[None, :, None] * rng.uniform(0, 8)
    bg = base[None, None, :] + 18 * low + streaks + rng.standard_normal((h, w, 3)).astype(np.float32) * 5
    return bg.astype(np.float32)


def _distort_perspective(img, polys, rng):
    """The page photographed on a table by a tilted camera: a keystone homography onto a larger textured canvas."""
    h, w = img.shape[:2]
    src = np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64)
    # the camera tilted towards one edge: that edge is further away, so shorter, and the page foreshortened
    tilt = src.copy()
    f, edge = rng.uniform(0.05, 0.16), int(rng.integers(4))  # each end of the far edge moves in by f
    far = [(0, 1), (1, 2), (2, 3), (3, 0)][edge]
    along = tilt[far[1]] - tilt[far[0]]
    tilt[far[0]] += f * along
    tilt[far[1]] -= f * along
    axis = 1 if edge in (0, 2) else 0  # foreshortened across the far edge
    tilt[:, axis] = (tilt[:, axis] - src[:, axis].mean()) * (1 - f) + src[:, axis].mean()
    angle = math.radians(rng.uniform(-6, 6))
    c, s = math.cos(angle), math.sin(angle)
    dst = (tilt - [w / 2, h / 2]) @ np.array([[c, s], [-s, c]]) + rng.uniform(-0.05, 0.05, (4, 2)) * min(w, h)
    margin = rng.uniform(0.04, 0.14) * max(w, h)
    dst -= dst.min(axis=0) - margin
    cw, ch = (dst.max(axis=0) + margin).astype(int)
    m = cv2.getPerspectiveTransform(src.astype(np.float32), dst.astype(np.float32))
    page = cv2.warpPerspective(_rgb(img).astype(np.float32), m, (int(cw), int(ch)), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.ones((h, w), np.float32), m, (int(cw), int(ch)), flags=cv2.INTER_LINEAR)[:, :, None]
    out = page * mask + _background(int(ch), int(cw), rng) * (1 - mask)
    # light falls off across the photo
    gx = np.linspace(-1, 1, int(cw), dtype=np.float32)[None, :, None]
    gy = np.linspace(-1, 1, int(ch), dtype=np.float32)[:, None, None]
    a, b = rng.uniform(-0.12, 0.12, 2)
    out *= 1.0 + a * gx + b * gy
    out = cv2.GaussianBlur(out, (0, 0), rng.uniform(0.4, 0.9))
    moved = [cv2.perspectiveTransform(p[None].astype(np.float64), m)[0] for p in polys]
    return out, moved, {"quad": _round(dst)}


def _distort_rotate(img, polys, rng):
    """The page fed into the scanner sideways or upside down: k quarter turns counterclockwise."""
    k = int(rng.integers(1, 4))
    h, w = img.shape[:2]
    out = np.rot90(img, k).astype(np.float32)
    moved = []
    for p in polys:
        q, cur_w, cur_h = np.asarray(p, np.float64), w, h
        for _ in range(k):  # (x, y) -> (y, W - x) per counterclockwise turn, W the current width
            q = np.stack([q[:, 1], cur_w - q[:, 0]], axis=1)
            cur_w, cur_h = cur_h, cur_w
        moved.append(q)
    # the correction is k quarter turns clockwise
    return out, moved, {"rotation": 90 * k}


def _distort_skew(img, polys, rng):
    """The page laid crooked on the glass: rotated by 2-15 degrees on a canvas that holds all of it."""
    angle = float(rng.uniform(2, 15) * rng.choice([-1, 1]))
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    c, s = abs(m[0, 0]), abs(m[0, 1])
    nw, nh = int(math.ceil(w * c + h * s)), int(math.ceil(w * s + h * c))
    m[:, 2] += [(nw - w) / 2, (nh - h) / 2]
    paper = _paper_colour(img)
    out = cv2.warpAffine(img.astype(np.float32), m, (nw, nh), flags=cv2.INTER_LINEAR,
                         borderMode=cv2.BORDER_CONSTANT, borderValue=paper)
    moved = [np.asarray(p, np.float64) @ m[:, :2].T + m[:, 2] for p in polys]
    return out, moved, {"skew_deg": round(angle, 4)}


def _curl_forward(x, y, w, h, params):
    """Where a point of the flat page lands on the photo of the curled page.

    The page rises towards the spine, z(t) = A (1 - t/L)^2 within a fraction L
    of the width; a camera at distance D above the centre, tilted by atan(tilt),
    sees raised points pushed away from the centre and shifted up.
    """
    a, length, dist, tilt, left = (params[k] for k in ("amplitude", "extent", "camera", "tilt", "spine_left"))
    t = x / w if left else (w - x) / w
    z = a * w * np.clip(1.0 - t / length, 0.0, None) ** 2
    f = dist * h / (dist * h - z)
    return w / 2 + (x - w / 2) * f, h / 2 + (y - h / 2) * f - tilt * z, z


def _distort_curl(img, polys, rng, strong: bool = False):
    """A book page near its spine, photographed from above: text lines bend as the paper rises.

    ``strong``: a tightly bound book held open; the paper rises over most of the page's width and
    twice as high, so full-width lines bend all along and most near the spine."""
    h, w = img.shape[:2]
    amplitude, extent = ((0.14, 0.24), (0.7, 0.95)) if strong else ((0.06, 0.12), (0.35, 0.6))
    params = {
        "amplitude": round(float(rng.uniform(*amplitude)), 4), "extent": round(float(rng.uniform(*extent)), 4),
        "camera": round(float(rng.uniform(1.6, 2.4)), 4), "tilt": round(float(rng.uniform(0.15, 0.4)), 4),
        "spine_left": bool(rng.random() < 0.5),
    }
    # canvas: where the page's outline lands, plus a little margin
    edge = np.linspace(0, 1, 64)
    ox = np.concatenate([edge * w, np.full(64, w), edge * w, np.zeros(64)])
    oy = np.concatenate([np.zeros(64), edge * h, np.full(64, h), edge * h])
    fx, fy, _ = _curl_forward(ox, oy, w, h, params)
    x0, y0 = math.floor(min(fx.min(), 0)) - 8, math.floor(min(fy.min(), 0)) - 8
    nw, nh = math.ceil(max(fx.max(), w)) + 8 - x0, math.ceil(max(fy.max(), h)) + 8 - y0
    # invert the forward map on a coarse grid by fixed-point iteration, then interpolate
    step = 4
    gy, gx = np.mgrid[0 : nh + step : step, 0 : nw + step : step].astype(np.float64)
    qx, qy = gx + x0, gy + y0
    px, py = qx.copy(), qy.copy()
    for _ in range(30):
        fx, fy, _ = _curl_forward(px, py, w, h, params)
        px += qx - fx
        py += qy - fy
    map_x = cv2.resize(px.astype(np.float32), None, fx=step, fy=step, interpolation=cv2.INTER_LINEAR)[:nh, :nw]
    map_y = cv2.resize(py.astype(np.float32), None, fx=step, fy=step, interpolation=cv2.INTER_LINEAR)[:nh, :nw]
    paper = _paper_colour(img)
    out = cv2.remap(img.astype(np.float32), map_x, map_y, cv2.INTER_LINEAR,
                    borderMode=cv2.BORDER_CONSTANT, borderValue=paper)
    # shadow where the paper curves away from the light
    _, _, z = _curl_forward(map_x, map_y, w, h, params)
    shade = 1.0 - 0.3 * (z / (params["amplitude"] * w)) ** 1.5
    out *= shade[:, :, None] if out.ndim == 3 else shade
    moved = []
    for p in polys:
        d = _densify(np.asarray(p, np.float64))
        fx, fy, _ = _curl_forward(d[:, 0], d[:, 1], w, h, params)
        moved.append(np.stack([fx - x0, fy - y0], axis=1))
    params["offset"] = [int(x0), int(y0)]
    return out, moved, params


def _round(points: np.ndarray) -> list[list[float]]:
    return [[round(float(x), 2), round(float(y), 2)] for x, y in points]


_DISTORT = {
    "perspective": _distort_perspective,
    "rotate": _distort_rotate,
    "skew": _distort_skew,
    "curl": _distort_curl,
    "curl-strong": lambda img, polys, rng: _distort_curl(img, polys, rng, strong=True),
}


def _distort(im: Image.Image, gt: dict, distortion: str, rng: np.random.Generator) -> tuple[Image.Image, dict]:
    """Warp a rendered page and move its ground truth with it.

    The flat text stays; polygons move into the warped image's pixels (curl
    polygons get points along their edges, so they bend with the line);
    ``gt["distortion"]`` says what was done: ``rotation`` (quarter turns,
    clockwise degrees that make the page upright again), ``skew_deg`` (text
    angle counterclockwise, scan skew included), ``quad`` (the page corners in
    the photo) or the curl parameters.
    """
    img = np.asarray(im)
    polys = [np.asarray(ln["polygon"], np.float64) for ln in gt["lines"]]
    out, moved, params = _DISTORT[distortion](img, polys, rng)
    if distortion == "skew" and gt.get("damage"):
        params["skew_deg"] = round(params["skew_deg"] + gt["damage"]["skew_deg"], 4)
    if distortion == "perspective":
        # a phone camera: mild JPEG on top of whatever the page went through
        out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
        buf = io.BytesIO()
        Image.fromarray(out).save(buf, "JPEG", quality=int(rng.integers(75, 92)))
        buf.seek(0)
        with Image.open(buf) as reread:
            out = np.array(reread)
    out = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    h, w = out.shape[:2]
    lines = []
    for ln, p in zip(gt["lines"], moved):
        p = np.asarray(p, np.float64).copy()
        p[:, 0] = np.clip(p[:, 0], 0, w)
        p[:, 1] = np.clip(p[:, 1], 0, h)
        lines.append({**ln, "polygon": _round(p)})
    gt = {**gt, "width": w, "height": h, "lines": lines, "distortion": {"kind": distortion, **params}}
    return Image.fromarray(out), gt


# --------------------------------------------------------------------------- born-digital PDF
#
# The pdf-text format replays a page's recorded drawing calls (``_Canvas.ops``)
# as PDF: text as real text in the same TrueType font (embedded as a subset,
# Type0/CIDFontType2, Identity-H, glyph ids as CIDs, with a ToUnicode CMap),
# rules, boxes and crosses as vector paths. Glyphs sit where Pillow drew them:
# each character's pen position comes from Pillow's layout (its kerning and
# hinted advances), and TJ offsets move the PDF pen there from the font's own
# advance widths.

#: Tables a PDF renderer does not read from an embedded TrueType font.
_PDF_DROP_TABLES = (
    "GSUB", "GPOS", "GDEF", "BASE", "JSTF", "MATH", "kern", "hdmx", "VDMX", "LTSH", "gasp", "DSIG", "FFTM", "meta",
)
_PDF_PRODUCER = "folio measure.synth (pdf-text)"


@dataclass(frozen=True)
class _FontInfo:
    """What the PDF needs to know about one TrueType file (widths in 1/1000 em)."""

    cmap: dict[int, int]  # code point -> glyph id
    widths: tuple[float, ...]  # advance width of every glyph id
    ps_name: str
    bbox: tuple[int, int, int, int]
    italic_angle: float
    ascent: int
    descent: int
    cap_height: int
    flags: int
    stem_v: int


def _load_ttfont(path: str, opts=None):  # -> fontTools.ttLib.TTFont
    """Open a TrueType file lazily with placeholder glyph names (glyph ids are all the PDF uses).

    Reading the real names (from ``post``, or made up from ``cmap``) costs tens
    of milliseconds per file; fontTools keys glyphs by name, any unique names do.
    """
    from fontTools import subset

    font = subset.load_font(path, opts or subset.Options(), dontLoadGlyphNames=True, lazy=True)
    font.setGlyphOrder([".notdef"] + [f"glyph{i:05d}" for i in range(1, font["maxp"].numGlyphs)])
    return font


@functools.lru_cache(maxsize=64)
def _font_info(path: str) -> _FontInfo:
    with _load_ttfont(path) as tt:
        scale = 1000.0 / tt["head"].unitsPerEm
        ids = tt.getReverseGlyphMap()
        cmap = {cp: ids[name] for cp, name in tt.getBestCmap().items()}
        metrics = tt["hmtx"].metrics
        widths = tuple(round(metrics[name][0] * scale, 2) for name in tt.getGlyphOrder())
        head, hhea, post = tt["head"], tt["hhea"], tt["post"]
        os2 = tt.get("OS/2")
        ps = tt["name"].getDebugName(6) or Path(path).stem
        ps = "".join(ch for ch in ps if ch.isascii() and (ch.isalnum() or ch == "-")) or "Font"
        ascent = round(hhea.ascent * scale)
        cap = getattr(os2, "sCapHeight", 0) if os2 is not None and os2.version >= 2 else 0
        bold = os2 is not None and os2.usWeightClass >= 600
        serif = os2 is not None and os2.panose.bFamilyType == 2 and 2 <= os2.panose.bSerifStyle <= 10
        flags = 4 | (1 if post.isFixedPitch else 0) | (2 if serif else 0) | (64 if post.italicAngle else 0)
        return _FontInfo(
            cmap=cmap,
            widths=widths,
            ps_name=ps,
            bbox=tuple(round(v * scale) for v in (head.xMin, head.yMin, head.xMax, head.yMax)),
            italic_angle=float(post.italicAngle),
            ascent=ascent,
            descent=round(hhea.descent * scale),
            cap_height=round(cap * scale) if cap else round(ascent * 0.7),
            flags=flags,
            stem_v=120 if bold else 80,
        )


@functools.lru_cache(maxsize=65536)
def _getlength(font: ImageFont.FreeTypeFont, s: str) -> float:
    return font.getlength(s)


@functools.lru_cache(maxsize=65536)
def _advance(font: ImageFont.FreeTypeFont, a: str, b: str) -> float:
    """How far Pillow moves the pen over ``a`` when ``b`` follows (kerning included)."""
    return font.getlength(a + b) - _getlength(font, b)


def _pen_positions(font: ImageFont.FreeTypeFont, s: str) -> list[float]:
    """The pen x (pixels from the run's origin) of every character of ``s`` as Pillow lays it out.

    Pairwise advances give every character; each word is then put exactly where
    Pillow puts it and stretched to the width Pillow gives it, which absorbs the
    ligatures (``ffi``) that the shaper draws and the pairwise sum misses.
    """
    n = len(s)
    xs = [0.0] * n
    for i in range(1, n):
        xs[i] = xs[i - 1] + _advance(font, s[i - 1], s[i])
    i = 0
    while i < n:
        if s[i] == " ":
            if i:
                xs[i] = xs[i - 1] + _advance(font, s[i - 1], " ")
            i += 1
            continue
        j = i
        while j < n and s[j] != " ":
            j += 1
        start = (font.getlength(s[:i]) + _advance(font, " ", s[i]) - _getlength(font, " ")) if i else 0.0
        paired = xs[j - 1] - xs[i] + _getlength(font, s[j - 1])
        exact = _getlength(font, s[i:j]) if j - i > 1 else paired
        stretch = exact / paired if paired > 0 else 1.0
        base = xs[i]
        for k in range(i, j):
            xs[k] = start + (xs[k] - base) * stretch
        i = j
    return xs


class _PdfFont:
    """One TrueType file as used in one document: the glyphs drawn and their text."""

    def __init__(self, path: str, name: str):
        self.path = path
        self.name = name  # resource name, e.g. "F1"
        self.info = _font_info(path)
        self.text: dict[int, str] = {}  # glyph id -> the character drawn with it first

    def glyphs(self, s: str) -> list[int]:
        """Glyph ids for ``s`` (0, .notdef, where the font lacks a character, as Pillow draws it)."""
        out = []
        for ch in s:
            g = self.info.cmap.get(ord(ch), 0)
            self.text.setdefault(g, ch)
            out.append(g)
        return out

    def subset(self) -> bytes:
        """The font file cut down to the glyphs used; glyph ids are kept, so CID = GID."""
        from fontTools import subset

        opts = subset.Options()
        opts.retain_gids = True
        opts.notdef_outline = True
        opts.hinting = False
        opts.layout_features = []
        opts.glyph_names = False
        opts.recalc_timestamp = False
        opts.drop_tables = list(opts.drop_tables) + list(_PDF_DROP_TABLES)
        font = _load_ttfont(self.path, opts)
        try:
            for tag in _PDF_DROP_TABLES:  # before the subsetter reads the (large) layout tables
                if tag in font:
                    del font[tag]
            sub = subset.Subsetter(opts)
            sub.populate(gids=sorted(self.text))
            sub.subset(font)
            buf = io.BytesIO()
            subset.save_font(font, buf, opts)
        finally:
            font.close()
        return buf.getvalue()

    def build(self, pdf):  # -> pikepdf.Object
        """Add the Type0 font (subset, widths, ToUnicode) to ``pdf``; returns its indirect object."""
        from pikepdf import Array, Dictionary, Name, String

        info, gids = self.info, sorted(self.text)
        digest = hashlib.sha256(f"{info.ps_name}:{gids}".encode()).digest()
        base = Name("/" + "".join(chr(65 + b % 26) for b in digest[:6]) + "+" + info.ps_name)
        data = self.subset()
        font_file = pdf.make_stream(data)
        font_file.Length1 = len(data)
        descriptor = pdf.make_indirect(
            Dictionary(
                Type=Name.FontDescriptor,
                FontName=base,
                Flags=info.flags,
                FontBBox=Array(list(info.bbox)),
                ItalicAngle=info.italic_angle,
                Ascent=info.ascent,
                Descent=info.descent,
                CapHeight=info.cap_height,
                StemV=info.stem_v,
                FontFile2=font_file,
            )
        )
        widths: list = []
        run: list[float] = []
        for k, g in enumerate(gids):  # [first [w w ...] first [w ...] ...] over runs of consecutive ids
            if k and g != gids[k - 1] + 1:
                widths += [gids[k - len(run)], Array(run)]
                run = []
            run.append(info.widths[g] if g < len(info.widths) else 0)
        if run:
            widths += [gids[len(gids) - len(run)], Array(run)]
        cid_font = pdf.make_indirect(
            Dictionary(
                Type=Name.Font,
                Subtype=Name.CIDFontType2,
                BaseFont=base,
                CIDSystemInfo=Dictionary(Registry=String("Adobe"), Ordering=String("Identity"), Supplement=0),
                FontDescriptor=descriptor,
                W=Array(widths),
                CIDToGIDMap=Name.Identity,
            )
        )
        return pdf.make_indirect(
            Dictionary(
                Type=Name.Font,
                Subtype=Name.Type0,
                BaseFont=base,
                Encoding=Name("/Identity-H"),
                DescendantFonts=Array([cid_font]),
                ToUnicode=pdf.make_stream(_to_unicode(self.text)),
            )
        )


def _to_unicode(text: dict[int, str]) -> bytes:
    """A ToUnicode CMap: two-byte glyph ids to the characters drawn with them."""
    out = [
        "/CIDInit /ProcSet findresource begin",
        "12 dict begin",
        "begincmap",
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def",
        "/CMapName /Adobe-Identity-UCS def",
        "/CMapType 2 def",
        "1 begincodespacerange",
        "<0000> <FFFF>",
        "endcodespacerange",
    ]
    pairs = sorted(text.items())
    for k in range(0, len(pairs), 100):  # at most 100 entries per block
        chunk = pairs[k : k + 100]
        out.append(f"{len(chunk)} beginbfchar")
        out += [f"<{g:04X}> <{ch.encode('utf-16-be').hex().upper()}>" for g, ch in chunk]
        out.append("endbfchar")
    out += ["endcmap", "CMapName currentdict /CMap defineresource pop", "end", "end", ""]
    return "\n".join(out).encode("ascii")


def _num(v: float, digits: int = 3) -> str:
    """A PDF number: at most ``digits`` decimals, no trailing zeros, no ``-0``."""
    s = f"{v:.{digits}f}".rstrip("0").rstrip(".")
    return "0" if s in ("-0", "") else s


def _grey(level: int) -> str:
    return _num(level / 255.0, 4)


def _page_content(
    ops: Sequence[_TextOp | _LineOp | _RectOp], h_px: int, k: float, fonts: dict[str, _PdfFont]
) -> tuple[bytes, list[str]]:
    """The content stream of one page and the names of the fonts it uses.

    Args:
        ops: the page's recorded drawing calls, in page pixels (y down).
        h_px: page height in pixels.
        k: points per pixel (72 / dpi); PDF y runs up from the bottom.
        fonts: the document's fonts by TrueType file, added to as new files come up.
    """
    out: list[str] = []
    used: list[str] = []

    def box(x0: float, y0: float, x1: float, y1: float) -> str:
        """``re`` operands for the pixel box [x0, x1] x [y0, y1] (y down)."""
        return f"{_num(x0 * k)} {_num((h_px - y1) * k)} {_num((x1 - x0) * k)} {_num((y1 - y0) * k)} re"

    for op in ops:
        if isinstance(op, _TextOp):
            pf = fonts.get(op.font)
            if pf is None:
                pf = fonts[op.font] = _PdfFont(op.font, f"F{len(fonts) + 1}")
            if pf.name not in used:
                used.append(pf.name)
            font = _load_font(op.font, op.px)
            xs = _pen_positions(font, op.text)
            width = _getlength(font, op.text)
            left = op.x - {"ls": 0.0, "rs": width, "ms": width / 2.0}[op.anchor]
            parts: list[str] = []
            run: list[str] = []
            pen = 0.0  # in 1/1000 em from the run's origin
            for x, g in zip(xs, pf.glyphs(op.text)):
                # TJ moves the pen back by its number (1/1000 em); a drift under that is left
                # for a later glyph to settle (Pillow places glyphs to 1/64 pixel)
                shift = pen - x * 1000.0 / op.px
                if abs(shift) >= 1.0:
                    if run:
                        parts.append("<" + "".join(run) + ">")
                        run = []
                    parts.append(str(round(shift)))
                    pen -= round(shift)
                run.append(f"{g:04X}")
                pen += pf.info.widths[g] if g < len(pf.info.widths) else 0.0
            parts.append("<" + "".join(run) + ">")
            out.append(
                f"BT /{pf.name} {_num(op.px * k, 4)} Tf {_grey(op.fill)} g "
                f"1 0 0 1 {_num(left * k)} {_num((h_px - op.y) * k)} Tm [{''.join(parts)}] TJ ET"
            )
        elif isinstance(op, _LineOp):
            # Pillow truncates the coordinates and draws a w-pixel line over the pixels
            # from c - (w - 1) // 2 across, end pixels included.
            (x0, y0), (x1, y1) = (int(v) for v in op.start), (int(v) for v in op.end)
            w = max(1, op.width)
            if y0 == y1:
                x0, x1 = min(x0, x1), max(x0, x1)
                top = y0 - (w - 1) // 2
                out.append(f"{_grey(op.fill)} g {box(x0, top, x1 + 1, top + w)} f")
            elif x0 == x1:
                y0, y1 = min(y0, y1), max(y0, y1)
                left = x0 - (w - 1) // 2
                out.append(f"{_grey(op.fill)} g {box(left, y0, left + w, y1 + 1)} f")
            else:
                out.append(
                    f"{_grey(op.fill)} G {_num(w * k)} w 0 J "
                    f"{_num((x0 + 0.5) * k)} {_num((h_px - y0 - 0.5) * k)} m "
                    f"{_num((x1 + 0.5) * k)} {_num((h_px - y1 - 0.5) * k)} l S"
                )
        else:
            x0, y0, x1, y1 = (int(v) for v in op.box)
            x1, y1 = x1 + 1, y1 + 1  # Pillow includes the last row and column
            if op.fill is not None:
                out.append(f"{_grey(op.fill)} g {box(x0, y0, x1, y1)} f")
            if op.outline is not None:
                w = max(1, op.width)
                if 2 * w >= min(x1 - x0, y1 - y0):
                    out.append(f"{_grey(op.outline)} g {box(x0, y0, x1, y1)} f")
                else:  # the ring between the box and the box inset by the width
                    out.append(f"{_grey(op.outline)} g {box(x0, y0, x1, y1)} {box(x0 + w, y0 + w, x1 - w, y1 - w)} f*")
    return ("\n".join(out) + "\n").encode("ascii"), used


def _save_pdf_text(canvases: Sequence[_Canvas], path: Path, dpi: int) -> None:
    """Write the pages of ``canvases`` as one born-digital PDF (vector text and rules, no image)."""
    import pikepdf
    from pikepdf import Array, Dictionary, Name

    k = 72.0 / dpi
    fonts: dict[str, _PdfFont] = {}
    contents = [_page_content(c.ops, c.st.h, k, fonts) for c in canvases]
    pdf = pikepdf.Pdf.new()
    try:
        built = {pf.name: pf.build(pdf) for pf in fonts.values()}
        for c, (content, used) in zip(canvases, contents):
            page = Dictionary(
                Type=Name.Page,
                MediaBox=Array([0, 0, round(c.st.w * k, 3), round(c.st.h * k, 3)]),
                Resources=Dictionary(Font=Dictionary({"/" + name: built[name] for name in used})),
                Contents=pdf.make_stream(content),
            )
            pdf.pages.append(pikepdf.Page(page))
        pdf.trailer.Info = pdf.make_indirect(
            Dictionary(Title=pikepdf.String(path.stem), Producer=pikepdf.String(_PDF_PRODUCER))
        )
        pdf.save(
            path,
            deterministic_id=True,
            compress_streams=True,
            object_stream_mode=pikepdf.ObjectStreamMode.generate,
            min_version="1.5",
        )
    finally:
        pdf.close()


# --------------------------------------------------------------------------- documents


def _render_page(
    kind: str, st: _Style, doc: dict, rnd: random.Random, nrng: np.random.Generator, page: int, npages: int, damage: bool
) -> tuple[Image.Image, dict, _Canvas]:
    c = _Canvas(st)
    _LAYOUTS[kind][1](c, st, doc, rnd, page, npages)
    polys = np.array(
        [[[l, t], [r, t], [r, b], [l, b]] for l, t, r, b in (ln.box for ln in c.lines)], dtype=np.float64
    ).reshape(-1, 4, 2)
    gray = np.asarray(c.img)
    if damage:
        arr, polys, params = _damage(gray, polys, st, nrng)
    else:
        arr, params = _finish(gray.astype(np.float32), st), {}
    if len(polys):
        polys[..., 0] = np.clip(polys[..., 0], 0, st.w)
        polys[..., 1] = np.clip(polys[..., 1], 0, st.h)
    lines = [
        {"text": ln.text, "polygon": [[round(float(x), 2), round(float(y), 2)] for x, y in p], "block_index": ln.block}
        for ln, p in zip(c.lines, polys)
    ]
    gt = {
        "page_index": page,
        "width": st.w,
        "height": st.h,
        "text": "\n".join(ln.text for ln in c.lines if ln.text),
        "lines": lines,
        "damage": params,
    }
    if c.invoice is not None:
        gt.update(c.invoice)
    return Image.fromarray(arr), gt, c


def _save(
    images: list[Image.Image], path: Path, fmt: str, dpi: int, rnd: random.Random, canvases: Sequence[_Canvas] = ()
) -> None:
    first, rest = images[0], images[1:]
    if fmt == "pdf-text":
        _save_pdf_text(canvases, path, dpi)
    elif fmt == "png":
        first.save(path, "PNG", dpi=(dpi, dpi), compress_level=3)
    elif fmt == "jpeg":
        first.save(path, "JPEG", quality=_JPEG_QUALITY, dpi=(dpi, dpi))
    elif fmt == "tiff":
        compression = rnd.choice(("tiff_lzw", "tiff_adobe_deflate"))
        first.save(path, "TIFF", save_all=True, append_images=rest, compression=compression, dpi=(dpi, dpi))
    elif fmt == "pdf":
        first.save(
            path,
            "PDF",
            save_all=True,
            append_images=rest,
            resolution=float(dpi),
            quality=_JPEG_QUALITY,
            title=path.stem,
            creationDate=_PDF_TIME,
            modDate=_PDF_TIME,
        )
    else:  # validated in generate()
        raise ValueError(f"unknown format {fmt!r}")


def _normalise_formats(formats: Sequence[str]) -> list[str]:
    if isinstance(formats, str):
        formats = (formats,)
    out = []
    for f in formats:
        f2 = _FORMAT_ALIASES.get(str(f).lower(), str(f).lower())
        if f2 not in FORMATS:
            raise ValueError(f"unknown format {f!r}; expected one of {', '.join(FORMATS)}")
        out.append(f2)
    if not out:
        raise ValueError(f"formats is empty; expected some of {', '.join(FORMATS)}")
    return out


def generate(
    dest: str | os.PathLike,
    pages: int,
    kind: str,
    seed: int = 0,
    formats: Sequence[str] = ("png", "tiff", "pdf"),
    damage: bool = True,
    dpi: int = 150,
    distort: str | None = None,
    *,
    anomaly: str | None = None,
) -> list[Path]:
    """Write synthetic documents totalling ``pages`` pages into ``dest``.

    Documents are written round-robin over ``formats``: png and jpeg documents
    have one page, tiff (multi-frame), pdf (raster, one image per page) and
    pdf-text (born-digital: real text in embedded fonts, vector rules; a
    ``.pdf`` too) have one to three, and the last document is shortened so the
    total is exactly ``pages``. Each document ``{kind}_{seed:04d}_{i:04d}.{ext}``
    gets a ground-truth file ``{kind}_{seed:04d}_{i:04d}.json`` beside it with
    the text lines of every page, their polygons in page pixels (after skew)
    and the damage applied. A pdf-text document has the pages of the pdf one
    with the same seed and index, never damaged (``damaged`` false, ``damage``
    empty); its polygons are in pixels at ``dpi`` (PDF points times dpi / 72,
    from the top left).

    Args:
        dest: output directory, created if missing.
        pages: total number of pages, at least 1.
        kind: one of :data:`KINDS`.
        seed: non-negative seed; the same arguments give byte-identical files.
        formats: cycle of output formats from :data:`FORMATS` ("jpg" and "tif"
            are accepted as aliases).
        damage: simulate a scan (skew, blur, noise, lighting, bleed-through,
            JPEG artefacts); False gives clean renders. pdf-text documents
            ignore it: they are always clean.
        dpi: resolution; pages are A4 (1240 x 1754 pixels at 150 dpi).
        distort: warp every page after the scan damage, one of
            :data:`DISTORTIONS`: ``perspective`` (a photo of the page on a
            table), ``rotate`` (90, 180 or 270 degrees), ``skew`` (2-15
            degrees), ``curl`` (a book page bending up to its spine), ``curl-strong``
            (curled over most of its width, long lines bending all along); or
            ``"all"``, one sub-folder of ``pages`` pages per distortion. The
            text stays the flat page's; polygons move into the warped pixels and
            each page's ``distortion`` entry says what was done. Not with
            pdf-text.
        anomaly: invoices only: draw every invoice with one of :data:`ANOMALIES`:
            ``no-total`` (no total line), ``two-totals`` (a total and a later,
            different "Amount due"/"Balance due"), ``amounts-mismatch`` (the
            printed total is off by 1-9.99 from subtotal, shipping and tax),
            ``date-order`` (the document date in the other numeric order than
            the locale's, day and month <= 12). The JSON says ``anomaly`` and
            ``expected_review`` (the reasons a reviewer should raise). Drawn
            from a stream of their own: the rest of each invoice is as without.

    Invoice JSON files also hold the true fields (:data:`INVOICE_FIELDS`):
    ``fields`` (normalised: ISO dates, amounts like ``"1234.56"``, ISO 4217
    currency, text whitespace-normalised, address lines joined by ", "; only
    the fields printed), ``fields_raw`` (as drawn), ``line_items``
    (description, quantity, unit_price, amount), ``locale`` (the supplier's:
    us, uk, de, fr, nl) and where they apply ``other_amounts`` (``shipping``:
    total = subtotal + shipping + tax), ``conflicts``/``conflicts_raw`` (a
    field printed with different values), ``date_order`` (``DMY``, ``MDY`` or
    ``YMD`` of the numeric dates), ``date_order_fields`` (a date printed in
    another order) and ``invoice_per_page``: each page of a multi-page invoice
    document is an invoice of its own, and every page entry has its own
    ``fields``, ``fields_raw``, ``line_items``, ...; the document's ``fields``
    hold what all pages agree on, ``conflicts`` the rest.

    Returns:
        Paths of the written documents (not of the JSON files), in order.

    Raises:
        ValueError: unknown kind or format, ``pages < 1``, negative seed,
            a dpi outside 50-600, ``distort`` with pdf-text among the formats,
            or an unknown ``anomaly`` or one for another kind than invoice.
        RuntimeError: no TrueType font is installed.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown kind {kind!r}; expected one of {', '.join(KINDS)}")
    if isinstance(pages, bool) or not isinstance(pages, int) or pages < 1:
        raise ValueError(f"pages must be an integer >= 1, got {pages!r}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    if not 50 <= int(dpi) <= 600:
        raise ValueError(f"dpi must be between 50 and 600, got {dpi!r}")
    dpi = int(dpi)
    fmts = _normalise_formats(formats)
    if distort is not None and distort not in (*DISTORTIONS, "all"):
        raise ValueError(f"unknown distortion {distort!r}; expected one of {', '.join(DISTORTIONS)}, all")
    if distort is not None and any(f in _BORN_DIGITAL for f in fmts):
        raise ValueError(f"distort={distort!r} cannot be combined with pdf-text: born-digital PDFs are never distorted")
    if anomaly is not None and anomaly not in ANOMALIES:
        raise ValueError(f"unknown anomaly {anomaly!r}; expected one of {', '.join(ANOMALIES)}")
    if anomaly is not None and kind != "invoice":
        raise ValueError(f"anomaly={anomaly!r} is for invoices only, not kind={kind!r}")
    _families()  # fail early, before writing anything, when no font exists
    if distort == "all":
        return [
            p
            for d in DISTORTIONS
            for p in generate(Path(dest) / d, pages, kind, seed, fmts, damage, dpi, d, anomaly=anomaly)
        ]

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    plan = random.Random(seed)
    written: list[Path] = []
    remaining = pages
    i = 0
    while remaining > 0:
        fmt = fmts[i % len(fmts)]
        n = min(plan.randint(1, _MAX_PAGES_PER_DOC), remaining) if fmt in _MULTI_PAGE else 1
        written.append(_write_document(dest, kind, seed, i, fmt, n, damage, dpi, distort, anomaly))
        remaining -= n
        i += 1
    log.info("synth: wrote %d %s documents (%d pages) to %s", len(written), kind, pages, dest)
    return written


def _write_document(
    dest: Path, kind: str, seed: int, index: int, fmt: str, npages: int, damage: bool, dpi: int,
    distort: str | None = None, anomaly: str | None = None,
) -> Path:
    # Independent streams per document, so a document does not change when
    # an earlier one gets another page count.
    rnd = random.Random(seed * 1_000_003 + index)
    nrng = np.random.default_rng([seed, index])
    st = _pick_style(kind, rnd, dpi)
    doc = _LAYOUTS[kind][0](rnd)
    if anomaly is not None:
        doc["anomaly"] = anomaly
        doc["arnd"] = random.Random(f"folio-synth-anomaly/{anomaly}/{seed}/{index}")
    # distortions draw from their own stream: the flat pages match those of the same seed without them
    drng = np.random.default_rng([seed, index, 7])
    if fmt in _BORN_DIGITAL:
        damage = False  # born-digital files are clean (the scan damage draws from nrng only: same content)
    images, gts, canvases = [], [], []
    for p in range(npages):
        im, gt, canvas = _render_page(kind, st, doc, rnd, nrng, p, npages, damage)
        if distort is not None:
            im, gt = _distort(im, gt, distort, drng)
        images.append(im)
        gts.append(gt)
        canvases.append(canvas)
    stem = f"{kind}_{seed:04d}_{index:04d}"
    path = dest / f"{stem}.{_EXT[fmt]}"
    _save(images, path, fmt, dpi, rnd, canvases)
    meta = {
        "doc": stem,
        "kind": kind,
        "file": path.name,
        "format": fmt,
        "seed": seed,
        "damaged": bool(damage),
        "dpi": dpi,
        "pages": gts,
    }
    if distort is not None:
        meta["distort"] = distort
    if kind == "invoice":
        meta.update(_invoice_truth(gts, doc))
    (dest / f"{stem}.json").write_text(json.dumps(meta, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    log.debug("synth: %s (%d pages, fonts %s/%s)", path.name, npages, st.body.name, st.head.name)
    return path


def _main(argv: Sequence[str] | None = None) -> int:
    """``python -m measure.synth DEST --pages N --kind K``: write a test set."""
    ap = argparse.ArgumentParser(prog="python -m measure.synth", description=__doc__.splitlines()[0])
    ap.add_argument("dest")
    ap.add_argument("--pages", type=int, default=10)
    ap.add_argument("--kind", choices=KINDS, default="invoice")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--formats", default="png,tiff,pdf", help="comma-separated, from " + ",".join(FORMATS))
    ap.add_argument("--clean", action="store_true", help="no scan damage")
    ap.add_argument("--dpi", type=int, default=150)
    ap.add_argument("--distort", choices=(*DISTORTIONS, "all"), default=None)
    ap.add_argument("--anomaly", choices=tuple(ANOMALIES), default=None, help="invoices only: draw them with it")
    a = ap.parse_args(argv)
    if a.anomaly is not None and a.kind != "invoice":
        ap.error("--anomaly needs --kind invoice")
    paths = generate(
        a.dest, a.pages, a.kind, a.seed, a.formats.split(","), not a.clean, a.dpi, a.distort, anomaly=a.anomaly
    )
    for p in paths:
        print(p)
    return 0


if __name__ == "__main__":
    raise SystemExit(_main())
