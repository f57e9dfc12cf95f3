"""Builders for bad and awkward inputs, as bytes, for decode and pipeline tests.

Every function returns the complete file content; nothing is written to disk
and nothing is downloaded. Images are small, white, with a few black
"text-like" rectangles, so they are cheap to decode and still give OCR
something to look at. Builders that tests inspect pixel by pixel document the
layout they draw.
"""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np
from PIL import Image, ImageDraw

__all__ = [
    "zero_bytes",
    "text_as_pdf",
    "html_bytes",
    "zip_bytes",
    "elf_bytes",
    "gif_bytes",
    "webp_bytes",
    "pdf_pages",
    "pdf_with_bad_page",
    "truncated_pdf",
    "pdf_header_only",
    "pdf_zero_pages",
    "encrypted_pdf",
    "encrypted_pdf_empty_password",
    "png_bytes",
    "jpeg_bytes",
    "tiff_bytes",
    "png_bomb",
    "png_bad_header",
    "truncated_png",
    "truncated_jpeg",
    "truncated_tiff",
    "cmyk_jpeg",
    "png16",
    "PNG16_VALUES",
    "palette_png",
    "rgba_png",
    "exif_rotated_jpeg",
    "multi_frame_tiff",
    "TIFF_FRAME_MODES",
    "fax_tiff",
    "tiff_with_bad_frame",
    "premultiplied_alpha_tiff",
]


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


def _pdf_file(objects: list[bytes]) -> bytes:
    """Serialise ``objects`` (object 1 is the catalog) with a correct xref table."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += b"%d 0 obj\n" % number + body + b"\nendobj\n"
    xref = len(out)
    out += b"xref\n0 %d\n" % (len(objects) + 1)
    out += b"0000000000 65535 f \n"
    out += b"".join(b"%010d 00000 n \n" % off for off in offsets)
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _stream(content: bytes) -> bytes:
    return b"<< /Length %d >>\nstream\n" % len(content) + content + b"\nendstream"


def pdf_pages(n: int, width_pt: float = 595, height_pt: float = 842, rotate: int = 0) -> bytes:
    """A valid PDF with ``n`` lightly drawn pages of ``width_pt`` x ``height_pt`` points.

    Each page has a black bar 1 inch from the top-left corner (72..216 pt
    across, 36 pt high) and the text ``Page <k>`` in Helvetica below it, so
    renders are not blank and pages can be told apart. ``rotate`` (0, 90, 180,
    270) is written as each page's ``/Rotate``, so a viewer shows a 90-degree
    page ``height_pt`` wide and ``width_pt`` high. Written object by object, so
    5000 pages take milliseconds.
    """
    return _pdf_doc(n, width_pt, height_pt, rotate)


def pdf_with_bad_page(n: int = 3, bad: int = 1) -> bytes:
    """Like :func:`pdf_pages`, but the page tree's entry for page ``bad`` (0-based) is dangling.

    The document opens and counts ``n`` pages; PDFium fails to load that one
    page only, the way a partly damaged PDF does.
    """
    return _pdf_doc(n, 595, 842, 0, broken=(bad,))


def _pdf_doc(n: int, width_pt: float, height_pt: float, rotate: int, broken: tuple[int, ...] = ()) -> bytes:
    if n < 0:
        raise ValueError("n must be >= 0")
    first_page = 4  # 1 catalog, 2 page tree, 3 font, then (page, content) pairs
    missing = first_page + 2 * n + 100  # an object number nothing defines
    kids = b" ".join(b"%d 0 R" % (missing if i in broken else first_page + 2 * i) for i in range(n))
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [%s] /Count %d >>" % (kids, n),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>",
    ]
    top = height_pt - 72
    for i in range(n):
        content = (
            b"0 g 72 %.2f 144 36 re f\nBT /F1 24 Tf 72 %.2f Td (Page %d) Tj ET" % (top - 36, top - 72, i + 1)
        )
        objects.append(
            b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.2f %.2f] /Rotate %d "
            b"/Resources << /Font << /F1 3 0 R >> >> /Contents %d 0 R >>"
            % (width_pt, height_pt, rotate, first_page + 2 * i + 1)
        )
        objects.append(_stream(content))
    return _pdf_file(objects)


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


def _encrypt(data: bytes, user_password: str, owner_password: str) -> bytes:
    from pypdf import PdfReader, PdfWriter

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(data)))
    writer.encrypt(user_password=user_password, owner_password=owner_password, algorithm="AES-128")
    buf = io.BytesIO()
    writer.write(buf)
    return buf.getvalue()


def encrypted_pdf(user_password: str = "secret") -> bytes:
    """A two-page PDF that needs ``user_password`` to open (AES-128)."""
    return _encrypt(pdf_pages(2), user_password, owner_password="owner-" + user_password)


def encrypted_pdf_empty_password() -> bytes:
    """A two-page PDF encrypted with an empty user password (opens without asking)."""
    return _encrypt(pdf_pages(2), "", owner_password="owner-secret")


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


def _noise_image(size: tuple[int, int]) -> Image.Image:
    # Noise does not compress, so half the file is half the pixels.
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


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
    while ifd:
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
