"""Readers of labelled sets (measure.datasets) on tiny fixtures in each format.

The last tests read the real development sets when ``/work/shared/eval`` (or
``$FOLIO_EVAL_DIR``) exists and are skipped otherwise.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

import pytest

from measure.datasets import FORMATS, GtPage, read_dataset
from measure.scoring import score_page, summarize

FIXTURES = Path(__file__).parent / "fixtures" / "eval"
EVAL_DIR = Path(os.environ.get("FOLIO_EVAL_DIR", "/work/shared/eval"))


def by_id(pages: list[GtPage]) -> dict[str, GtPage]:
    return {p.sample_id: p for p in pages}


def test_funsd(caplog):
    with caplog.at_level(logging.WARNING, logger="measure.datasets"):
        pages = read_dataset("funsd", FIXTURES / "funsd")
    assert [p.sample_id for p in pages] == ["f001", "f002"]
    assert "orphan.json" in caplog.text  # annotation without an image is skipped, loudly
    p = pages[0]
    assert p.image_path == FIXTURES / "funsd" / "images" / "f001.png"
    assert (p.page_index, p.width, p.height) == (0, 50, 50)
    assert pages[1].width == 40
    # entities are the GT lines (the empty checkbox entity stays as a "don't care" region)
    assert [line.text for line in p.lines] == ["Date: 1998", "", "R&D Dept", "New York"]
    assert p.lines[0].polygon == ((5, 5), (30, 5), (30, 12), (5, 12))
    # words come from the word annotations: empty ones dropped, multi-token ones split
    assert p.words == ("Date:", "1998", "R&D", "Dept", "New", "York")
    assert p.ignore_words == ()


def test_sroie(caplog):
    with caplog.at_level(logging.WARNING, logger="measure.datasets"):
        pages = read_dataset("sroie", FIXTURES / "sroie")
    assert [p.sample_id for p in pages] == ["s001", "s002"]
    p = pages[0]
    assert p.image_path.name == "s001.jpg" and (p.width, p.height) == (50, 50)
    # BOM and CRLF stripped, commas and quotes kept inside the transcript, bad rows skipped
    assert [line.text for line in p.lines] == [
        "TAN WOON YANN",
        "NO.53 55,57 & 59, JALAN SAGU 18,",
        'SR: CS 3" (750) PAINT BRUSH',
    ]
    assert p.lines[0].polygon == ((2, 3), (40, 3), (40, 10), (2, 10))
    assert p.words[:5] == ("TAN", "WOON", "YANN", "NO.53", "55,57")
    assert caplog.text.count("malformed") == 2


def test_alto():
    pages = by_id(read_dataset("alto", FIXTURES / "alto"))
    assert sorted(pages) == ["docA/page_0001", "docB/p2"]  # the PAGE-XML file is not ALTO
    a = pages["docA/page_0001"]
    # paired through sourceImageInformation/fileName, not the stem
    assert a.image_path == FIXTURES / "alto" / "docA" / "scan_0001.jpg"
    assert (a.width, a.height) == (50, 50)
    texts = [line.text for line in a.lines]
    # markup undone (_ underline, ^ superscript), ~~~ out of the text, HYP kept, empty lines kept
    assert texts == ["Chez moi qu'il", "Mme Dupont", "", "", "porte-"]
    assert a.words == ("Chez", "moi", "qu'il", "Mme", "Dupont", "porte-")
    assert a.ignore_words == ("~~~",) * 3
    assert len(a.lines[0].polygon) == 6  # Shape/Polygon
    assert a.lines[1].polygon == ((2, 14), (32, 14), (32, 22), (2, 22))  # HPOS/VPOS box fallback
    b = pages["docB/p2"]
    # ALTO v2 namespace, no fileName (same-stem fallback), "x,y x,y" points,
    # GT frame from Page WIDTH/HEIGHT even though the image is 50x50
    assert b.image_path.name == "p2.png"
    assert (b.width, b.height) == (100, 100)
    assert b.lines[0].text == "Bonjour monde"
    assert b.lines[0].polygon == ((10, 10), (70, 10), (70, 22), (10, 22))


def test_lines():
    pages = read_dataset("lines", FIXTURES / "lines")
    assert [p.sample_id for p in pages] == ["sub/a", "sub/b"]  # c.gt.txt has no image
    a, b = pages
    assert (a.width, a.height) == (50, 10)
    assert a.lines[0].text == "Hello world" and a.lines[0].polygon == ((0, 0), (50, 0), (50, 10), (0, 10))
    assert b.image_path.suffix == ".tif" and b.lines[0].text == "ſchön Straße"  # historical glyphs kept
    assert b.words == ("ſchön", "Straße")


def test_synth():
    pages = read_dataset("synth", FIXTURES / "synth")
    assert [p.sample_id for p in pages] == ["doc1#0", "doc1#1"]  # missing file and foreign JSON skipped
    p0, p1 = pages
    assert p0.image_path == FIXTURES / "synth" / "doc1.tif"
    assert (p0.page_index, p1.page_index) == (0, 1)
    assert (p0.width, p0.height) == (100, 100)
    assert [line.text for line in p0.lines] == ["Invoice 42", "Total 9.00"]
    assert p0.words == ("Invoice", "42", "Total", "9.00")
    assert p1.lines[0].polygon == ((10, 10), (50, 10), (50, 20), (10, 20))  # flat point list


def test_natural_sort_and_limit(tmp_path):
    src = FIXTURES / "synth"
    shutil.copy(src / "doc1.tif", tmp_path / "doc1.tif")
    pages = [{"page_index": i, "width": 10, "height": 10, "text": f"p{i}", "lines": []} for i in range(12)]
    (tmp_path / "d.json").write_text(json.dumps({"doc": "d", "file": "doc1.tif", "format": "tiff", "dpi": 72,
                                                 "pages": pages}))
    ids = [p.sample_id for p in read_dataset("synth", tmp_path)]
    assert ids[:3] == ["d#0", "d#1", "d#2"] and ids[-1] == "d#11"
    assert [p.sample_id for p in read_dataset("synth", tmp_path, limit=2)] == ["d#0", "d#1"]
    assert read_dataset("synth", tmp_path, limit=0) == []
    assert read_dataset("synth", tmp_path)[5].words == ("p5",)  # words from text when there are no lines


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="funsd.*sroie.*alto.*lines.*synth"):
        read_dataset("pagexml", FIXTURES)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_dataset("funsd", tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="annotations"):
        read_dataset("funsd", tmp_path)
    assert read_dataset("lines", tmp_path) == []  # empty is not an error


@pytest.mark.parametrize("fmt", FORMATS)
def test_fixture_gt_scores_perfectly_against_itself(fmt):
    for sample in read_dataset(fmt, FIXTURES / fmt):
        pred = [(line.polygon, line.text) for line in sample.lines]
        score = score_page(sample, pred, " ".join(sample.words), 0.0, pred_size=(sample.width, sample.height))
        assert (score.f1, score.cer) == (1.0, 0.0), sample.sample_id
        assert score.det_hmean == 1.0 or not score.det_scored


# -- the real development sets (absent on a user's clone) ---------------------

REAL = [("funsd", "funsd", 149), ("sroie", "sroie", 80), ("alto", "tapuscorpus", 39), ("lines", "lines", 363),
        ("page", "newspapers_nzz", 16)]


@pytest.mark.skipif(not EVAL_DIR.is_dir(), reason=f"{EVAL_DIR} not present")
@pytest.mark.parametrize("fmt, folder, count", REAL)
def test_real_sets_read_and_self_score(fmt, folder, count):
    pages = read_dataset(fmt, EVAL_DIR / folder)
    assert len(pages) == count
    assert all(p.image_path.is_file() and p.width and p.height for p in pages)
    assert len({p.sample_id for p in pages}) == count
    scores = []
    for sample in pages:
        pred = [(line.polygon, line.text) for line in sample.lines if line.text]
        scores.append(score_page(sample, pred, " ".join(sample.words), 0.0))
    out = summarize(scores)
    assert out["word_f1"] == 1.0 and out["cer"] == 0.0
    assert out["det_hmean"] in (1.0, None)


def test_page_xml_lines_come_in_the_reading_order_with_line_level_text():
    [sample] = read_dataset("page", FIXTURES / "page")
    left = [f"left column line {k} of the story" for k in (1, 2, 3)]
    right = [f"right column line {k} of the story" for k in (1, 2, 3)]
    assert [line.text for line in sample.lines] == left + right  # the ReadingOrder's, not the file's order
    assert sample.ordered and "uncorrected" not in sample.words  # the line's text, not its words'
    from measure.scoring import reading_order_counts

    assert reading_order_counts("\n".join(left + right), sample)[0] == 0
    errors, _ = reading_order_counts(" ".join(a + " " + b for a, b in zip(left, right)), sample)
    assert errors > 10  # the columns interleaved


def test_eval_scores_another_systems_page_xml(tmp_path):
    """``folio eval page PATH --prediction DIR``: a peer's PAGE-XML output scored against the ground truth, paired
    by image file name; its own text, not the ground truth's."""
    from click.testing import CliRunner

    from pipeline.cli import main

    shutil.copytree(FIXTURES / "page", tmp_path / "peer")
    for xml in (tmp_path / "peer").rglob("*.xml"):
        xml.write_text(xml.read_text().replace("left column line 1 of", "left colunm line 1 of"))
    args = ["eval", "page", str(FIXTURES / "page"), "--quiet", "--json", str(tmp_path / "r.json")]
    result = CliRunner().invoke(main, [*args, "--prediction", str(tmp_path / "peer")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["system"].startswith("files in") and report["words_gt"] - report["words_tp"] == 1
    assert report["cer_errors"] == 2 and report["line_recall"] == 1.0


def test_text_read_in_dont_care_regions_counts_in_neither_cer():
    from measure.datasets import GtLine

    def box(y):
        return ((10.0, y), (200.0, y), (200.0, y + 20.0), (10.0, y + 20.0))

    gt = GtPage("p", Path("p.png"), 0, 400, 400, (GtLine("first line", box(10)), GtLine("", box(50)),
                                                   GtLine("second line", box(90))),
                ("first", "line", "second", "line"), ordered=True)
    pred = [(box(10), "first line"), (box(50), "scribbled note"), (box(90), "second line")]
    score = score_page(gt, pred, "\n".join(t for _, t in pred), 0.0)
    assert score.cer_errors == 0 and score.order_errors == 0
    swapped = score_page(gt, pred[::-1], "\n".join(t for _, t in pred[::-1]), 0.0)
    assert swapped.cer_errors == 0 and swapped.order_errors > 10  # the order still counts
    missed = score_page(gt, pred[:2], "first line\nscribbled note", 0.0)
    assert missed.order_errors == len(" second line")  # a missed line still counts
