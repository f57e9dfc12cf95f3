"""OCR systems under evaluation, behind one small interface (:class:`System`): images in, lines,
words and page text out.

- ``folio``: Folio's page stage (whatever engine the config names), pages in
  batches of ``runner.batch_pages`` so recognition is batched across pages;
- ``rapidocr``: RapidOCR's own ``RapidOCR()`` call, one page at a time (the
  same PP-OCR models, their pre/post-processing);
- ``tesseract``: the ``tesseract`` CLI, one process per page.

:func:`null_stage` is a page stage that reads nothing, for timing the runners alone.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.config import FolioConfig
from pipeline.types import Block, Line as PageLine, Page, PageImage, PageTimings

__all__ = ["SYSTEMS", "PagePrediction", "System", "FolioSystem", "RapidOcrSystem", "TesseractSystem", "make_system",
           "null_stage"]

SYSTEMS = ("folio", "rapidocr", "tesseract")

#: A recognised line: polygon (4 points in page pixels), text, confidence.
Line = tuple[Sequence[Sequence[float]], str, float]
#: A recognised word: polygon (4 points in page pixels), text.
Word = tuple[Sequence[Sequence[float]], str]


@dataclass
class PagePrediction:
    """What a system read on a page: its lines, its text, and its words where the system gives them."""

    lines: list[Line]
    text: str
    words: list[Word] = field(default_factory=list)


class System:
    """An OCR system under evaluation: images in, lines and page text out."""

    name: str = "system"

    def predict(self, images: Sequence[np.ndarray]) -> list[PagePrediction]:
        raise NotImplementedError

    @property
    def batch(self) -> int:
        return 1


class FolioSystem(System):
    name = "folio"

    def __init__(self, config: FolioConfig):
        from pipeline.stages.factory import create_page_stage

        self.config = config
        self.stage = create_page_stage(config)

    @property
    def batch(self) -> int:
        return self.config.runner.batch_pages

    def predict(self, images):
        pages = self.stage([PageImage("eval", "eval", i, image) for i, image in enumerate(images)])
        return [
            PagePrediction(
                [(line.polygon, line.text, line.confidence) for line in page.lines], page.text,
                [(word.polygon, word.text) for line in page.lines for word in line.words],
            )
            for page in pages
        ]


class RapidOcrSystem(System):
    """RapidOCR 3.x with its defaults; as many ONNX Runtime threads as cores Folio computes on
    (``runner.ocr_threads x engine.intra_op_threads``), for a fair comparison."""

    name = "rapidocr"

    def __init__(self, config: FolioConfig):
        try:
            from rapidocr import RapidOCR
        except ImportError as e:  # pragma: no cover
            raise RuntimeError("the rapidocr package is not installed: pip install rapidocr") from e
        threads = config.runner.ocr_threads * config.engine.intra_op_threads
        self.engine = RapidOCR(
            params={
                "EngineConfig.onnxruntime.intra_op_num_threads": threads,
                "EngineConfig.onnxruntime.inter_op_num_threads": 1,
                "Global.log_level": "error",
            }
        )

    def predict(self, images):
        preds = []
        for image in images:
            # RapidOCR takes OpenCV's BGR order
            result = self.engine(np.ascontiguousarray(image[:, :, ::-1]))
            if result.boxes is None or result.txts is None:
                preds.append(PagePrediction([], ""))
                continue
            lines = [(np.asarray(b).tolist(), t, float(s)) for b, t, s in zip(result.boxes, result.txts, result.scores)]
            preds.append(PagePrediction(lines, "\n".join(result.txts)))
        return preds


class TesseractSystem(System):
    """The ``tesseract`` CLI (``OMP_THREAD_LIMIT=1``), line boxes from its TSV output."""

    name = "tesseract"

    def __init__(self, config: FolioConfig, lang: str = "eng"):
        if shutil.which("tesseract") is None:
            raise RuntimeError("tesseract is not installed: apt-get install tesseract-ocr tesseract-ocr-eng")
        self.lang = lang

    def predict(self, images):
        from PIL import Image

        preds = []
        env = dict(os.environ, OMP_THREAD_LIMIT="1")
        for image in images:
            with tempfile.TemporaryDirectory() as tmp:
                path = Path(tmp, "page.png")
                Image.fromarray(image).save(path)
                proc = subprocess.run(
                    ["tesseract", str(path), "stdout", "-l", self.lang, "tsv"],
                    capture_output=True, text=True, env=env, check=False,
                )
            preds.append(_parse_tsv_lines(proc.stdout))
        return preds


def _parse_tsv_lines(tsv: str) -> PagePrediction:
    from pipeline.models.tesseract import parse_tsv

    lines = parse_tsv(tsv)
    return PagePrediction([(line.quad.tolist(), line.text, line.confidence) for line in lines],
                          "\n".join(line.text for line in lines),
                          [(box.tolist(), text) for line in lines for text, _, box in line.words])


def null_stage(config: FolioConfig):
    """A page stage that reads nothing: every page gets the same 40 lines of text, at once.

    For measuring the runners alone (scheduling, transfer, assembly, writing,
    the driver's memory over a long run) without the models' time:
    ``folio bench DIR --systems folio-ray --set plugins.stage=measure.systems:null_stage``.
    """

    def run(pages: Sequence[PageImage]) -> list[Page]:
        out = []
        for page in pages:
            h, w = page.height, page.width
            step = h / 40
            lines = tuple(
                PageLine(f"line {k} of a page the null stage did not read", 1.0,
                         ((0.0, k * step), (float(w), k * step), (float(w), (k + 1) * step), (0.0, (k + 1) * step)))
                for k in range(40)
            )
            out.append(Page(page.key, page.doc_id, page.page_index, w, h, page.dpi, blocks=(Block(lines),),
                            text="\n".join(line.text for line in lines),
                            timings=PageTimings(decode=page.timings.decode, detect=0.0, recognize=0.0)))
        return out

    return run


def make_system(name: str, config: FolioConfig) -> System:
    if name == "folio":
        return FolioSystem(config)
    if name == "rapidocr":
        return RapidOcrSystem(config)
    if name == "tesseract":
        return TesseractSystem(config)
    raise ValueError(f"unknown system {name!r}; choose one of {', '.join(SYSTEMS)}")
