"""A failure anywhere in a stage, Folio's or a library's, is that page's or document's error row.

Each case injects an exception that is not Folio's (what OpenCV, an engine, a
decoder or a bug raises) into one stage, on one input of a batch, and runs
the batch: the input gets one ``documents`` row saying what failed, and every
other document is read as if nothing had happened.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import pytest

from pipeline.config import load_config
from pipeline.run import run
from tests.conftest import FAST, SMALL_RAY, read_rows
from tests.plugins.faulty import MARK

#: Batches of two pages: the marked page shares its batch with a good one, which must come through.
CONFIG = {**FAST, "runner.batch_pages": 2}


@pytest.fixture(scope="module")
def batch(scans, tmp_path_factory) -> Path:
    """Three documents of one page each; the one whose name holds MARK is the one that fails (it is the
    second, so it shares a batch of two with the first)."""
    src = tmp_path_factory.mktemp("failures")
    for i, p in enumerate(sorted(scans(("invoice", 3, 61, ("png",), False), dpi=100).iterdir())):
        shutil.copy(p, src / (f"{MARK}.png" if i == 1 else p.name))
    return src


def _marked(key: str) -> bool:
    return MARK in key


def _check(dest: Path, code: str, pages_of_marked: int = 1) -> dict:
    docs = {Path(d["source_uri"]).name: d for d in read_rows(dest, "documents")}
    assert len(docs) == 3
    marked = docs.pop(f"{MARK}.png")
    assert (marked["status"], marked["error_code"]) == ("error", code), marked
    pages = read_rows(dest, "pages")
    assert sum(p["doc_id"] == marked["doc_id"] for p in pages) == pages_of_marked
    for doc in docs.values():
        assert doc["status"] == "ok", doc
        [page] = [p for p in pages if p["doc_id"] == doc["doc_id"]]
        assert page["status"] == "ok" and len(page["text"]) > 50 and page["lines"][0]["words"]
    return marked


_stages: dict = {}


def _page_stage(config):
    """The page stage, built once for the module (the cases patch classes, which its objects follow)."""
    if "stage" not in _stages:
        from pipeline.stages.factory import create_page_stage

        _stages["stage"] = create_page_stage(config)
    return _stages["stage"]


def _run(src: Path, dest: Path, **overrides):
    config = load_config(overrides=CONFIG | overrides, environ={})
    return run(str(src), str(dest), config, progress=False, stage_factory=_page_stage)


def test_decode(batch, tmp_path, monkeypatch):
    import pipeline.stages.decode as decode

    real = decode.open_document

    def opens(data, config):
        if data == (batch / f"{MARK}.png").read_bytes():
            raise IndexError("injected: the decoder indexed past its buffer")
        return real(data, config)

    monkeypatch.setattr(decode, "open_document", opens)
    _run(batch, tmp_path)
    marked = _check(tmp_path, "internal_error", pages_of_marked=0)
    assert "IndexError" in marked["error_message"] and "decoding" in marked["error_message"]


def test_reading(batch, tmp_path, monkeypatch):
    from pipeline.io.storage import LocalStorage

    real = LocalStorage.read

    def reads(self, uri, max_bytes=None):
        if _marked(uri):
            raise RuntimeError("injected: the storage client broke")
        return real(self, uri, max_bytes)

    monkeypatch.setattr(LocalStorage, "read", reads)
    _run(batch, tmp_path)
    marked = _check(tmp_path, "internal_error", pages_of_marked=0)
    assert "RuntimeError" in marked["error_message"]


def test_dewarp(batch, tmp_path, monkeypatch):
    from pipeline.stages.dewarp import DewarpStage

    real = DewarpStage._one

    def one(self, page):
        if _marked(page.key):
            raise KeyError("injected: a bug in the dewarp stage")
        return real(self, page)

    monkeypatch.setattr(DewarpStage, "_one", one)
    _run(batch, tmp_path)
    marked = _check(tmp_path, "internal_error")
    assert "KeyError" in marked["error_message"] and "dewarp stage" in marked["error_message"]


def test_detection(batch, tmp_path, monkeypatch):
    """OpenCV failing inside detection on one page."""
    import hashlib

    import numpy as np
    from PIL import Image

    from pipeline.models.detection import DetectionPreprocessor

    real = DetectionPreprocessor.__call__
    marked = hashlib.sha256(np.asarray(Image.open(batch / f"{MARK}.png").convert("RGB")).tobytes()).digest()

    def prepare(self, image):
        if hashlib.sha256(np.ascontiguousarray(image).tobytes()).digest() == marked:
            raise cv2.error("injected: OpenCV gave up")
        return real(self, image)

    monkeypatch.setattr(DetectionPreprocessor, "__call__", prepare)
    _run(batch, tmp_path)
    marked_row = _check(tmp_path, "ocr_failed")
    assert "detection failed: error" in marked_row["error_message"]


def test_recognition(batch, tmp_path, monkeypatch):
    """The engine refusing an input shape (what the torch engine raises) on one page's crops."""
    from pipeline.stages.ocr import OcrStage

    real_call, real_recognize = OcrStage.__call__, OcrStage._recognize
    current = {"marked": False}

    def call(self, pages):
        current["marked"] = any(_marked(p.key) for p in pages)
        return real_call(self, pages)

    def recognize(self, crops):
        if current["marked"]:
            raise ValueError("injected: input height x width must be multiples of 48 x 8")
        return real_recognize(self, crops)

    monkeypatch.setattr(OcrStage, "__call__", call)
    monkeypatch.setattr(OcrStage, "_recognize", recognize)
    _run(batch, tmp_path, **{"runner.batch_pages": 1})
    marked = _check(tmp_path, "ocr_failed")
    assert "recognition failed: ValueError" in marked["error_message"]


def test_layout(batch, tmp_path, monkeypatch):
    """A bug in a stage that raises for its whole batch: the batch is run again page by page."""
    from pipeline.stages.layout import LayoutStage

    real = LayoutStage.__call__

    def call(self, pages):
        if any(_marked(p.key) for p in pages):
            raise ZeroDivisionError("injected: a bug in reading order")
        return real(self, pages)

    monkeypatch.setattr(LayoutStage, "__call__", call)
    _run(batch, tmp_path)
    marked = _check(tmp_path, "internal_error")
    assert "ZeroDivisionError" in marked["error_message"] and "layout stage" in marked["error_message"]


def test_assemble(batch, tmp_path, monkeypatch):
    from pipeline.stages.assemble import Assembler

    real = Assembler._doc_row

    def doc_row(self, source, pages, ocr_ms=0.0):
        if _marked(source.key) and pages:
            raise AttributeError("injected: a bug while building the row")
        return real(self, source, pages, ocr_ms)

    monkeypatch.setattr(Assembler, "_doc_row", doc_row)
    tally = _run(batch, tmp_path)
    marked = _check(tmp_path, "internal_error", pages_of_marked=0)
    assert "AttributeError" in marked["error_message"] and "assembling" in marked["error_message"]
    assert (tally.documents, tally.ok, tally.errors) == (3, 2, 1)


def test_on_ray_a_plugin_stage_that_raises_costs_its_page_only(batch, tmp_path, local_ray):
    """Through the production seam (plugins.stage) in Ray's OCR actors: the batch is not lost."""
    config = load_config(overrides=CONFIG | SMALL_RAY | {"plugins.stage": "tests.plugins.faulty:raises_on_marked_page"},
                         environ={})
    tally = run(str(batch), str(tmp_path), config, runner="ray", progress=False)
    marked = _check(tmp_path, "internal_error")
    assert "ZeroDivisionError" in marked["error_message"] and tally.errors == 1
