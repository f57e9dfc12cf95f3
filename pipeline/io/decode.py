"""Turn a document's bytes into RGB page images.

The decode stage is the edge where untrusted input meets C libraries, so it
does three things before any pixel is decoded:

* :func:`sniff` decides the type from the first bytes (never the name) and
  names what an unsupported file looks like (HTML error page, ZIP, ...);
* :func:`open_document` refuses whole documents that cannot or should not be
  processed (empty, too big, encrypted, truncated, too many pages, an image
  whose header declares more pixels than ``decode.max_pixels``);
* :class:`Document` decodes pages lazily, one at a time, so a 2000-page PDF
  never sits in memory at once and one broken page does not stop the rest
  (:meth:`Document.pages` yields the error in its place).

PDFs are rasterised with PDFium (pypdfium2) at ``decode.pdf_dpi``; a page that
would exceed ``decode.max_pixels`` at that resolution is rendered at the
highest resolution that fits instead. PDFium is not thread-safe, so every
PDFium call in this module holds one module-level lock.

TIFF (every frame is a page), PNG and JPEG are read with Pillow. Every colour
mode is converted to RGB ``uint8``: alpha is composited on white, 16-bit
samples are scaled (not clipped) to 8 bits, CMYK goes through Pillow (which
undoes Adobe's inverted CMYK), and the EXIF orientation is applied.

All foreign exceptions are translated into :mod:`pipeline.errors` classes with
``raise ... from e``.
"""

from __future__ import annotations

import io
import logging
import math
import struct
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pypdfium2 as pdfium
import pypdfium2.raw as pdfium_c
from PIL import Image, ImageOps

from pipeline.config import DecodeConfig
from pipeline.errors import (
    CorruptFile,
    EmptyFile,
    EncryptedPdf,
    FileTooLarge,
    FolioError,
    ImageTooLarge,
    TooManyPages,
    UnsupportedFormat,
)
from pipeline.io.pdftext import TextLayer, read_text_layer

__all__ = [
    "MIME_PDF",
    "MIME_TIFF",
    "MIME_PNG",
    "MIME_JPEG",
    "SUPPORTED_MIME_TYPES",
    "sniff",
    "Document",
    "open_document",
]

log = logging.getLogger(__name__)

MIME_PDF = "application/pdf"
MIME_TIFF = "image/tiff"
MIME_PNG = "image/png"
MIME_JPEG = "image/jpeg"
SUPPORTED_MIME_TYPES = (MIME_PDF, MIME_TIFF, MIME_PNG, MIME_JPEG)

#: PDFium keeps global state and is not thread-safe: every call goes through this lock.
_PDFIUM_LOCK = threading.RLock()

#: Acrobat and PDFium accept a ``%PDF-`` header anywhere in the first 1024 bytes.
_PDF_HEADER_WINDOW = 1024

#: Resolutions outside this range in image metadata are placeholders (1, 72000...), not facts.
_SANE_DPI = (30.0, 2400.0)

_PIL_FORMAT = {MIME_TIFF: "TIFF", MIME_PNG: "PNG", MIME_JPEG: "JPEG"}

#: What Pillow raises for malformed data (``Image.open`` itself treats the first four as "not this format").
#: ArithmeticError: a TIFF offset stored as a LONG8 of 2**64-1 overflows ``seek`` (OverflowError; found by
#: tests/test_fuzz.py, see docs/hostile.md).
_PIL_ERRORS = (SyntaxError, IndexError, TypeError, struct.error, OSError, ValueError, EOFError, KeyError,
               ArithmeticError)

_SUPPORTED_HINT = "Folio reads PDF, TIFF, PNG and JPEG"


# --------------------------------------------------------------------------- sniffing


def sniff(data: bytes) -> str:
    """Decide a document's type from its first bytes, never its name.

    Args:
        data: the file's content (only the first kilobyte is looked at).

    Returns:
        One of ``'application/pdf'``, ``'image/tiff'``, ``'image/png'``, ``'image/jpeg'``.

    Raises:
        EmptyFile: ``data`` is empty.
        UnsupportedFormat: anything else; the message says what the bytes look
            like (``HTML``, ``ZIP``, ``GIF``, ``WebP``, ``ELF executable``,
            ``text``, ... or ``unknown``).
    """
    if len(data) == 0:
        raise EmptyFile("file is empty (0 bytes)")
    head = bytes(data[:_PDF_HEADER_WINDOW])
    if head.startswith(b"%PDF-"):
        return MIME_PDF
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):  # classic and BigTIFF
        return MIME_TIFF
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return MIME_PNG
    if head.startswith(b"\xff\xd8\xff"):
        return MIME_JPEG
    what = _describe(head)
    if what in ("text", "unknown") and b"%PDF-" in head:
        # Junk before the header (mail or HTTP headers, a BOM): PDFium skips it too.
        return MIME_PDF
    raise UnsupportedFormat(f"unsupported file type: looks like {what} (starts with {head[:12]!r}); {_SUPPORTED_HINT}")


_SIGNATURES: tuple[tuple[bytes, str], ...] = (
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"PK\x03\x04", "ZIP archive (or DOCX/XLSX/ODT/EPUB)"),
    (b"PK\x05\x06", "ZIP archive (empty)"),
    (b"PK\x07\x08", "ZIP archive (spanned)"),
    (b"\x7fELF", "ELF executable"),
    (b"MZ", "Windows executable"),
    (b"BM", "BMP"),
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000"),
    (b"\xffO\xffQ", "JPEG 2000 codestream"),
    (b"\x1f\x8b", "gzip"),
    (b"BZh", "bzip2"),
    (b"\xfd7zXZ\x00", "xz"),
    (b"(\xb5/\xfd", "zstd"),
    (b"Rar!\x1a\x07", "RAR archive"),
    (b"7z\xbc\xaf\x27\x1c", "7z archive"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "legacy Microsoft Office (OLE) file"),
    (b"%!PS", "PostScript"),
    (b"AT&TFORM", "DjVu"),
    (b"8BPS", "Photoshop PSD"),
)


def _describe(head: bytes) -> str:
    """Human name for what ``head`` (the first bytes of a file) looks like."""
    for magic, name in _SIGNATURES:
        if head.startswith(magic):
            return name
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        if brand in (b"heic", b"heix", b"mif1", b"msf1", b"hevc"):
            return "HEIC/HEIF"
        if brand in (b"avif", b"avis"):
            return "AVIF"
        return "MP4/QuickTime media"
    text = head.lstrip(b"\xef\xbb\xbf").lstrip()
    lowered = text[:512].lower()
    if lowered.startswith((b"<!doctype html", b"<html", b"<head", b"<body")) or b"<html" in lowered:
        return "HTML"
    if lowered.startswith(b"<svg") or (lowered.startswith(b"<?xml") and b"<svg" in lowered):
        return "SVG"
    if lowered.startswith(b"<?xml"):
        return "XML"
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        return "text"  # UTF-16 with a byte-order mark
    sample = head[:512]
    control = sum(1 for b in sample if b < 0x20 and b not in b"\t\n\r\f\b\x1b") + sample.count(0x7F)
    if b"\x00" not in sample and control <= len(sample) // 20:
        return "text"
    return "unknown"


# --------------------------------------------------------------------------- documents


class Document:
    """An opened document whose pages are decoded on demand.

    Use as a context manager (or call :meth:`close`) so PDFium and Pillow
    handles are released as soon as the document is done. One instance must
    not be used from several threads at once.

    Attributes:
        mime: the sniffed type, one of :data:`SUPPORTED_MIME_TYPES`.
        page_count: number of pages (PDF pages or TIFF frames; 1 for PNG/JPEG).
    """

    mime: str
    page_count: int

    def __init__(self, mime: str, page_count: int, config: DecodeConfig):
        self.mime = mime
        self.page_count = page_count
        self._config = config
        self._closed = False

    def page(self, index: int) -> tuple[np.ndarray, float | None]:
        """Decode one page.

        Args:
            index: 0-based page number, ``0 <= index < page_count``.

        Returns:
            The RGB ``uint8`` image of shape (H, W, 3), C-contiguous and
            writable, and its resolution: for PDFs the DPI it was rendered at,
            for images the DPI from the file's metadata when plausible, else ``None``.

        Raises:
            CorruptFile: the page cannot be decoded (code ``corrupt_pdf`` or ``corrupt_image``).
            ImageTooLarge: the page (a TIFF frame) declares more than ``decode.max_pixels`` pixels.
            IndexError: ``index`` is out of range.
            ValueError: the document is closed.
        """
        if self._closed:
            raise ValueError("document is closed")
        if not 0 <= index < self.page_count:
            raise IndexError(f"page index {index} out of range for a {self.page_count}-page document")
        return self._decode(index)

    def pages(self) -> Iterator[tuple[int, np.ndarray | None, float | None, FolioError | None]]:
        """Decode every page in order, reporting failures instead of raising.

        Yields:
            ``(index, image, dpi, None)`` for a decoded page, or
            ``(index, None, None, error)`` for a page that failed, so one bad
            page does not stop the rest.
        """
        for index in range(self.page_count):
            try:
                image, dpi = self.page(index)
            except FolioError as e:
                log.debug("page %d of %s failed: %s", index, self.mime, e)
                yield index, None, None, e
                continue
            yield index, image, dpi, None

    def close(self) -> None:
        """Release the decoder's handles. Safe to call more than once."""
        if not self._closed:
            self._closed = True
            self._release()

    def __enter__(self) -> Document:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"<{type(self).__name__} {self.mime} pages={self.page_count} {state}>"

    def _decode(self, index: int) -> tuple[np.ndarray, float | None]:
        raise NotImplementedError

    def _release(self) -> None:
        raise NotImplementedError


def open_document(data: bytes, config: DecodeConfig) -> Document:
    """Sniff ``data`` and open it, refusing documents that cannot be processed.

    Nothing is rendered or decoded here except headers (and the PDF's page
    tree), so refusals are fast and cheap even for hostile input.

    Args:
        data: the whole file.
        config: the ``decode`` section of the run's config.

    Returns:
        A :class:`Document`; close it (or use ``with``) when done.

    Raises:
        EmptyFile: ``data`` is empty.
        FileTooLarge: ``len(data) > config.max_file_bytes``.
        UnsupportedFormat: not a PDF, TIFF, PNG or JPEG.
        EncryptedPdf: the PDF needs a password (one encrypted with an empty
            user password opens normally).
        CorruptFile: code ``corrupt_pdf`` for a PDF that PDFium cannot load
            (truncated, damaged, or without pages); code ``corrupt_image`` for
            an image whose header cannot be parsed.
        TooManyPages: more than ``config.max_pages`` pages.
        ImageTooLarge: a single-image file (PNG, JPEG, one-frame TIFF) whose
            header declares more than ``config.max_pixels`` pixels. Frames of a
            multi-frame TIFF are checked one by one in :meth:`Document.page`.
    """
    if len(data) == 0:
        raise EmptyFile("file is empty (0 bytes)")
    if len(data) > config.max_file_bytes:
        raise FileTooLarge(
            f"file is {len(data)} bytes, larger than decode.max_file_bytes={config.max_file_bytes}"
        )
    mime = sniff(data)
    if not isinstance(data, bytes):
        data = bytes(data)  # PDFium and BytesIO want real bytes, not a view that may change
    if mime == MIME_PDF:
        return _PdfDocument(data, config)
    return _ImageDocument(data, mime, config)


def _check_page_count(count: int, config: DecodeConfig, what: str) -> None:
    if count > config.max_pages:
        raise TooManyPages(f"{what} has {count} pages, more than decode.max_pages={config.max_pages}")


def _too_large(width: int, height: int, config: DecodeConfig, where: str) -> ImageTooLarge:
    return ImageTooLarge(
        f"{where}declared image size {width}x{height} = {width * height:.3g} pixels "
        f"exceeds decode.max_pixels={config.max_pixels}"
    )


# --------------------------------------------------------------------------- PDF


def _pdf_load_error(data: bytes, e: pdfium.PdfiumError) -> FolioError:
    """Translate PDFium's document-load failure into a Folio error.

    pypdfium2 raises the same error for "cannot load" and "loaded, but 0
    pages", and in the second case its ``err_code`` is PDFium's *stale* last
    error from an earlier document (a 0-page PDF opened after an encrypted one
    reads as "incorrect password"). So the load is repeated here with the raw
    API, where a null handle means the error code is fresh. Caller holds the lock.
    """
    raw = pdfium_c.FPDF_LoadMemDocument64(data, len(data), None)
    if raw:
        pdfium_c.FPDF_CloseDocument(raw)
        return CorruptFile("PDF cannot be processed: it has no pages", code="corrupt_pdf")
    code = pdfium_c.FPDF_GetLastError()
    if code == pdfium_c.FPDF_ERR_PASSWORD:
        return EncryptedPdf("PDF is password-protected (encrypted); provide an unencrypted copy")
    if code == pdfium_c.FPDF_ERR_SECURITY:
        return EncryptedPdf(
            "PDF uses a security handler PDFium does not support (certificate or DRM encryption); "
            "provide an unencrypted copy"
        )
    if code == pdfium_c.FPDF_ERR_FORMAT:
        reason = "its structure cannot be parsed (the file is truncated or damaged)"
    else:
        reason = f"PDFium reports error {code} ({e})"
    return CorruptFile(f"PDF cannot be opened: {reason}", code="corrupt_pdf")


def _pdf_pixels(width_pt: float, height_pt: float, dpi: float) -> int:
    # Same arithmetic as pypdfium2's PdfPage.render, so the estimate is the real bitmap size.
    scale = dpi / 72
    return math.ceil(width_pt * scale) * math.ceil(height_pt * scale)


def _fit_dpi(width_pt: float, height_pt: float, dpi: float, max_pixels: int) -> float:
    """``dpi`` if the page fits in ``max_pixels`` at it, else the highest DPI (2 decimals) that does."""
    if _pdf_pixels(width_pt, height_pt, dpi) <= max_pixels:
        return float(dpi)
    fit = math.floor(72 * math.sqrt(max_pixels / (width_pt * height_pt)) * 100) / 100
    # Rounding each side up can still overshoot; step down by at least 0.01 dpi.
    while fit > 0.01 and _pdf_pixels(width_pt, height_pt, fit) > max_pixels:
        fit = math.floor(fit * 99.9) / 100
    return max(fit, 0.01)


class _PdfDocument(Document):
    """PDF rendered page by page with PDFium."""

    def __init__(self, data: bytes, config: DecodeConfig):
        with _PDFIUM_LOCK:
            try:
                pdf = pdfium.PdfDocument(data)
            except pdfium.PdfiumError as e:
                raise _pdf_load_error(data, e) from e
            try:
                count = len(pdf)
                _check_page_count(count, config, "PDF")
                # Must come before any page is loaded; draws filled-in form fields like a viewer does.
                pdf.init_forms()
            except BaseException:
                pdf.close()
                raise
        self._pdf = pdf
        super().__init__(MIME_PDF, count, config)

    def _dpi(self, page: pdfium.PdfPage, where: str) -> float:
        """The resolution the page is rendered at: ``decode.pdf_dpi``, or less to fit ``decode.max_pixels``."""
        width_pt, height_pt = page.get_size()
        if not (math.isfinite(width_pt) and math.isfinite(height_pt) and width_pt > 0 and height_pt > 0):
            raise CorruptFile(f"{where} has an invalid size {width_pt}x{height_pt} pt", code="corrupt_pdf")
        dpi = _fit_dpi(width_pt, height_pt, self._config.pdf_dpi, self._config.max_pixels)
        if _pdf_pixels(width_pt, height_pt, dpi) > self._config.max_pixels:
            raise ImageTooLarge(
                f"{where} ({width_pt:.0f}x{height_pt:.0f} pt) does not fit in "
                f"decode.max_pixels={self._config.max_pixels} at any resolution"
            )
        if dpi != self._config.pdf_dpi:
            log.info(
                "%s (%.0fx%.0f pt) rendered at %.2f dpi instead of %d to stay within max_pixels=%d",
                where, width_pt, height_pt, dpi, self._config.pdf_dpi, self._config.max_pixels,
            )
        return dpi

    @contextmanager
    def _loaded(self, index: int, where: str) -> Iterator[pdfium.PdfPage]:
        """Page ``index``, loaded and closed again under the PDFium lock."""
        with _PDFIUM_LOCK:
            try:
                page = self._pdf[index]
            except pdfium.PdfiumError as e:
                raise CorruptFile(f"{where} cannot be loaded: {e}", code="corrupt_pdf") from e
            try:
                yield page
            finally:
                page.close()

    def _decode(self, index: int) -> tuple[np.ndarray, float | None]:
        where = f"PDF page {index + 1}"
        with self._loaded(index, where) as page:
            try:
                dpi = self._dpi(page, where)
                bitmap = page.render(scale=dpi / 72, rev_byteorder=True)  # 3-byte RGB on white
                try:
                    # Copy: the bitmap's rows may be padded, and its buffer dies with it.
                    image = np.array(bitmap.to_numpy(), dtype=np.uint8, order="C", copy=True)
                finally:
                    bitmap.close()
            except pdfium.PdfiumError as e:
                raise CorruptFile(f"{where} cannot be rendered: {e}", code="corrupt_pdf") from e
        return image, dpi

    def text_layer(self, index: int) -> TextLayer:
        """The page's own text and where its text should come from (:func:`~pipeline.io.pdftext.read_text_layer`),
        in the pixels :meth:`page` would render it at.

        Raises:
            CorruptFile: the page or its text cannot be loaded.
            ImageTooLarge: the page does not fit in ``decode.max_pixels`` at any resolution.
        """
        if self._closed:
            raise ValueError("document is closed")
        where = f"PDF page {index + 1}"
        with self._loaded(index, where) as page:
            try:
                return read_text_layer(page, self._dpi(page, where))
            except pdfium.PdfiumError as e:
                raise CorruptFile(f"{where}: its text cannot be read: {e}", code="corrupt_pdf") from e

    def _release(self) -> None:
        with _PDFIUM_LOCK:
            self._pdf.close()


# --------------------------------------------------------------------------- images


def _allow_pillow_pixels(max_pixels: int) -> None:
    """Raise Pillow's own bomb limit to at least ``max_pixels`` (never lower it).

    Our check against ``decode.max_pixels`` runs first; Pillow's global limit
    (default about 89 Mpx, error above twice that) would otherwise warn about
    or refuse TIFF frames that the configuration allows.
    """
    limit = Image.MAX_IMAGE_PIXELS
    if limit is not None and limit < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels


def _open_pil(data: bytes, fmt: str) -> Image.Image:
    """Parse an image header with the plugin for ``fmt``, without decoding pixels.

    This is ``Image.open`` minus format probing (we sniffed already) and minus
    Pillow's bomb check, which would raise before we can read the size and
    report it against ``decode.max_pixels``.
    """
    if fmt not in Image.OPEN:
        Image.init()
    factory, _accept = Image.OPEN[fmt]
    return factory(io.BytesIO(data))


def _image_dpi(info: dict) -> float | None:
    """Resolution from Pillow's ``info['dpi']`` when plausible, else ``None``."""
    dpi = info.get("dpi")
    if not isinstance(dpi, (tuple, list)) or not dpi:
        return None
    for value in dpi:
        try:
            value = float(value)
        except (TypeError, ValueError, ZeroDivisionError):
            continue
        if math.isfinite(value) and _SANE_DPI[0] <= value <= _SANE_DPI[1]:
            return round(value, 2)
    return None


def _gray_to_rgb(gray: np.ndarray) -> np.ndarray:
    return np.repeat(gray[:, :, None], 3, axis=2)


def _scale_16bit(a: np.ndarray) -> np.ndarray:
    """0..65535 to 0..255 with rounding (v * 255 / 65535)."""
    return ((a.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)


def _stretch(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    if hi <= lo:
        return np.zeros(a.shape, np.uint8)
    return np.clip(np.rint((a.astype(np.float64) - lo) * (255.0 / (hi - lo))), 0, 255).astype(np.uint8)


def _int_to_gray(a: np.ndarray) -> np.ndarray:
    """Mode ``I`` (32-bit signed): 8-bit range kept, 16-bit range scaled, anything else stretched."""
    lo, hi = int(a.min()), int(a.max())
    if lo >= 0 and hi <= 255:
        return a.astype(np.uint8)
    if lo >= 0 and hi <= 65535:
        return _scale_16bit(a)
    return _stretch(a, lo, hi)


def _float_to_gray(a: np.ndarray) -> np.ndarray:
    """Mode ``F``: 0..1 scaled, 0..255 kept, anything else stretched; NaN/inf become the darkest value."""
    finite = np.isfinite(a)
    if not finite.any():
        return np.zeros(a.shape, np.uint8)
    lo, hi = float(a[finite].min()), float(a[finite].max())
    a = np.where(finite, a, lo)
    if lo >= 0 and hi <= 1:
        return np.rint(a * 255).astype(np.uint8)
    if lo >= 0 and hi <= 255:
        return np.rint(a).astype(np.uint8)
    return _stretch(a, lo, hi)


_ALPHA_MODES = {"RGBA", "RGBa", "LA", "La", "PA"}


def _to_rgb(im: Image.Image) -> np.ndarray:
    """Any Pillow mode to a writable, C-contiguous RGB ``uint8`` array."""
    mode = im.mode
    if mode == "RGB":
        return np.array(im, dtype=np.uint8)
    if mode.startswith("I;16"):
        return _gray_to_rgb(_scale_16bit(np.asarray(im)))
    if mode == "I":
        return _gray_to_rgb(_int_to_gray(np.asarray(im)))
    if mode == "F":
        return _gray_to_rgb(_float_to_gray(np.asarray(im)))
    if mode in _ALPHA_MODES or "transparency" in im.info:
        # Pillow has no La -> RGBA conversion; La -> LA un-premultiplies first.
        rgba = (im.convert("LA") if mode == "La" else im).convert("RGBA")
        out = Image.new("RGB", rgba.size, (255, 255, 255))
        out.paste(rgba, mask=rgba.getchannel("A"))  # alpha over white
        return np.array(out, dtype=np.uint8)
    try:
        converted = im.convert("RGB")  # 1, L, P, CMYK (Adobe inversion handled at decode), YCbCr, ...
    except ValueError as e:
        raise UnsupportedFormat(f"colour mode {mode} cannot be converted to RGB") from e
    return np.array(converted, dtype=np.uint8)


def _orientation(im: Image.Image) -> int:
    try:
        value = im.getexif().get(0x0112, 1)  # EXIF/TIFF Orientation (Pillow also reads XMP's)
    except _PIL_ERRORS as e:
        log.debug("unreadable EXIF ignored: %s", e)
        return 1
    return value if isinstance(value, int) else 1


class _ImageDocument(Document):
    """TIFF (one page per frame), PNG or JPEG, read with Pillow."""

    def __init__(self, data: bytes, mime: str, config: DecodeConfig):
        self._fmt = _PIL_FORMAT[mime]
        _allow_pillow_pixels(config.max_pixels)
        try:
            im = _open_pil(data, self._fmt)
        except Image.DecompressionBombError as e:
            raise ImageTooLarge(f"{self._fmt} image too large: {e}") from e
        except _PIL_ERRORS as e:
            raise CorruptFile(f"{self._fmt} image header cannot be parsed: {e}", code="corrupt_image") from e
        try:
            count = 1
            if mime == MIME_TIFF:
                try:
                    count = int(getattr(im, "n_frames", 1))
                except _PIL_ERRORS as e:
                    raise CorruptFile(
                        f"TIFF frame directory (IFD chain) cannot be parsed: {e}", code="corrupt_image"
                    ) from e
                _check_page_count(count, config, "TIFF")
            width, height = im.size
            if count == 1 and width * height > config.max_pixels:
                raise _too_large(width, height, config, "")
        except BaseException:
            im.close()
            raise
        self._im = im
        super().__init__(mime, count, config)

    def _decode(self, index: int) -> tuple[np.ndarray, float | None]:
        im = self._im
        where = f"{self._fmt} page {index + 1}: " if self.page_count > 1 else f"{self._fmt}: "
        try:
            if self.page_count > 1:
                im.seek(index)
            width, height = im.size
            if width * height > self._config.max_pixels:
                raise _too_large(width, height, self._config, where)
            if width < 1 or height < 1:
                raise CorruptFile(f"{where}image is {width}x{height} pixels", code="corrupt_image")
            im.load()
            dpi = _image_dpi(im.info)
            frame = ImageOps.exif_transpose(im) if _orientation(im) in range(2, 9) else im
            image = _to_rgb(frame)
        except Image.DecompressionBombError as e:
            raise ImageTooLarge(f"{where}{e}") from e
        except FolioError:
            raise
        except _PIL_ERRORS as e:
            raise CorruptFile(f"{where}pixel data cannot be decoded: {e}", code="corrupt_image") from e
        return np.ascontiguousarray(image), dpi

    def _release(self) -> None:
        self._im.close()
