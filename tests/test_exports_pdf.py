"""The searchable PDF/A export: sources made here (PNG, JPEG, TIFF, PDF), pages with words where the
ink is, and the output read back with PDFium (pages, pixels, text and its boxes) and pikepdf (content
streams, embedded bytes, PDF/A metadata and pikepdf's PDF/A-2b validator)."""

from __future__ import annotations

import datetime as dt
import io
import logging
import math

import numpy as np
import pikepdf
import pikepdf.pdfa
import pypdfium2 as pdfium
import pytest
from PIL import Image, ImageDraw, ImageFont

from pipeline.config import DecodeConfig
from pipeline.io.decode import open_document
from pipeline.output.exports import ExportDocument
from pipeline.output.exports.pdf import searchable_pdf
from pipeline.types import Block, Line, Page, Word

DOC_ID = "5f" * 32
WHEN = dt.datetime(2025, 3, 4, 5, 6, 7, tzinfo=dt.UTC)


# --------------------------------------------------------------------------- building sources and rows


def _box_polygon(x0, y0, x1, y1):
    return ((x0, y0), (x1, y0), (x1, y1), (x0, y1))


def _draw_text(size, lines, *, origin=(40, 40), font_size=34, gap=64, mode="RGB"):
    """An image with ``lines`` (lists of words) written on it, and each word's ink box."""
    image = Image.new(mode, size, "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=font_size)
    boxes = []
    y = origin[1]
    for words in lines:
        x, row = origin[0], []
        for text in words:
            x0, y0, x1, y1 = draw.textbbox((x, y), text, font=font)
            draw.text((x, y), text, fill="black", font=font)
            row.append((text, _box_polygon(x0, y0, x1, y1)))
            x = x1 + font_size // 2
        boxes.append(row)
        y += gap
    return image, boxes


def _page(index, lines, width, height, dpi):
    """A Folio page of one block whose lines hold ``(text, polygon)`` words."""
    built = []
    for words in lines:
        ws = tuple(Word(text, 0.9, poly) for text, poly in words)
        xs = [p[0] for w in ws for p in w.polygon]
        ys = [p[1] for w in ws for p in w.polygon]
        built.append(Line(" ".join(w.text for w in ws), 0.9, _box_polygon(min(xs), min(ys), max(xs), max(ys)), ws))
    text = "\n".join(line.text for line in built)
    return Page(key="src", doc_id=DOC_ID, page_index=index, width=width, height=height, dpi=dpi,
                blocks=(Block(tuple(built)),), text=text)


def _doc(pages, mime, name="scan", ext="png", failed=()):
    return ExportDocument(doc_id=DOC_ID, source_uri=f"/data/in/{name}.{ext}", name=name, mime=mime,
                          pipeline_version="0.1.0", config_fingerprint="fp", engine="onnx", models=(), run_id="run-1",
                          processed_at=WHEN, pages=tuple(pages), failed_pages=tuple(failed))


def _encode(image, fmt, **params):
    out = io.BytesIO()
    image.save(out, fmt, **params)
    return out.getvalue()


def _folio_image(source, index=0, dpi=None):
    """The page image Folio's decoder makes of ``source``, and its DPI."""
    config = DecodeConfig(pdf_dpi=dpi) if dpi else DecodeConfig()
    with open_document(source, config) as document:
        return document.page(index)


# --------------------------------------------------------------------------- reading the output back


def _extract(data, index):
    """The page's text (PDFium) and its words, each with the union of its characters' boxes."""
    pdf = pdfium.PdfDocument(data)
    textpage = pdf[index].get_textpage()
    text = textpage.get_text_range()
    words, current, box = [], "", None
    for i, ch in enumerate(text):
        if ch.isspace():
            if current:
                words.append((current, box))
            current, box = "", None
            continue
        l, b, r, t = textpage.get_charbox(i, loose=True)
        box = (l, b, r, t) if box is None else (min(box[0], l), min(box[1], b), max(box[2], r), max(box[3], t))
        current += ch
    if current:
        words.append((current, box))
    return text, words


def _user_box(polygon, height, dpi):
    """A pixel polygon's bounding box in the user space of an image page (72/dpi pt a pixel, y up)."""
    s = 72 / dpi
    xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
    return (min(xs) * s, (height - max(ys)) * s, max(xs) * s, (height - min(ys)) * s)


def _assert_boxes_close(got, want, tolerance):
    assert all(abs(g - w) <= tolerance for g, w in zip(got, want, strict=True)), (got, want)


def _expected_text(lines):
    return "\r\n".join(" ".join(text for text, _ in words) for words in lines)


def _render(data, index, dpi):
    pdf = pdfium.PdfDocument(data)
    return pdf[index].render(scale=dpi / 72, rev_byteorder=True).to_numpy().copy()


def _difference(data, index, dpi, image):
    """Per-pixel difference between the page rendered at ``dpi`` and ``image`` (PDFium rounds the
    bitmap's size up, so a page of exactly N pixels can render as N + 1)."""
    rendered = _render(data, index, dpi)
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    h, w = image.shape[:2]
    assert h <= rendered.shape[0] <= h + 1 and w <= rendered.shape[1] <= w + 1
    return np.abs(rendered[:h, :w].astype(int) - image.astype(int))


def _assert_pdfa(data):
    """The output claims PDF/A-2b, carries what it needs, and pikepdf's validator approves it."""
    report = pikepdf.pdfa.validate_written(io.BytesIO(data), "2b")
    assert report.passed, report.summary()
    with pikepdf.open(io.BytesIO(data)) as pdf:
        meta = pdf.open_metadata()
        assert meta["pdfaid:part"] == "2" and meta["pdfaid:conformance"] == "B"
        assert meta["pdf:Producer"].startswith("Folio ")
        assert meta["xmp:ModifyDate"].startswith("2025-03-04T05:06:07")
        intents = pdf.Root.OutputIntents
        assert len(intents) == 1 and intents[0].S == "/GTS_PDFA1" and len(intents[0].DestOutputProfile.read_bytes()) > 0
        assert "/Encrypt" not in pdf.trailer
        assert bytes(pdf.trailer.ID[0]) == bytes.fromhex(DOC_ID)[:16]
        fonts = [font for page in pdf.pages for font in page.Resources.get("/Font", {}).values()]
        assert fonts
        for font in fonts:
            descriptor = font.DescendantFonts[0].FontDescriptor
            assert len(descriptor.FontFile2.read_bytes()) > 100


# --------------------------------------------------------------------------- image sources


def test_png_page_gets_its_words_in_reading_order_where_the_ink_is():
    lines = [["Searchable", "text", "layer"], ["second", "line", "here,", "too"], ["end."]]
    image, words = _draw_text((900, 320), lines)
    source = _encode(image, "PNG", dpi=(200, 200))
    page = _page(0, words, 900, 320, 200.0)

    out = searchable_pdf(_doc([page], "image/png"), source)

    pdf = pdfium.PdfDocument(out)
    assert len(pdf) == 1
    assert pdf[0].get_size() == pytest.approx((900 * 72 / 200, 320 * 72 / 200))
    text, extracted = _extract(out, 0)
    assert text == _expected_text(words)
    flat = [w for row in words for w in row]
    assert [t for t, _ in extracted] == [t for t, _ in flat]
    for (_, got), (_, polygon) in zip(extracted, flat, strict=True):
        _assert_boxes_close(got, _user_box(polygon, 320, 200), tolerance=1.5 * 72 / 200)
    # The PNG's pixels, embedded losslessly, and drawn 1:1: the page renders as the image.
    with pikepdf.open(io.BytesIO(out)) as doc:
        (xobject,) = doc.pages[0].images.values()
        assert np.array_equal(np.asarray(pikepdf.PdfImage(xobject).as_pil_image().convert("RGB")),
                              np.asarray(image))
    assert _difference(out, 0, 200, np.asarray(image)).max() <= 2
    _assert_pdfa(out)


@pytest.mark.parametrize("orientation", [2, 3, 4, 5, 6, 7, 8])
def test_exif_orientation_is_applied_as_folio_decodes_it(orientation):
    upright, words = _draw_text((420, 260), [["Turned", "page"], ["text"]], font_size=30)
    # Store the image so that applying the orientation gives the upright one back.
    undo = {2: [Image.Transpose.FLIP_LEFT_RIGHT], 3: [Image.Transpose.ROTATE_180],
            4: [Image.Transpose.FLIP_TOP_BOTTOM], 5: [Image.Transpose.TRANSPOSE],
            6: [Image.Transpose.ROTATE_90], 7: [Image.Transpose.TRANSVERSE], 8: [Image.Transpose.ROTATE_270]}
    stored = upright
    for step in undo[orientation]:
        stored = stored.transpose(step)
    exif = Image.Exif()
    exif[0x0112] = orientation
    source = _encode(stored, "PNG", exif=exif, dpi=(100, 100))
    decoded, dpi = _folio_image(source)
    assert np.array_equal(decoded, np.asarray(upright)), "the test's image does not undo the orientation"

    out = searchable_pdf(_doc([_page(0, words, 420, 260, dpi)], "image/png"), source)

    assert pdfium.PdfDocument(out)[0].get_size() == pytest.approx((420 * 0.72, 260 * 0.72))
    assert _difference(out, 0, 100, decoded).max() <= 2
    text, extracted = _extract(out, 0)
    assert text == _expected_text(words)
    for (_, got), (_, polygon) in zip(extracted, [w for row in words for w in row], strict=True):
        _assert_boxes_close(got, _user_box(polygon, 260, 100), tolerance=1.5 * 0.72)


def test_jpeg_is_embedded_as_its_own_bytes_and_turned_by_its_exif():
    upright, words = _draw_text((600, 400), [["Camera", "shot"], ["of", "a", "page"]], font_size=40, gap=90)
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to show
    source = _encode(upright.transpose(Image.Transpose.ROTATE_90), "JPEG", quality=92, exif=exif, dpi=(150, 150))
    decoded, dpi = _folio_image(source)
    assert decoded.shape == (400, 600, 3) and dpi == 150

    out = searchable_pdf(_doc([_page(0, words, 600, 400, dpi)], "image/jpeg", ext="jpg"), source)

    with pikepdf.open(io.BytesIO(out)) as pdf:
        (xobject,) = pdf.pages[0].images.values()
        assert xobject.Filter == "/DCTDecode"
        assert xobject.read_raw_bytes() == source
    assert pdfium.PdfDocument(out)[0].get_size() == pytest.approx((600 * 72 / 150, 400 * 72 / 150))
    # Two JPEG decoders, one picture: close, not equal.
    assert _difference(out, 0, 150, decoded).mean() < 3
    text, extracted = _extract(out, 0)
    assert text == _expected_text(words)
    for (_, got), (_, polygon) in zip(extracted, [w for row in words for w in row], strict=True):
        _assert_boxes_close(got, _user_box(polygon, 400, 150), tolerance=1.5 * 72 / 150)
    _assert_pdfa(out)


def test_tiff_pages_each_become_a_page_and_a_failed_one_keeps_its_image():
    first, words0 = _draw_text((700, 300), [["First", "frame"]], mode="L")
    second, _ = _draw_text((500, 640), [["Second", "frame", "unread"]], mode="L")
    # Both frames stored a quarter turn anticlockwise, with the tag that turns them back.
    buffer = io.BytesIO()
    first.transpose(Image.Transpose.ROTATE_90).save(
        buffer, "TIFF", save_all=True, append_images=[second.transpose(Image.Transpose.ROTATE_90)],
        compression="tiff_lzw", dpi=(120, 120), tiffinfo={0x0112: 6})
    source = buffer.getvalue()
    decoded0, dpi = _folio_image(source, 0)
    decoded1, _ = _folio_image(source, 1)
    assert np.array_equal(decoded0[:, :, 0], np.asarray(first))
    assert np.array_equal(decoded1[:, :, 0], np.asarray(second))

    out = searchable_pdf(_doc([_page(0, words0, 700, 300, dpi)], "image/tiff", ext="tif", failed=(1,)), source)

    pdf = pdfium.PdfDocument(out)
    assert len(pdf) == 2
    assert pdf[0].get_size() == pytest.approx((700 * 72 / 120, 300 * 72 / 120))
    assert pdf[1].get_size() == pytest.approx((500 * 72 / 120, 640 * 72 / 120))
    assert _extract(out, 0)[0] == "First frame"
    assert _extract(out, 1)[0] == ""
    assert _difference(out, 0, 120, decoded0).max() <= 2
    assert _difference(out, 1, 120, decoded1).max() <= 2
    _assert_pdfa(out)


def test_a_g4_tiff_strip_is_copied_as_it_is_and_turned_by_its_tag():
    upright, words = _draw_text((640, 360), [["Fax", "page"]], mode="1")
    stored = upright.transpose(Image.Transpose.ROTATE_270)  # orientation 8 turns it back
    source = _encode(stored, "TIFF", compression="group4", dpi=(144, 144), tiffinfo={0x0112: 8})
    decoded, dpi = _folio_image(source)
    assert decoded.shape == (360, 640, 3)

    out = searchable_pdf(_doc([_page(0, words, 640, 360, dpi)], "image/tiff", ext="tif"), source)

    with pikepdf.open(io.BytesIO(out)) as pdf:
        (xobject,) = pdf.pages[0].images.values()
        assert list(xobject.Filter) == ["/CCITTFaxDecode"] and (xobject.Width, xobject.Height) == (360, 640)
        stored = Image.open(io.BytesIO(source))
        offset, length = stored.tag_v2[273][0], stored.tag_v2[279][0]
        assert xobject.read_raw_bytes() == source[offset:offset + length]
    assert _difference(out, 0, 144, decoded).max() <= 2
    assert _extract(out, 0)[0] == "Fax page"
    _assert_pdfa(out)


def test_an_image_img2pdf_refuses_is_embedded_as_folios_pixels():
    # 16-bit grey: img2pdf will not keep more than 8 bits a sample from a TIFF.
    ramp = (np.arange(300 * 200, dtype=np.uint32).reshape(200, 300) * 7 % 65536).astype(np.uint16)
    source = _encode(Image.fromarray(ramp), "TIFF", dpi=(96, 96))
    decoded, dpi = _folio_image(source)
    word = [[("ramp", _box_polygon(20, 30, 120, 70))]]

    out = searchable_pdf(_doc([_page(0, word, 300, 200, dpi)], "image/tiff", ext="tif"), source)

    assert _difference(out, 0, 96, decoded).max() <= 2
    assert _extract(out, 0)[0] == "ramp"
    _assert_pdfa(out)


def test_tilted_words_follow_their_polygons():
    angle = math.radians(-25)  # rising to the right on the image (y down)
    cos, sin = math.cos(angle), math.sin(angle)

    def quad(x, y, w, h):
        corners = [(0, 0), (w, 0), (w, h), (0, h)]
        return tuple((x + cx * cos - cy * sin, y + cx * sin + cy * cos) for cx, cy in corners)

    words = [[("tilted", quad(100, 400, 180, 40)), ("words", quad(100 + 200 * cos, 400 + 200 * sin, 150, 40))]]
    source = _encode(Image.new("RGB", (800, 600), "white"), "PNG")

    out = searchable_pdf(_doc([_page(0, words, 800, 600, None)], "image/png"), source)

    # No DPI in the file: 300 dpi, as Folio renders PDFs by default.
    assert pdfium.PdfDocument(out)[0].get_size() == pytest.approx((800 * 72 / 300, 600 * 72 / 300))
    text, extracted = _extract(out, 0)
    assert text == "tilted words"
    for (_, got), (_, polygon) in zip(extracted, words[0], strict=True):
        _assert_boxes_close(got, _user_box(polygon, 600, 300), tolerance=3 * 72 / 300)


def test_characters_beyond_latin_and_the_bmp_come_back():
    words = [[("Größe", _box_polygon(10, 10, 110, 40)), ("naïve", _box_polygon(130, 10, 230, 40)),
              ("\U0001d518\U0001d52b", _box_polygon(250, 10, 300, 40)), ("東京", _box_polygon(320, 10, 380, 40))]]
    source = _encode(Image.new("L", (400, 60), "white"), "PNG", dpi=(72, 72))

    out = searchable_pdf(_doc([_page(0, words, 400, 60, 72.0)], "image/png"), source)

    textpage = pdfium.PdfDocument(out)[0].get_textpage()
    assert textpage.get_text_bounded() == "Größe naïve \U0001d518\U0001d52b 東京"
    _assert_pdfa(out)


# --------------------------------------------------------------------------- PDF sources

#: Colours of the filled rectangles that stand for words on the PDF pages.
_COLOURS = [(230, 20, 20), (20, 150, 20), (20, 20, 230), (200, 140, 0), (150, 0, 150), (0, 140, 160)]


def _rects(rects):
    ops = []
    for (x, y, w, h), (r, g, b) in zip(rects, _COLOURS, strict=False):
        ops.append(f"{r / 255:.4f} {g / 255:.4f} {b / 255:.4f} rg {x} {y} {w} {h} re f")
    return "\n".join(ops)


#: Page 0: MediaBox off the origin, a CropBox inside it, a scanned image and six word-boxes.
_P0_MEDIA, _P0_CROP = [-20, -30, 592, 762], [10, 20, 560, 700]
_P0_RECTS = [(60, 600, 80, 24), (160, 600, 120, 24), (300, 600, 60, 24),
             (60, 540, 100, 24), (180, 540, 90, 24), (290, 540, 150, 24)]
#: Page 1: turned a quarter clockwise; on screen the rows run along user space's y axis.
_P1_MEDIA = [0, 0, 400, 500]
_P1_RECTS = [(330, 50, 24, 80), (330, 150, 24, 60), (330, 240, 24, 120),
             (260, 50, 24, 100), (260, 170, 24, 90), (260, 290, 24, 70)]
_LABELS = ["alpha", "beta", "c", "delta", "e", "zeta"]


def _source_pdf() -> bytes:
    pdf = pikepdf.new()
    scan = Image.fromarray(np.random.default_rng(3).integers(215, 250, (68, 55, 3), dtype=np.uint8)).resize((550, 680))
    image = pdf.make_stream(_encode(scan, "JPEG", quality=90), Type=pikepdf.Name.XObject, Subtype=pikepdf.Name.Image,
                            Width=550, Height=680, ColorSpace=pikepdf.Name.DeviceRGB, BitsPerComponent=8,
                            Filter=pikepdf.Name.DCTDecode)
    page0 = pdf.add_blank_page()
    page0.obj.MediaBox, page0.obj.CropBox = pikepdf.Array(_P0_MEDIA), pikepdf.Array(_P0_CROP)
    page0.obj.Resources = pikepdf.Dictionary(XObject=pikepdf.Dictionary(Scan=image))
    # Two content streams, the second leaving its graphics state changed (a cm outside q/Q).
    page0.obj.Contents = pikepdf.Array([
        pdf.make_stream(b"q 550 0 0 680 10 20 cm /Scan Do Q"),
        pdf.make_stream(("2 0 0 2 0 0 cm 0.5 0 0 0.5 0 0 cm 1 0 0 1 0 0 cm\n" + _rects(_P0_RECTS)).encode()),
    ])
    page1 = pdf.add_blank_page()
    page1.obj.MediaBox, page1.obj.Rotate = pikepdf.Array(_P1_MEDIA), 90
    page1.obj.Contents = pdf.make_stream(_rects(_P1_RECTS).encode())
    out = io.BytesIO()
    pdf.save(out, compress_streams=True)
    return out.getvalue()


def _rows_from_render(source, index, rects, dpi=100):
    """Words where Folio's render of the page shows each rectangle, in on-screen reading order."""
    image, got_dpi = _folio_image(source, index, dpi)
    found = []
    for label, colour in zip(_LABELS, _COLOURS[: len(rects)], strict=True):
        mask = (np.abs(image.astype(int) - colour) <= 10).all(axis=2)
        ys, xs = np.nonzero(mask)
        found.append((label, _box_polygon(xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)))
    found.sort(key=lambda w: (round(w[1][0][1] / 20), w[1][0][0]))
    lines = [found[:3], found[3:]]
    return _page(index, lines, image.shape[1], image.shape[0], got_dpi), lines


def test_pdf_pages_keep_their_content_and_get_words_where_they_show():
    source = _source_pdf()
    page0, lines0 = _rows_from_render(source, 0, _P0_RECTS)
    page1, lines1 = _rows_from_render(source, 1, _P1_RECTS)

    out = searchable_pdf(_doc([page0, page1], "application/pdf", ext="pdf"), source)

    src = pdfium.PdfDocument(source)
    res = pdfium.PdfDocument(out)
    assert len(res) == 2
    for i in range(2):
        assert res[i].get_size() == pytest.approx(src[i].get_size())
        # The text is invisible: the pages render exactly as the source's.
        assert np.array_equal(_render(out, i, 100), _render(source, i, 100))
    with pikepdf.open(io.BytesIO(source)) as before, pikepdf.open(io.BytesIO(out)) as after:
        for i in range(2):
            old, new = before.pages[i].obj.Contents, after.pages[i].obj.Contents
            old = list(old) if isinstance(old, pikepdf.Array) else [old]
            assert isinstance(new, pikepdf.Array) and len(new) == len(old) + 2
            assert [s.read_raw_bytes() for s in new[1:-1]] == [s.read_raw_bytes() for s in old]
            assert [s.read_bytes() for s in new[1:-1]] == [s.read_bytes() for s in old]
            assert new[0].read_bytes().split() == [b"q"] and new[-1].read_bytes().split()[0] == b"Q"
            layer = new[-1].read_bytes()
            assert layer.count(b"BT") == layer.count(b"3 Tr") == 2  # two lines, each drawn invisibly
    # Words come back in reading order, each where its rectangle is in user space.
    for index, lines, rects in ((0, lines0, _P0_RECTS), (1, lines1, _P1_RECTS)):
        by_label = dict(zip(_LABELS, rects, strict=True))
        text, extracted = _extract(out, index)
        assert text == _expected_text(lines)
        for label, got in extracted:
            x, y, w, h = by_label[label]
            _assert_boxes_close(got, (x, y, x + w, y + h), tolerance=2 * 72 / 100)
    _assert_pdfa(out)


@pytest.mark.parametrize("rotate", [0, 90, 180, 270])
def test_words_land_where_they_show_on_a_cropped_page_however_it_is_turned(rotate):
    rects = _P0_RECTS if rotate in (0, 180) else _P1_RECTS
    pdf = pikepdf.new()
    page = pdf.add_blank_page()
    page.obj.MediaBox, page.obj.CropBox, page.obj.Rotate = pikepdf.Array(_P0_MEDIA), pikepdf.Array(_P0_CROP), rotate
    page.obj.Contents = pdf.make_stream(_rects(rects).encode())
    buffer = io.BytesIO()
    pdf.save(buffer)
    source = buffer.getvalue()
    rows, lines = _rows_from_render(source, 0, rects)

    out = searchable_pdf(_doc([rows], "application/pdf", ext="pdf"), source)

    text, extracted = _extract(out, 0)
    assert text == _expected_text(lines)
    by_label = dict(zip(_LABELS, rects, strict=True))
    for label, got in extracted:
        x, y, w, h = by_label[label]
        _assert_boxes_close(got, (x, y, x + w, y + h), tolerance=2 * 72 / 100)
    _assert_pdfa(out)


def test_pdf_pages_folio_did_not_read_stay_as_they_were():
    source = _source_pdf()
    page1, lines1 = _rows_from_render(source, 1, _P1_RECTS)

    out = searchable_pdf(_doc([page1], "application/pdf", ext="pdf", failed=(0,)), source)

    with pikepdf.open(io.BytesIO(source)) as before, pikepdf.open(io.BytesIO(out)) as after:
        assert [s.read_bytes() for s in after.pages[0].obj.Contents] == \
               [s.read_bytes() for s in before.pages[0].obj.Contents]
        assert "/Font" not in after.pages[0].Resources
    assert _extract(out, 0)[0] == ""
    assert _extract(out, 1)[0] == _expected_text(lines1)


def test_born_digital_page_with_unembedded_font_keeps_its_text_and_does_not_claim_pdfa(caplog):
    pdf = pikepdf.new()
    page = pdf.add_blank_page(page_size=(400, 200))
    page.obj.Resources = pikepdf.Dictionary(Font=pikepdf.Dictionary(F1=pikepdf.Dictionary(
        Type=pikepdf.Name.Font, Subtype=pikepdf.Name.Type1, BaseFont=pikepdf.Name.Helvetica)))
    page.obj.Contents = pdf.make_stream(b"BT /F1 24 Tf 40 120 Td (Born digital) Tj ET")
    buffer = io.BytesIO()
    pdf.save(buffer)
    source = buffer.getvalue()
    # Folio's word boxes for the two words, from the source's own characters, in 100 dpi pixels.
    textpage = pdfium.PdfDocument(source)[0].get_textpage()
    boxes = [textpage.get_charbox(i, loose=True) for i in range(len("Born digital"))]
    s = 100 / 72

    def word(first, last):
        l, b = min(bx[0] for bx in boxes[first:last]), min(bx[1] for bx in boxes[first:last])
        r, t = max(bx[2] for bx in boxes[first:last]), max(bx[3] for bx in boxes[first:last])
        return _box_polygon(l * s, (200 - t) * s, r * s, (200 - b) * s)

    rows = _page(0, [[("Born", word(0, 4)), ("digital", word(5, 12))]], 556, 278, 100.0)

    with caplog.at_level(logging.WARNING, logger="pipeline.output.exports.pdf"):
        out = searchable_pdf(_doc([rows], "application/pdf", ext="pdf"), source)

    assert "does not claim PDF/A-2b" in caplog.text
    with pikepdf.open(io.BytesIO(out)) as result:
        meta = result.open_metadata()
        assert "pdfaid:part" not in meta and "pdfaid:conformance" not in meta
        assert result.pages[0].obj.Contents[1].read_bytes() == b"BT /F1 24 Tf 40 120 Td (Born digital) Tj ET"
    text = pdfium.PdfDocument(out)[0].get_textpage().get_text_range()
    assert text.count("Born") == 2 and text.count("digital") == 2


def test_a_pdf_encrypted_without_a_user_password_comes_out_unencrypted():
    with pikepdf.open(io.BytesIO(_source_pdf())) as pdf:
        buffer = io.BytesIO()
        pdf.save(buffer, encryption=pikepdf.Encryption(owner="owner", user="", R=6))
    source = buffer.getvalue()
    with pikepdf.open(io.BytesIO(source)) as pdf:
        assert pdf.is_encrypted
    page1, lines1 = _rows_from_render(source, 1, _P1_RECTS)

    out = searchable_pdf(_doc([page1], "application/pdf", ext="pdf"), source)

    with pikepdf.open(io.BytesIO(out)) as pdf:
        assert not pdf.is_encrypted
    assert _extract(out, 1)[0] == _expected_text(lines1)
    _assert_pdfa(out)


def test_output_is_the_same_bytes_every_time():
    source = _source_pdf()
    page0, _ = _rows_from_render(source, 0, _P0_RECTS)
    doc = _doc([page0], "application/pdf", ext="pdf")
    assert searchable_pdf(doc, source) == searchable_pdf(doc, source)
    image, words = _draw_text((300, 100), [["same"]])
    png = _encode(image, "PNG")
    png_doc = _doc([_page(0, words, 300, 100, None)], "image/png")
    assert searchable_pdf(png_doc, png) == searchable_pdf(png_doc, png)


def test_rows_of_another_document_are_refused():
    image, words = _draw_text((300, 100), [["mine"]])
    png = _encode(image, "PNG")
    with pytest.raises(ValueError, match="page 3"):
        searchable_pdf(_doc([_page(3, words, 300, 100, None)], "image/png"), png)
    with pytest.raises(ValueError, match="px in the rows"):
        searchable_pdf(_doc([_page(0, words, 100, 300, None)], "image/png"), png)
    with pytest.raises(ValueError, match="image/png"):
        searchable_pdf(_doc([_page(0, words, 300, 100, None)], "application/pdf"), png)
    source = _source_pdf()
    with pytest.raises(ValueError, match="not the same page"):
        searchable_pdf(_doc([_page(0, words, 300, 100, 100.0)], "application/pdf"), source)


# --------------------------------------------------------------------------- one real OCR round trip


def test_folio_ocr_rows_round_trip_into_the_text_layer(tmp_path):
    from click.testing import CliRunner

    from pipeline.cli import main
    from pipeline.output.catalog import read_table
    from pipeline.schema import page_from_row

    image, _ = _draw_text((1100, 420), [["The", "quick", "brown", "fox"], ["jumps", "over", "the", "lazy", "dog"]],
                          origin=(60, 80), font_size=48, gap=120)
    source = _encode(image, "PNG", dpi=(200, 200))
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "fox.png").write_bytes(source)
    result = CliRunner().invoke(main, ["run", str(tmp_path / "in"), str(tmp_path / "out"), "--quiet"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    rows = read_table(str(tmp_path / "out"), "pages").to_pylist()
    (row,) = rows
    page = page_from_row(row)
    words = [w for line in page.lines for w in line.words]
    assert len(words) >= 8

    out = searchable_pdf(_doc([page], "image/png", name="fox"), source)

    text, extracted = _extract(out, 0)
    assert text == "\r\n".join(" ".join(w.text for w in line.words) for line in page.lines)
    for (label, got), want in zip(extracted, words, strict=True):
        assert label == want.text
        _assert_boxes_close(got, _user_box(want.polygon, page.height, 200), tolerance=3 * 72 / 200)
    _assert_pdfa(out)
