"""The archive-format writers (ALTO 4.4, PAGE-XML 2019, hOCR, plain text) on synthetic page models:
valid against the official schemas, boxes and reading order as the model has them, text escaped,
coordinates clipped to the page, and the same bytes for the same input."""

from __future__ import annotations

import datetime as dt
import io
import re
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from pipeline.output.exports import ExportDocument
from pipeline.output.exports.alto import alto
from pipeline.output.exports.hocr import hocr
from pipeline.output.exports.pagexml import REGION_TYPES, page_xml
from pipeline.output.exports.text import plain_text
from pipeline.schema import page_from_row, page_row
from pipeline.types import Block, Dewarp, Line, Page, Word

SCHEMAS = Path(__file__).parent / "data" / "schemas"
A = "{http://www.loc.gov/standards/alto/ns-v4#}"
P = "{http://schema.primaresearch.org/PAGE/gts/pagecontent/2019-07-15}"
H = "{http://www.w3.org/1999/xhtml}"
NASTY = 'R&D <draft> "quoted" l\'été Ærø 東京 Straße'


# --- synthetic pages ---------------------------------------------------------------------------

def word(text, x0, y0, x1, y1, conf=0.9, skew=0.0):
    """A word whose right side is ``skew`` pixels higher than its left (0: a rectangle)."""
    return Word(text, conf, ((x0, y0 + skew), (x1, y0), (x1, y1), (x0, y1 + skew)))


def line(*words, conf=0.9):
    xs = [p[0] for w in words for p in w.polygon]
    first, last = words[0].polygon, words[-1].polygon
    polygon = ((min(xs), first[0][1]), (max(xs), last[1][1]), (max(xs), last[2][1]), (min(xs), first[3][1]))
    return Line(" ".join(w.text for w in words), conf, polygon, tuple(words))


def row_of_words(texts, x, y, height=40, gap=12, char=18, conf=0.9, skew_per_px=0.0):
    words, cursor = [], x
    for i, t in enumerate(texts):
        width = char * len(t)
        dy = skew_per_px * (cursor - x)
        words.append(word(t, cursor + 0.4, y - dy, cursor + width + 0.3, y + height - dy,
                          conf=conf - 0.01 * i, skew=skew_per_px * width))
        cursor += width + gap
    return line(*words, conf=conf)


def page_text(blocks):
    return "\n\n".join("\n".join(ln.text for ln in b.lines) for b in blocks)


def two_column_page() -> Page:
    """Running header, a heading across both columns, two columns of text, marginalia, a page number."""
    blocks = (
        Block((row_of_words(["Journal", "of", "Things"], 800, 60.6),), kind="header"),
        Block((row_of_words(["Über", "café", "naïve"], 700, 200, height=70, char=30),), kind="heading"),
        Block(tuple(row_of_words(["left", "column", "line", str(i)], 120, 400 + 60 * i, conf=0.95)
                    for i in range(4))),
        Block(tuple(row_of_words(["right", "column", "line", str(i)], 1100, 400 + 60 * i, conf=0.85)
                    for i in range(3)), kind="text"),
        Block((row_of_words(["note"], 1900, 420, height=25, char=10),), kind="marginalia"),
        Block((row_of_words(["17"], 990, 2900),), kind="page-number"),
    )
    return Page("s3://bucket/in/scan.pdf", "d" * 64, 0, 2000, 3000, 300.0, blocks=blocks, text=page_text(blocks))


def dewarped_page() -> Page:
    """A skewed page whose lines and words are parallelograms."""
    blocks = (Block(tuple(row_of_words(["tilted", "text", str(i)], 150, 300 + 70 * i, skew_per_px=0.03)
                          for i in range(3))),)
    dewarp = Dewarp(rotation=0, skew_deg=1.7, quad=((10.0, 12.0), (1990.0, 5.0), (1995.0, 2990.0), (4.0, 2995.0)),
                    curl_corrected=True)
    return Page("s3://bucket/in/scan.pdf", "d" * 64, 1, 2000, 3000, 300.0, dewarp=dewarp, blocks=blocks,
                text=page_text(blocks))


def old_row_page() -> Page:
    """A page written before words existed: its lines have no words; one holds text needing escapes."""
    lines = (Line(NASTY, 0.8, ((100.2, 100.0), (900.0, 100.0), (900.0, 140.6), (100.2, 140.6))),
             Line("plain words here", 0.7, ((100.0, 160.0), (700.0, 160.0), (700.0, 200.0), (100.0, 200.0))))
    blocks = (Block(lines),)
    return Page("s3://bucket/in/scan.pdf", "d" * 64, 3, 1000, 1400, None, blocks=blocks, text=page_text(blocks))


def overflowing_page() -> Page:
    """Polygons reaching past every edge of a 500 x 400 page."""
    words = (word("edge", -12.6, -5.2, 80.0, 30.0), word("beyond", 420.0, 10.0, 530.7, 45.0))
    lines = (line(*words), Line("low", 0.5, ((10.0, 380.0), (60.0, 380.0), (60.0, 415.0), (10.0, 415.0))))
    blocks = (Block(lines),)
    return Page("a.png", "e" * 64, 0, 500, 400, None, blocks=blocks, text=page_text(blocks))


def document(*pages, failed=(), mime="application/pdf", source="s3://bucket/in/scan.pdf") -> ExportDocument:
    return ExportDocument(
        doc_id="d" * 64, source_uri=source, name="scan", mime=mime, pipeline_version="0.1.0",
        config_fingerprint="cafebabe1234", engine="onnxruntime/cpu",
        models=({"role": "detection", "name": "ch_PP-OCRv4_det", "sha256": "a1" * 32},
                {"role": "recognition", "name": "en_PP-OCRv4_rec", "sha256": "b2" * 32}),
        run_id="run-1", processed_at=dt.datetime(2024, 5, 1, 12, 30, 5, 123456, tzinfo=dt.timezone.utc),
        pages=tuple(pages), failed_pages=tuple(failed))


def all_pages():
    return [two_column_page(), dewarped_page(), old_row_page()]


def rounded_box(polygon, w, h):
    xs, ys = [p[0] for p in polygon], [p[1] for p in polygon]
    x0, y0 = max(0, min(w, round(min(xs)))), max(0, min(h, round(min(ys))))
    x1, y1 = max(0, min(w, round(max(xs)))), max(0, min(h, round(max(ys))))
    return x0, y0, x1, y1


def words_of(line_):
    """What a line's words are in the exports: its words, or the line itself for lines without words."""
    return [(w.text, w.confidence, w.polygon) for w in line_.words] or [(line_.text, line_.confidence, line_.polygon)]


# --- schemas -----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def schema():
    """``schema(name)``: an lxml validator for one of the XSDs in tests/data/schemas (read offline:
    alto-4-4.xsd imports the xlink.xsd beside it by relative schemaLocation)."""
    etree = pytest.importorskip("lxml.etree")
    cache = {}

    def get(name):
        if name not in cache:
            parser = etree.XMLParser(no_network=True, resolve_entities=False)
            cache[name] = etree.XMLSchema(etree.parse(str(SCHEMAS / name), parser))
        return cache[name]

    return get


def assert_valid(schema, data: bytes):
    from lxml import etree

    doc = etree.parse(io.BytesIO(data), etree.XMLParser(no_network=True, resolve_entities=False))
    if not schema.validate(doc):
        raise AssertionError("\n".join(str(e) for e in schema.error_log))


@pytest.mark.parametrize("make", [two_column_page, dewarped_page, old_row_page, overflowing_page])
def test_alto_and_page_are_valid(schema, make):
    page = make()
    doc = document(page)
    assert_valid(schema("alto-4-4.xsd"), alto(doc, page))
    assert_valid(schema("pagecontent-2019-07-15.xsd"), page_xml(doc, page))


def test_valid_without_processed_at_and_for_an_empty_page(schema):
    empty = Page("a.png", "e" * 64, 0, 800, 600, None)
    doc = dataclass_replace(document(empty, mime="image/png", source="/in/a.png"), processed_at=None, models=())
    data = alto(doc, empty)
    assert_valid(schema("alto-4-4.xsd"), data)
    assert b"processingDateTime" not in data
    assert_valid(schema("pagecontent-2019-07-15.xsd"), page_xml(doc, empty))
    assert b"ocr_page" in hocr(doc)


def dataclass_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


# --- ALTO --------------------------------------------------------------------------------------

def test_alto_strings_are_the_models_words():
    for page in all_pages():
        root = ET.fromstring(alto(document(page), page))
        lines = root.findall(f".//{A}TextLine")
        assert len(lines) == len(page.lines)
        for line_el, line_ in zip(lines, page.lines):
            strings = line_el.findall(f"{A}String")
            expected = words_of(line_)
            assert len(strings) == len(expected)
            assert len(line_el.findall(f"{A}SP")) == len(expected) - 1
            for s, (text, conf, polygon) in zip(strings, expected):
                x0, y0, x1, y1 = rounded_box(polygon, page.width, page.height)
                got = tuple(int(s.get(k)) for k in ("HPOS", "VPOS", "WIDTH", "HEIGHT"))
                assert got == (x0, y0, x1 - x0, y1 - y0)
                assert s.get("CONTENT") == text
                assert float(s.get("WC")) == pytest.approx(conf, abs=1e-4)
            x0, y0, x1, y1 = rounded_box(line_.polygon, page.width, page.height)
            assert tuple(int(line_el.get(k)) for k in ("HPOS", "VPOS", "WIDTH", "HEIGHT")) == (
                x0, y0, x1 - x0, y1 - y0)
            bl, br = line_.polygon[3], line_.polygon[2]
            assert line_el.get("BASELINE") == f"{round(bl[0])},{round(bl[1])} {round(br[0])},{round(br[1])}"


def test_alto_blocks_kinds_and_provenance():
    page = two_column_page()
    root = ET.fromstring(alto(document(page), page))
    tags = {t.get("ID"): t.get("LABEL") for t in root.findall(f"{A}Tags/{A}LayoutTag")}
    blocks = root.findall(f".//{A}PrintSpace/{A}TextBlock")
    assert [tags[b.get("TAGREFS")] for b in blocks] == [b.kind for b in page.blocks]
    for block_el, block in zip(blocks, page.blocks):
        x0, y0, x1, y1 = rounded_box(block.polygon, page.width, page.height)
        assert tuple(int(block_el.get(k)) for k in ("HPOS", "VPOS", "WIDTH", "HEIGHT")) == (x0, y0, x1 - x0, y1 - y0)
    page_el = root.find(f"{A}Layout/{A}Page")
    assert (page_el.get("WIDTH"), page_el.get("HEIGHT"), page_el.get("PHYSICAL_IMG_NR")) == ("2000", "3000", "1")
    desc = root.find(f"{A}Description")
    assert desc.findtext(f"{A}MeasurementUnit") == "pixel"
    assert desc.findtext(f"{A}sourceImageInformation/{A}fileName") == "scan.pdf#page=1"
    step = desc.find(f"{A}Processing")
    assert step.findtext(f"{A}processingDateTime") == "2024-05-01T12:30:05Z"
    assert step.findtext(f"{A}processingSoftware/{A}softwareName") == "Folio"
    assert step.findtext(f"{A}processingSoftware/{A}softwareVersion") == "0.1.0"
    text = ET.tostring(step, encoding="unicode")
    for needle in ("onnxruntime/cpu", "ch_PP-OCRv4_det", "a1" * 32, "en_PP-OCRv4_rec", "b2" * 32, "cafebabe1234"):
        assert needle in text


def test_alto_file_name_of_a_single_image():
    page = overflowing_page()
    root = ET.fromstring(alto(document(page, mime="image/png", source="/scans/a.png"), page))
    assert root.findtext(f"{A}Description/{A}sourceImageInformation/{A}fileName") == "a.png"


def test_alto_exact_polygons_only_where_the_page_was_dewarped():
    flat = two_column_page()
    assert ET.fromstring(alto(document(flat), flat)).find(f".//{A}Shape") is None
    page = dewarped_page()
    root = ET.fromstring(alto(document(page), page))
    for line_el, line_ in zip(root.findall(f".//{A}TextLine"), page.lines):
        points = line_el.find(f"{A}Shape/{A}Polygon").get("POINTS")
        assert points == " ".join(f"{round(x)},{round(y)}" for x, y in line_.polygon)
        for s, w in zip(line_el.findall(f"{A}String"), line_.words):
            assert s.find(f"{A}Shape/{A}Polygon").get("POINTS") == " ".join(
                f"{round(x)},{round(y)}" for x, y in w.polygon)


def test_alto_line_without_words_is_one_string():
    page = old_row_page()
    root = ET.fromstring(alto(document(page), page))
    first = root.find(f".//{A}TextLine")
    (string,) = first.findall(f"{A}String")
    assert string.get("CONTENT") == NASTY
    assert (string.get("HPOS"), string.get("VPOS"), string.get("WIDTH"), string.get("HEIGHT")) == (
        "100", "100", "800", "41")
    assert string.get("WC") == "0.8"


# --- PAGE-XML ----------------------------------------------------------------------------------

def test_page_reading_order_regions_lines_and_words():
    page = two_column_page()
    root = ET.fromstring(page_xml(document(page), page))
    page_el = root.find(f"{P}Page")
    assert (page_el.get("imageFilename"), page_el.get("imageWidth"), page_el.get("imageHeight")) == (
        "scan.pdf#page=1", "2000", "3000")
    refs = page_el.findall(f"{P}ReadingOrder/{P}OrderedGroup/{P}RegionRefIndexed")
    regions = page_el.findall(f"{P}TextRegion")
    assert [int(r.get("index")) for r in refs] == list(range(len(page.blocks)))
    assert [r.get("regionRef") for r in refs] == [r.get("id") for r in regions]
    assert [r.get("type") for r in regions] == [REGION_TYPES[b.kind] for b in page.blocks]
    assert [r.get("type") for r in regions] == ["header", "heading", "paragraph", "paragraph", "marginalia",
                                               "page-number"]
    for region, block in zip(regions, page.blocks):
        assert region[0].tag == f"{P}Coords" and region[-1].tag == f"{P}TextEquiv"
        assert region.findtext(f"{P}TextEquiv/{P}Unicode") == "\n".join(ln.text for ln in block.lines)
        for line_el, line_ in zip(region.findall(f"{P}TextLine"), block.lines):
            assert [c.tag.removeprefix(P) for c in line_el] == ["Coords", "Baseline"] + ["Word"] * len(
                line_.words) + ["TextEquiv"]
            assert line_el.find(f"{P}Coords").get("points") == " ".join(
                f"{round(x)},{round(y)}" for x, y in line_.polygon)
            bl, br = line_.polygon[3], line_.polygon[2]
            assert line_el.find(f"{P}Baseline").get("points") == (
                f"{round(bl[0])},{round(bl[1])} {round(br[0])},{round(br[1])}")
            assert line_el.findtext(f"{P}TextEquiv/{P}Unicode") == line_.text
            assert float(line_el.find(f"{P}TextEquiv").get("conf")) == pytest.approx(line_.confidence, abs=1e-4)
            for word_el, w in zip(line_el.findall(f"{P}Word"), line_.words):
                assert word_el.findtext(f"{P}TextEquiv/{P}Unicode") == w.text
                assert float(word_el.find(f"{P}TextEquiv").get("conf")) == pytest.approx(w.confidence, abs=1e-4)


def test_page_metadata():
    page = two_column_page()
    meta = ET.fromstring(page_xml(document(page), page)).find(f"{P}Metadata")
    assert meta.findtext(f"{P}Creator") == "Folio 0.1.0"
    assert meta.findtext(f"{P}Created") == meta.findtext(f"{P}LastChange") == "2024-05-01T12:30:05Z"
    comments = meta.findtext(f"{P}Comments")
    for needle in ("onnxruntime/cpu", "ch_PP-OCRv4_det", "a1" * 32, "cafebabe1234"):
        assert needle in comments


# --- hOCR --------------------------------------------------------------------------------------

BBOX = re.compile(r"bbox((\s+-?\d+){4})")
WCONF = re.compile(r"x_wconf\s+(\d+)")
BASELINE = re.compile(r"baseline\s+(-?[\d.]+)\s+(-?[\d.]+)")


def test_hocr_words_boxes_and_confidences():
    pages = all_pages()
    data = hocr(document(*pages))
    root = ET.fromstring(data)
    assert root.find(f"{H}head/{H}meta[@name='ocr-system']").get("content") == "Folio 0.1.0"
    assert "ocrx_word" in root.find(f"{H}head/{H}meta[@name='ocr-capabilities']").get("content")
    page_els = [e for e in root.iter(f"{H}div") if e.get("class") == "ocr_page"]
    assert len(page_els) == len(pages)
    for page_el, page in zip(page_els, pages):
        assert page_el.get("title").startswith(f'image "scan.pdf#page={page.page_index + 1}"; '
                                               f"bbox 0 0 {page.width} {page.height}; ppageno {page.page_index}")
        areas = [e for e in page_el if e.get("class") == "ocr_carea"]
        assert len(areas) == len(page.blocks)
        line_els = [e for e in page_el.iter(f"{H}span") if e.get("class") == "ocr_line"]
        assert len(line_els) == len(page.lines)
        for line_el, line_ in zip(line_els, page.lines):
            words = [e for e in line_el if e.get("class") == "ocrx_word"]
            expected = words_of(line_)
            assert [w.text for w in words] == [t for t, _, _ in expected]
            for w, (_, conf, polygon) in zip(words, expected):
                assert tuple(int(v) for v in BBOX.search(w.get("title")).group(1).split()) == rounded_box(
                    polygon, page.width, page.height)
                assert int(WCONF.search(w.get("title")).group(1)) == round(conf * 100)
            assert "x_size" in line_el.get("title")


def test_hocr_baseline_is_the_bottom_edge():
    page = dewarped_page()
    root = ET.fromstring(hocr(document(page)))
    for line_el, line_ in zip((e for e in root.iter(f"{H}span") if e.get("class") == "ocr_line"), page.lines):
        title = line_el.get("title")
        x0, _, _, y1 = (int(v) for v in BBOX.search(title).group(1).split())
        slope, offset = (float(v) for v in BASELINE.search(title).groups())
        assert slope < 0  # the line rises to the right
        for x, y in (line_.polygon[3], line_.polygon[2]):
            assert y1 + offset + slope * (x - x0) == pytest.approx(y, abs=1.0)


def test_hocr_reads_with_the_internet_archive_parser(tmp_path):
    parse = pytest.importorskip("hocr.parse")
    if not hasattr(parse, "hocr_page_to_word_data"):
        pytest.skip("another package named hocr is installed")
    pages = all_pages()
    path = tmp_path / "doc.hocr"
    path.write_bytes(hocr(document(*pages)))
    seen = 0
    # The iterator clears each page once the loop moves on: read it inside the loop.
    for page_el in parse.hocr_page_iterator(str(path)):
        page = pages[seen]
        seen += 1
        assert parse.hocr_page_get_dimensions(page_el) == (page.width, page.height)
        paragraphs = parse.hocr_page_to_word_data(page_el)
        assert len(paragraphs) == len(page.blocks)
        got = [(w["text"], [int(v) for v in w["bbox"]], w["confidence"])
               for par in paragraphs for ln in par["lines"] for w in ln["words"]]
        want = [(t, list(rounded_box(poly, page.width, page.height)), round(c * 100))
                for ln in page.lines for t, c, poly in words_of(ln)]
        assert got == want
        assert [w["text"] for w in (ww for par in parse.hocr_page_to_word_data_fast(page_el)
                                   for ln in par["lines"] for ww in ln["words"])] == [t for t, _, _ in want]
    assert seen == len(pages)


# --- plain text --------------------------------------------------------------------------------

def test_plain_text_pages_separated_by_form_feeds():
    first, second = two_column_page(), old_row_page()
    data = plain_text(document(first, second, failed=(1, 2)))
    assert data.endswith(b"\n")
    parts = data.decode("utf-8").split("\f")
    # Failed pages 1 and 2 keep their places, so part n is page n.
    assert parts == [first.text + "\n", "\n", "\n", second.text + "\n"]
    assert plain_text(document()) == b""


# --- across formats ----------------------------------------------------------------------------

def test_text_is_escaped_in_every_format():
    page = old_row_page()
    doc = document(page)
    assert ET.fromstring(alto(doc, page)).find(f".//{A}String").get("CONTENT") == NASTY
    assert ET.fromstring(page_xml(doc, page)).findtext(f".//{P}TextLine/{P}TextEquiv/{P}Unicode") == NASTY
    words = [e.text for e in ET.fromstring(hocr(doc)).iter(f"{H}span") if e.get("class") == "ocrx_word"]
    assert words[0] == NASTY
    assert NASTY.encode("utf-8") in plain_text(doc)
    for data in (alto(doc, page), page_xml(doc, page), hocr(doc)):
        assert b"<draft>" not in data and b"R&D" not in data
        assert "東京".encode() in data  # UTF-8, not character references


def test_control_characters_are_dropped():
    bad = Line("a\x00b\x0cc", 0.9, ((0.0, 0.0), (50.0, 0.0), (50.0, 20.0), (0.0, 20.0)),
               (Word("a\x00b\x0cc", 0.9, ((0.0, 0.0), (50.0, 0.0), (50.0, 20.0), (0.0, 20.0))),))
    page = Page("a.png", "e" * 64, 0, 100, 100, None, blocks=(Block((bad,)),), text="abc")
    doc = document(page)
    for data in (alto(doc, page), page_xml(doc, page), hocr(doc)):
        assert b"abc" in data
        ET.fromstring(data)


def test_coordinates_are_clipped_to_the_page():
    page = overflowing_page()
    doc = document(page, mime="image/png", source="/in/a.png")
    numbers = []
    root = ET.fromstring(alto(doc, page))
    for el in root.iter():
        if el.tag in (f"{A}TextBlock", f"{A}TextLine", f"{A}String"):
            x, y, w, h = (int(el.get(k)) for k in ("HPOS", "VPOS", "WIDTH", "HEIGHT"))
            assert 0 <= x and 0 <= y and x + w <= 500 and y + h <= 400
    first = root.find(f".//{A}String")
    assert tuple(first.get(k) for k in ("HPOS", "VPOS", "WIDTH", "HEIGHT")) == ("0", "0", "80", "30")
    for el in ET.fromstring(page_xml(doc, page)).iter():
        if el.get("points"):
            numbers += [int(v) for pair in el.get("points").split() for v in pair.split(",")]
            assert all(0 <= int(p.split(",")[0]) <= 500 and 0 <= int(p.split(",")[1]) <= 400
                       for p in el.get("points").split())
    assert numbers and min(numbers) == 0
    for el in ET.fromstring(hocr(doc)).iter(f"{H}span"):
        x0, y0, x1, y1 = (int(v) for v in BBOX.search(el.get("title")).group(1).split())
        assert 0 <= x0 <= x1 <= 500 and 0 <= y0 <= y1 <= 400


def test_same_input_same_bytes():
    def everything():
        pages = all_pages()
        doc = document(*pages)
        return [alto(doc, p) for p in pages] + [page_xml(doc, p) for p in pages] + [hocr(doc), plain_text(doc)]

    assert everything() == everything()


def test_pages_read_back_from_parquet_rows_export_alike(schema):
    """Exports read pages from ``pages`` rows: float32 polygons, blocks from ``block_index``."""
    page = two_column_page()
    row = page_row(page, run_id="run-1", fingerprint="cafebabe1234")
    back = page_from_row(row, key=page.key)
    back = dataclass_replace(back, blocks=tuple(dataclass_replace(b, kind=o.kind)
                                                for b, o in zip(back.blocks, page.blocks)))
    doc = document(back)
    assert_valid(schema("alto-4-4.xsd"), alto(doc, back))
    assert alto(doc, back) == alto(document(page), page)


def test_folio_eval_reads_alto_and_pdf_text_layers_back_in_reading_order(tmp_path):
    """The readers behind ``folio eval --system tesseract-alto|tesseract-pdf|folio-alto|folio-pdf``
    give back the page's lines in its order, with word boxes in page pixels."""
    import numpy as np
    from PIL import Image

    from measure.systems import _read_alto_prediction, _read_pdf_prediction
    from pipeline.output.exports.pdf import searchable_pdf

    page = two_column_page()
    doc = ExportDocument("d" * 64, "scan.png", "scan", "image/png", "0", "f", "onnxruntime", (), "run", None,
                         (page,))
    (tmp_path / "page.xml").write_bytes(alto(doc, page))
    from_alto = _read_alto_prediction(tmp_path / "page.xml")
    assert [t for _, t, _ in from_alto.lines] == [ln.text for b in page.blocks for ln in b.lines]
    buf = io.BytesIO()
    Image.fromarray(np.full((page.height, page.width), 255, np.uint8)).save(buf, "PNG", dpi=(300, 300))
    (tmp_path / "page.pdf").write_bytes(searchable_pdf(doc, buf.getvalue()))
    from_pdf = _read_pdf_prediction(tmp_path / "page.pdf", page.width)
    assert from_pdf.text.split() == page.text.split()
    first = page.blocks[0].lines[0].words[0]
    box = next(p for p, t in from_pdf.words if t == first.text)
    assert abs(box[0][0] - first.polygon[0][0]) < 4 and abs(box[2][0] - first.polygon[2][0]) < 4
