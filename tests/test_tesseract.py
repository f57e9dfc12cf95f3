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

from pipeline.config import FolioConfig, config_fingerprint, load_config
from pipeline.errors import ConfigError, ModelError, OcrError
from pipeline.models.tesseract import TesseractStage, parse_tsv, tesseract_model_info
from pipeline.stages import create_stage, stage_models

FONT = Path("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf")
needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract is not installed")
needs_font = pytest.mark.skipif(not FONT.is_file(), reason="DejaVuSans.ttf is not installed")

OUTPUT_COLUMNS = {
    "doc_id", "page_index", "width", "height", "lines", "text", "mean_confidence", "status", "error_code",
    "error_message", "detect_ms", "recognize_ms",
}

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


def batch_of(*images: np.ndarray) -> dict[str, np.ndarray]:
    column = np.empty(len(images), dtype=object)
    for i, image in enumerate(images):
        column[i] = image
    return {
        "doc_id": np.array([f"doc{i}" for i in range(len(images))], dtype=object),
        "page_index": np.arange(len(images), dtype=np.int64),
        "image": column,
    }


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
    quads, texts, confidences = parse_tsv(TSV)
    assert texts == ["The quick brown", "over dog", "right"]
    np.testing.assert_allclose(confidences, [0.6, 0.95, 0.5])
    np.testing.assert_array_equal(quads[0], [[40, 60], [302, 60], [302, 91], [40, 91]])
    np.testing.assert_array_equal(quads[1], [[42, 166], [172, 166], [172, 190], [42, 190]])
    assert quads.dtype == np.float32 and quads.shape == (3, 4, 2)


def test_parse_tsv_confidence_floor_drops_words_and_empty_lines():
    quads, texts, confidences = parse_tsv(TSV, min_confidence=0.6)
    assert texts == ["The quick", "over dog"]
    np.testing.assert_allclose(confidences, [0.85, 0.95])
    assert quads[0, 1, 0] == 195  # the line's box shrinks to the kept words


def test_parse_tsv_of_an_empty_page_and_of_garbage():
    header = TSV.splitlines()[0] + "\n"
    quads, texts, confidences = parse_tsv(header + "1\t1\t0\t0\t0\t0\t0\t0\t10\t10\t-1\t\n")
    assert quads.shape == (0, 4, 2) and texts == [] and confidences == []
    assert parse_tsv("")[1] == []
    with pytest.raises(OcrError, match="line 2"):
        parse_tsv(header + "5\t1\t1\t1\t1\t1\tx\t0\t10\t10\t90\tword\n")


# -- config -------------------------------------------------------------------------------------


def test_tesseract_config_is_validated():
    assert tesseract_config(psm=6, lang="eng+deu").tesseract.psm == 6
    for key, value in [("psm", 14), ("psm", -1), ("min_confidence", 1.5), ("processes", 0), ("lang", "eng deu")]:
        with pytest.raises(ConfigError, match=f"tesseract.{key}"):
            tesseract_config(**{key: value})


def test_fingerprint_ignores_tesseract_threads_and_the_engine_not_in_use():
    base = config_fingerprint(tesseract_config(), {"tesseract": "abc"})
    assert config_fingerprint(tesseract_config(threads=4, processes=3, timeout_s=5), {"tesseract": "abc"}) == base
    assert config_fingerprint(tesseract_config(psm=6), {"tesseract": "abc"}) != base
    assert config_fingerprint(tesseract_config(min_confidence=0.3), {"tesseract": "abc"}) != base
    # detection settings do not reach tesseract; tesseract settings do not reach the ONNX engine
    detect = load_config(overrides={"engine.name": "tesseract", "detection.box_thresh": 0.6}, environ={})
    assert config_fingerprint(detect, {"tesseract": "abc"}) == base
    onnx = config_fingerprint(FolioConfig(), {"detection": "abc"})
    assert config_fingerprint(load_config(overrides={"tesseract.psm": 6}, environ={}), {"detection": "abc"}) == onnx
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
    stage = create_stage(tesseract_config())
    assert isinstance(stage, TesseractStage) and set(stage.models) == {"tesseract"}
    out = stage(batch_of(image))
    assert set(out) == OUTPUT_COLUMNS
    assert out["status"][0] == "ok", out["error_message"][0]
    assert (out["width"][0], out["height"][0]) == (1000, 300)
    lines = out["lines"][0]
    assert [line["text"] for line in lines] == texts
    assert out["text"][0] == "\n".join(texts)  # one row each, close enough to be one block
    assert [line["line_index"] for line in lines] == [0, 1]
    for line, (x0, y0, x1, y1) in zip(lines, boxes):
        poly = np.array(line["polygon"])
        assert poly.shape == (4, 2)
        assert (poly >= 0).all() and (poly[:, 0] <= 1000).all() and (poly[:, 1] <= 300).all()
        # around the ink, within a few pixels
        np.testing.assert_allclose([poly[:, 0].min(), poly[:, 1].min(), poly[:, 0].max(), poly[:, 1].max()],
                                   [x0, y0, x1, y1], atol=6)
        assert 0.5 < line["confidence"] <= 1
    assert out["mean_confidence"][0] == pytest.approx(np.mean([line["confidence"] for line in lines]))
    assert out["recognize_ms"][0] > 0 and out["detect_ms"][0] is None


@needs_tesseract
@needs_font
def test_pages_in_parallel_processes_keep_their_order():
    words = ["alpha", "bravo", "charlie", "delta"]
    pages = [render([f"Page {w}"])[0] for w in words] + [np.full((300, 1000, 3), 255, np.uint8)]
    out = TesseractStage(tesseract_config(processes=3))(batch_of(*pages))
    assert list(out["text"]) == [f"Page {w}" for w in words] + [""]
    assert list(out["status"]) == ["ok"] * 5


@needs_tesseract
def test_blank_page_is_ok_with_no_lines():
    out = TesseractStage(tesseract_config())(batch_of(np.full((300, 1000, 3), 255, np.uint8)))
    assert out["status"][0] == "ok"
    assert out["lines"][0] == [] and out["text"][0] == "" and out["mean_confidence"][0] is None


@needs_tesseract
def test_missing_language_is_an_error_row():
    stage = TesseractStage(tesseract_config(lang="xxx"))  # builds; the pages say what is wrong
    assert stage.models == {}
    out = stage(batch_of(np.full((100, 200, 3), 255, np.uint8)))
    assert out["status"][0] == "error"
    assert out["error_code"][0] == "ocr_failed"
    assert "xxx" in out["error_message"][0] and "tesseract-ocr-<lang>" in out["error_message"][0]
    assert out["lines"][0] == [] and out["text"][0] == ""


# -- failures through the production seam (fake programs on PATH) -------------------------------


def test_missing_program_is_an_error_row_that_says_what_to_install(tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    stage = TesseractStage(tesseract_config())
    out = stage(batch_of(np.full((50, 50, 3), 255, np.uint8)))
    assert (out["status"][0], out["error_code"][0]) == ("error", "ocr_failed")
    assert "tesseract-ocr tesseract-ocr-eng" in out["error_message"][0]
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
    assert list(out["status"]) == ["error", "error"]
    assert list(out["error_code"]) == ["ocr_failed", "ocr_failed"]
    assert message in out["error_message"][0]
    assert "RGB uint8" in out["error_message"][1]  # a bad image never reaches tesseract


def test_batch_without_images_is_refused():
    with pytest.raises(ValueError, match="'image'"):
        TesseractStage(tesseract_config())({"doc_id": np.array(["a"]), "page_index": np.array([0])})
