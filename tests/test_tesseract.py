"""The tesseract engine: TSV parsing, the stage on rendered pages, and its failures as rows.

Parsing, config and fault-injection tests (fake ``tesseract`` programs put on
PATH) run everywhere; tests that need the real program are skipped without it.
"""

import hashlib
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from pipeline.config import FolioConfig, load_config
from pipeline.errors import ConfigError, ModelError, OcrError
from pipeline.models.tesseract import parse_tsv, tesseract_model_info
from pipeline.run import fingerprint
from pipeline.stages.factory import create_page_stage, stage_models
from pipeline.stages.tesseract import TesseractStage
from pipeline.types import PageImage
from tests.conftest import fake_models

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")
needs_font = pytest.mark.skipif(not FONT.is_file(), reason="DejaVuSans.ttf is not installed")

TSV = "\n".join(
    "\t".join(str(v) for v in row)
    for row in [
        ("level", "page_num", "block_num", "par_num", "line_num", "word_num", "left", "top", "width", "height", "conf", "text"),
        (1, 1, 0, 0, 0, 0, 0, 0, 1000, 300, -1, ""),
        (2, 1, 1, 0, 0, 0, 40, 60, 430, 140, -1, ""),
        (3, 1, 1, 1, 0, 0, 40, 60, 430, 140, -1, ""),
        (4, 1, 1, 1, 1, 0, 40, 60, 430, 31, -1, ""),
        (5, 1, 1, 1, 1, 1, 40, 66, 58, 24, 90.0, "The"),
        (5, 1, 1, 1, 1, 2, 112, 60, 83, 31, 80.0, "quick"),
        (5, 1, 1, 1, 1, 3, 208, 66, 94, 24, 10.0, "brown"),
        (4, 1, 1, 1, 2, 0, 42, 166, 367, 31, -1, ""),
        (5, 1, 1, 1, 2, 1, 42, 172, 69, 18, 95.5, "over"),
        (5, 1, 1, 1, 2, 2, 123, 166, 49, 24, 94.5, "dog"),
        (4, 1, 1, 1, 3, 0, 42, 250, 100, 20, -1, ""),
        (5, 1, 1, 1, 3, 1, 42, 250, 100, 20, 95.0, " "),  # whitespace-only word: the line is empty
        (2, 1, 2, 0, 0, 0, 600, 66, 100, 24, -1, ""),
        (5, 1, 2, 1, 1, 1, 600, 66, 100, 24, 50.0, "right"),
    ]
) + "\n"


def tesseract_config(**settings) -> FolioConfig:
    overrides = {"engine.name": "tesseract"} | {f"tesseract.{k}": v for k, v in settings.items()}
    return load_config(overrides=overrides, environ={})


def batch_of(*images: np.ndarray) -> list[PageImage]:
    return [PageImage(f"doc{i}", f"doc{i}", 0, image) for i, image in enumerate(images)]


def render(lines: list[str], size=(1000, 300), font_px=32) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """A white page with one line of black text per entry, and each line's ink box."""
    page = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(page)
    font = ImageFont.truetype(str(FONT), font_px)
    boxes = []
    for i, text in enumerate(lines):
        xy = (60, 50 + i * font_px * 3 // 2)
        draw.text(xy, text, font=font, fill="black")
        boxes.append(draw.textbbox(xy, text, font=font))
    return np.asarray(page), boxes


def fake_tesseract(folder: Path, body: str) -> Path:
    """Write a ``tesseract`` shell script into ``folder``; its version probes fail fast."""
    script = folder / "tesseract"
    script.write_text(f'#!/bin/sh\ncase "$1" in --*) exit 1;; esac\n{body}\n')
    script.chmod(0o755)
    return folder


# -- parsing ------------------------------------------------------------------------------------


def test_parse_tsv_groups_words_into_lines():
    lines = parse_tsv(TSV)
    assert [line.text for line in lines] == ["The quick brown", "over dog", "right"]
    np.testing.assert_allclose([line.confidence for line in lines], [0.6, 0.95, 0.5])
    np.testing.assert_array_equal(lines[0].quad, [[40, 60], [302, 60], [302, 91], [40, 91]])
    np.testing.assert_array_equal(lines[1].quad, [[42, 166], [172, 166], [172, 190], [42, 190]])
    assert lines[0].quad.dtype == np.float32
    assert [(text, conf) for text, conf, _ in lines[0].words] == [("The", 0.9), ("quick", 0.8), ("brown", 0.1)]
    np.testing.assert_array_equal(lines[0].words[1][2], [[112, 60], [195, 60], [195, 91], [112, 91]])


def test_parse_tsv_confidence_floor_drops_words_and_empty_lines():
    lines = parse_tsv(TSV, min_confidence=0.6)
    assert [line.text for line in lines] == ["The quick", "over dog"]
    np.testing.assert_allclose([line.confidence for line in lines], [0.85, 0.95])
    assert lines[0].quad[1, 0] == 195  # the line's box shrinks to the kept words
    assert [w[0] for w in lines[0].words] == ["The", "quick"]


def test_parse_tsv_of_an_empty_page_and_of_garbage():
    header = TSV.splitlines()[0] + "\n"
    assert parse_tsv(header + "1\t1\t0\t0\t0\t0\t0\t0\t10\t10\t-1\t\n") == []
    assert parse_tsv("") == []
    with pytest.raises(OcrError, match="line 2"):
        parse_tsv(header + "5\t1\t1\t1\t1\t1\tx\t0\t10\t10\t90\tword\n")


# -- config -------------------------------------------------------------------------------------


def test_tesseract_config_is_validated():
    assert tesseract_config(psm=6, lang="eng+deu").tesseract.psm == 6
    for key, value in [("psm", 14), ("psm", -1), ("min_confidence", 1.5), ("processes", 0), ("lang", "eng deu")]:
        with pytest.raises(ConfigError, match=f"tesseract.{key}"):
            tesseract_config(**{key: value})


def test_fingerprint_ignores_tesseract_threads_and_the_engine_not_in_use():
    base = fingerprint(tesseract_config(), fake_models(tesseract="abc"))
    assert fingerprint(tesseract_config(threads=4, processes=3, timeout_s=5), fake_models(tesseract="abc")) == base
    assert fingerprint(tesseract_config(psm=6), fake_models(tesseract="abc")) != base
    assert fingerprint(tesseract_config(min_confidence=0.3), fake_models(tesseract="abc")) != base
    # detection settings do not reach tesseract; tesseract settings do not reach the ONNX engine
    detect = load_config(overrides={"engine.name": "tesseract", "detection.box_thresh": 0.6}, environ={})
    assert fingerprint(detect, fake_models(tesseract="abc")) == base
    onnx = fingerprint(FolioConfig(), fake_models(detection="abc"))
    assert fingerprint(load_config(overrides={"tesseract.psm": 6}, environ={}), fake_models(detection="abc")) == onnx
    assert onnx != base


# -- the stage on real tesseract ----------------------------------------------------------------


@needs_tesseract
def test_model_info_names_version_and_hashes_the_traineddata():
    info = tesseract_model_info(tesseract_config())
    assert set(info) == {"tesseract"}
    model = info["tesseract"]
    assert model.name.startswith("tesseract ") and model.name.endswith(" eng")
    assert model.sha256 == hashlib.sha256((model.path / "eng.traineddata").read_bytes()).hexdigest()
    assert stage_models(tesseract_config()) == info
    with pytest.raises(ModelError, match="tesseract-ocr-xxx"):
        tesseract_model_info(tesseract_config(lang="xxx"))


@needs_tesseract
@needs_font
def test_stage_reads_a_rendered_page():
    texts = ["Folio reads scanned pages", "with Tesseract 5 too"]
    image, boxes = render(texts)
    stage = create_page_stage(tesseract_config())
    assert set(stage.models) == {"tesseract"}
    [page] = stage(batch_of(image))
    assert page.status == "ok", page.error_message
    assert (page.width, page.height) == (1000, 300)
    lines = page.lines
    assert [line.text for line in lines] == texts
    assert page.text == "\n".join(texts)  # one row each, close enough to be one block
    assert [index for _, index, _ in page.iter_lines()] == [0, 1]
    for line, (x0, y0, x1, y1) in zip(lines, boxes):
        poly = np.array(line.polygon)
        assert poly.shape == (4, 2)
        assert (poly >= 0).all() and (poly[:, 0] <= 1000).all() and (poly[:, 1] <= 300).all()
        # around the ink, within a few pixels
        np.testing.assert_allclose([poly[:, 0].min(), poly[:, 1].min(), poly[:, 0].max(), poly[:, 1].max()],
                                   [x0, y0, x1, y1], atol=6)
        assert 0.5 < line.confidence <= 1
        # tesseract's own words, inside their line
        assert " ".join(w.text for w in line.words) == line.text
        for word in line.words:
            wp = np.array(word.polygon)
            assert poly[:, 0].min() <= wp[:, 0].min() <= wp[:, 0].max() <= poly[:, 0].max()
    assert page.mean_confidence == pytest.approx(np.mean([line.confidence for line in lines]))
    assert page.timings.recognize > 0 and page.timings.detect is None


@needs_tesseract
@needs_font
def test_pages_in_parallel_processes_keep_their_order():
    words = ["alpha", "bravo", "charlie", "delta"]
    pages = [render([f"Page {w}"])[0] for w in words] + [np.full((300, 1000, 3), 255, np.uint8)]
    out = create_page_stage(tesseract_config(processes=3))(batch_of(*pages))
    assert [page.text for page in out] == [f"Page {w}" for w in words] + [""]
    assert [page.status for page in out] == ["ok"] * 5


@needs_tesseract
def test_blank_page_is_ok_with_no_lines():
    [page] = TesseractStage(tesseract_config())(batch_of(np.full((300, 1000, 3), 255, np.uint8)))
    assert page.status == "ok"
    assert page.lines == [] and page.text == "" and page.mean_confidence is None


@needs_tesseract
def test_missing_language_is_an_error_row():
    stage = TesseractStage(tesseract_config(lang="xxx"))  # builds; the pages say what is wrong
    assert stage.models == {}
    [page] = stage(batch_of(np.full((100, 200, 3), 255, np.uint8)))
    assert page.status == "error"
    assert page.error_code == "ocr_failed"
    assert "xxx" in page.error_message and "tesseract-ocr-<lang>" in page.error_message
    assert page.lines == [] and page.text == ""


# -- failures through the production seam (fake programs on PATH) -------------------------------


def test_missing_program_is_an_error_row_that_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    stage = TesseractStage(tesseract_config())
    [page] = stage(batch_of(np.full((50, 50, 3), 255, np.uint8)))
    assert (page.status, page.error_code) == ("error", "ocr_failed")
    assert "tesseract-ocr tesseract-ocr-eng" in page.error_message
    with pytest.raises(ModelError, match="tesseract-ocr tesseract-ocr-eng"):
        stage_models(tesseract_config())


@pytest.mark.parametrize(
    "body, settings, message",
    [
        ("exec sleep 30", {"timeout_s": 0.3}, "longer than 0.3 s"),
        ("kill -KILL $$", {}, "killed by signal SIGKILL"),
        ('echo "bad page OMP_THREAD_LIMIT=$OMP_THREAD_LIMIT" >&2; exit 2', {"threads": 3},
         "status 2: bad page OMP_THREAD_LIMIT=3"),
    ],
    ids=["timeout", "killed", "exit-status"],
)
def test_failing_tesseract_becomes_an_error_row(tmp_path, monkeypatch, body, settings, message):
    monkeypatch.setenv("PATH", f"{fake_tesseract(tmp_path, body)}{os.pathsep}{os.environ['PATH']}")
    stage = TesseractStage(tesseract_config(processes=2, **settings))
    t0 = time.perf_counter()
    out = stage(batch_of(np.full((50, 50, 3), 255, np.uint8), np.zeros((4, 4), np.uint8)))
    assert time.perf_counter() - t0 < 5
    assert [page.status for page in out] == ["error", "error"]
    assert [page.error_code for page in out] == ["ocr_failed", "ocr_failed"]
    assert message in out[0].error_message
    assert "RGB uint8" in out[1].error_message  # a bad image never reaches tesseract
