"""Words: where the recognizer's frames put each word, boxes fitted to the ink, polygons on the page
(through crops cut at an angle, turned, split, and dewarped pages), and words in Parquet and in scoring."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image, ImageDraw, ImageFont

from measure.datasets import GtLine
from measure.scoring import polygon_iou, word_box_counts
from pipeline.config import FolioConfig
from pipeline.imaging.geometry import crop_with_frame, split_at_gaps, word_boxes
from pipeline.models.detection import order_quad
from pipeline.models.recognition import CTCDecoder
from pipeline.schema import PAGES, page_from_row, page_row
from pipeline.types import Block, Line, Page, PageImage, Word

DEJAVU = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
needs_font = pytest.mark.skipif(not DEJAVU.is_file(), reason="DejaVuSans.ttf is not installed")


def _one_hot(seq, classes=5):
    probs = np.full((1, len(seq), classes), 0.025, np.float32)
    for t, k in enumerate(seq):
        probs[0, t, k] = 0.9
    return probs


def _spans(reading):
    return [(w.text, w.start, w.end) for w in reading.words]


# -- where the frames put the words -------------------------------------------------------------


def test_a_word_spans_from_its_first_characters_first_frame_to_its_last_characters_last():
    decoder = CTCDecoder(["a", "b", "c"])  # 0 blank, 1 a, 2 b, 3 c, 4 space
    seq = [0, 1, 1, 0, 2, 4, 4, 0, 3, 3, 3, 0, 1, 0]  # _ a a _ b ' ' ' ' _ c c c _ a _
    [reading] = decoder(_one_hot(seq))
    assert reading.text == "ab ca"
    assert _spans(reading) == [("ab", 1, 5), ("ca", 8, 13)]
    assert [w.confidence for w in reading.words] == pytest.approx([0.9, 0.9])


def test_words_follow_the_spaces_decoding_inserts_and_the_words_it_drops():
    spaced = CTCDecoder(["a", "b", "c"], space_prob=0.1)
    probs = _one_hot([1, 0, 2, 0, 0, 3, 0, 1])  # "ab" (a near space) "ca"
    probs[0, 4, 4] = 0.3
    [reading] = spaced(probs)
    assert reading.text == "ab ca" and _spans(reading) == [("ab", 0, 3), ("ca", 5, 8)]
    probs[0, 0, 1] = 0.45  # the "a" of "ab" unsure: the word goes, and with it its span
    [reading] = spaced(probs, min_word_prob=0.5)
    assert reading.text == "ca" and _spans(reading) == [("ca", 5, 8)]


def test_unsure_words_stay_among_the_words_out_of_the_text_when_kept():
    probs = _one_hot([1, 0, 2, 4, 3, 1, 4, 2, 2, 0, 3])  # "ab ca bc"
    probs[0, 4, 3] = 0.4  # the "c" of "ca" is unsure
    [kept] = CTCDecoder(["a", "b", "c"], keep_unsure_words=True)(probs, min_word_prob=0.5)
    assert kept.text == "ab bc" and kept.confidence == pytest.approx(0.9)  # text and confidence as when dropped
    assert [(w.text, w.in_text) for w in kept.words] == [("ab", True), ("ca", False), ("bc", True)]
    assert kept.words[1].confidence == pytest.approx((0.4 + 0.9) / 2)
    [dropped] = CTCDecoder(["a", "b", "c"])(probs, min_word_prob=0.5)
    assert [w.text for w in dropped.words] == ["ab", "bc"] and dropped.text == kept.text
    # a line with every word unsure is no reading at all, either way
    assert CTCDecoder(["a", "b", "c"], keep_unsure_words=True)(probs, min_word_prob=0.95)[0] == ("", 0.0, ())


def test_kept_unsure_words_go_to_the_rows_and_the_exports_that_ask_for_them(tmp_path):
    from pipeline.output.exports import text_words_only
    from pipeline.schema import page_from_row, page_row
    from pipeline.stages.layout import order_lines
    from pipeline.types import Block, Line, Page, Word

    def box(x0, x1):
        return ((x0, 10.0), (x1, 10.0), (x1, 30.0), (x0, 30.0))

    words = (Word("sure", 0.9, box(0, 40)), Word("smudge", 0.3, box(50, 110), in_text=False),
             Word("word", 0.9, box(120, 160)))
    line = Line("sure word", 0.9, box(0, 160), words)
    assert line.text_words == (words[0], words[2])
    page = Page("k", "d", 0, 200, 100, blocks=(Block((line,)),), text="sure word")
    back = page_from_row(page_row(page, run_id="r", fingerprint="f"))
    assert back.lines[0].words == words  # in_text survives Parquet
    old_row = page_row(page, run_id="r", fingerprint="f")
    for w in old_row["lines"][0]["words"]:
        del w["in_text"]  # a row written before the flag: every word in the text
    assert all(w.in_text for w in page_from_row(old_row).lines[0].words)
    assert [w.text for w in text_words_only(page).lines[0].words] == ["sure", "word"]
    assert text_words_only(page).lines[0].text == "sure word"
    # the layout's page text leaves them out too
    blocks, text = order_lines([line], 100)
    assert text == "sure word"

    from pipeline.models.lexicon import Lexicon

    decoder = CTCDecoder(["c", "a", "t", "r"])  # 0 blank, 1 c, 2 a, 3 t, 4 r, 5 space
    probs = _one_hot([1, 0, 4, 0, 3], classes=6)
    probs[0, 2, 4], probs[0, 2, 2] = 0.6, 0.3
    order = np.argsort(-probs, axis=2, kind="stable")[:, :, 1:3]
    alternatives = (order, np.take_along_axis(probs, order, axis=2))
    [reading] = decoder.decode_best(probs.argmax(axis=2), probs.max(axis=2), probs[:, :, 5], None, alternatives,
                                    Lexicon(("test",), frozenset({"cat"})))
    assert reading.text == "cat" and _spans(reading) == [("cat", 0, 5)]


@needs_font
def test_the_recognizer_places_words_in_the_crop_where_they_were_drawn():
    from pipeline.models.bundle import OcrModels

    font = ImageFont.truetype(str(DEJAVU), 30)
    words = ["Invoice", "2024-118", "Total", "1,234.56"]
    line = Image.new("RGB", (720, 52), "white")
    draw = ImageDraw.Draw(line)
    x, truth = 12, []
    for word in words:
        box = draw.textbbox((x, 8), word, font=font)
        draw.text((x, 8), word, font=font, fill="black")
        truth.append((box[0], box[2]))
        x = box[2] + 22
    recognizer = OcrModels.load(FolioConfig()).recognizer
    [reading] = recognizer([np.asarray(line)])
    assert [w.text for w in reading.words] == words
    for w, (x0, x1) in zip(reading.words, truth):
        overlap = min(w.end, x1) - max(w.start, x0)
        assert overlap >= 0.6 * (x1 - x0), (w, x0, x1)  # the frames fall on the word's own ink
        assert w.start >= x0 - 30 and w.end <= x1 + 30


def test_word_boxes_hug_the_ink_of_each_word_and_share_the_lines_band():
    crop = np.full((40, 400, 3), 255, np.uint8)
    ink = [(20, 10, 90, 30), (120, 8, 210, 32), (250, 12, 380, 28)]
    for x0, y0, x1, y1 in ink:
        crop[y0:y1, x0:x1] = 30
    crop[36:38, 0:400] = 30  # an underline along the whole line: a rule, not text
    crop[12:30, 214:218] = 120  # a glyph's pale edge beside the second word: ink too
    # spans a few pixels off either way, as frames fall
    boxes = word_boxes(crop, [(26.0, 84.0), (112.0, 208.0), (244.0, 371.0)])
    assert boxes == [(20.0, 8.0, 90.0, 32.0), (120.0, 8.0, 218.0, 32.0), (250.0, 8.0, 380.0, 32.0)]
    # a word with no ink between its neighbours keeps its span
    blank = np.full((40, 400, 3), 255, np.uint8)
    blank[10:30, 20:90] = 0
    assert word_boxes(blank, [(20.0, 90.0), (200.0, 260.0)])[1] == (200.0, 10.0, 260.0, 30.0)
    # a flat crop has no ink to hug: spans, the crop's height
    assert word_boxes(np.full((40, 100, 3), 255, np.uint8), [(5.0, 50.0)]) == [(5.0, 0.0, 50.0, 40.0)]
    assert word_boxes(crop, []) == []


# -- crops and the page ---------------------------------------------------------------------------


def test_a_crop_frame_maps_crop_pixels_back_to_the_page():
    image = np.zeros((400, 600, 3), np.uint8)
    rect = ((300.0, 200.0), (320.0, 60.0), 12.0)
    quad = order_quad(cv2.boxPoints(rect))
    crop, frame = crop_with_frame(image, quad)
    h, w = crop.shape[:2]
    corners = frame.to_page(np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64))
    np.testing.assert_allclose(corners, quad, atol=1.0)
    # a piece cut from the crop maps through the shifted frame
    piece = frame.shifted(100.0)
    np.testing.assert_allclose(piece.to_page(np.array([[0.0, 0.0]])), frame.to_page(np.array([[100.0, 0.0]])))


def test_a_turned_crop_maps_back_to_the_vertical_line_it_came_from():
    image = np.zeros((300, 100, 3), np.uint8)
    quad = np.array([[10, 10], [40, 10], [40, 250], [10, 250]], np.float32)
    crop, frame = crop_with_frame(image, quad)
    assert crop.shape[1] > crop.shape[0]  # turned to read across
    h, w = crop.shape[:2]
    mapped = frame.to_page(np.array([[0, 0], [w, 0], [w, h], [0, h]], np.float64))
    assert {(round(x), round(y)) for x, y in mapped} == {(10, 10), (40, 10), (40, 250), (10, 250)}


def test_split_pieces_say_where_they_start_in_their_crop():
    crop = np.full((40, 600, 3), 255, np.uint8)
    crop[12:30, 10:100] = 0
    crop[12:30, 320:450] = 0
    quad = np.array([[0, 0], [600, 0], [600, 40], [0, 40]], np.float32)
    (_, _, x_left), (right, right_quad, x_right) = split_at_gaps(crop, quad, 1.5)
    assert x_left == 10 - 40 // 6 and right_quad[0, 0] == pytest.approx(x_right)  # the quad is the crop here


@needs_font
def test_the_page_stage_puts_each_word_on_its_ink():
    """Rendered words at known places, read through dewarp, detection, recognition and layout: each word
    comes back with its text and a polygon over its ink (IoU >= 0.5)."""
    from pipeline.stages.factory import create_page_stage

    font = ImageFont.truetype(str(DEJAVU), 28)
    page = Image.new("RGB", (1100, 420), "white")
    draw = ImageDraw.Draw(page)
    truth = []
    for row, text in enumerate(["Invoice number 2024-118", "Delivery address Berlin", "Total due EUR 1,234.56"]):
        x, y = 60, 60 + row * 110
        for word in text.split():
            box = draw.textbbox((x, y), word, font=font)
            draw.text((x, y), word, font=font, fill="black")
            truth.append((word, box))
            x = box[2] + 18
    [out] = create_page_stage(FolioConfig())([PageImage("k", "d", 0, np.asarray(page))])
    words = [w for line in out.lines for w in line.words]
    assert [w.text for w in words] == [t for t, _ in truth]
    for word, (text, (x0, y0, x1, y1)) in zip(words, truth):
        gt = [(x0, y0), (x1, y0), (x1, y1), (x0, y1)]
        assert polygon_iou(word.polygon, gt) >= 0.5, (text, word.polygon, gt)
        assert 0.5 < word.confidence <= 1


@needs_font
def test_words_of_a_page_scanned_sideways_are_in_the_original_pixels():
    """Dewarping turns the page upright; the words come back in the pixels of the image as stored."""
    from pipeline.stages.factory import create_page_stage

    font = ImageFont.truetype(str(DEJAVU), 30)
    upright = Image.new("RGB", (900, 640), "white")
    draw = ImageDraw.Draw(upright)
    boxes = {}
    for row, text in enumerate(["The archive keeps every page", "of the town council minutes",
                                "from eighteen ninety onwards", "bound in twelve volumes"]):
        x, y = 50, 60 + row * 130
        for word in text.split():
            box = draw.textbbox((x, y), word, font=font)
            draw.text((x, y), word, font=font, fill="black")
            boxes[word] = box
            x = box[2] + 18
    turned = np.ascontiguousarray(np.rot90(np.asarray(upright)))  # counterclockwise, as scanned
    [out] = create_page_stage(FolioConfig())([PageImage("k", "d", 0, turned)])
    assert out.dewarp.rotation == 90 and out.geometry is None
    h_up, w_up = np.asarray(upright).shape[:2]
    found = {w.text: w.polygon for line in out.lines for w in line.words}
    assert len(set(found) & set(boxes)) >= 0.8 * len(boxes)
    for text, poly in found.items():
        if text not in boxes:
            continue
        x0, y0, x1, y1 = boxes[text]
        # (x, y) of the upright page is (y, w_up - x) in the image turned counterclockwise
        gt = [(y0, w_up - x0), (y0, w_up - x1), (y1, w_up - x1), (y1, w_up - x0)]
        assert polygon_iou(poly, gt) >= 0.5, (text, poly, gt)


# -- Parquet and scoring ------------------------------------------------------------------------------


def _page() -> Page:
    words = (Word("Total", 0.97, ((10.0, 10.0), (60.0, 10.0), (60.0, 30.0), (10.0, 30.0))),
             Word("12.50", 0.91, ((70.0, 10.0), (120.0, 10.0), (120.0, 30.0), (70.0, 30.0))))
    line = Line("Total 12.50", 0.94, ((8.0, 8.0), (122.0, 8.0), (122.0, 32.0), (8.0, 32.0)), words)
    other = Line("Thanks", 0.9, ((8.0, 80.0), (80.0, 80.0), (80.0, 100.0), (8.0, 100.0)))
    return Page("k", "d", 0, 200, 150, 300.0, blocks=(Block((line,)), Block((other,))), text="Total 12.50\n\nThanks")


def test_a_page_round_trips_through_its_parquet_row():
    page = _page()
    row = page_row(page, run_id="r", fingerprint="f")
    assert [(l["block_index"], l["line_index"]) for l in row["lines"]] == [(0, 0), (1, 1)]
    assert row["lines"][0]["words"][1] == {"text": "12.50", "confidence": 0.91,
                                           "polygon": [[70.0, 10.0], [120.0, 10.0], [120.0, 30.0], [70.0, 30.0]],
                                           "in_text": True}
    table = pa.Table.from_pylist([row], schema=PAGES)
    back = page_from_row(table.to_pylist()[0], key="k")
    assert back.text == page.text and [len(b.lines) for b in back.blocks] == [1, 1]
    assert [w.text for w in back.lines[0].words] == ["Total", "12.50"]
    assert back.lines[0].words[0].confidence == pytest.approx(0.97)
    assert back.lines[1].words == ()
    with pytest.raises(ValueError, match="dewarped"):
        page_row(page.replace(geometry=object()), run_id="r", fingerprint="f")


def test_pages_written_before_words_are_read_beside_new_ones(tmp_path):
    """Output from before words (schema 1) and after reads back as one table; the old lines have no words."""
    from pipeline.output.catalog import read_table

    old_line = pa.struct([("text", pa.string()), ("confidence", pa.float32()),
                          ("polygon", pa.list_(pa.list_(pa.float32(), 2))), ("block_index", pa.int32()),
                          ("line_index", pa.int32())])
    old_schema = pa.schema([f if f.name != "lines" else pa.field("lines", pa.list_(old_line)) for f in PAGES])
    old = page_row(_page(), run_id="old", fingerprint="f")
    for line in old["lines"]:
        del line["words"]
    folder = tmp_path / "out" / "pages" / "run_date=2026-01-01"
    folder.mkdir(parents=True)
    pq.write_table(pa.Table.from_pylist([old], schema=old_schema), folder / "part-old-00000.parquet")
    pq.write_table(pa.Table.from_pylist([page_row(_page(), run_id="new", fingerprint="f")], schema=PAGES),
                   folder / "part-new-00000.parquet")
    rows = {r["run_id"]: r for r in read_table(str(tmp_path / "out"), "pages").to_pylist()}
    assert rows["old"]["lines"][0]["words"] is None and len(rows["new"]["lines"][0]["words"]) == 2
    assert page_from_row(rows["old"]).lines[0].words == ()


def test_word_box_counts_score_only_words_read_exactly():
    gt = [GtLine("Total", ((10, 10), (60, 10), (60, 30), (10, 30))),
          GtLine("12.50", ((70, 10), (120, 10), (120, 30), (70, 30))),
          GtLine("Thanks", ((10, 80), (80, 80), (80, 100), (10, 100)))]
    pred = [(((12, 12), (58, 12), (58, 28), (12, 28)), "Total"),  # read and covered
            (((70, 10), (200, 10), (200, 60), (70, 60)), "12.50"),  # read, too loose (IoU < 0.5)
            (((10, 80), (80, 80), (80, 100), (10, 100)), "Thank5")]  # misread: not scored
    assert word_box_counts(pred, gt) == (2, 1)
    assert word_box_counts([], gt) == (0, 0)
    assert word_box_counts([(((300, 300), (310, 300), (310, 310), (300, 310)), "Total")], gt) == (0, 0)
