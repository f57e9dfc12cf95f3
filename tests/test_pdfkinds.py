"""The PDF kinds of measure/pdfkinds.py: what PDFium extracts from each, where it says the text is,
and what the page shows. Cheap: no OCR, small renders."""

from __future__ import annotations

import ctypes
import time

import numpy as np
import pypdfium2 as pdfium
import pytest
from pypdfium2 import raw

from measure import pdfkinds as k

LINES = list(k.DEFAULT_LINES)
SIZE = 11.0
#: Images of text and no_unicode_pdf's glyphs have Helvetica's metrics only with Liberation Sans (not the fallback).
LIBERATION = "LiberationSans" in k.text_font_path()


class Page:
    """One page of a PDF (bytes) with its text page open, and the characters PDFium found."""

    def __init__(self, data: bytes, index: int = 0):
        self.doc = pdfium.PdfDocument(data)
        self.page = self.doc[index]
        self.text = self.page.get_textpage()
        self.n = self.text.count_chars()

    @property
    def extracted(self) -> str:
        return self.text.get_text_range()

    def drawn(self) -> list[int]:
        """Indices of the characters the page draws (not the line breaks PDFium generates)."""
        return [i for i in range(self.n) if not raw.FPDFText_IsGenerated(self.text, i)]

    def box(self, i: int) -> tuple[float, float, float, float]:
        return self.text.get_charbox(i)

    def unicode(self, i: int) -> int:
        return raw.FPDFText_GetUnicode(self.text, i)

    def render_mode(self, i: int) -> int:
        return raw.FPDFTextObj_GetTextRenderMode(raw.FPDFText_GetTextObject(self.text, i))

    def fill(self, i: int) -> tuple[int, int, int, int]:
        rgba = [ctypes.c_uint() for _ in range(4)]
        assert raw.FPDFText_GetFillColor(self.text, i, *(ctypes.byref(c) for c in rgba))
        return tuple(c.value for c in rgba)

    def map_error(self, i: int) -> int:
        return raw.FPDFText_HasUnicodeMapError(self.text, i)

    def render(self, scale: float = 0.5) -> np.ndarray:
        return self.page.render(scale=scale, grayscale=True).to_numpy()

    def images(self) -> list:
        return list(self.page.get_objects(filter=[raw.FPDF_PAGEOBJ_IMAGE]))


def _line_chars(page: Page, lines: list[str]) -> list[list[int]]:
    """The drawn characters of ``page`` grouped into ``lines`` (in drawing order)."""
    drawn = page.drawn()
    assert len(drawn) == sum(len(line) for line in lines)
    out, at = [], 0
    for line in lines:
        out.append(drawn[at : at + len(line)])
        at += len(line)
    return out


def _check_layout(
    page: Page, lines: list[str], x: float = k.MARGIN, size: float = SIZE, only: range | None = None
) -> None:
    """Line ``j`` of ``lines`` (all the page draws; those in ``only``) starts at ``x`` and its glyph boxes
    lie in the band the module documents around baseline ``j``."""
    groups = _line_chars(page, lines)
    for j in only if only is not None else range(len(lines)):
        base = k.baseline_y(j, size)
        boxes = [page.box(i) for i, ch in zip(groups[j], lines[j]) if ch != " "]
        assert x <= boxes[0][0] <= x + 0.15 * size  # the first glyph's left side bearing
        for left, bottom, right, top in boxes:
            assert base - 0.22 * size - 0.01 <= bottom and top <= base + 0.78 * size + 0.01
            assert left <= right


def _ink_rows(gray: np.ndarray) -> np.ndarray:
    return np.flatnonzero((gray < 128).any(axis=1))


# --------------------------------------------------------------------------- born-digital


def test_born_digital_text_and_layout():
    page = Page(k.born_digital_pdf())
    assert page.extracted == "\r\n".join(LINES)
    _check_layout(page, LINES)
    for i in page.drawn():
        assert page.render_mode(i) == raw.FPDF_TEXTRENDERMODE_FILL
        assert page.fill(i) == (0, 0, 0, 255)
        assert page.map_error(i) == 0
    assert page.page.get_size() == (k.PAGE_WIDTH, k.PAGE_HEIGHT)


def test_born_digital_pages_and_font_size():
    data = k.born_digital_pdf(["Hello world", "Second line"], pages=3, font_size=14)
    assert len(pdfium.PdfDocument(data)) == 3
    page = Page(data, 1)
    assert page.extracted == "Hello world\r\nSecond line\r\nPage 2 of 3"
    assert raw.FPDFText_GetFontSize(page.text, 0) == pytest.approx(14)
    _check_layout(page, ["Hello world", "Second line", "Page 2 of 3"], size=14, only=range(2))
    footer = _line_chars(page, ["Hello world", "Second line", "Page 2 of 3"])[2]
    assert all(36 - 0.22 * 14 <= page.box(i)[1] <= page.box(i)[3] <= 36 + 0.78 * 14 for i in footer)


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="do not fit"):
        k.born_digital_pdf(["x"] * (k.max_lines() + 1))
    k.born_digital_pdf(["x"] * k.max_lines())
    with pytest.raises(ValueError, match="WinAnsi"):
        k.born_digital_pdf(["Ǆ"])
    with pytest.raises(ValueError, match="do not fit"):
        k.mixed_pdf(lines=["x"] * 18)
    with pytest.raises(ValueError, match="fit"):
        k.no_unicode_pdf(["".join(chr(c) for c in range(0x21, 0x7F)) + "äöüßéèà"], first_code=0xC0)


def test_escaping_and_winansi():
    lines = ["Price (net) \\ 12", "Café: 5 € — ok"]
    assert Page(k.born_digital_pdf(lines)).extracted == "\r\n".join(lines)


# --------------------------------------------------------------------------- scanned


def _check_scan_ink(gray: np.ndarray, lines: list[str], size: float = SIZE) -> None:
    """The full-page image has ink in each line's band, starting at x = 72 pt, and nowhere else."""
    h, w = gray.shape
    sx, sy = w / k.PAGE_WIDTH, h / k.PAGE_HEIGHT
    ink = gray < 128
    covered = np.zeros(h, bool)
    for i in range(len(lines)):
        base = k.baseline_y(i, size)
        top, bottom = round((k.PAGE_HEIGHT - base - 0.75 * size) * sy), round((k.PAGE_HEIGHT - base + 0.25 * size) * sy)
        band = ink[top:bottom]
        cols = np.flatnonzero(band.any(axis=0))
        assert cols.size, f"no ink for line {i}"
        assert abs(cols[0] / sx - k.MARGIN) < 2
        covered[top:bottom] = True
    assert not ink[~covered].any()


def test_scanned_has_no_text_and_shows_the_lines():
    page = Page(k.scanned_pdf())
    assert page.n == 0
    (image,) = page.images()
    assert image.get_px_size() == (1240, 1754)
    assert image.get_bounds() == pytest.approx((0, 0, k.PAGE_WIDTH, k.PAGE_HEIGHT))
    gray = image.get_bitmap(render=False).to_numpy()
    assert gray.ndim == 2 and gray.dtype == np.uint8
    _check_scan_ink(gray, LINES)
    # about 23 px em at 150 dpi: a capital is about 16 px high
    i_top, i_bottom = _ink_rows(gray[: round((k.PAGE_HEIGHT - k.baseline_y(0) + 3) * 150 / 72)])[[0, -1]]
    assert 14 <= i_bottom - i_top + 1 <= 22


def test_scanned_with_ocr_layer_is_invisible_text_over_the_image():
    page = Page(k.scanned_with_ocr_layer_pdf())
    assert page.extracted == "\r\n".join(LINES)
    assert all(page.render_mode(i) == raw.FPDF_TEXTRENDERMODE_INVISIBLE for i in page.drawn())
    _check_layout(page, LINES)  # the layer's boxes are where the image shows the lines
    (image,) = page.images()
    _check_scan_ink(image.get_bitmap(render=False).to_numpy(), LINES)
    # the layer draws nothing: the page looks exactly like the scan without it
    assert np.array_equal(page.render(), Page(k.scanned_pdf()).render())


def test_ocr_layer_can_lie():
    layer = ["Minutes of the", "board meeting", "of 3 May"]
    page = Page(k.scanned_with_ocr_layer_pdf(lines=LINES[:2], layer_lines=layer))
    assert page.extracted == "Minutes of the\r\nboard meeting\r\nof 3 May"
    assert all(page.render_mode(i) == raw.FPDF_TEXTRENDERMODE_INVISIBLE for i in page.drawn())
    _check_scan_ink(page.images()[0].get_bitmap(render=False).to_numpy(), LINES[:2])


def test_mixed_text_above_an_image_with_text():
    page = Page(k.mixed_pdf())
    assert page.extracted == "\r\n".join(LINES)
    _check_layout(page, LINES)
    (image,) = page.images()
    assert image.get_bounds() == pytest.approx(k.MIXED_IMAGE_BOX)
    assert image.get_px_size() == (940, 500)
    _, bottom, _, top = k.MIXED_IMAGE_BOX
    assert all(page.box(i)[1] > top for i in page.drawn())  # no text over the image
    gray = image.get_bitmap(render=False).to_numpy()
    s = gray.shape[0] / (top - bottom)
    inner = gray[5:-5, 5:-5]  # inside the 3 px frame
    rows = _ink_rows(inner) + 5
    for j in range(len(k.DEFAULT_IMAGE_LINES)):  # ink in each line's band, none below the last
        base = top - k.MIXED_IMAGE_INSET - k.MIXED_IMAGE_FONT_SIZE - k.MIXED_IMAGE_PITCH * j
        band = ((top - base - 0.75 * k.MIXED_IMAGE_FONT_SIZE) * s, (top - base + 0.25 * k.MIXED_IMAGE_FONT_SIZE) * s)
        assert ((rows >= band[0]) & (rows <= band[1])).any()
    assert rows.max() <= band[1]
    assert (gray[0] < 128).all() and (gray[:, -1] < 128).all()  # the frame


# --------------------------------------------------------------------------- lying text layers


def test_wrong_tounicode_extracts_shifted_text_but_shows_the_real_one():
    page = Page(k.wrong_tounicode_pdf())
    shifted = "".join(chr(0x21 + (ord(c) - 0x21 + 1) % 94) if 0x21 <= ord(c) <= 0x7E else c for c in "\r\n".join(LINES))
    assert page.extracted == shifted
    assert page.extracted.startswith("Jowpjdf ovncfs 3135.1228\r\n")
    assert not any(page.map_error(i) for i in range(page.n))
    _check_layout(page, LINES)
    assert np.array_equal(page.render(), Page(k.born_digital_pdf()).render())


def test_private_use_extracts_private_use_code_points():
    page = Page(k.private_use_pdf())
    drawn = page.drawn()
    assert [page.unicode(i) for i in drawn] == [0xE000 + b for b in "".join(LINES).encode("cp1252")]
    assert all(0xE000 <= page.unicode(i) <= 0xF8FF for i in drawn)
    assert set(page.extracted) - {chr(c) for c in range(0xE000, 0xF900)} == {"\r", "\n"}
    assert not any(page.map_error(i) for i in range(page.n))
    assert np.array_equal(page.render(), Page(k.born_digital_pdf()).render())


def test_white_text_is_extracted_but_not_shown():
    hidden = list(k.DEFAULT_HIDDEN_LINES)
    page = Page(k.white_text_pdf())
    assert page.extracted == "\r\n".join(LINES + hidden)
    groups = _line_chars(page, LINES + hidden)
    visible_idx, hidden_idx = groups[: len(LINES)], groups[len(LINES) :]
    assert all(page.fill(i) == (0, 0, 0, 255) for idx in visible_idx for i in idx)
    assert all(page.fill(i) == (255, 255, 255, 255) for idx in hidden_idx for i in idx)
    assert all(page.render_mode(i) == raw.FPDF_TEXTRENDERMODE_FILL for i in page.drawn())
    _check_layout(page, LINES + hidden)
    assert np.array_equal(page.render(), Page(k.born_digital_pdf()).render())


def test_offpage_text_is_extracted_outside_the_page():
    outside = list(k.DEFAULT_OUTSIDE_LINES)
    page = Page(k.offpage_text_pdf())
    assert page.extracted.replace("\r\n", "") == "".join(LINES + outside)
    groups = _line_chars(page, LINES + outside)
    assert all(page.box(i)[2] < k.PAGE_WIDTH for idx in groups[: len(LINES)] for i in idx)
    assert all(page.box(i)[0] >= 5000 for idx in groups[len(LINES) :] for i in idx)
    _check_layout(page, LINES + outside, x=5000, only=range(len(LINES), len(LINES + outside)))
    assert np.array_equal(page.render(), Page(k.born_digital_pdf()).render())
    assert Page(k.offpage_text_pdf(outside_x=-3000)).box(page.n - 1)[2] < 0


@pytest.fixture(scope="module")
def no_unicode() -> bytes:
    return k.no_unicode_pdf()


def test_no_unicode_gives_code_points_flagged_as_map_errors(no_unicode):
    page = Page(no_unicode)
    text = "".join(LINES)
    codes = {ch: 0x21 + n for n, ch in enumerate(dict.fromkeys(text))}
    drawn = page.drawn()
    assert [page.unicode(i) for i in drawn] == [codes[ch] for ch in text]
    assert all(page.map_error(i) == 1 for i in drawn)
    assert page.extracted.startswith("!\"#$%&'(\")*+',(-.-/0.112\r\n")
    assert page.extracted.replace("\r\n", "") != text
    if not LIBERATION:
        return
    _check_layout(page, LINES)
    # the glyphs are the real letters: ink where the Helvetica page has it, give or take the outlines
    ours, helvetica = page.render(scale=1) < 128, Page(k.born_digital_pdf()).render(scale=1) < 128
    assert np.array_equal(_ink_rows(ours), _ink_rows(helvetica))
    assert abs(int(ours.sum()) - int(helvetica.sum())) < 0.2 * helvetica.sum()


def test_no_unicode_with_a_mac_cmap_decodes_codes_as_mac_roman_without_flags():
    page = Page(k.no_unicode_pdf(["Invoice"], first_code=0x80, mac_cmap=True))
    assert page.extracted == "ÄÅÇÉÑÖÜ"  # MacRoman 0x80..0x86
    assert not any(page.map_error(i) for i in range(page.n))
    page = Page(k.no_unicode_pdf(["Invoice"], first_code=1))
    assert [page.unicode(i) for i in range(page.n)] == list(range(1, 8))
    assert all(page.map_error(i) == 1 for i in range(page.n))


# --------------------------------------------------------------------------- sizes


def test_many_pages_share_one_content_stream():
    start = time.perf_counter()
    data = k.many_pages_pdf()
    assert time.perf_counter() - start < 2.0
    assert len(data) < 200_000
    doc = pdfium.PdfDocument(data)
    assert len(doc) == 10_000
    assert Page(data, 9_999).extracted == "\r\n".join(LINES)
    assert len(pdfium.PdfDocument(k.many_pages_pdf(3, ["One line"]))) == 3


def test_dense_text_page():
    page = Page(k.dense_text_pdf())
    assert page.n >= 200_000
    text = page.extracted
    assert len(text) == page.n and len(text) - 2 * text.count("\r\n") == 200_000  # only line breaks are added
    assert page.page.get_size() == (2072, 2072)
    assert text.startswith("invoice number 2024-0117 date 17")
    left, bottom, _, top = page.box(0)  # "i" of the first line: x = 36, baseline 2072 - 36 - 4
    assert 36 <= left < 37 and bottom == pytest.approx(2032, abs=0.01) and top <= 2072 - 36
    assert page.box(page.n - 1)[1] >= 36 - 0.22 * 4


# --------------------------------------------------------------------------- determinism


@pytest.mark.parametrize(
    "build",
    [k.born_digital_pdf, k.scanned_with_ocr_layer_pdf, k.mixed_pdf, k.no_unicode_pdf],
    ids=lambda f: f.__name__,
)
def test_builders_are_deterministic(build, no_unicode):
    first = no_unicode if build is k.no_unicode_pdf else build()
    assert build() == first
    assert b"CreationDate" not in first and b"ModDate" not in first
