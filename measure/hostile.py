"""A corpus of hostile and awkward inputs, with the outcome each must get.

Folio reads whatever lands in a bucket: interrupted downloads, HTML error
pages saved as ``.pdf``, decompression bombs, 500-frame faxes, names no shell
likes. This module builds such inputs as bytes (nothing is downloaded, nothing
needs a dev dependency) and lists them as :data:`CASES`, each with the outcome
``folio run`` must give it under :data:`CORPUS_OVERRIDES`:

* ``"ok"``: every page processed (possibly with no text);
* ``"partial"``: some pages processed, the others failed with ``page_error``;
* an ``error_code`` (``empty_file``, ``corrupt_pdf``, ``image_too_large``, ...):
  the document is refused with that code, and nothing else in the batch is affected.

:func:`generate` writes the corpus and a ``hostile_manifest.json`` of expected
outcomes (``folio synth --hostile DEST``); ``tests/test_hostile.py`` runs it
through both runners. The builders are also the fixtures of the decode tests
(``tests/badinputs.py`` re-exports them). Images are small, white, with a few
black "text-like" bars, so they are cheap to decode and still give OCR
something to look at. Builders that tests inspect pixel by pixel document the
layout they draw.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import struct
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

import numpy as np
from PIL import Image, ImageDraw

from measure import pdfkinds

__all__ = [
    "HostileCase",
    "CASES",
    "CORPUS_OVERRIDES",
    "MANIFEST_NAME",
    "WEIRD_NAME",
    "LONG_KEY",
    "generate",
    "zero_bytes",
    "text_as_pdf",
    "html_bytes",
    "zip_bytes",
    "elf_bytes",
    "exe_bytes",
    "gzip_bytes",
    "gif_bytes",
    "webp_bytes",
    "pdf_pages",
    "pdf_with_bad_page",
    "pdf_claiming_pages",
    "pdf_broken_xref",
    "pdf_empty_page",
    "pdf_flate_bomb",
    "truncated_pdf",
    "pdf_header_only",
    "pdf_zero_pages",
    "encrypted_pdf",
    "encrypted_pdf_empty_password",
    "png_bytes",
    "jpeg_bytes",
    "tiff_bytes",
    "png_bomb",
    "jpeg_bomb",
    "tiff_bomb",
    "png_bad_header",
    "truncated_png",
    "truncated_jpeg",
    "truncated_tiff",
    "noise_png",
    "cmyk_jpeg",
    "png16",
    "PNG16_VALUES",
    "palette_png",
    "rgba_png",
    "exif_rotated_jpeg",
    "multi_frame_tiff",
    "many_frame_tiff",
    "TIFF_FRAME_MODES",
    "fax_tiff",
    "tiff_with_bad_frame",
    "tiff_with_bomb_frame",
    "tiff_ifd_loop",
    "premultiplied_alpha_tiff",
]

log = logging.getLogger(__name__)

#: Name of the file :func:`generate` writes beside the corpus (exclude it from runs: ``--exclude '*.json'``).
MANIFEST_NAME = "hostile_manifest.json"

#: Settings the expected outcomes of :data:`CASES` hold under (``folio run --set`` each of them).
#: Everything else is the default: the bombs are refused by the default ``decode.max_pixels`` too.
#: ``max_pages`` is lowered so the 500-frame TIFF is refused rather than OCR'd page by page.
CORPUS_OVERRIDES: dict[str, object] = {"decode.max_pages": 100}


# --------------------------------------------------------------------------- not documents


def zero_bytes() -> bytes:
    """An empty file."""
    return b""


def text_as_pdf() -> bytes:
    """Plain text, as if someone saved notes under a ``.pdf`` name."""
    return b"Meeting notes\nThis is not a PDF, it is plain text saved as notes.pdf.\n"


def html_bytes() -> bytes:
    """An HTML error page, the usual thing a broken download leaves behind."""
    return (
        b"<!DOCTYPE html>\n<html><head><title>403 Forbidden</title></head>"
        b"<body><h1>Forbidden</h1></body></html>\n"
    )


def zip_bytes() -> bytes:
    """A ZIP archive holding one text file (DOCX and friends look the same)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("scan.txt", "not a scan")
    return buf.getvalue()


def elf_bytes() -> bytes:
    """The start of a 64-bit little-endian ELF executable."""
    return b"\x7fELF\x02\x01\x01\x00" + bytes(56) + b"\x00" * 64


def exe_bytes() -> bytes:
    """The start of a Windows PE executable (``MZ`` DOS stub pointing at a ``PE`` header)."""
    dos = bytearray(b"MZ" + bytes(62))
    struct.pack_into("<I", dos, 0x3C, 64)  # e_lfanew
    return bytes(dos) + b"PE\x00\x00" + bytes(20) + b"This program cannot be run in DOS mode.\r\n"


def gzip_bytes() -> bytes:
    """A gzip-compressed PDF (``scan.pdf.gz`` renamed ``scan.pdf``)."""
    import gzip

    return gzip.compress(pdf_pages(1), mtime=0)


def gif_bytes() -> bytes:
    """A small GIF (a real image, but not a format Folio reads)."""
    buf = io.BytesIO()
    _page_image("L", (64, 48)).convert("P").save(buf, "GIF")
    return buf.getvalue()


def webp_bytes() -> bytes:
    """A small WebP image (a real image, but not a format Folio reads)."""
    buf = io.BytesIO()
    _page_image("RGB", (64, 48)).save(buf, "WEBP")
    return buf.getvalue()


# --------------------------------------------------------------------------- PDF


@dataclass(frozen=True)
class _Stream:
    """A PDF stream object: ``extra`` dictionary entries (without /Length) and its data."""

    data: bytes
    extra: bytes = b""


@dataclass(frozen=True)
class _Rc4Encryption:
    """The standard security handler, revision 2 (RC4, 40-bit key), which every reader supports."""

    user_password: bytes
    owner_password: bytes
    file_id: bytes
    permissions: int = -4  # everything allowed; bits 1-2 must be 0

    _PAD = bytes.fromhex("28BF4E5E4E758A4164004E56FFFA01082E2E00B6D0683E802F0CA9FE6453697A")

    def _pad(self, password: bytes) -> bytes:
        return (password + self._PAD)[:32]

    @property
    def owner_entry(self) -> bytes:  # Algorithm 3
        key = hashlib.md5(self._pad(self.owner_password)).digest()[:5]
        return _rc4(key, self._pad(self.user_password))

    @property
    def key(self) -> bytes:  # Algorithm 2
        material = self._pad(self.user_password) + self.owner_entry + struct.pack("<i", self.permissions)
        return hashlib.md5(material + self.file_id).digest()[:5]

    def dictionary(self) -> bytes:
        user_entry = _rc4(self.key, self._PAD)  # Algorithm 4
        return b"<< /Filter /Standard /V 1 /R 2 /O <%s> /U <%s> /P %d >>" % (
            self.owner_entry.hex().encode(), user_entry.hex().encode(), self.permissions,
        )

    def encrypt(self, number: int, data: bytes) -> bytes:  # Algorithm 1, generation 0
        object_key = hashlib.md5(self.key + number.to_bytes(3, "little") + b"\x00\x00").digest()[:10]
        return _rc4(object_key, data)


def _rc4(key: bytes, data: bytes) -> bytes:
    s = list(range(256))
    j = 0
    for i in range(256):
        j = (j + s[i] + key[i % len(key)]) & 0xFF
        s[i], s[j] = s[j], s[i]
    out = bytearray(len(data))
    i = j = 0
    for n, byte in enumerate(data):
        i = (i + 1) & 0xFF
        j = (j + s[i]) & 0xFF
        s[i], s[j] = s[j], s[i]
        out[n] = byte ^ s[(s[i] + s[j]) & 0xFF]
    return bytes(out)


def _pdf_file(objects: list[bytes | _Stream], encryption: _Rc4Encryption | None = None) -> bytes:
    """Serialise ``objects`` (object 1 is the catalog) with a correct xref table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        if isinstance(body, _Stream):
            data = encryption.encrypt(number, body.data) if encryption else body.data
            body = b"<< /Length %d %s>>\nstream\n" % (len(data), body.extra) + data + b"\nendstream"
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    trailer = b"/Root 1 0 R"
    if encryption is not None:
        offsets.append(len(out))
        out += b"%d 0 obj\n" % (len(offsets)) + encryption.dictionary() + b"\nendobj\n"
        file_id = encryption.file_id.hex().encode()
        trailer += b" /Encrypt %d 0 R /ID [<%s> <%s>]" % (len(offsets), file_id, file_id)
    xref = len(out)
    out += b"xref\n0 %d\n" % (len(offsets) + 1)
    out += b"0000000000 65535 f \n"
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d %s >>\nstartxref\n%d\n%%%%EOF\n" % (len(offsets) + 1, trailer, xref)
    return bytes(out)


def pdf_pages(n: int, width_pt: float = 595, height_pt: float = 842, rotate: int = 0) -> bytes:
    """A valid PDF with ``n`` lightly drawn pages of ``width_pt`` x ``height_pt`` points.

    Each page has a black bar 1 inch from the top-left corner (72..216 pt
    across, 36 pt high) and the text ``Page <k>`` in Helvetica below it, so
    renders are not blank and pages can be told apart. ``rotate`` (0, 90, 180,
    270) is written as each page's ``/Rotate``, so a viewer shows a 90-degree
    page ``height_pt`` wide and ``width_pt`` high. Written object by object, so
    5000 pages take milliseconds.
    """
    return _pdf_file(_pdf_objects(n, width_pt, height_pt, rotate))


def pdf_with_bad_page(n: int = 3, bad: int = 1, width_pt: float = 595, height_pt: float = 842) -> bytes:
    """Like :func:`pdf_pages`, but the page tree's entry for page ``bad`` (0-based) is dangling.

    The document opens and counts ``n`` pages; PDFium fails to load that one
    page only, the way a partly damaged PDF does.
    """
    return _pdf_file(_pdf_objects(n, width_pt, height_pt, 0, broken=(bad,)))


def pdf_claiming_pages(claimed: int = 100_000) -> bytes:
    """A one-page PDF whose page tree says ``/Count claimed``.

    PDFium believes the count (it is how a 100,000-page PDF opens without
    reading 100,000 page objects), so the limit must be checked before any
    page is touched.
    """
    return _pdf_file(_pdf_objects(1, 595, 842, 0, claimed=claimed))


def pdf_broken_xref(width_pt: float = 595, height_pt: float = 842) -> bytes:
    """A valid one-page PDF whose cross-reference offsets all point 7 bytes off, and ``startxref`` too.

    Viewers rebuild the table by scanning for ``n 0 obj``; so does PDFium.
    """
    data = bytearray(_pdf_file(_pdf_objects(1, width_pt, height_pt, 0, label=b"Xref")))
    xref = data.rindex(b"\nxref\n") + 1
    table_end = data.index(b"trailer", xref)
    table = bytes(data[xref:table_end])
    lines = table.split(b"\n")
    for i, line in enumerate(lines):
        if line.endswith(b" n ") and len(line) == 19:
            lines[i] = b"%010d 00000 n " % (int(line[:10]) + 7)
    data[xref:table_end] = b"\n".join(lines)
    start = data.rindex(b"startxref\n") + len(b"startxref\n")
    end = data.index(b"\n", start)
    data[start:end] = b"%d" % (xref + 13)
    return bytes(data)


def pdf_empty_page(width_pt: float = 595, height_pt: float = 842) -> bytes:
    """A one-page PDF whose page has no content at all: renders white, OCR finds nothing."""
    return _pdf_file([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.2f %.2f] >>" % (width_pt, height_pt),
    ])


def _pdf_objects(
    n: int,
    width_pt: float,
    height_pt: float,
    rotate: int,
    broken: tuple[int, ...] = (),
    claimed: int | None = None,
    label: bytes = b"Page",
) -> list[bytes | _Stream]:
    if n < 0:
        raise ValueError("n must be >= 0")
    first_page = 4  # 1 catalog, 2 page tree, 3 font, then (page, content) pairs
    missing = first_page + 2 * n + 100  # an object number nothing defines
    kids = b" ".join(b"%d 0 R" % (missing if i in broken else first_page + 2 * i) for i in range(n))
    objects: list[bytes | _Stream] = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, n if claimed is None else claimed),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    top = height_pt - 72
    for i in range(n):
        content = (
            b"0 g 72 %.2f 144 36 re f\nBT /F1 24 Tf 72 %.2f Td (%s %d) Tj ET" % (top - 36, top - 72, label, i + 1)
        )
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.2f %.2f] /Rotate %d "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>"
            % (width_pt, height_pt, rotate, first_page + 2 * i + 1)
        )
        objects.append(_Stream(content))
    return objects


def truncated_pdf() -> bytes:
    """The first half of a valid three-page PDF, as an interrupted download leaves it.

    PDFium rebuilds a damaged cross-reference table by scanning the objects, but
    it needs the trailer (with ``/Root``) at the end: any cut before the trailer
    fails to load with FPDF_ERR_FORMAT.
    """
    data = pdf_pages(3)
    return data[: len(data) // 2]


def pdf_header_only() -> bytes:
    """Just ``%PDF-1.7`` and a newline."""
    return b"%PDF-1.7\n"


def pdf_zero_pages() -> bytes:
    """A well-formed PDF whose page tree is empty."""
    return _pdf_file([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"])


def encrypted_pdf(user_password: str = "secret") -> bytes:
    """A two-page A4 PDF that needs ``user_password`` to open (RC4, 40-bit: the standard handler's revision 2)."""
    return _encrypted(user_password, "owner-" + user_password)


def encrypted_pdf_empty_password(width_pt: float = 595, height_pt: float = 842) -> bytes:
    """A two-page PDF encrypted with an empty user password (opens without asking), owner password set."""
    return _encrypted("", "owner-secret", width_pt, height_pt)


def _encrypted(user_password: str, owner_password: str, width_pt: float = 595, height_pt: float = 842) -> bytes:
    file_id = hashlib.md5(b"folio-hostile:" + user_password.encode() + b":" + owner_password.encode()).digest()
    encryption = _Rc4Encryption(user_password.encode("latin-1"), owner_password.encode("latin-1"), file_id)
    return _pdf_file(_pdf_objects(2, width_pt, height_pt, 0), encryption)


# --------------------------------------------------------------------------- images


def _page_image(mode: str, size: tuple[int, int], background=None, ink=None) -> Image.Image:
    """White (or ``background``) image with black (or ``ink``) text-like bars."""
    w, h = size
    background = "white" if background is None else background
    ink = "black" if ink is None else ink
    im = Image.new(mode, size, background)
    draw = ImageDraw.Draw(im)
    for row in range(h // 8, h - h // 8, max(4, h // 6)):
        draw.rectangle([w // 8, row, w - w // 4, row + max(1, h // 24)], fill=ink)
    return im


def _save(im: Image.Image, fmt: str, **params) -> bytes:
    buf = io.BytesIO()
    im.save(buf, fmt, **params)
    return buf.getvalue()


def png_bytes(size: tuple[int, int] = (200, 120), dpi: float | None = 300) -> bytes:
    """A plain RGB PNG with text-like bars."""
    params = {"dpi": (dpi, dpi)} if dpi else {}
    return _save(_page_image("RGB", size), "PNG", **params)


def jpeg_bytes(size: tuple[int, int] = (200, 120), dpi: float | None = 300) -> bytes:
    """A plain RGB JPEG with text-like bars."""
    params = {"dpi": (dpi, dpi)} if dpi else {}
    return _save(_page_image("RGB", size), "JPEG", quality=90, **params)


def tiff_bytes(size: tuple[int, int] = (200, 120), dpi: float | None = 300, mode: str = "L") -> bytes:
    """A one-frame uncompressed TIFF with text-like bars."""
    params = {"dpi": (dpi, dpi)} if dpi else {}
    return _save(_page_image(mode, size), "TIFF", **params)


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def png_bomb(width: int = 60000, height: int = 60000) -> bytes:
    """A tiny, structurally valid PNG whose IHDR declares ``width`` x ``height``.

    1-bit greyscale; the IDAT holds only a few compressed rows, so decoding
    would fail late, but a decoder that trusts the header allocates
    ``width * height`` pixels first. The file is well under a kilobyte.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    row = b"\x00" + b"\x00" * ((width + 7) // 8)
    idat = zlib.compress(row * 4, 9)
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


def jpeg_bomb(width: int = 60000, height: int = 60000) -> bytes:
    """A small baseline JPEG whose SOF0 marker is rewritten to declare ``width`` x ``height`` (at most 65535)."""
    data = bytearray(jpeg_bytes(size=(64, 48), dpi=None))
    sof = data.index(b"\xff\xc0")
    struct.pack_into(">HH", data, sof + 5, height, width)  # length(2) precision(1) then height, width
    return bytes(data)


def tiff_bomb(width: int = 60000, height: int = 60000) -> bytes:
    """A small one-frame TIFF whose ImageWidth/ImageLength tags declare ``width`` x ``height`` (at most 65535)."""
    data = bytearray(tiff_bytes(size=(64, 48), dpi=None))
    ifd = _tiff_ifds(bytes(data))[0]
    _patch_tiff_tag(data, ifd, 256, width)
    _patch_tiff_tag(data, ifd, 257, height)
    return bytes(data)


def png_bad_header() -> bytes:
    """The PNG signature followed by garbage instead of an IHDR chunk."""
    return b"\x89PNG\r\n\x1a\n" + b"\x00\x00\x00\x0dJUNK" + bytes(40)


def truncated_png() -> bytes:
    """A valid 300x200 PNG cut in the middle of its pixel data (header intact)."""
    data = _save(_noise_image((300, 200)), "PNG")
    return data[: len(data) // 2]


def truncated_jpeg() -> bytes:
    """A valid 300x200 JPEG cut in the middle of its entropy-coded data."""
    data = _save(_noise_image((300, 200)), "JPEG", quality=90)
    return data[: len(data) // 2]


def truncated_tiff() -> bytes:
    """A valid uncompressed 300x200 TIFF cut in the middle of its strip data.

    Pillow writes the IFD before the pixels, so the header still parses.
    """
    data = _save(_noise_image((300, 200)), "TIFF")
    return data[: len(data) // 2]


def _noise_image(size: tuple[int, int], mode: str = "RGB", seed: int = 0) -> Image.Image:
    # Noise does not compress, so half the file is half the pixels.
    rng = np.random.default_rng(seed)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


def noise_png(size: tuple[int, int] = (640, 480), seed: int = 1) -> bytes:
    """A greyscale page of uniform random noise: no text, every pixel an edge."""
    return _save(_noise_image(size, "L", seed), "PNG")


def cmyk_jpeg() -> bytes:
    """A 96x64 CMYK JPEG (Adobe APP14, inverted CMYK as Photoshop writes it).

    Layout: left third pure red (C=0 M=255 Y=255 K=0), middle third white,
    right third black (K=255).
    """
    im = Image.new("CMYK", (96, 64), (0, 0, 0, 0))
    draw = ImageDraw.Draw(im)
    draw.rectangle([0, 0, 31, 63], fill=(0, 255, 255, 0))
    draw.rectangle([64, 0, 95, 63], fill=(0, 0, 0, 255))
    return _save(im, "JPEG", quality=95)


#: Grey values written by :func:`png16`, left to right, one per 16-pixel column.
PNG16_VALUES = (0, 1000, 32896, 65535)


def png16() -> bytes:
    """A 64x16 16-bit greyscale PNG: four 16-pixel columns of :data:`PNG16_VALUES`."""
    arr = np.repeat(np.array(PNG16_VALUES, dtype=np.uint16), 16)[None, :].repeat(16, axis=0)
    return _save(Image.fromarray(arr), "PNG", dpi=(200, 200))


def palette_png() -> bytes:
    """A 64x16 palette PNG: columns of white, black, red and a transparent index.

    Four 16-pixel columns with palette indices 0 (white), 1 (black), 2 (red)
    and 3 (declared fully transparent, stored as black, so it must come out white).
    """
    arr = np.repeat(np.arange(4, dtype=np.uint8), 16)[None, :].repeat(16, axis=0)
    im = Image.fromarray(arr, "P")
    im.putpalette([255, 255, 255, 0, 0, 0, 255, 0, 0, 0, 0, 0])
    return _save(im, "PNG", transparency=3)


def rgba_png() -> bytes:
    """A 64x16 RGBA PNG: four 16-pixel columns.

    Opaque black; fully transparent black (must come out white); red at alpha
    128 (must come out about (255, 127, 127)); opaque blue.
    """
    colours = [(0, 0, 0, 255), (0, 0, 0, 0), (255, 0, 0, 128), (0, 0, 255, 255)]
    arr = np.repeat(np.array(colours, dtype=np.uint8), 16, axis=0)[None, :, :].repeat(16, axis=0)
    return _save(Image.fromarray(arr, "RGBA"), "PNG")


def exif_rotated_jpeg() -> bytes:
    """A 120x60 (wide) JPEG with EXIF orientation 6 (rotate 90 degrees clockwise to view).

    Stored pixels are white with a 20x20 black square in the top-left
    corner. Displayed correctly the image is 60 wide and 120 high with the
    square in the top-right corner.
    """
    im = Image.new("RGB", (120, 60), "white")
    ImageDraw.Draw(im).rectangle([0, 0, 19, 19], fill="black")
    exif = Image.Exif()
    exif[0x0112] = 6
    return _save(im, "JPEG", quality=95, exif=exif.tobytes(), dpi=(150, 150))


#: Modes the frames of :func:`multi_frame_tiff` cycle through.
TIFF_FRAME_MODES = ("L", "RGB", "1")


def multi_frame_tiff(n: int = 3) -> bytes:
    """An ``n``-frame TIFF; frame ``i`` is ``(80 + 10 * i) x 60`` pixels at 200 dpi.

    Frames cycle through the modes in :data:`TIFF_FRAME_MODES` so one file
    exercises several conversions; sizes differ so tests can tell frames apart.
    """
    if n < 1:
        raise ValueError("n must be >= 1")
    frames = [_page_image(TIFF_FRAME_MODES[i % len(TIFF_FRAME_MODES)], (80 + 10 * i, 60)) for i in range(n)]
    return _save(frames[0], "TIFF", save_all=True, append_images=frames[1:], dpi=(200, 200))


def many_frame_tiff(n: int = 500, size: tuple[int, int] = (16, 16)) -> bytes:
    """An ``n``-frame bilevel TIFF of tiny identical frames (a stuck fax machine): about 100 bytes a frame."""
    frame = _page_image("1", size)
    return _save(frame, "TIFF", save_all=True, append_images=[frame] * (n - 1), dpi=(200, 200))


def fax_tiff(n: int = 2, size: tuple[int, int] = (400, 300)) -> bytes:
    """An ``n``-page bilevel TIFF with CCITT Group 4 compression, as office scanners write.

    Decoded through libtiff (unlike the uncompressed TIFFs above).
    """
    frames = [_page_image("1", size) for _ in range(n)]
    return _save(frames[0], "TIFF", save_all=True, append_images=frames[1:], compression="group4", dpi=(300, 300))


def _tiff_ifds(data: bytes) -> list[int]:
    """Offsets of every IFD in a little-endian classic TIFF."""
    if data[:4] != b"II*\x00":
        raise ValueError("expected a little-endian classic TIFF")
    offsets = []
    (ifd,) = struct.unpack_from("<I", data, 4)
    while ifd and ifd not in offsets:
        offsets.append(ifd)
        (count,) = struct.unpack_from("<H", data, ifd)
        (ifd,) = struct.unpack_from("<I", data, ifd + 2 + 12 * count)
    return offsets


def _patch_tiff_tag(data: bytearray, ifd: int, tag: int, value: int) -> None:
    """Overwrite the inline value of a one-element SHORT or LONG ``tag`` in the IFD at ``ifd``."""
    (count,) = struct.unpack_from("<H", data, ifd)
    for entry in range(ifd + 2, ifd + 2 + 12 * count, 12):
        this_tag, kind, n = struct.unpack_from("<HHI", data, entry)
        if this_tag == tag:
            if n != 1 or kind not in (3, 4):
                raise ValueError(f"tag {tag} is not a single SHORT/LONG")
            struct.pack_into("<H" if kind == 3 else "<I", data, entry + 8, value)
            return
    raise ValueError(f"tag {tag} not found")


def tiff_with_bad_frame(n: int = 3, bad: int = 1) -> bytes:
    """An ``n``-frame uncompressed greyscale TIFF whose frame ``bad`` points its pixels past the end.

    Every frame is 120x80 with text-like bars; the header and all IFDs parse,
    but decoding frame ``bad`` fails, like one damaged page in a scanned batch.
    """
    frames = [_page_image("L", (120, 80)) for _ in range(n)]
    data = bytearray(_save(frames[0], "TIFF", save_all=True, append_images=frames[1:], dpi=(300, 300)))
    _patch_tiff_tag(data, _tiff_ifds(bytes(data))[bad], 273, len(data) + 1_000_000)  # StripOffsets
    return bytes(data)


def tiff_with_bomb_frame(n: int = 3, bomb: int = 1, side: int = 60000) -> bytes:
    """An ``n``-frame greyscale TIFF (frames 100x70) whose frame ``bomb`` declares ``side`` x ``side`` pixels."""
    frames = [_page_image("L", (100, 70)) for _ in range(n)]
    data = bytearray(_save(frames[0], "TIFF", save_all=True, append_images=frames[1:], dpi=(300, 300)))
    ifd = _tiff_ifds(bytes(data))[bomb]
    _patch_tiff_tag(data, ifd, 256, side)
    _patch_tiff_tag(data, ifd, 257, side)
    return bytes(data)


def tiff_ifd_loop(n: int = 3) -> bytes:
    """An ``n``-frame TIFF whose last IFD points back at the first: the frame chain never ends."""
    frames = [_page_image("L", (90, 60)) for _ in range(n)]
    data = bytearray(_save(frames[0], "TIFF", save_all=True, append_images=frames[1:], dpi=(300, 300)))
    ifds = _tiff_ifds(bytes(data))
    (count,) = struct.unpack_from("<H", data, ifds[-1])
    struct.pack_into("<I", data, ifds[-1] + 2 + 12 * count, ifds[0])
    return bytes(data)


def premultiplied_alpha_tiff() -> bytes:
    """A 64x16 RGBA TIFF with *associated* (premultiplied) alpha (ExtraSamples = 1).

    Pillow opens it as ``RGBA`` and un-premultiplies while decoding.

    Four 16-pixel columns, stored premultiplied: opaque black; fully
    transparent (must come out white); red at alpha 128, stored as
    (128, 0, 0, 128) (must come out about (255, 127, 127)); opaque blue.
    """
    colours = [(0, 0, 0, 255), (0, 0, 0, 0), (128, 0, 0, 128), (0, 0, 255, 255)]
    arr = np.repeat(np.array(colours, dtype=np.uint8), 16, axis=0)[None, :, :].repeat(16, axis=0)
    data = bytearray(_save(Image.fromarray(arr, "RGBA"), "TIFF"))
    _patch_tiff_tag(data, _tiff_ifds(bytes(data))[0], 338, 1)  # ExtraSamples: 2 unassociated -> 1 associated
    return bytes(data)


def pdf_flate_bomb(megabytes: int = 32, width_pt: float = 595, height_pt: float = 842) -> bytes:
    """A one-page PDF whose content stream inflates from a few kilobytes to ``megabytes`` MiB of blanks.

    PDFium inflates a content stream whole before parsing it, and exposes no
    limit on that, so memory grows with the inflated size (about 3x); kept
    small here so the corpus stays cheap. The page draws one black bar.
    """
    raw = b" " * (megabytes << 20) + b"0 g 36 %.2f 144 36 re f" % (height_pt - 72)
    return _pdf_file([
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.2f %.2f] /Contents 4 0 R >>" % (width_pt, height_pt),
        _Stream(zlib.compress(raw, 9), b"/Filter /FlateDecode "),
    ])


# --------------------------------------------------------------------------- the corpus


@dataclass(frozen=True)
class HostileCase:
    """One hostile input and the outcome it must get under :data:`CORPUS_OVERRIDES`.

    Attributes:
        name: short identifier.
        filename: path relative to the corpus folder (may hold ``/`` for nested folders).
        build: returns the file's bytes.
        expected: ``"ok"``, ``"partial"`` or the document's ``error_code``.
        note: why the case is there and why that outcome is right.
        page_error: for ``"partial"``: the ``error_code`` of the failed pages (also the documents row's).
        text_source: where the pages' text must come from (``pdf``, ``ocr``), for PDFs whose text layer
            is the point; None: not checked.
    """

    name: str
    filename: str
    build: Callable[[], bytes]
    expected: str
    note: str
    page_error: str | None = None
    text_source: str | None = None

    @property
    def status(self) -> str:
        """The documents row's ``status``: ``ok``, ``partial`` or ``error``."""
        return self.expected if self.expected in ("ok", "partial") else "error"

    @property
    def error_code(self) -> str | None:
        """The documents row's ``error_code`` (``None`` when ``ok``)."""
        if self.expected == "ok":
            return None
        return self.page_error if self.expected == "partial" else self.expected


#: Pages of the corpus's PDFs (A6, in points): small, so the corpus is cheap to OCR.
_A6 = {"width_pt": 298, "height_pt": 420}

#: A name with spaces, accents, CJK and ``../`` (percent-encoded: ``/`` cannot be in a file name,
#: and a name starting with ``.`` would be skipped as hidden). Outputs are named by run id, never by source.
WEIRD_NAME = "Scan 2024 – résumé 文档 ..%2F..%2F..%2Fetc%2Fpasswd ..\\..\\escape.png"

#: Four nested folders of 250 characters: a key of over 1,000 characters (S3 allows 1,024 bytes),
#: built as nested folders because one local file name is at most 255 bytes.
LONG_KEY = "/".join(f"{i}-" + "long-prefix-" * 20 + "x" * (250 - 2 - 12 * 20) for i in range(4)) + "/scan.png"

CASES: list[HostileCase] = [
    # -- not documents at all
    HostileCase("zero-bytes", "empty.pdf", zero_bytes, "empty_file", "0 bytes: refused before sniffing."),
    HostileCase("text-as-pdf", "notes.pdf", text_as_pdf, "unsupported_format", "plain text named .pdf"),
    HostileCase("html-as-pdf", "download.pdf", html_bytes, "unsupported_format",
                "an HTML 403 page saved by a failed download; the message says 'looks like HTML'"),
    HostileCase("zip-as-pdf", "archive.pdf", zip_bytes, "unsupported_format", "a ZIP (DOCX, EPUB...) renamed"),
    HostileCase("elf-as-pdf", "program.pdf", elf_bytes, "unsupported_format", "an ELF executable renamed"),
    HostileCase("exe-as-pdf", "setup.pdf", exe_bytes, "unsupported_format", "a Windows PE executable renamed"),
    HostileCase("gzip-as-pdf", "scan.pdf.gz.pdf", gzip_bytes, "unsupported_format",
                "a gzip-compressed PDF: the %PDF- header is inside the compressed data"),
    HostileCase("gif", "animation.gif", gif_bytes, "unsupported_format",
                "a real image in a format Folio does not read"),
    HostileCase("webp", "photo.webp", webp_bytes, "unsupported_format", "a real image in a format Folio does not read"),
    # -- PDFs
    HostileCase("truncated-pdf", "truncated.pdf", truncated_pdf, "corrupt_pdf",
                "half of a 3-page PDF: no trailer, so PDFium cannot rebuild it"),
    HostileCase("pdf-header-only", "header-only.pdf", pdf_header_only, "corrupt_pdf", "just %PDF-1.7"),
    HostileCase("pdf-zero-pages", "zero-pages.pdf", pdf_zero_pages, "corrupt_pdf", "a well-formed, empty page tree"),
    HostileCase("pdf-broken-xref", "broken-xref.pdf", lambda: pdf_broken_xref(**_A6), "ok",
                "every xref offset and startxref wrong: PDFium rebuilds the table by scanning, like viewers do"),
    HostileCase("pdf-encrypted", "encrypted.pdf", encrypted_pdf, "encrypted_pdf", "needs a user password"),
    HostileCase("pdf-encrypted-empty-password", "encrypted-no-password.pdf",
                lambda: encrypted_pdf_empty_password(**_A6), "ok",
                "encrypted with an empty user password (owner password only): opens like any viewer opens it"),
    HostileCase("pdf-claims-100000-pages", "claims-100000-pages.pdf", pdf_claiming_pages, "too_many_pages",
                "one page, /Count 100000: refused from the page count before any page is loaded"),
    HostileCase("pdf-one-bad-page", "one-bad-page.pdf", lambda: pdf_with_bad_page(**_A6), "partial",
                "page 2 of 3 is a dangling reference: pages 1 and 3 are processed", page_error="corrupt_pdf"),
    HostileCase("pdf-200-inches-wide", "banner-200in.pdf", lambda: pdf_pages(1, width_pt=200 * 72, height_pt=11 * 72),
                "ok", "200 x 11 inches: rendered at the highest DPI that fits decode.max_pixels instead of failing"),
    HostileCase("pdf-empty-page", "empty-page.pdf", lambda: pdf_empty_page(**_A6), "ok",
                "a page with no content: ok, no text"),
    HostileCase("pdf-zero-mediabox", "zero-mediabox.pdf", lambda: pdf_pages(1, width_pt=0, height_pt=0), "ok",
                "MediaBox [0 0 0 0]: PDFium falls back to US Letter, as viewers do"),
    HostileCase("pdf-junk-before-header", "mail-headers.pdf",
                lambda: b"From: scanner@example.com\r\nSubject: scan\r\n\r\n" + pdf_pages(1, **_A6), "ok",
                "mail headers before %PDF-: accepted within the first 1024 bytes, as PDFium does"),
    # -- PDF text layers that lie, and born-digital extremes (measure/pdfkinds.py)
    HostileCase("pdf-wrong-tounicode", "wrong-tounicode.pdf", lambda: pdfkinds.wrong_tounicode_pdf(), "ok",
                "visible Helvetica whose ToUnicode map shifts every letter ('Jowpjdf'): OCR'd, not read",
                text_source="ocr"),
    HostileCase("pdf-private-use-text", "private-use.pdf", lambda: pdfkinds.private_use_pdf(), "ok",
                "a ToUnicode map into the private-use area: OCR'd", text_source="ocr"),
    HostileCase("pdf-white-on-white", "white-text.pdf", lambda: pdfkinds.white_text_pdf(), "ok",
                "visible lines plus white text on white paper: the hidden lines are left out", text_source="pdf"),
    HostileCase("pdf-text-off-page", "off-page-text.pdf", lambda: pdfkinds.offpage_text_pdf(), "ok",
                "lines drawn at x=5000 pt, far outside the page box: left out", text_source="pdf"),
    HostileCase("pdf-ocr-layer-of-another-page", "foreign-ocr-layer.pdf",
                lambda: pdfkinds.scanned_with_ocr_layer_pdf(layer_lines=["Lorem ipsum dolor sit amet"] * 4), "ok",
                "a scan under an invisible OCR layer from another page: OCR'd again", text_source="ocr"),
    HostileCase("pdf-10000-born-digital-pages", "10000-pages.pdf", lambda: pdfkinds.many_pages_pdf(10_000),
                "too_many_pages", "10,000 born-digital pages (93 KB): refused from the page count"),
    HostileCase("pdf-200000-characters", "200000-characters.pdf", lambda: pdfkinds.dense_text_pdf(200_000), "ok",
                "one page of 200,000 visible characters at 4 pt: read from the file in about 2 s",
                text_source="pdf"),
    HostileCase("pdf-content-flate-bomb", "content-bomb.pdf", lambda: pdf_flate_bomb(**_A6), "ok",
                "a 3 KB content stream that inflates to 32 MiB; PDFium has no limit on it (see docs/hostile.md)"),
    # -- images
    HostileCase("truncated-png", "truncated.png", truncated_png, "corrupt_image",
                "header intact, pixel data cut: the page fails, so the only page fails"),
    HostileCase("truncated-jpeg", "truncated.jpg", truncated_jpeg, "corrupt_image", "entropy-coded data cut in half"),
    HostileCase("truncated-tiff", "truncated.tif", truncated_tiff, "corrupt_image", "strip data cut in half"),
    HostileCase("png-bad-header", "bad-header.png", png_bad_header, "corrupt_image", "PNG signature, then garbage"),
    HostileCase("one-pixel", "one-pixel.png", lambda: png_bytes(size=(1, 1), dpi=None), "ok",
                "a 1x1 image: ok, no text"),
    HostileCase("png-bomb-60000", "bomb-60000x60000.png", png_bomb, "image_too_large",
                "IHDR declares 60000x60000 (3.6 Gpx, 10.8 GB as RGB) in 200 bytes: refused from the header"),
    HostileCase("jpeg-bomb-60000", "bomb-60000x60000.jpg", jpeg_bomb, "image_too_large",
                "SOF0 declares 60000x60000: refused from the header"),
    HostileCase("tiff-bomb-60000", "bomb-60000x60000.tif", tiff_bomb, "image_too_large",
                "ImageWidth/ImageLength declare 60000x60000: refused from the header"),
    HostileCase("tiff-500-frames", "500-frames.tif", many_frame_tiff, "too_many_pages",
                "500 frames, over the corpus's decode.max_pages=100: refused after counting IFDs, nothing decoded"),
    HostileCase("tiff-bomb-frame", "bomb-frame.tif", tiff_with_bomb_frame, "partial",
                "frame 2 of 3 declares 60000x60000: that page is refused, the others processed",
                page_error="image_too_large"),
    HostileCase("tiff-one-bad-frame", "one-bad-frame.tif", tiff_with_bad_frame, "partial",
                "frame 2 of 3 points its strip past the end of the file", page_error="corrupt_image"),
    HostileCase("tiff-ifd-loop", "ifd-loop.tif", tiff_ifd_loop, "ok",
                "the last IFD points back at the first: Pillow stops at the loop, 3 pages"),
    HostileCase("cmyk-jpeg", "cmyk.jpg", cmyk_jpeg, "ok", "Adobe inverted CMYK: converted to RGB"),
    HostileCase("png-16-bit", "16-bit.png", png16, "ok", "16-bit greyscale: scaled to 8 bits"),
    HostileCase("png-palette", "palette.png", palette_png, "ok", "palette with a transparent index"),
    HostileCase("png-alpha", "alpha.png", rgba_png, "ok", "RGBA: composited on white"),
    HostileCase("jpeg-exif-rotated", "exif-rotated.jpg", exif_rotated_jpeg, "ok", "EXIF orientation 6: turned upright"),
    HostileCase("tiff-group4-fax", "fax.tif", fax_tiff, "ok", "2-page CCITT G4 fax, decoded by libtiff"),
    HostileCase("noise-page", "noise.png", noise_png, "ok",
                "640x480 of uniform noise: every pixel an edge; OCR must finish and may find nothing"),
    HostileCase("weird-filename", WEIRD_NAME, lambda: png_bytes(size=(240, 140)), "ok",
                "spaces, accents, CJK, and ../ percent-encoded and with backslashes; outputs never use the name"),
    HostileCase("key-over-1000-chars", LONG_KEY, lambda: png_bytes(size=(220, 130)), "ok",
                f"a {len(LONG_KEY)}-character relative key: four nested 250-character folders"),
]


def _safe_path(dest: Path, relative: str) -> Path:
    """``dest / relative``, refusing anything that would land outside ``dest``."""
    parts = PurePosixPath(relative).parts
    if not parts or PurePosixPath(relative).is_absolute() or any(p in ("..", ".") for p in parts):
        raise ValueError(f"corpus path {relative!r} would leave the corpus folder")
    return dest.joinpath(*parts)


def generate(dest: str | os.PathLike, cases: list[HostileCase] | None = None) -> list[tuple[Path, HostileCase]]:
    """Write the hostile corpus into ``dest`` plus :data:`MANIFEST_NAME` with each input's expected outcome.

    Args:
        dest: folder to write into (created if missing).
        cases: the cases to write (default :data:`CASES`).

    Returns:
        ``(path, case)`` for every file written, manifest excluded.

    Raises:
        ValueError: two cases share a file name or would have identical bytes (a
            second input with the same bytes is recorded as a duplicate, not decoded).
    """
    root = Path(dest)
    root.mkdir(parents=True, exist_ok=True)
    written: list[tuple[Path, HostileCase]] = []
    seen: dict[str, str] = {}
    entries = []
    for case in CASES if cases is None else cases:
        data = case.build()
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            raise ValueError(f"cases {seen[digest]!r} and {case.name!r} have identical bytes")
        seen[digest] = case.name
        path = _safe_path(root, case.filename)
        if any(path == p for p, _ in written):
            raise ValueError(f"two cases write {case.filename!r}")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append((path, case))
        entries.append({
            "name": case.name, "path": case.filename, "bytes": len(data), "sha256": digest,
            "expected": case.expected, "status": case.status, "error_code": case.error_code, "note": case.note,
        })
    manifest = {
        "description": "Hostile inputs for Folio and the outcome each must get; run with "
        "`folio run DEST OUT --exclude '*.json' " + " ".join(f"--set {k}={v}" for k, v in CORPUS_OVERRIDES.items())
        + "`",
        "config_overrides": CORPUS_OVERRIDES,
        "cases": entries,
    }
    (root / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    log.info("wrote %d hostile inputs to %s", len(written), root)
    return written
