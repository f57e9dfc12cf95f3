"""PDFs of every kind a born-digital reader must tell apart, built as bytes.

Folio reads the text of a born-digital page from the file (PDFium's text
page) and OCRs everything else. Telling the kinds apart is the hard part, so
this module builds one small, deterministic PDF of each:

* :func:`born_digital_pdf`: visible Helvetica text, the page to read from the file;
* :func:`scanned_pdf`: a full-page greyscale image and no text operators;
* :func:`scanned_with_ocr_layer_pdf`: that image under an invisible (``3 Tr``)
  text layer, as another program's OCR leaves it (and the layer may lie);
* :func:`mixed_pdf`: visible text in the upper half, an image holding text in the lower half;
* lying text layers, whose text must not be trusted: :func:`wrong_tounicode_pdf`
  (shifted ``/ToUnicode``), :func:`private_use_pdf` (``/ToUnicode`` into U+E000..),
  :func:`white_text_pdf` (white-on-white text), :func:`offpage_text_pdf` (text
  far outside the ``/MediaBox``) and :func:`no_unicode_pdf` (an embedded subset
  font with no ``/ToUnicode`` and no encoding);
* sizes: :func:`many_pages_pdf` (10,000 pages sharing one content stream) and
  :func:`dense_text_pdf` (200,000 characters on one page).

Layout: pages are A4 portrait (:data:`PAGE_WIDTH` x :data:`PAGE_HEIGHT` points)
unless a builder says otherwise. Coordinates are PDF user space (points, origin
at the bottom-left corner, y up). Text line ``i`` (0-based) starts at
``x = 72`` and sits on the baseline :func:`baseline_y` ``(i, font_size)`` =
``842 - 72 - font_size - 20 * i`` (759, 739, 719, ... at 11 pt): its em box
hangs from the 72 pt top margin and lines are 20 pt apart. PDFium's boxes of
Helvetica's ASCII glyphs lie between ``baseline - 0.22 * font_size`` (the
descender of ``g``) and ``baseline + 0.78 * font_size`` (``$``; capitals and
ascenders reach 0.73). Images of text are drawn with Liberation
Sans, which has Helvetica's metrics, at the same baselines and size, so an
image line covers the same box as the Helvetica line would (DejaVu Sans is the
fallback when Liberation is not installed: same baselines, wider lines).

Text is Helvetica, the standard 14 font (``/Type1``, ``/WinAnsiEncoding``, not
embedded: PDFium has its metrics), except in :func:`no_unicode_pdf`. Lines are
encoded as Windows-1252; a character outside it raises ``ValueError``. Each
line is one ``Tj``.

Every builder is deterministic: the same arguments give byte-identical files on
the same machine (no dates, ``deterministic_id``; the TrueType font found on the
machine and the Pillow/FreeType that rasterises it are part of the input).

Example::

    from measure.pdfkinds import born_digital_pdf, scanned_with_ocr_layer_pdf
    Path("doc.pdf").write_bytes(born_digital_pdf(["Invoice number 2024-0117"]))
    Path("ocrd.pdf").write_bytes(scanned_with_ocr_layer_pdf(layer_lines=["Some other page"]))
"""

from __future__ import annotations

import functools
import importlib.util
import io
import math
import zlib
from collections.abc import Sequence
from pathlib import Path

import pikepdf
from PIL import Image, ImageDraw, ImageFont

__all__ = [
    "DEFAULT_HIDDEN_LINES",
    "DEFAULT_IMAGE_LINES",
    "DEFAULT_LINES",
    "DEFAULT_OUTSIDE_LINES",
    "LINE_PITCH",
    "MARGIN",
    "MIXED_IMAGE_BOX",
    "MIXED_IMAGE_FONT_SIZE",
    "MIXED_IMAGE_INSET",
    "MIXED_IMAGE_PITCH",
    "PAGE_HEIGHT",
    "PAGE_WIDTH",
    "baseline_y",
    "born_digital_pdf",
    "dense_text_pdf",
    "many_pages_pdf",
    "max_lines",
    "mixed_pdf",
    "no_unicode_pdf",
    "offpage_text_pdf",
    "private_use_pdf",
    "scanned_pdf",
    "scanned_with_ocr_layer_pdf",
    "text_font_path",
    "white_text_pdf",
    "wrong_tounicode_pdf",
]

#: A4 portrait, in points.
PAGE_WIDTH = 595.0
PAGE_HEIGHT = 842.0
#: Left and top margin of the text lines, in points.
MARGIN = 72.0
#: Distance between the baselines of consecutive lines, in points.
LINE_PITCH = 20.0

#: The text lines a builder draws when given none: invoice-like, plain ASCII.
DEFAULT_LINES: tuple[str, ...] = (
    "Invoice number 2024-0117",
    "Date 17 January 2024",
    "Bill to Example Trading Ltd",
    "Consulting services 12 hours",
    "Travel expenses EUR 210.00",
    "Total due EUR 1,234.56",
)
#: What the embedded image of :func:`mixed_pdf` shows by default (a received stamp).
DEFAULT_IMAGE_LINES: tuple[str, ...] = ("RECEIVED 2024-02-03", "Approved for payment", "Ref PO-88213")
#: The white-on-white lines of :func:`white_text_pdf` by default.
DEFAULT_HIDDEN_LINES: tuple[str, ...] = ("Total due EUR 0.00", "Payment received in full")
#: The lines :func:`offpage_text_pdf` puts outside the page by default.
DEFAULT_OUTSIDE_LINES: tuple[str, ...] = ("Account 9999 0000 1111", "Total due EUR 99,999.00")

#: Where :func:`mixed_pdf` places its image: (left, bottom, right, top) in points, in the lower half.
MIXED_IMAGE_BOX: tuple[float, float, float, float] = (72.0, 120.0, 523.0, 360.0)
#: Size (points) of the text inside the image of :func:`mixed_pdf`, as it appears on the page.
MIXED_IMAGE_FONT_SIZE = 14.0
#: Baseline pitch (points) of the lines inside the image of :func:`mixed_pdf`.
MIXED_IMAGE_PITCH = 24.0
#: Distance (points) from the image's left and top edges to its first line's start and em box.
MIXED_IMAGE_INSET = 18.0

_FONT_DIRS = (
    "/usr/share/fonts/truetype/liberation",
    "/usr/share/fonts/truetype/liberation2",
    "/usr/share/fonts/truetype/dejavu",
)
# Liberation Sans first: its advance widths are Helvetica's, so images line up with Helvetica layers.
_FONT_FILES = ("LiberationSans-Regular.ttf", "DejaVuSans.ttf")
_FONT_PACKAGES = "fonts-liberation fonts-dejavu-core"


# --------------------------------------------------------------------------- layout


def baseline_y(i: int, font_size: float = 11.0, page_height: float = PAGE_HEIGHT) -> float:
    """The baseline of text line ``i`` (0-based), in points from the bottom of the page.

    Args:
        i: line index; the first line is 0.
        font_size: font size in points: the first line's em box hangs from the top margin.
        page_height: page height in points.

    Returns:
        ``page_height - 72 - font_size - 20 * i``.
    """
    return page_height - MARGIN - font_size - LINE_PITCH * i


def max_lines(font_size: float = 11.0, page_height: float = PAGE_HEIGHT) -> int:
    """How many lines fit on a page: the last baseline stays at or above the 72 pt bottom margin.

    Args:
        font_size: font size in points.
        page_height: page height in points.

    Returns:
        The number of lines (35 on A4 at 11 pt).
    """
    return int((page_height - 2 * MARGIN - font_size) // LINE_PITCH) + 1


def _check_fit(n: int, font_size: float, bottom: float = MARGIN) -> None:
    if n and baseline_y(n - 1, font_size) < bottom:
        raise ValueError(f"{n} lines of {font_size} pt do not fit above y={bottom:g} pt on the page")


# --------------------------------------------------------------------------- PDF plumbing


def _encode(line: str) -> bytes:
    try:
        return line.encode("cp1252")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{line!r} has a character outside WinAnsiEncoding (Windows-1252)") from exc


def _literal(data: bytes) -> bytes:
    """``data`` as a PDF literal string: parentheses and backslashes escaped, bytes outside ASCII in octal."""
    out = bytearray(b"(")
    for byte in data:
        if byte in b"()\\":
            out += b"\\" + bytes([byte])
        elif 32 <= byte < 127:
            out.append(byte)
        else:
            out += b"\\%03o" % byte
    out += b")"
    return bytes(out)


def _num(x: float) -> bytes:
    """A number as content streams write it: at most 3 decimals, no trailing zeros."""
    text = f"{x:.3f}".rstrip("0").rstrip(".")
    return (text if text not in ("-0", "") else "0").encode()


def _text_block(
    placed: Sequence[tuple[float, float, bytes]],
    font_size: float,
    font: bytes = b"/F1",
    render_mode: int | None = None,
    fill: bytes | None = None,
) -> bytes:
    """A ``BT .. ET`` block drawing each (x, y, string) with one ``Tm`` and one ``Tj``.

    ``fill`` is a colour operator (``b"0 g"``, ``b"1 1 1 rg"``); ``render_mode`` a ``Tr`` operand.
    """
    if not placed:
        return b""
    ops = [b"BT", b"%s %s Tf" % (font, _num(font_size))]
    if fill is not None:
        ops.append(fill)
    if render_mode is not None:
        ops.append(b"%d Tr" % render_mode)
    for x, y, data in placed:
        ops.append(b"1 0 0 1 %s %s Tm %s Tj" % (_num(x), _num(y), _literal(data)))
    ops.append(b"ET")
    return b"\n".join(ops) + b"\n"


def _lines_at(lines: Sequence[str], font_size: float, first: int = 0, x: float = MARGIN) -> list[tuple]:
    """Each line placed at ``x`` on the baseline of line ``first + k``."""
    return [(x, baseline_y(first + k, font_size), _encode(line)) for k, line in enumerate(lines)]


def _helvetica(pdf: pikepdf.Pdf, to_unicode: bytes | None = None) -> pikepdf.Object:
    font = pikepdf.Dictionary(
        Type=pikepdf.Name.Font,
        Subtype=pikepdf.Name.Type1,
        BaseFont=pikepdf.Name.Helvetica,
        Encoding=pikepdf.Name.WinAnsiEncoding,
    )
    if to_unicode is not None:
        font.ToUnicode = pikepdf.Stream(pdf, to_unicode)
    return pdf.make_indirect(font)


def _resources(
    font: pikepdf.Object | None = None, images: dict[str, pikepdf.Object] | None = None
) -> pikepdf.Dictionary:
    res = pikepdf.Dictionary()
    if font is not None:
        res.Font = pikepdf.Dictionary(F1=font)
    if images:
        res.XObject = pikepdf.Dictionary({"/" + name: im for name, im in images.items()})
    return res


def _add_page(
    pdf: pikepdf.Pdf,
    content: bytes,
    resources: pikepdf.Dictionary,
    size: tuple[float, float] = (PAGE_WIDTH, PAGE_HEIGHT),
) -> None:
    page = pdf.add_blank_page(page_size=size)
    page.obj.Resources = resources
    page.obj.Contents = pdf.make_stream(content)


def _save(pdf: pikepdf.Pdf, **options) -> bytes:
    buf = io.BytesIO()
    pdf.save(buf, deterministic_id=True, **options)
    return buf.getvalue()


def _bfrange_cmap(ranges: Sequence[tuple[int, int, int]]) -> bytes:
    """A ``/ToUnicode`` CMap for one-byte codes: each (first, last, unicode) maps first..last to unicode..."""
    body = "\n".join(f"<{lo:02X}> <{hi:02X}> <{u:04X}>" for lo, hi, u in ranges)
    return (
        "/CIDInit /ProcSet findresource begin\n12 dict begin\nbegincmap\n"
        "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def\n"
        "/CMapName /Adobe-Identity-UCS def\n/CMapType 2 def\n"
        "1 begincodespacerange\n<00> <FF>\nendcodespacerange\n"
        f"{len(ranges)} beginbfrange\n{body}\nendbfrange\n"
        "endcmap\nCMapName currentdict /CMap defineresource pop\nend\nend\n"
    ).encode("ascii")


# --------------------------------------------------------------------------- images of text


def _font_dirs() -> list[Path]:
    dirs = [Path(d) for d in _FONT_DIRS]
    spec = importlib.util.find_spec("matplotlib")  # matplotlib bundles DejaVu Sans
    if spec is not None and spec.origin:
        dirs.append(Path(spec.origin).parent / "mpl-data" / "fonts" / "ttf")
    return dirs


@functools.lru_cache(maxsize=1)
def text_font_path() -> str:
    """The TrueType font that images of text (and :func:`no_unicode_pdf`) are drawn with.

    Liberation Sans Regular (Helvetica's metrics) if installed, else DejaVu Sans.

    Returns:
        The font file's path.

    Raises:
        RuntimeError: neither is installed; the message names the Debian packages.
    """
    for name in _FONT_FILES:
        for d in _font_dirs():
            if (d / name).is_file():
                return str(d / name)
    raise RuntimeError(
        f"measure.pdfkinds needs {' or '.join(_FONT_FILES)} (looked in {', '.join(_FONT_DIRS)} and "
        f"matplotlib's mpl-data); install them with: apt-get install -y {_FONT_PACKAGES}"
    )


@functools.lru_cache(maxsize=32)
def _pil_font(size_px: float) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(text_font_path(), size=size_px)


def _text_image(
    width_pt: float,
    height_pt: float,
    dpi: float,
    placed: Sequence[tuple[float, float, str]],
    font_size: float,
    border_px: int = 0,
) -> Image.Image:
    """A white greyscale image of ``width_pt`` x ``height_pt`` at ``dpi`` with black text.

    ``placed`` holds (x, baseline y, text) in points relative to the image's bottom-left corner.
    """
    if dpi <= 0:
        raise ValueError("dpi must be > 0")
    w_px, h_px = max(1, round(width_pt * dpi / 72)), max(1, round(height_pt * dpi / 72))
    sx, sy = w_px / width_pt, h_px / height_pt  # pixels per point (the image is stretched onto the box)
    im = Image.new("L", (w_px, h_px), 255)
    draw = ImageDraw.Draw(im)
    if border_px:
        draw.rectangle([0, 0, w_px - 1, h_px - 1], outline=0, width=border_px)
    font = _pil_font(font_size * sy)
    for x, y, text in placed:
        draw.text((x * sx, (height_pt - y) * sy), text, fill=0, font=font, anchor="ls")
    return im


def _image_xobject(pdf: pikepdf.Pdf, im: Image.Image) -> pikepdf.Object:
    """``im`` (mode L) as a Flate-compressed DeviceGray image XObject."""
    stream = pikepdf.Stream(pdf, zlib.compress(im.tobytes(), 6))
    stream.Type = pikepdf.Name.XObject
    stream.Subtype = pikepdf.Name.Image
    stream.Width, stream.Height = im.size
    stream.ColorSpace = pikepdf.Name.DeviceGray
    stream.BitsPerComponent = 8
    stream.Filter = pikepdf.Name.FlateDecode
    return pdf.make_indirect(stream)


def _draw_image(box: tuple[float, float, float, float]) -> bytes:
    left, bottom, right, top = box
    return b"q %s 0 0 %s %s %s cm /Im0 Do Q\n" % (_num(right - left), _num(top - bottom), _num(left), _num(bottom))


def _scan(pdf: pikepdf.Pdf, lines: Sequence[str], dpi: float, font_size: float) -> pikepdf.Object:
    """The full-page image of ``lines`` at the born-digital layout."""
    for line in lines:
        _encode(line)  # the same characters every builder accepts
    placed = [(MARGIN, baseline_y(i, font_size), line) for i, line in enumerate(lines)]
    return _image_xobject(pdf, _text_image(PAGE_WIDTH, PAGE_HEIGHT, dpi, placed, font_size))


# --------------------------------------------------------------------------- born-digital, scanned, mixed


def born_digital_pdf(lines: Sequence[str] = DEFAULT_LINES, pages: int = 1, font_size: float = 11.0) -> bytes:
    """Visible Helvetica text: the page Folio should read from the file.

    Every page draws ``lines`` in black (``0 g``, render mode 0), one ``Tj``
    each: line ``i`` starts at x = 72 pt on the baseline ``842 - 72 -
    font_size - 20 * i`` (759, 739, ... at 11 pt). When ``pages > 1`` each
    page also has a footer ``Page k of n`` (k from 1) at x = 72 pt, baseline
    y = 36 pt, in the same font, so pages can be told apart. PDFium extracts
    each page as the lines joined by ``"\\r\\n"`` (then the footer).

    Args:
        lines: the text lines (Windows-1252 characters); at most :func:`max_lines` of them.
        pages: number of pages, at least 1.
        font_size: Helvetica size in points.

    Returns:
        The PDF file's bytes.

    Raises:
        ValueError: too many lines, a character outside Windows-1252, or ``pages < 1``.
    """
    if pages < 1:
        raise ValueError("pages must be >= 1")
    _check_fit(len(lines), font_size)
    pdf = pikepdf.Pdf.new()
    res = _resources(_helvetica(pdf))
    body = _text_block(_lines_at(lines, font_size), font_size, fill=b"0 g")
    for k in range(1, pages + 1):
        footer = _text_block([(MARGIN, 36.0, b"Page %d of %d" % (k, pages))], font_size) if pages > 1 else b""
        _add_page(pdf, body + footer, res)
    return _save(pdf)


def scanned_pdf(lines: Sequence[str] = DEFAULT_LINES, dpi: float = 150, font_size: float = 11.0) -> bytes:
    """An image-only page: a full-page greyscale scan of ``lines``, no text operators at all.

    The image is ``round(595 * dpi / 72)`` x ``round(842 * dpi / 72)`` pixels
    (1240 x 1754 at 150 dpi), 8-bit DeviceGray, Flate-compressed, black text on
    white, stretched over the whole A4 page. The text is Liberation Sans (see
    :func:`text_font_path`) at ``font_size`` points (about 23 px em at 11 pt and
    150 dpi), line ``i`` starting at x = 72 pt on the baseline ``842 - 72 -
    font_size - 20 * i`` points: where :func:`born_digital_pdf` draws it.
    PDFium extracts no characters.

    Args:
        lines: the text lines; at most :func:`max_lines` of them.
        dpi: resolution of the scan.
        font_size: size of the text in points, as it appears on the page.

    Returns:
        The PDF file's bytes.

    Raises:
        ValueError: too many lines, a character outside Windows-1252, or ``dpi <= 0``.
    """
    _check_fit(len(lines), font_size)
    pdf = pikepdf.Pdf.new()
    image = _scan(pdf, lines, dpi, font_size)
    _add_page(pdf, _draw_image((0, 0, PAGE_WIDTH, PAGE_HEIGHT)), _resources(images={"Im0": image}))
    return _save(pdf)


def scanned_with_ocr_layer_pdf(
    lines: Sequence[str] = DEFAULT_LINES,
    layer_lines: Sequence[str] | None = None,
    dpi: float = 150,
    font_size: float = 11.0,
) -> bytes:
    """The page of :func:`scanned_pdf` with an invisible text layer over it, as another OCR program leaves it.

    The image is drawn first, then one ``BT`` block in Helvetica with render
    mode 3 (``3 Tr``, invisible: neither filled nor stroked): ``layer_lines[i]``
    at x = 72 pt on the baseline ``842 - 72 - font_size - 20 * i``, the line the
    image shows there (Liberation Sans has Helvetica's widths, so the layer's
    boxes cover the image's words). A layer with more lines than the image goes
    on down the page at the same pitch. ``layer_lines`` lets the layer lie
    (another page's OCR, an older version of the document). PDFium extracts
    the layer lines joined by ``"\\r\\n"``; every character's text object has
    render mode ``FPDF_TEXTRENDERMODE_INVISIBLE``.

    Args:
        lines: what the image shows; at most :func:`max_lines` lines.
        layer_lines: what the text layer says; ``None``: the same as ``lines``.
        dpi: resolution of the scan.
        font_size: size of the text in points, in the image and in the layer.

    Returns:
        The PDF file's bytes.

    Raises:
        ValueError: too many lines, a character outside Windows-1252, or ``dpi <= 0``.
    """
    layer = list(lines if layer_lines is None else layer_lines)
    _check_fit(max(len(lines), len(layer)), font_size)
    pdf = pikepdf.Pdf.new()
    image = _scan(pdf, lines, dpi, font_size)
    content = _draw_image((0, 0, PAGE_WIDTH, PAGE_HEIGHT)) + _text_block(
        _lines_at(layer, font_size), font_size, render_mode=3
    )
    _add_page(pdf, content, _resources(_helvetica(pdf), images={"Im0": image}))
    return _save(pdf)


def mixed_pdf(
    lines: Sequence[str] = DEFAULT_LINES,
    image_lines: Sequence[str] = DEFAULT_IMAGE_LINES,
    dpi: float = 150,
) -> bytes:
    """Visible Helvetica text in the upper half, and an image holding more text in the lower half.

    ``lines`` are drawn as in :func:`born_digital_pdf` at 11 pt (line ``i`` at
    x = 72 pt, baseline ``759 - 20 * i``); they must stay in the upper half (at
    most 17 lines: the last baseline at or above 421 pt). The image (a received
    stamp, or a scanned attachment) fills :data:`MIXED_IMAGE_BOX`, (72, 120) to
    (523, 360) pt, at ``dpi`` (940 x 500 px at 150 dpi, DeviceGray): white with a
    black 3 px frame, and ``image_lines`` in black Liberation Sans 14 pt (about
    29 px em at 150 dpi), line ``j`` starting at x = 90 pt on the page baseline
    ``360 - 18 - 14 - 24 * j`` (328, 304, 280, ...; at most 8 lines). There is no
    text layer over the image: PDFium extracts ``lines`` only, and only OCR of
    the image region finds ``image_lines``.

    Args:
        lines: the visible text lines of the upper half.
        image_lines: the text the image shows.
        dpi: resolution of the image.

    Returns:
        The PDF file's bytes.

    Raises:
        ValueError: too many lines for either half, a character outside Windows-1252, or ``dpi <= 0``.
    """
    font_size = 11.0
    _check_fit(len(lines), font_size, bottom=PAGE_HEIGHT / 2)
    left, bottom, right, top = MIXED_IMAGE_BOX
    width, height = right - left, top - bottom
    inset, size, pitch = MIXED_IMAGE_INSET, MIXED_IMAGE_FONT_SIZE, MIXED_IMAGE_PITCH
    placed = [(inset, height - inset - size - pitch * j, line) for j, line in enumerate(image_lines)]
    if placed and placed[-1][1] < inset:
        raise ValueError(f"{len(image_lines)} image lines do not fit in the image")
    for line in image_lines:
        _encode(line)
    pdf = pikepdf.Pdf.new()
    image = _image_xobject(pdf, _text_image(width, height, dpi, placed, size, border_px=3))
    content = _text_block(_lines_at(lines, font_size), font_size, fill=b"0 g") + _draw_image(MIXED_IMAGE_BOX)
    _add_page(pdf, content, _resources(_helvetica(pdf), images={"Im0": image}))
    return _save(pdf)


# --------------------------------------------------------------------------- lying text layers


def _one_font_page(lines: Sequence[str], font: pikepdf.Object, pdf: pikepdf.Pdf, encode=_encode) -> bytes:
    font_size = 11.0
    _check_fit(len(lines), font_size)
    placed = [(MARGIN, baseline_y(i, font_size), encode(line)) for i, line in enumerate(lines)]
    _add_page(pdf, _text_block(placed, font_size, fill=b"0 g"), _resources(font))
    return _save(pdf)


def wrong_tounicode_pdf(lines: Sequence[str] = DEFAULT_LINES) -> bytes:
    """Helvetica text whose ``/ToUnicode`` shifts every printable ASCII character to the next one.

    The page looks exactly like :func:`born_digital_pdf` ``(lines)`` (same
    font, codes, positions: renders are pixel-identical), but the font's
    ``/ToUnicode`` CMap maps each code 0x21..0x7D to the next character and
    0x7E (``~``) to ``!``; the space (0x20) and codes outside 0x21..0x7E are not
    in the CMap, so PDFium falls back to WinAnsiEncoding for them. PDFium
    honours the CMap: ``Invoice number 2024-0117`` extracts as ``Jowpjdf
    ovncfs 3135.1228``, with ``FPDFText_HasUnicodeMapError`` 0 on every
    character (the mapping is valid, just wrong).

    Args:
        lines: the text the page shows; at most :func:`max_lines` lines of 11 pt.

    Returns:
        The PDF file's bytes.

    Raises:
        ValueError: too many lines or a character outside Windows-1252.
    """
    pdf = pikepdf.Pdf.new()
    cmap = _bfrange_cmap([(0x21, 0x7D, 0x22), (0x7E, 0x7E, 0x21)])
    return _one_font_page(lines, _helvetica(pdf, to_unicode=cmap), pdf)


def private_use_pdf(lines: Sequence[str] = DEFAULT_LINES) -> bytes:
    """Helvetica text whose ``/ToUnicode`` maps every code ``c`` (0x00..0xFF) to U+E000 + c, private use.

    Renders like :func:`born_digital_pdf` ``(lines)``; PDFium extracts one
    private-use character per drawn character, spaces included (``I`` gives
    U+E049, a space U+E020), with ``FPDFText_HasUnicodeMapError`` 0. Only the
    ``"\\r\\n"`` PDFium generates between lines is not in U+E000..U+F8FF.

    Args:
        lines: the text the page shows; at most :func:`max_lines` lines of 11 pt.

    Returns:
        The PDF file's bytes.

    Raises:
        ValueError: too many lines or a character outside Windows-1252.
    """
    pdf = pikepdf.Pdf.new()
    return _one_font_page(lines, _helvetica(pdf, to_unicode=_bfrange_cmap([(0x00, 0xFF, 0xE000)])), pdf)


def white_text_pdf(lines: Sequence[str] = DEFAULT_LINES, hidden_lines: Sequence[str] = DEFAULT_HIDDEN_LINES) -> bytes:
    """Visible black lines plus white-on-white lines that no reader of the page can see.

    ``lines`` are black (``0 g``), line ``i`` at x = 72 pt on the baseline
    ``759 - 20 * i`` (11 pt Helvetica); ``hidden_lines`` follow at the same
    pitch (hidden line ``j`` on the baseline of line ``len(lines) + j``) in a
    second ``BT`` block filled white (``1 1 1 rg``, render mode 0) on the white
    page: the render is identical to :func:`born_digital_pdf` ``(lines)``.
    PDFium extracts both, the hidden lines last; ``FPDFText_GetFillColor`` is
    (255, 255, 255, 255) on the hidden characters and (0, 0, 0, 255) on the others.

    Args:
        lines: the visible text lines.
        hidden_lines: the invisible ones; together at most :func:`max_lines` lines.

    Returns:
        The PDF file's bytes.

    Raises:
        ValueError: too many lines or a character outside Windows-1252.
    """
    font_size = 11.0
    _check_fit(len(lines) + len(hidden_lines), font_size)
    hidden = _text_block(_lines_at(hidden_lines, font_size, first=len(lines)), font_size, fill=b"1 1 1 rg")
    pdf = pikepdf.Pdf.new()
    content = _text_block(_lines_at(lines, font_size), font_size, fill=b"0 g") + hidden
    _add_page(pdf, content, _resources(_helvetica(pdf)))
    return _save(pdf)


def offpage_text_pdf(
    lines: Sequence[str] = DEFAULT_LINES,
    outside_lines: Sequence[str] = DEFAULT_OUTSIDE_LINES,
    outside_x: float = 5000.0,
) -> bytes:
    """Visible lines plus lines drawn far to the right of the ``/MediaBox`` (0 0 595 842).

    ``lines`` as in :func:`born_digital_pdf` (x = 72 pt, baseline ``759 - 20 *
    i``, 11 pt Helvetica, black); ``outside_lines[j]`` starts at x =
    ``outside_x`` (5000 pt: beyond the right edge at 595) on the baseline of
    line ``len(lines) + j``, also black. No viewer shows them (the render equals
    :func:`born_digital_pdf` ``(lines)``), but PDFium's text page keeps them:
    it extracts them after ``lines``, with char boxes whose left edge is at or
    beyond ``outside_x``.

    Args:
        lines: the visible text lines.
        outside_lines: the lines outside the page; together at most :func:`max_lines` lines.
        outside_x: where the outside lines start, in points (any x outside 0..595 hides them).

    Returns:
        The PDF file's bytes.

    Raises:
        ValueError: too many lines or a character outside Windows-1252.
    """
    font_size = 11.0
    _check_fit(len(lines) + len(outside_lines), font_size)
    placed = _lines_at(lines, font_size) + _lines_at(outside_lines, font_size, first=len(lines), x=outside_x)
    pdf = pikepdf.Pdf.new()
    _add_page(pdf, _text_block(placed, font_size, fill=b"0 g"), _resources(_helvetica(pdf)))
    return _save(pdf)


def _subset_truetype(
    chars: Sequence[str], codes: dict[str, int], mac_cmap: bool
) -> tuple[bytes, dict[str, int], dict[str, object]]:
    """The text font subset to ``chars``, reachable only through one-byte codes, glyph names dropped.

    Returns the font file, each character's advance width (1/1000 em) and the
    ``/FontDescriptor`` metrics (1/1000 em). The subset has a (3,0) symbol cmap
    (0xF000 + code), which is how PDFium finds the glyphs of a symbolic TrueType
    font without ``/Encoding``, and with ``mac_cmap`` a (1,0) Mac cmap (code)
    too; no (3,1) Unicode cmap and a format 3 ``post`` table (no glyph names).
    """
    from fontTools import subset
    from fontTools.ttLib import TTFont
    from fontTools.ttLib.tables._c_m_a_p import cmap_format_0, cmap_format_4

    font = TTFont(text_font_path())
    best = font.getBestCmap()
    missing = [ch for ch in chars if ord(ch) not in best]
    if missing:
        raise ValueError(f"the text font has no glyph for {''.join(missing)!r}")
    names = {ch: best[ord(ch)] for ch in chars}
    upm = font["head"].unitsPerEm
    widths = {ch: round(font["hmtx"][names[ch]][0] * 1000 / upm) for ch in chars}

    options = subset.Options()
    options.glyph_names = False  # post format 3: no glyph names
    options.name_IDs = []
    options.hinting = False
    options.layout_features = []
    options.notdef_outline = True
    options.drop_tables += ["GSUB", "GPOS", "GDEF", "kern", "FFTM", "DSIG"]
    subsetter = subset.Subsetter(options)
    subsetter.populate(glyphs=sorted(set(names.values())))
    subsetter.subset(font)

    symbol = cmap_format_4(4)
    symbol.platformID, symbol.platEncID, symbol.language = 3, 0, 0
    symbol.cmap = {0xF000 + codes[ch]: names[ch] for ch in chars}
    mac = cmap_format_0(0)
    mac.platformID, mac.platEncID, mac.language = 1, 0, 0
    mac.cmap = {c: ".notdef" for c in range(256)}
    mac.cmap.update({codes[ch]: names[ch] for ch in chars})
    font["cmap"].tables = [mac, symbol] if mac_cmap else [symbol]
    font.recalcTimestamp = False  # keep head.modified: the file is the same on every call
    buf = io.BytesIO()
    font.save(buf)
    head, hhea, os2 = font["head"], font["hhea"], font.get("OS/2")
    scale = 1000 / upm
    metrics = {
        "FontBBox": [round(v * scale) for v in (head.xMin, head.yMin, head.xMax, head.yMax)],
        "Ascent": round(hhea.ascent * scale),
        "Descent": round(hhea.descent * scale),
        "CapHeight": round(getattr(os2, "sCapHeight", hhea.ascent) * scale),
    }
    return buf.getvalue(), widths, metrics


def no_unicode_pdf(lines: Sequence[str] = DEFAULT_LINES, first_code: int = 0x21, mac_cmap: bool = False) -> bytes:
    """Visible text in an embedded subset TrueType font that says nothing about which characters its glyphs are.

    The font is :func:`text_font_path` (Liberation Sans, so the layout is the
    Helvetica one) subset to the characters of ``lines`` and embedded
    (``/FontFile2``) as a symbolic simple ``/TrueType`` font with no
    ``/Encoding``, no ``/ToUnicode``, no glyph names and no Unicode cmap. Codes
    are assigned in order of first appearance, from ``first_code`` (the space
    gets a code like any other character). Line ``i`` is drawn in black 11 pt at
    x = 72 pt, baseline ``759 - 20 * i``; the glyphs render as the real letters.

    What PDFium extracts (default ``mac_cmap=False``): every drawn character has
    ``FPDFText_HasUnicodeMapError`` 1 and ``FPDFText_GetUnicode`` equal to its
    code (only the generated ``"\\r\\n"`` between lines is unflagged). With the
    default ``first_code`` 0x21 the text is printable garbage: ``Invoice number
    2024-0117`` extracts as ``!"#$%&'(")*+',(-.-/0.112`` (no spaces: the space
    glyph is a code too). With ``first_code=1`` it is control characters
    (U+0001 ...), and ``FPDFText_GetText`` silently drops U+0002 and U+0003
    (``FPDFText_GetUnicode`` still reports them).

    With ``mac_cmap=True`` the font also has a (1,0) Mac cmap, and PDFium then
    decodes the codes as MacRomanEncoding: codes 0x20 and up get that
    character with *no* map error (the default ``first_code`` gives the same
    ASCII garbage as above, unflagged; ``first_code=0x80`` turns ``Invoice``
    into ``ÄÅÇÉÑÖÜ``); only codes below 0x20 stay flagged. The rendering is
    the same either way.

    Args:
        lines: the text the page shows; at most :func:`max_lines` lines of 11 pt.
        first_code: the code of the first distinct character, 1..255.
        mac_cmap: give the font a (1,0) Mac cmap as well (see above).

    Returns:
        The PDF file's bytes.

    Raises:
        ValueError: too many lines, no character at all, more distinct
            characters than codes left after ``first_code``, or a character the font lacks.
    """
    font_size = 11.0
    _check_fit(len(lines), font_size)
    chars = list(dict.fromkeys("".join(lines)))
    if not chars:
        raise ValueError("no_unicode_pdf needs at least one character to draw")
    if not 1 <= first_code <= 255 or first_code + len(chars) - 1 > 255:
        raise ValueError(f"{len(chars)} distinct characters do not fit in one-byte codes from {first_code}")
    codes = {ch: first_code + k for k, ch in enumerate(chars)}
    font_file, widths, metrics = _subset_truetype(chars, codes, mac_cmap)
    pdf = pikepdf.Pdf.new()
    name = pikepdf.Name("/FOLIOA+Subset")
    file_stream = pikepdf.Stream(pdf, font_file)
    file_stream.Length1 = len(font_file)
    descriptor = pikepdf.Dictionary(
        Type=pikepdf.Name.FontDescriptor,
        FontName=name,
        Flags=4,  # symbolic
        ItalicAngle=0,
        StemV=80,
        FontFile2=pdf.make_indirect(file_stream),
        **metrics,
    )
    font = pikepdf.Dictionary(
        Type=pikepdf.Name.Font,
        Subtype=pikepdf.Name.TrueType,
        BaseFont=name,
        FirstChar=first_code,
        LastChar=first_code + len(chars) - 1,
        Widths=[widths[ch] for ch in chars],
        FontDescriptor=pdf.make_indirect(descriptor),
    )
    return _one_font_page(lines, pdf.make_indirect(font), pdf, encode=lambda line: bytes(codes[ch] for ch in line))


# --------------------------------------------------------------------------- sizes


def many_pages_pdf(n: int = 10_000, lines: Sequence[str] = DEFAULT_LINES) -> bytes:
    """A born-digital PDF of ``n`` identical pages that share one content stream, resources and font.

    Each page draws ``lines`` as :func:`born_digital_pdf` ``(lines)`` does
    (11 pt Helvetica, x = 72 pt, baseline ``759 - 20 * i``). The page
    dictionaries are written straight into one flat ``/Kids`` array and saved in
    object streams, so 10,000 pages take well under a second and about 100 KB.

    Args:
        n: number of pages, at least 1.
        lines: the text of every page; at most :func:`max_lines` lines.

    Returns:
        The PDF file's bytes.

    Raises:
        ValueError: ``n < 1``, too many lines, or a character outside Windows-1252.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    font_size = 11.0
    _check_fit(len(lines), font_size)
    pdf = pikepdf.Pdf.new()
    content = pdf.make_stream(_text_block(_lines_at(lines, font_size), font_size, fill=b"0 g"))
    resources = pdf.make_indirect(_resources(_helvetica(pdf)))
    root = pdf.Root.Pages
    media_box = pikepdf.Array([0, 0, PAGE_WIDTH, PAGE_HEIGHT])
    kids = [
        pdf.make_indirect(
            pikepdf.Dictionary(
                Type=pikepdf.Name.Page, Parent=root, MediaBox=media_box, Resources=resources, Contents=content
            )
        )
        for _ in range(n)
    ]
    root.Kids = pikepdf.Array(kids)
    root.Count = n
    return _save(pdf, object_stream_mode=pikepdf.ObjectStreamMode.generate)


_DENSE_WORDS = (
    "invoice", "number", "2024-0117", "date", "17", "january", "2024", "bill", "to", "example", "trading", "ltd",
    "consulting", "services", "12", "hours", "travel", "expenses", "eur", "210.00", "total", "due", "eur",
    "1,234.56", "reference", "po-88213", "paid",
)


def dense_text_pdf(chars: int = 200_000, font_size: float = 4.0) -> bytes:
    """One page holding ``chars`` characters of visible black Helvetica text (spaces included).

    The text cycles through lower-case invoice words and numbers and is cut
    into lines of ``L = max(60, ceil(sqrt(1.25 * chars)))`` characters (the
    last line shorter; a line may start or end with a space): ``L`` is 500 for 200,000 characters. Line ``i``
    starts at x = 36 pt on the baseline ``H - 36 - font_size - 1.25 *
    font_size * i``, one ``Tj`` per line. The page is ``W = 72 + L * font_size``
    wide (room for a line of the widest glyph) and ``H = 72 + 1.25 * font_size
    * lines`` high (2072 x 2072 pt for the default). PDFium counts ``chars``
    characters plus the ``"\\r\\n"`` it generates between lines.

    Args:
        chars: number of drawn characters, at least 1.
        font_size: Helvetica size in points.

    Returns:
        The PDF file's bytes.

    Raises:
        ValueError: ``chars < 1``, or a page side would exceed 14,400 pt (the PDF limit).
    """
    if chars < 1:
        raise ValueError("chars must be >= 1")
    leading = 1.25 * font_size
    per_line = max(60, math.ceil(math.sqrt(chars * leading / font_size)))
    n_lines = math.ceil(chars / per_line)
    width, height = 72 + per_line * font_size, 72 + leading * n_lines
    if max(width, height) > 14_400:
        raise ValueError(f"{chars} characters at {font_size} pt need a {width:g} x {height:g} pt page (> 14,400)")
    words = (_DENSE_WORDS[k % len(_DENSE_WORDS)] for k in range(chars))
    text = " ".join(words)[:chars]  # k words have more than k characters
    placed = [
        (36.0, height - 36 - font_size - leading * i, text[i * per_line : (i + 1) * per_line].encode("ascii"))
        for i in range(n_lines)
    ]
    pdf = pikepdf.Pdf.new()
    _add_page(pdf, _text_block(placed, font_size, fill=b"0 g"), _resources(_helvetica(pdf)), size=(width, height))
    return _save(pdf)
