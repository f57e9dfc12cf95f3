"""Searchable PDF/A-2b: the source's pages as they are, with Folio's words as invisible text.

:func:`searchable_pdf` turns one document's rows (:class:`ExportDocument`) and
the source's bytes into a PDF whose pages look exactly like the source's and
whose text, selected, searched or extracted, is what Folio read:

* **PDF sources** keep every page's own content streams (the same objects,
  the same bytes) and resources; an OCR'd page gets one more content stream
  holding its text, and the glyphless font in a copy of its resource
  dictionary. Its own streams are wrapped in ``q``/``Q`` (two small streams
  before and after them) so whatever graphics state they leave cannot move
  the text. Pages Folio did not read get nothing. Pixels map to user space
  through the box PDFium renders (the CropBox within the MediaBox) and
  ``/Rotate``, and the page's size in pixels in the rows (PDFium maps the box
  onto ``ceil(points * dpi / 72)`` pixels), so the text lands where the words
  were on the page image Folio read.
* **TIFF (every frame), PNG and JPEG sources** become one page per image at
  ``72 / dpi`` points a pixel (the DPI in the rows, else the file's, else
  300, ``decode.pdf_dpi``'s default; Folio's decoder itself assumes none).
  img2pdf embeds each image without recompressing it where the format allows
  (a JPEG as its own DCT bytes, a PNG's IDAT data, CCITT G4 TIFF strips) and
  losslessly otherwise (other TIFFs are decoded and Flate-compressed: larger
  and slower than a copy); the EXIF orientation is applied by the matrix
  that places the image, as Folio's decoder applies it to the pixels, so the
  page shows the image Folio read. An image img2pdf refuses (16-bit TIFF, for
  one) is embedded as the RGB pixels Folio's decoder makes of it.

The text layer is drawn as OCRmyPDF draws its own: each word in a glyphless
font (built with fontTools and embedded; its one glyph, half an em wide, is a
contour without area, so it paints nothing whatever the render mode), in
render mode 3 (invisible), at the angle of the word's polygon, with the
polygon's height as the font size and its width matched by horizontal
scaling (``Tz``). Each word but the last of its line carries a space in the
same string, placed to end where the next word begins; lines come in reading
order, each in its own ``BT``/``ET``, so text extraction (PDFium's, checked)
gives Folio's words in reading order with a line break between lines.
Character codes are UTF-16 code units (the ToUnicode CMap maps them back);
each character beyond the BMP gets a code of its own.

PDF/A-2b: :func:`pikepdf.pdfa.prepare` installs an sRGB output intent and
removes what PDF/A forbids outside page content (image interpolation,
hidden annotations, document JavaScript); the XMP declares ``pdfaid:part``
2, ``pdfaid:conformance`` B, Folio as ``pdf:Producer``, the source's file name
as ``dc:source`` and ``processed_at`` as the dates; the DocInfo dictionary
agrees with it, the trailer ``/ID`` starts with ``doc_id`` and nothing is
encrypted. Then pikepdf's PDF/A validator (:func:`pikepdf.pdfa.check`, an
allowlist made from veraPDF's rules that approves only what it knows
conforms) checks the document as it will be written. **Only a document that
passes claims PDF/A-2b**; otherwise the ``pdfaid`` declaration is left out
and a warning names the findings: a PDF source whose pages are not PDF/A
material (fonts it does not embed, DeviceCMYK colour, transparency without a
blending colour space, ...) cannot conform without changing its pages, which
this export never does. The output has not been checked with veraPDF itself
(not available here), nor opened in Acrobat.

The output is deterministic: the same rows and source give the same bytes (a
source PDF's DocInfo dates without a time zone are given the local one).
"""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import io
import logging
import math
import os
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import img2pdf
import pikepdf
import pikepdf.pdfa
from pikepdf import Array, Dictionary, Name

from pipeline import __version__
from pipeline.config import DecodeConfig
from pipeline.errors import CorruptFile, EncryptedPdf

# The decoder's own readers of a frame's orientation and DPI: the page must be the image Folio read.
from pipeline.io.decode import (
    _PIL_ERRORS,
    MIME_PDF,
    MIME_TIFF,
    _image_dpi,
    _open_pil,
    _orientation,
    open_document,
    sniff,
)
from pipeline.output.exports import ExportDocument
from pipeline.types import Page, Polygon

__all__ = ["DEFAULT_DPI", "searchable_pdf"]

log = logging.getLogger(__name__)

#: Resolution of an image whose file names none (``decode.pdf_dpi``'s default).
DEFAULT_DPI = 300.0

#: The glyphless font's one glyph: half an em wide, one em high.
_GLYPH_WIDTH = 500
_FONT_NAME = "GlyphLessFont"
#: The font program's creation date (2024-01-01, in seconds since 1904): fixed, so its bytes are.
_FONT_DATE = 3786825600
#: Character codes below this are UTF-16 code units; the surrogate range numbers astral characters.
_ASTRAL_FIRST, _ASTRAL_LAST = 0xD800, 0xDFFF
_REPLACEMENT = 0xFFFD
_IMAGE_WIDTH, _IMAGE_LENGTH, _STRIP_OFFSETS = 256, 257, 273  # TIFF tags

#: EXIF orientation -> where a raw pixel (x, y) of a W x H image lands in the upright image,
#: as ``ImageOps.exif_transpose`` turns it (2: mirror, 3: 180 degrees, 6: 90 clockwise, ...).
_ORIENT = {
    1: lambda x, y, w, h: (x, y),
    2: lambda x, y, w, h: (w - x, y),
    3: lambda x, y, w, h: (w - x, h - y),
    4: lambda x, y, w, h: (x, h - y),
    5: lambda x, y, w, h: (y, x),
    6: lambda x, y, w, h: (h - y, x),
    7: lambda x, y, w, h: (h - y, w - x),
    8: lambda x, y, w, h: (y, w - x),
}

#: What img2pdf raises for an image it will not embed (its own errors, Pillow's, and a bad PDF).
_IMG2PDF_ERRORS = (
    *_PIL_ERRORS, img2pdf.ImageOpenError, img2pdf.AlphaChannelError, img2pdf.JpegColorspaceError,
    img2pdf.UnsupportedColorspaceError, img2pdf.NegativeDimensionError, img2pdf.PdfTooLargeError,
    img2pdf.ExifOrientationError, NotImplementedError, pikepdf.PdfError,
)


def searchable_pdf(doc: ExportDocument, source: bytes) -> bytes:
    """The source document with Folio's text as an invisible layer, as PDF/A-2b where it can be.

    Args:
        doc: the document's rows.
        source: the bytes the rows were read from (PDF, TIFF, PNG or JPEG).

    Returns:
        The PDF's bytes: one page per source page, in order.

    Raises:
        ValueError: ``source`` is not the document the rows describe (another type, fewer
            pages, or pages of another size).
        EncryptedPdf / CorruptFile / UnsupportedFormat: the source cannot be opened.
    """
    mime = sniff(source)
    if doc.mime and doc.mime != mime:
        raise ValueError(f"source is {mime} but {doc.name}'s rows were read from {doc.mime}")
    folio_pages = {page.page_index: page for page in doc.pages}
    if mime == MIME_PDF:
        pdf = _open_pdf(source)
    else:
        pdf = _image_pdf(source, mime, folio_pages)
    count = len(pdf.pages)
    beyond = sorted(i for i in folio_pages if not 0 <= i < count)
    if beyond:
        raise ValueError(f"{doc.name}'s rows have page {beyond[0]} but the source has {count} pages")
    font = _GlyphlessFont(pdf)
    opener = pdf.make_stream(b"q\n")
    for index in sorted(folio_pages):
        _add_text_layer(pdf, pdf.pages[index], folio_pages[index], font, opener)
    font.finish()
    return _save_pdfa(pdf, doc, is_pdf=mime == MIME_PDF)


# --------------------------------------------------------------------------- sources


def _open_pdf(source: bytes) -> pikepdf.Pdf:
    try:
        return pikepdf.open(io.BytesIO(source))
    except pikepdf.PasswordError as e:
        raise EncryptedPdf("PDF is password-protected (encrypted); provide an unencrypted copy") from e
    except pikepdf.PdfError as e:
        raise CorruptFile(f"PDF cannot be opened: {e}", code="corrupt_pdf") from e


@dataclass(frozen=True)
class _Frame:
    """One image of the source as it will be embedded: its pixel grid, the EXIF orientation that
    turns that grid into the image Folio read, its DPI, and whether img2pdf copies its data as it
    is (a CCITT G4 TIFF strip) rather than decoding it with Pillow."""

    width: int
    height: int
    orientation: int
    dpi: float | None
    copied: bool = False

    @property
    def upright(self) -> tuple[int, int]:
        """Width and height after the orientation is applied (the size of Folio's page image)."""
        return (self.height, self.width) if self.orientation in (5, 6, 7, 8) else (self.width, self.height)


def _frames(source: bytes, mime: str) -> list[_Frame]:
    """Every image of the source, read as :mod:`pipeline.io.decode` reads them.

    Pillow itself turns a TIFF frame upright as it decodes it (and drops its orientation tag), so a
    TIFF frame that img2pdf decodes is measured decoded; one it copies keeps its stored grid (the
    ImageWidth and ImageLength tags: Pillow reports the upright size before decoding).
    """
    fmt = {MIME_TIFF: "TIFF"}.get(mime, mime.split("/")[1].upper())
    frames: list[_Frame] = []
    try:
        with _open_pil(source, fmt) as im:
            count = int(getattr(im, "n_frames", 1)) if mime == MIME_TIFF else 1
            for index in range(count):
                if index:
                    im.seek(index)
                dpi = _image_dpi(im.info)
                copied = (mime == MIME_TIFF and im.info.get("compression") == "group4"
                          and len(im.tag_v2.get(_STRIP_OFFSETS, ())) == 1)
                size = im.size
                if copied:
                    size = (int(im.tag_v2.get(_IMAGE_WIDTH, size[0])), int(im.tag_v2.get(_IMAGE_LENGTH, size[1])))
                elif mime == MIME_TIFF:
                    im.load()
                    size = im.size
                orientation = _orientation(im)
                frames.append(_Frame(*size, orientation if orientation in _ORIENT else 1, dpi, copied))
    except _PIL_ERRORS as e:
        raise CorruptFile(f"{fmt} image {len(frames) + 1} cannot be read: {e}", code="corrupt_image") from e
    return frames


def _image_pdf(source: bytes, mime: str, folio_pages: dict[int, Page]) -> pikepdf.Pdf:
    """One page per image: the image drawn upright on a page of its size at its DPI."""
    frames = _frames(source, mime)
    pdf, images = _embed_with_img2pdf(source, mime, frames)
    if images is None:
        pdf, images, frames = _embed_decoded(source, frames)
    for index, (frame, image) in enumerate(zip(frames, images, strict=True)):
        width, height = frame.upright
        folio = folio_pages.get(index)
        if folio is not None and folio.width and (folio.width, folio.height) != (width, height):
            raise ValueError(f"page {index} is {folio.width}x{folio.height} px in the rows but "
                             f"{width}x{height} px in the source")
        dpi = (folio.dpi if folio is not None and folio.dpi else None) or frame.dpi or DEFAULT_DPI
        scale = 72.0 / dpi
        page = pdf.pages[index].obj
        for key in list(page.keys()):
            if key not in ("/Type", "/Parent"):
                del page[key]
        page.MediaBox = Array([0, 0, _num_obj(width * scale), _num_obj(height * scale)])
        page.Resources = Dictionary(XObject=Dictionary(Im0=image))
        page.Contents = pdf.make_stream(f"q\n{_placement(frame, scale)} cm\n/Im0 Do\nQ\n".encode())
    return pdf


def _placement(frame: _Frame, scale: float) -> str:
    """The ``cm`` operands that draw the frame's image (the unit square) upright, ``scale`` points a
    pixel: raw pixel -> upright pixel -> page point."""
    turn = _ORIENT[frame.orientation]
    height = frame.upright[1]

    def place(u: float, v: float) -> tuple[float, float]:
        x, y = turn(u * frame.width, (1 - v) * frame.height, frame.width, frame.height)
        return x * scale, (height - y) * scale

    (e, f), (ax, ay), (bx, by) = place(0, 0), place(1, 0), place(0, 1)
    return " ".join(_num(v) for v in (ax - e, ay - f, bx - e, by - f, e, f))


def _embed_with_img2pdf(source: bytes, mime: str,
                        frames: list[_Frame]) -> tuple[pikepdf.Pdf | None, list | None]:
    """img2pdf's document and its image XObjects, one per frame; ``(None, None)`` where it cannot."""
    try:
        data = img2pdf.convert(source, rotation=img2pdf.Rotation.none, nodate=True,
                               first_frame_only=mime != MIME_TIFF, layout_fun=_img2pdf_layout)
        pdf = pikepdf.open(io.BytesIO(data))
    except _IMG2PDF_ERRORS as e:
        log.info("img2pdf cannot embed this %s (%s: %s); embedding the decoded pixels", mime, type(e).__name__, e)
        return None, None
    images = []
    for page, frame in zip(pdf.pages, frames, strict=False):
        xobjects = list(page.obj.Resources.get("/XObject", Dictionary()).values())
        if len(xobjects) != 1:
            break
        image = xobjects[0]
        if frame.copied and not _copied_g4(image, frame):
            break
        if (int(image.Width), int(image.Height)) != (frame.width, frame.height):
            break
        images.append(image)
    if len(pdf.pages) != len(frames) or len(images) != len(frames):
        log.info("img2pdf's pages do not match the %d images of this %s; embedding the decoded pixels",
                 len(frames), mime)
        return None, None
    for key in list(pdf.docinfo.keys()):
        del pdf.docinfo[key]
    return pdf, images


def _copied_g4(image: pikepdf.Stream, frame: _Frame) -> bool:
    """Whether ``image`` is the frame's G4 strip, its size set to the strip's.

    img2pdf takes the size from Pillow, which gives a frame turned by a quarter (orientation 5 to 8)
    its upright size; the strip is stored the other way round.
    """
    filters = image.get("/Filter")
    filters = list(filters) if isinstance(filters, Array) else [filters]
    if filters != [Name.CCITTFaxDecode]:
        return False
    params = image.get("/DecodeParms")
    params = params[0] if isinstance(params, Array) else params
    if (int(image.Width), int(image.Height)) == (frame.height, frame.width) and isinstance(params, Dictionary):
        image.Width, image.Height = frame.width, frame.height
        params.Columns, params.Rows = frame.width, frame.height
    return True


def _img2pdf_layout(width_px: int, height_px: int, _dpi) -> tuple[float, float, float, float]:
    # Any size within PDF's limits: the page is laid out again from Folio's DPI afterwards.
    side = 1000.0 / max(width_px, height_px, 1)
    w, h = max(width_px * side, 3.0), max(height_px * side, 3.0)
    return w, h, w, h


def _embed_decoded(source: bytes, frames: list[_Frame]) -> tuple[pikepdf.Pdf, list, list[_Frame]]:
    """Folio's decoded RGB pixels as Flate images (already upright); a white page for a frame that
    cannot be decoded."""
    pdf = pikepdf.new()
    images, upright = [], []
    limits = DecodeConfig(max_pages=1 << 30, max_file_bytes=1 << 62)  # the rows say it was read
    with open_document(source, limits) as document:
        for (index, pixels, _dpi, error), frame in zip(document.pages(), frames, strict=True):
            if error is not None:
                log.warning("image %d cannot be decoded (%s); its page is left white", index, error)
                (width, height), shape, data = frame.upright, (1, 1), b"\xff\xff\xff"
            else:
                height, width = shape = pixels.shape[:2]
                data = pixels.tobytes()
            images.append(pdf.make_stream(zlib.compress(data), Type=Name.XObject, Subtype=Name.Image,
                                          Width=shape[1], Height=shape[0], ColorSpace=Name.DeviceRGB,
                                          BitsPerComponent=8, Filter=Name.FlateDecode))
            upright.append(_Frame(width, height, 1, frame.dpi))
            pdf.add_blank_page()
    return pdf, images, upright


# --------------------------------------------------------------------------- geometry


def _inherited(page: pikepdf.Dictionary, key: str):
    node, depth = page, 0
    while node is not None and depth < 64:
        if key in node:
            return node[key]
        node, depth = node.get("/Parent"), depth + 1
    return None


def _box(page: pikepdf.Dictionary) -> tuple[float, float, float, float]:
    """The area PDFium renders: the CropBox within the MediaBox (US Letter without either)."""

    def rect(value) -> tuple[float, float, float, float] | None:
        try:
            x0, y0, x1, y1 = (float(v) for v in value)
        except (TypeError, ValueError):
            return None
        box = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
        return box if box[2] > box[0] and box[3] > box[1] else None

    media = rect(_inherited(page, "/MediaBox")) or (0.0, 0.0, 612.0, 792.0)
    crop = rect(_inherited(page, "/CropBox"))
    if crop is None:
        return media
    x0, y0, x1, y1 = max(crop[0], media[0]), max(crop[1], media[1]), min(crop[2], media[2]), min(crop[3], media[3])
    return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else media


@dataclass(frozen=True)
class _View:
    """A page as PDFium shows it: its box in user space, its turn, and its size on screen.

    Screen space is the page as shown, in points, y up, from its bottom-left corner;
    :attr:`matrix` takes it to user space, where the text layer is drawn (readers judge the
    direction of a line by its text matrix and its extent by its box, both in user space).
    """

    box: tuple[float, float, float, float]
    rotate: int
    width: float
    height: float

    @classmethod
    def of(cls, page: pikepdf.Dictionary) -> _View:
        x0, y0, x1, y1 = box = _box(page)
        try:
            rotate = int(_inherited(page, "/Rotate") or 0) % 360
        except (TypeError, ValueError):
            rotate = 0
        rotate = rotate if rotate in (0, 90, 180, 270) else 0
        w, h = (x1 - x0, y1 - y0) if rotate in (0, 180) else (y1 - y0, x1 - x0)
        return cls(box, rotate, w, h)

    @property
    def matrix(self) -> tuple[float, ...]:
        """``(a, b, c, d, e, f)``: screen (X, Y) -> user ``(a*X + c*Y + e, b*X + d*Y + f)``."""
        x0, y0, x1, y1 = self.box
        return {0: (1.0, 0.0, 0.0, 1.0, x0, y0), 90: (0.0, 1.0, -1.0, 0.0, x1, y0),
                180: (-1.0, 0.0, 0.0, -1.0, x1, y1), 270: (0.0, -1.0, 1.0, 0.0, x0, y1)}[self.rotate]

    def pixels(self, folio: Page) -> tuple[float, ...]:
        """The matrix (as :attr:`matrix`) taking a pixel of Folio's page image to user space."""
        width, height = folio.width, folio.height
        if not width or not height:
            dpi = folio.dpi or DEFAULT_DPI
            width, height = math.ceil(self.width * dpi / 72), math.ceil(self.height * dpi / 72)
        elif abs(width / height - self.width / self.height) > 0.01 * self.width / self.height + 2 / min(width, height):
            raise ValueError(f"page {folio.page_index} is {width}x{height} px in the rows but "
                             f"{self.width:.1f}x{self.height:.1f} pt in the source: not the same page")
        # PDFium maps the page onto ceil(size * dpi / 72) pixels: the size, not the DPI, gives the scale.
        sx, sy = self.width / width, self.height / height
        a, b, c, d, e, f = self.matrix
        # Pixel -> screen (sx, 0, 0, -sy, 0, height), then screen -> user.
        return (a * sx, b * sx, -c * sy, -d * sy, c * self.height + e, d * self.height + f)


@dataclass(frozen=True)
class _WordBox:
    """A word's box in user space: origin (bottom-left as read), unit reading direction, size."""

    ox: float
    oy: float
    ux: float
    uy: float
    width: float
    height: float


def _word_box(polygon: Polygon, m: tuple[float, ...]) -> _WordBox:
    """The rectangle at the polygon's angle that holds it, in user space."""
    a, b, c, d, e, f = m
    pts = [(a * x + c * y + e, b * x + d * y + f) for x, y in polygon]
    if len(pts) == 4:
        (x0, y0), (x1, y1), (x2, y2), (x3, y3) = pts
        dx, dy = (x1 - x0 + x2 - x3) / 2, (y1 - y0 + y2 - y3) / 2
    else:
        dx, dy = a, b  # the page image's x axis
    length = math.hypot(dx, dy)
    if not length > 1e-9:
        dx, dy, length = a, b, math.hypot(a, b)
    ux, uy = dx / length, dy / length
    nx, ny = -uy, ux  # a quarter turn anticlockwise: "up" for the text
    along = [x * ux + y * uy for x, y in pts]
    across = [x * nx + y * ny for x, y in pts]
    s0, t0 = min(along), min(across)
    return _WordBox(s0 * ux + t0 * nx, s0 * uy + t0 * ny, ux, uy, max(along) - s0, max(across) - t0)


# --------------------------------------------------------------------------- text layer


@functools.cache
def _font_program() -> bytes:
    """A TrueType font with an empty ``.notdef`` and one glyph, half an em wide, that draws nothing."""
    from fontTools.fontBuilder import FontBuilder
    from fontTools.pens.ttGlyphPen import TTGlyphPen

    builder = FontBuilder(unitsPerEm=1000, isTTF=True)
    builder.setupHead(unitsPerEm=1000, created=_FONT_DATE, modified=_FONT_DATE)  # the same bytes every time
    builder.setupGlyphOrder([".notdef", "blank"])
    builder.setupCharacterMap({0x20: "blank"})
    # One contour of two points: no area, so nothing to paint even where render mode 3 is ignored,
    # but a box the size of the glyph's cell. PDFium takes text with empty glyph boxes for repeats
    # of the text before it ("fake bold") and leaves some of it out of the extracted text.
    pen = TTGlyphPen(None)
    pen.moveTo((0, 0))
    pen.lineTo((_GLYPH_WIDTH, 1000))
    pen.closePath()
    builder.setupGlyf({".notdef": TTGlyphPen(None).glyph(), "blank": pen.glyph()})
    builder.setupHorizontalMetrics({".notdef": (_GLYPH_WIDTH, 0), "blank": (_GLYPH_WIDTH, 0)})
    builder.setupHorizontalHeader(ascent=1000, descent=0)
    builder.setupNameTable({"familyName": _FONT_NAME, "styleName": "Regular", "psName": _FONT_NAME})
    builder.setupOS2(sTypoAscender=1000, sTypoDescender=0, usWinAscent=1000, usWinDescent=0)
    builder.setupPost()
    out = io.BytesIO()
    builder.save(out)
    return out.getvalue()


class _GlyphlessFont:
    """The document's Type0 font: every code draws glyph 1 of the glyphless font program.

    Codes are UTF-16 code units for characters of the BMP; characters beyond it take codes from
    the surrogate range, one each, which the ToUnicode CMap written by :meth:`finish` maps back.
    """

    def __init__(self, pdf: pikepdf.Pdf):
        self._astral: dict[str, int] = {}
        program = pdf.make_stream(_font_program())
        descriptor = pdf.make_indirect(Dictionary(
            Type=Name.FontDescriptor, FontName=Name("/" + _FONT_NAME), Flags=5,  # fixed pitch, symbolic
            FontBBox=Array([0, 0, _GLYPH_WIDTH, 1000]), ItalicAngle=0, Ascent=1000, Descent=0,
            CapHeight=1000, StemV=80, FontFile2=program,
        ))
        cid_font = pdf.make_indirect(Dictionary(
            Type=Name.Font, Subtype=Name.CIDFontType2, BaseFont=Name("/" + _FONT_NAME),
            CIDSystemInfo=Dictionary(Registry=pikepdf.String("Adobe"), Ordering=pikepdf.String("Identity"),
                                     Supplement=0),
            FontDescriptor=descriptor, DW=_GLYPH_WIDTH,
            CIDToGIDMap=pdf.make_stream(b"\x00\x01" * 65536),
        ))
        self._to_unicode = pdf.make_stream(b"")
        self.font = pdf.make_indirect(Dictionary(
            Type=Name.Font, Subtype=Name.Type0, BaseFont=Name("/" + _FONT_NAME), Encoding=Name("/Identity-H"),
            DescendantFonts=Array([cid_font]), ToUnicode=self._to_unicode,
        ))

    def encode(self, text: str) -> tuple[str, int]:
        """The hex string of ``text``'s codes, and how many codes there are."""
        try:
            data = text.encode("utf-16-be")
        except UnicodeEncodeError:  # a lone surrogate
            data = None
        if data is not None and len(data) == 2 * len(text):
            return data.hex(), len(text)
        codes = [self._code(ch) for ch in text]
        return "".join(f"{code:04x}" for code in codes), len(codes)

    def _code(self, ch: str) -> int:
        cp = ord(ch)
        if cp < 0x10000:
            return _REPLACEMENT if _ASTRAL_FIRST <= cp <= _ASTRAL_LAST else cp
        code = self._astral.get(ch)
        if code is None:
            if len(self._astral) > _ASTRAL_LAST - _ASTRAL_FIRST:
                return _REPLACEMENT
            code = self._astral[ch] = _ASTRAL_FIRST + len(self._astral)
        return code

    def finish(self) -> None:
        """Write the ToUnicode CMap: code units as themselves, and the astral characters used."""
        ranges = [f"<{hi:02x}00> <{hi:02x}ff> <{hi:02x}00>" for hi in range(256) if not 0xD8 <= hi <= 0xDF]
        chars = [f"<{code:04x}> <{ch.encode('utf-16-be').hex()}>" for ch, code in self._astral.items()]
        body = []
        for start in range(0, len(ranges), 100):
            chunk = ranges[start:start + 100]
            body += [f"{len(chunk)} beginbfrange", *chunk, "endbfrange"]
        for start in range(0, len(chars), 100):
            chunk = chars[start:start + 100]
            body += [f"{len(chunk)} beginbfchar", *chunk, "endbfchar"]
        cmap = "\n".join([
            "/CIDInit /ProcSet findresource begin", "12 dict begin", "begincmap",
            "/CIDSystemInfo << /Registry (Adobe) /Ordering (UCS) /Supplement 0 >> def",
            "/CMapName /Adobe-Identity-UCS def", "/CMapType 2 def",
            "1 begincodespacerange", "<0000> <ffff>", "endcodespacerange",
            *body, "endcmap", "CMapName currentdict /CMap defineresource pop", "end", "end", "",
        ])
        self._to_unicode.write(cmap.encode("ascii"))


def _num(value: float) -> str:
    text = f"{value:.3f}".rstrip("0").rstrip(".")
    return "0" if text in ("", "-0") else text


def _num_obj(value: float) -> pikepdf.Object | float:
    return float(_num(value))


def _words(page: Page) -> Iterable[list[tuple[str, Polygon]]]:
    """Each OCR'd line's words (text, polygon) in reading order; a line without words as one word. Lines
    read from a PDF's own text get no layer: the page shows them as real text already."""
    for line in page.lines:
        if line.source == "pdf":
            continue
        words = [(w.text, w.polygon) for w in line.words if w.text.strip() and w.polygon]
        if not words and line.text.strip() and line.polygon:
            words = [(line.text.strip(), line.polygon)]
        if words:
            yield words


def _text_content(page: Page, m: tuple[float, ...], font: _GlyphlessFont, font_name: str) -> bytes:
    """The content of a page's text layer, in user space (``font_name``: the font's resource name)."""
    out = []
    for words in _words(page):
        out.append("BT\n3 Tr\n")
        boxes = [_word_box(polygon, m) for _, polygon in words]
        for i, ((text, _), box) in enumerate(zip(words, boxes, strict=True)):
            hexcodes, count = font.encode(text)
            size, width = max(box.height, 0.01), max(box.width, 0.01)
            scale = width * 1000 / (count * _GLYPH_WIDTH * size)  # Tz / 100
            ux, uy = box.ux, box.uy
            shown = f"<{hexcodes}>"
            if i + 1 < len(words):
                # The word's space in the same string (so readers take both for one run of text),
                # moved to end where the next word begins.
                nxt = boxes[i + 1]
                gap = (nxt.ox - box.ox) * ux + (nxt.oy - box.oy) * uy - width
                shift = gap - _GLYPH_WIDTH / 1000 * size * scale
                shown += f" {-shift * 1000 / (size * scale):.1f} <0020>"
            out.append(f"{font_name} {size:.3f} Tf {100 * scale:.3f} Tz {ux:.5f} {uy:.5f} {-uy:.5f} {ux:.5f} "
                       f"{box.ox:.3f} {box.oy:.3f} Tm [{shown}] TJ\n")
        out.append("ET\n")
    return "".join(out).encode("ascii")


def _add_text_layer(pdf: pikepdf.Pdf, page: pikepdf.Page, folio: Page, font: _GlyphlessFont,
                    opener: pikepdf.Stream) -> None:
    """Draw a page's words invisibly over it, leaving its own content streams as they are.

    The text goes in the page's own content (a stream after its streams), not in a Form XObject:
    PDFium judges the direction of a page's lines from the text at the page's top level.
    """
    obj = page.obj
    # The page's resources, copied so that pages sharing a dictionary keep theirs.
    resources = _inherited(obj, "/Resources")
    resources = Dictionary({k: v for k, v in resources.items()}) if isinstance(resources, Dictionary) else Dictionary()
    fonts = resources.get("/Font")
    fonts = Dictionary({k: v for k, v in fonts.items()}) if isinstance(fonts, Dictionary) else Dictionary()
    name, n = "/FolioGlyphless", 0
    while name in fonts:
        n += 1
        name = f"/FolioGlyphless{n}"
    content = _text_content(folio, _View.of(obj).pixels(folio), font, name)
    if not content:
        return
    fonts[name] = font.font
    resources.Font = fonts
    obj.Resources = resources
    existing = obj.get("/Contents")
    streams = list(existing) if isinstance(existing, Array) else [existing] if existing is not None else []
    obj.Contents = Array([opener, *streams, pdf.make_stream(b"Q\nq\n" + content + b"Q\n")])


# --------------------------------------------------------------------------- PDF/A


def _document_id(doc: ExportDocument) -> bytes:
    try:
        raw = bytes.fromhex(doc.doc_id)
    except ValueError:
        raw = b""
    return raw[:16] if len(raw) >= 16 else hashlib.sha256(doc.doc_id.encode()).digest()[:16]


def _save_pdfa(pdf: pikepdf.Pdf, doc: ExportDocument, *, is_pdf: bool) -> bytes:
    """Prepare, describe and check the document for PDF/A-2b, and write it."""
    when = doc.processed_at
    if when is not None and when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    if not is_pdf:
        for key in list(pdf.docinfo.keys()):
            del pdf.docinfo[key]
    # A PDF source's own title, author, creator and creation date stay (prepare folds its DocInfo
    # into the XMP); the rest says what Folio made.
    result = pikepdf.pdfa.prepare(pdf, "2b", output_intent="sRGB")
    for level, sentence in result.messages():
        log.log(logging.getLevelName(level.upper()), "%s: %s", doc.name, sentence)
    with pdf.open_metadata(set_pikepdf_as_editor=False, update_docinfo=True) as meta:
        meta["pdf:Producer"] = f"Folio {__version__}"
        if "xmp:CreatorTool" not in meta:
            meta["xmp:CreatorTool"] = f"Folio {doc.pipeline_version} ({doc.engine})"
        if "dc:title" not in meta:
            meta["dc:title"] = doc.name
        meta["dc:source"] = os.path.basename(doc.source_uri.rstrip("/")) or doc.name
        for key in ("xmp:MetadataDate", "xmp:ModifyDate"):
            if when is not None:
                meta[key] = when.isoformat()
            elif key in meta:
                del meta[key]
        if when is not None and "xmp:CreateDate" not in meta:
            meta["xmp:CreateDate"] = when.isoformat()
    document_id = pikepdf.String(_document_id(doc))
    pdf.trailer.ID = Array([document_id, document_id])
    # deterministic_id: qpdf keeps the first /ID as set and makes the second from the content.
    kwargs = pikepdf.pdfa.resolve_save_kwargs("2b", deterministic_id=True,
                                              object_stream_mode=pikepdf.ObjectStreamMode.generate)
    report = pikepdf.pdfa.check(pdf, "2b", **kwargs)
    if not report.passed:
        log.warning("%s: the searchable PDF does not claim PDF/A-2b: %s", doc.name, report.summary(limit=5))
        with pdf.open_metadata(set_pikepdf_as_editor=False, update_docinfo=False) as meta:
            del meta["pdfaid:part"]
            del meta["pdfaid:conformance"]
    out = io.BytesIO()
    pdf.save(out, **kwargs)
    return out.getvalue()
