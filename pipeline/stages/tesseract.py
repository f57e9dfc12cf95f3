"""The Tesseract stage (``engine.name: tesseract``): what the dewarp and OCR stages do, done by the
``tesseract`` program (:mod:`pipeline.models.tesseract`), for CPU-only fleets.

It takes the same :class:`~pipeline.types.PageImage` objects and returns the
same :class:`~pipeline.types.Page` objects as :class:`pipeline.stages.ocr.OcrStage`
(lines with their words, in tesseract's order; the layout stage orders them),
so runners cannot tell the two apart. Up to ``tesseract.processes`` pages of
a batch run at once, one process each. A page tesseract cannot do (missing
program or language, non-zero exit, time limit) becomes an ``ocr_failed``
row, never an exception.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from pipeline.config import FolioConfig
from pipeline.errors import FolioError, ModelError, OcrError
from pipeline.models.tesseract import TesseractReader, TsvLine, tesseract_model_info
from pipeline.types import Block, Line, Page, PageImage, PageTimings, Word

__all__ = ["TesseractStage"]

log = logging.getLogger(__name__)


def _polygon(quad: np.ndarray) -> tuple[tuple[float, float], ...]:
    return tuple((float(x), float(y)) for x, y in quad)


class TesseractStage:
    """Recognise a batch of pages with the ``tesseract`` program.

    A stage whose tesseract is missing or lacks the language still builds, with
    empty ``models``; each of its pages becomes an ``ocr_failed`` row saying what
    to install. (A run that wants to refuse such a run up front calls
    :func:`~pipeline.models.tesseract.tesseract_model_info`, which raises.)
    """

    def __init__(self, config: FolioConfig):
        self.settings = config.tesseract
        try:
            self.models = tesseract_model_info(config)
        except ModelError as e:
            log.warning("tesseract is not usable, every page will fail: %s", e)
            self.models = {}
        self.reader = TesseractReader(self.settings, self.models)

    def __call__(self, pages: Sequence[PageImage]) -> list[Page]:
        workers = min(self.settings.processes, len(pages))
        if workers > 1:
            with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="tesseract") as pool:
                return list(pool.map(self._page, pages))
        return [self._page(page) for page in pages]

    def _page(self, page: PageImage) -> Page:
        t0 = time.perf_counter()
        try:
            image = np.asarray(page.image)
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise OcrError(f"page image must be RGB uint8 (H, W, 3), got {image.dtype} {image.shape}", retryable=False)
            if image.shape[0] == 0 or image.shape[1] == 0:
                raise OcrError(f"page image is empty ({image.shape[1]}x{image.shape[0]} pixels)", retryable=False)
            lines = [self._line(line) for line in self.reader.read(image, page.dpi)]
        except Exception as e:  # noqa: BLE001 - a page tesseract cannot do is that page's row
            error = e if isinstance(e, FolioError) else OcrError(f"tesseract: {type(e).__name__}: {e}")
            log.warning("tesseract failed on page %s of %s: %s", page.page_index, page.key, error)
            return page.failed(error.code, error.message)
        ms = (time.perf_counter() - t0) * 1000
        return Page(page.key, page.doc_id, page.page_index, page.width, page.height, page.dpi, page.dewarp,
                    blocks=(Block(tuple(lines)),) if lines else (),
                    timings=PageTimings(decode=page.timings.decode, recognize=ms), geometry=page.geometry)

    @staticmethod
    def _line(line: TsvLine) -> Line:
        words = tuple(Word(text, confidence, _polygon(box)) for text, confidence, box in line.words)
        return Line(line.text, line.confidence, _polygon(line.quad), words)
