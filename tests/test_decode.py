"""Sniffing, opening and decoding documents, and every way that can fail.

All inputs are built in memory by :mod:`tests.badinputs`; PDFs are rendered at
low DPI where the resolution does not matter, to keep the file fast.
"""

from __future__ import annotations

import io
import math
import resource
import threading
import time

import numpy as np
import pytest
from PIL import Image

from pipeline.io import decode
from pipeline.config import DecodeConfig
from pipeline.io.decode import Document, open_document, sniff
from pipeline.errors import (
    CorruptFile,
    EmptyFile,
    EncryptedPdf,
    FileTooLarge,
    FolioError,
    ImageTooLarge,
    InputError,
    TooManyPages,
    UnsupportedFormat,
)
from tests import badinputs as bad

LOW = DecodeConfig(pdf_dpi=72)


def _is_rgb(img: np.ndarray) -> bool:
    return img.dtype == np.uint8 and img.ndim == 3 and img.shape[2] == 3 and img.flags.c_contiguous


def _decode_one(data: bytes, config: DecodeConfig = LOW) -> tuple[np.ndarray, float | None]:
    with open_document(data, config) as doc:
        assert doc.page_count == 1
        return doc.page(0)


def _columns(img: np.ndarray, n: int = 4) -> list[tuple[int, ...]]:
    """Colour at the middle of each of ``n`` equal-width columns (the builders' layouts)."""
    h, w = img.shape[:2]
    return [tuple(int(v) for v in img[h // 2, (2 * i + 1) * w // (2 * n)]) for i in range(n)]


def _close(actual, expected, tol=3) -> bool:
    return all(abs(a - e) <= tol for a, e in zip(actual, expected, strict=True))


# --------------------------------------------------------------------------- sniff


@pytest.mark.parametrize(
    "data, mime",
    [
        (bad.pdf_pages(1), "application/pdf"),
        (b"From: scanner@example.com\r\n\r\n" + bad.pdf_pages(1), "application/pdf"),  # junk before %PDF-
        (bad.tiff_bytes(), "image/tiff"),
        (bad.multi_frame_tiff(2), "image/tiff"),
        (b"MM\x00*" + bytes(8), "image/tiff"),  # big-endian
        (b"II+\x00" + bytes(12), "image/tiff"),  # BigTIFF
        (bad.png_bytes(), "image/png"),
        (bad.png_bomb(), "image/png"),  # sniffing looks at the signature only
        (bad.jpeg_bytes(), "image/jpeg"),
        (bad.cmyk_jpeg(), "image/jpeg"),
    ],
)
def test_sniff_supported(data, mime):
    assert sniff(data) == mime


def test_sniff_empty():
    with pytest.raises(EmptyFile) as info:
        sniff(bad.zero_bytes())
    assert info.value.code == "empty_file"


@pytest.mark.parametrize(
    "data, looks_like",
    [
        (bad.html_bytes(), "HTML"),
        (b"\xef\xbb\xbf  <html><body>%PDF-1.4 is a header</body></html>", "HTML"),
        (bad.zip_bytes(), "ZIP"),
        (bad.elf_bytes(), "ELF executable"),
        (bad.gif_bytes(), "GIF"),
        (bad.webp_bytes(), "WebP"),
        (bad.text_as_pdf(), "text"),
        (b"<?xml version='1.0'?><svg xmlns='http://www.w3.org/2000/svg'/>", "SVG"),
        (bytes(range(256)) * 2, "unknown"),
    ],
)
def test_sniff_names_what_an_unsupported_file_looks_like(data, looks_like):
    with pytest.raises(UnsupportedFormat) as info:
        sniff(data)
    assert info.value.code == "unsupported_format"
    assert f"looks like {looks_like}" in info.value.message
    assert "PDF, TIFF, PNG and JPEG" in info.value.message


def test_open_refuses_unsupported_and_empty():
    with pytest.raises(UnsupportedFormat, match="HTML"):
        open_document(bad.html_bytes(), LOW)
    with pytest.raises(EmptyFile):
        open_document(b"", LOW)


# --------------------------------------------------------------------------- PDF


def test_pdf_renders_at_configured_dpi():
    with open_document(bad.pdf_pages(2), DecodeConfig(pdf_dpi=150)) as doc:
        assert isinstance(doc, Document)
        assert (doc.mime, doc.page_count) == ("application/pdf", 2)
        img, dpi = doc.page(1)
    assert dpi == 150.0
    assert img.shape == (math.ceil(842 * 150 / 72), math.ceil(595 * 150 / 72), 3)
    assert _is_rgb(img) and img.flags.writeable
    # The black bar: 72..216 pt across, 72..108 pt from the top.
    s = 150 / 72
    assert img[int(90 * s), int(100 * s)].max() < 40
    assert img[int(20 * s), int(20 * s)].min() == 255


def test_pdf_default_dpi_is_300():
    img, dpi = _decode_one(bad.pdf_pages(1, width_pt=144, height_pt=72), DecodeConfig())
    assert dpi == 300.0
    assert img.shape == (300, 600, 3)


def test_pdf_page_rotation_is_applied():
    img, _ = _decode_one(bad.pdf_pages(1, rotate=90))
    assert img.shape == (595, 842, 3)


def test_pdf_dpi_is_lowered_to_fit_max_pixels():
    cfg = DecodeConfig(pdf_dpi=300, max_pixels=1_000_000)
    img, dpi = _decode_one(bad.pdf_pages(1), cfg)
    h, w = img.shape[:2]
    assert dpi < 300
    assert (h, w) == (math.ceil(842 * dpi / 72), math.ceil(595 * dpi / 72))
    assert h * w <= cfg.max_pixels
    # The highest that fits: 0.2% more resolution would not.
    assert math.ceil(842 * dpi * 1.002 / 72) * math.ceil(595 * dpi * 1.002 / 72) > cfg.max_pixels


def test_pdf_tiny_max_pixels_still_renders():
    img, dpi = _decode_one(bad.pdf_pages(1), DecodeConfig(max_pixels=1))
    assert img.shape == (1, 1, 3) and 0 < dpi < 1


def test_pdf_too_many_pages_refused_fast():
    data = bad.pdf_pages(5000)
    start = time.perf_counter()
    with pytest.raises(TooManyPages) as info:
        open_document(data, DecodeConfig(max_pages=2000))
    assert time.perf_counter() - start < 2
    assert info.value.code == "too_many_pages"
    assert "5000 pages" in info.value.message and "max_pages=2000" in info.value.message


def test_pdf_page_limit_is_inclusive():
    with open_document(bad.pdf_pages(3), DecodeConfig(max_pages=3)) as doc:
        assert doc.page_count == 3
    with pytest.raises(TooManyPages):
        open_document(bad.pdf_pages(3), DecodeConfig(max_pages=2))


def test_encrypted_pdf_refused():
    with pytest.raises(EncryptedPdf) as info:
        open_document(bad.encrypted_pdf(), LOW)
    assert info.value.code == "encrypted_pdf"
    assert "password" in info.value.message
    assert info.value.__cause__ is not None  # translated from PdfiumError


def test_pdf_encrypted_with_empty_password_opens():
    with open_document(bad.encrypted_pdf_empty_password(), LOW) as doc:
        assert doc.page_count == 2
        img, _ = doc.page(0)
    assert img.shape == (842, 595, 3) and img.min() < 40


@pytest.mark.parametrize("builder", [bad.truncated_pdf, bad.pdf_header_only, bad.pdf_zero_pages])
def test_broken_pdf_is_corrupt(builder):
    with pytest.raises(CorruptFile) as info:
        open_document(builder(), LOW)
    assert info.value.code == "corrupt_pdf"
    assert not info.value.retryable


def test_zero_page_pdf_is_not_mistaken_for_encrypted():
    # PDFium's last-error code is stale when a load "succeeds" with 0 pages.
    with pytest.raises(EncryptedPdf):
        open_document(bad.encrypted_pdf(), LOW)
    with pytest.raises(CorruptFile, match="no pages"):
        open_document(bad.pdf_zero_pages(), LOW)


def test_bad_pdf_page_does_not_stop_the_rest():
    with open_document(bad.pdf_with_bad_page(3, bad=1), LOW) as doc:
        results = list(doc.pages())
        with pytest.raises(CorruptFile) as info:
            doc.page(1)
    assert info.value.code == "corrupt_pdf"
    assert [r[0] for r in results] == [0, 1, 2]
    assert results[1][1:3] == (None, None) and results[1][3].code == "corrupt_pdf"
    for index in (0, 2):
        _, img, dpi, err = results[index]
        assert err is None and dpi == 72.0 and img.shape == (842, 595, 3)


def test_pdfium_is_safe_from_threads():
    data = bad.pdf_pages(4)
    with open_document(data, LOW) as doc:
        expected = [doc.page(i)[0] for i in range(doc.page_count)]
    failures: list[BaseException] = []

    def work():
        try:
            with open_document(data, LOW) as doc:
                for i in range(doc.page_count):
                    assert np.array_equal(doc.page(i)[0], expected[i])
        except BaseException as e:  # reported below, in the main thread
            failures.append(e)

    threads = [threading.Thread(target=work) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=30)
    assert not failures and not any(t.is_alive() for t in threads)


# --------------------------------------------------------------------------- document behaviour


def test_file_too_large():
    data = bad.png_bytes()
    with pytest.raises(FileTooLarge) as info:
        open_document(data, DecodeConfig(max_file_bytes=len(data) - 1))
    assert info.value.code == "file_too_large"
    open_document(data, DecodeConfig(max_file_bytes=len(data))).close()


def test_closed_document_refuses_pages():
    doc = open_document(bad.pdf_pages(1), LOW)
    doc.close()
    doc.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        doc.page(0)
    with open_document(bad.tiff_bytes(), LOW) as doc:
        pass
    with pytest.raises(ValueError):
        doc.page(0)


def test_page_index_out_of_range():
    with open_document(bad.pdf_pages(2), LOW) as doc:
        with pytest.raises(IndexError):
            doc.page(2)
        with pytest.raises(IndexError):
            doc.page(-1)


def test_every_error_is_an_input_error_with_its_code():
    cases = {
        "empty_file": lambda: open_document(bad.zero_bytes(), LOW),
        "unsupported_format": lambda: open_document(bad.zip_bytes(), LOW),
        "file_too_large": lambda: open_document(bad.pdf_pages(1), DecodeConfig(max_file_bytes=10)),
        "encrypted_pdf": lambda: open_document(bad.encrypted_pdf(), LOW),
        "corrupt_pdf": lambda: open_document(bad.truncated_pdf(), LOW),
        "corrupt_image": lambda: open_document(bad.png_bad_header(), LOW),
        "too_many_pages": lambda: open_document(bad.multi_frame_tiff(3), DecodeConfig(max_pages=2)),
        "image_too_large": lambda: open_document(bad.png_bomb(), LOW),
    }
    for code, call in cases.items():
        with pytest.raises(InputError) as info:
            call()
        assert info.value.code == code, (code, info.value)
        assert not info.value.retryable


# --------------------------------------------------------------------------- images


@pytest.mark.parametrize("builder, mime", [(bad.png_bytes, "image/png"), (bad.jpeg_bytes, "image/jpeg")])
def test_single_images(builder, mime):
    with open_document(builder(size=(200, 120), dpi=300), LOW) as doc:
        assert (doc.mime, doc.page_count) == (mime, 1)
        img, dpi = doc.page(0)
    assert img.shape == (120, 200, 3) and _is_rgb(img) and img.flags.writeable
    assert dpi == 300.0
    assert img.min() < 40 and img.max() > 215


@pytest.mark.parametrize(
    "data, dpi",
    [
        (bad.jpeg_bytes(dpi=None), None),  # JFIF aspect ratio only
        (bad.tiff_bytes(dpi=None), None),  # Pillow writes a placeholder resolution of 1
        (bad.tiff_bytes(dpi=5000), None),
        (bad.tiff_bytes(dpi=20), None),
        (bad.png16(), 200.0),  # pHYs is in dots per metre: 199.9996 rounds to 200
    ],
)
def test_image_dpi_only_when_plausible(data, dpi):
    assert _decode_one(data)[1] == dpi


def test_multi_frame_tiff_every_frame_is_a_page():
    with open_document(bad.multi_frame_tiff(5), LOW) as doc:
        assert (doc.mime, doc.page_count) == ("image/tiff", 5)
        pages = list(doc.pages())
        again, _ = doc.page(2)  # random access after iterating
    for i, img, dpi, err in pages:
        assert err is None and dpi == 200.0
        assert img.shape == (60, 80 + 10 * i, 3) and _is_rgb(img)
        assert img.min() == 0 and img.max() == 255
    assert np.array_equal(again, pages[2][1])


def test_group4_fax_tiff():
    with open_document(bad.fax_tiff(2), LOW) as doc:
        pages = list(doc.pages())
    assert [p[3] for p in pages] == [None, None]
    img = pages[1][1]
    assert img.shape == (300, 400, 3) and set(np.unique(img)) == {0, 255}


def test_exif_orientation_applied():
    img, dpi = _decode_one(bad.exif_rotated_jpeg())
    assert img.shape == (120, 60, 3)  # stored 120 wide, shown 60 wide
    assert img[5, 55].max() < 60  # marker moved from top-left to top-right
    assert img[5, 5].min() > 200 and img[115, 5].min() > 200 and img[115, 55].min() > 200
    assert dpi == 150.0


def test_png16_is_scaled_not_clipped():
    img, _ = _decode_one(bad.png16())
    assert img.shape == (16, 64, 3)
    # 0, 1000, 32896, 65535 -> 0, 4, 128, 255 (clipping would give 0, 255, 255, 255)
    assert _columns(img) == [(0, 0, 0), (4, 4, 4), (128, 128, 128), (255, 255, 255)]


def test_palette_png_with_transparent_index():
    assert _columns(_decode_one(bad.palette_png())[0]) == [(255, 255, 255), (0, 0, 0), (255, 0, 0), (255, 255, 255)]


@pytest.mark.parametrize("builder", [bad.rgba_png, bad.premultiplied_alpha_tiff])
def test_alpha_composited_on_white(builder):
    cols = _columns(_decode_one(builder())[0])
    assert cols[0] == (0, 0, 0)
    assert cols[1] == (255, 255, 255)  # fully transparent black
    assert _close(cols[2], (255, 127, 127), tol=2)  # red at half opacity
    assert cols[3] == (0, 0, 255)


def test_cmyk_jpeg_colours():
    cols = _columns(_decode_one(bad.cmyk_jpeg())[0], n=3)
    assert _close(cols[0], (255, 0, 0), tol=20)
    assert _close(cols[1], (255, 255, 255), tol=10)
    assert _close(cols[2], (0, 0, 0), tol=20)


# mode -> (paper, ink, transparent or None), stored as a 3-pixel-wide TIFF
_MODE_SAMPLES = {
    "1": (1, 0, None),
    "L": (255, 0, None),
    "P": (0, 1, None),
    "LA": ((255, 255), (0, 255), (0, 0)),
    "RGBA": ((255, 255, 255, 255), (0, 0, 0, 255), (0, 0, 0, 0)),
    "CMYK": ((0, 0, 0, 0), (0, 0, 0, 255), None),
    "I;16": (65535, 0, None),
    "I": (65535, 0, None),
    "F": (1.0, 0.0, None),
    "YCbCr": ((255, 128, 128), (0, 128, 128), None),
}


@pytest.mark.parametrize("mode", sorted(_MODE_SAMPLES))
def test_every_mode_becomes_rgb(mode):
    paper, ink, clear = _MODE_SAMPLES[mode]
    im = Image.new(mode, (3, 1), paper)
    if mode == "P":
        im.putpalette([255, 255, 255, 0, 0, 0])
    im.putpixel((1, 0), ink)
    if clear is not None:
        im.putpixel((2, 0), clear)
    buf = io.BytesIO()
    im.save(buf, "TIFF")
    assert Image.open(io.BytesIO(buf.getvalue())).mode == mode  # the file really holds this mode
    img, _ = _decode_one(buf.getvalue())
    assert _is_rgb(img) and img.shape == (1, 3, 3)
    assert _close(img[0, 0], (255, 255, 255)) and _close(img[0, 1], (0, 0, 0))
    assert _close(img[0, 2], (255, 255, 255))  # paper, or transparent over white


def test_int_and_float_ranges():
    # Mode I holding 8-bit values is kept; F outside 0..1 and 0..255 is stretched, NaN is darkest.
    assert decode._to_rgb(Image.fromarray(np.array([[0, 128, 255]], np.int32)))[0, :, 0].tolist() == [0, 128, 255]
    stretched = decode._to_rgb(Image.fromarray(np.array([[-1.0, 0.0, 3.0, np.nan]], np.float32)))
    assert stretched[0, :, 0].tolist() == [0, 64, 255, 0]


# --------------------------------------------------------------------------- image failures


def _max_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def test_png_bomb_refused_from_header_without_allocating():
    data = bad.png_bomb(60000, 60000)
    assert len(data) < 1024
    rss = _max_rss_mib()
    start = time.perf_counter()
    with pytest.raises(ImageTooLarge) as info:
        open_document(data, DecodeConfig())
    assert time.perf_counter() - start < 1
    assert _max_rss_mib() - rss < 50  # decoding would need 3.6 GB
    assert info.value.code == "image_too_large"
    assert "60000x60000" in info.value.message and "max_pixels=150000000" in info.value.message


def test_pixel_limit_is_inclusive():
    open_document(bad.png_bomb(100, 100), DecodeConfig(max_pixels=10_000)).close()
    with pytest.raises(ImageTooLarge):
        open_document(bad.png_bomb(100, 100), DecodeConfig(max_pixels=9_999))


def test_oversized_tiff_frame_fails_only_its_page():
    # Frames are 80x60, 90x60, 100x60 = 4800, 5400, 6000 pixels.
    with open_document(bad.multi_frame_tiff(3), DecodeConfig(max_pixels=5400)) as doc:
        pages = list(doc.pages())
    assert [p[3] is None for p in pages] == [True, True, False]
    assert isinstance(pages[2][3], ImageTooLarge) and "100x60" in pages[2][3].message
    with pytest.raises(ImageTooLarge):
        open_document(bad.tiff_bytes(size=(200, 120)), DecodeConfig(max_pixels=200 * 120 - 1))


def test_pillow_limit_raised_to_config(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    open_document(bad.png_bytes(), DecodeConfig(max_pixels=500_000_000)).close()
    assert Image.MAX_IMAGE_PIXELS == 500_000_000
    open_document(bad.png_bytes(), DecodeConfig(max_pixels=10_000_000)).close()
    assert Image.MAX_IMAGE_PIXELS == 500_000_000  # never lowered


@pytest.mark.parametrize("builder", [bad.truncated_png, bad.truncated_jpeg, bad.truncated_tiff])
def test_truncated_image_fails_on_decode(builder):
    with open_document(builder(), LOW) as doc:  # the header is intact
        assert doc.page_count == 1
        with pytest.raises(CorruptFile) as info:
            doc.page(0)
        [(index, img, dpi, err)] = list(doc.pages())
    assert info.value.code == "corrupt_image" and "truncated" in info.value.message
    assert (index, img, dpi) == (0, None, None) and isinstance(err, CorruptFile)
    assert isinstance(info.value.__cause__, OSError)


@pytest.mark.filterwarnings("ignore:Corrupt EXIF data:UserWarning")
def test_unparsable_image_headers_are_corrupt():
    with pytest.raises(CorruptFile) as info:
        open_document(bad.png_bad_header(), LOW)
    assert info.value.code == "corrupt_image"
    fax = bad.fax_tiff(2)
    with pytest.raises(CorruptFile) as info:
        open_document(fax[: len(fax) // 2], LOW)  # second frame's directory is gone
    assert info.value.code == "corrupt_image"


def test_bad_tiff_frame_does_not_stop_the_rest():
    with open_document(bad.tiff_with_bad_frame(3, bad=1), LOW) as doc:
        pages = list(doc.pages())
    assert [(i, err is None) for i, _, _, err in pages] == [(0, True), (1, False), (2, True)]
    assert pages[1][3].code == "corrupt_image" and isinstance(pages[1][3], FolioError)
    assert pages[2][1].shape == (80, 120, 3)


def test_tiff_page_limit():
    with pytest.raises(TooManyPages, match="TIFF has 4 pages"):
        open_document(bad.multi_frame_tiff(4), DecodeConfig(max_pages=3))
