"""The OCR stage: pages in, lines and words out.

Detection runs on batches of the pages that share a padded size
(``detection.batch_pages``; one page at a time on a CPU); the crops of all
pages then go through one bucketed recognition call, doctr's shape. Both are
what keeps a GPU busy. Each line comes with its words, placed where the
recognizer's frames put their characters and fitted to their ink
(:func:`~pipeline.imaging.geometry.word_boxes`).

Polygons are in the pixels of the image the stage read: the dewarped page
when the dewarp stage flattened it (the page keeps its ``geometry`` and the
page stage's last step maps them back), the original otherwise.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence

import numpy as np

from pipeline.config import FolioConfig
from pipeline.errors import FolioError, OcrError
from pipeline.imaging.geometry import BandFrame, CropFrame, crop_band, crop_with_frame, split_at_gaps, word_boxes
from pipeline.models.bundle import OcrModels
from pipeline.models.detection import Detections
from pipeline.models.recognition import Reading
from pipeline.types import Block, Line, Page, PageImage, PageTimings, Word

__all__ = ["OcrStage"]

log = logging.getLogger(__name__)


class OcrStage:
    """Detect and recognise the text of a batch of pages.

    ``__call__`` takes :class:`~pipeline.types.PageImage` objects and returns one
    :class:`~pipeline.types.Page` for each, in order: its lines (in the order
    detection found them, in one block; the layout stage orders them) or the
    error that stopped it. Any exception on a page, Folio's or a library's
    (OpenCV, an engine refusing an input), is that page's ``ocr_failed`` row.
    """

    def __init__(self, config: FolioConfig, models: OcrModels):
        self.config = config
        self.models = models

    def __call__(self, pages: Sequence[PageImage]) -> list[Page]:
        n = len(pages)
        results: list[Page | None] = [None] * n
        detect_ms: list[float] = [0.0] * n
        quads: list[np.ndarray] = [np.zeros((0, 4, 2), np.float32)] * n
        crops: list[np.ndarray] = []
        frames: list[CropFrame | BandFrame] = []
        owners: list[int] = []
        images: dict[int, np.ndarray] = {}
        for i, page in enumerate(pages):
            image = np.asarray(page.image)
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                error = OcrError(f"page image must be RGB uint8 (H, W, 3), got {image.dtype} {image.shape}",
                                 retryable=False)
                results[i] = self._failed(page, error, "detection")
            else:
                images[i] = image
        t0 = time.perf_counter()
        detected = self.models.detector.detect_many(list(images.values())) if images else []
        batch_ms = (time.perf_counter() - t0) * 1000 / max(len(images), 1)  # the batch's time, shared out
        for (i, image), found in zip(images.items(), detected):
            t0 = time.perf_counter()
            try:
                if isinstance(found, Exception):
                    raise found
                page_crops, page_frames, quads[i] = self._crops(image, found)
            except Exception as e:  # noqa: BLE001 - any failure on a page is that page's row
                results[i] = self._failed(pages[i], e, "detection")
                continue
            detect_ms[i] = batch_ms + (time.perf_counter() - t0) * 1000
            crops.extend(page_crops)
            frames.extend(page_frames)
            owners.extend([i] * len(page_crops))

        t0 = time.perf_counter()
        try:
            readings = self._recognize(crops)
        except Exception:  # noqa: BLE001 - isolate the page that breaks the batch
            log.warning("batched recognition failed; retrying page by page to isolate the bad page", exc_info=True)
            readings = self._recognize_per_page(pages, crops, owners, results)
        per_crop_ms = (time.perf_counter() - t0) * 1000 / max(len(crops), 1)

        owners_arr = np.asarray(owners, dtype=np.int64)
        min_conf = self.config.recognition.min_confidence
        for i, page in enumerate(pages):
            if results[i] is not None:
                continue
            idx = np.flatnonzero(owners_arr == i)
            lines, unread = [], 0
            for k, j in enumerate(idx):
                reading = readings[j]
                if reading is None or not reading.text.strip() or reading.confidence < min_conf:
                    unread += 1
                    continue
                lines.append(self._line(reading, quads[i][k], crops[j], frames[j]))
            timings = PageTimings(
                decode=page.timings.decode, dewarp=page.timings.dewarp,
                detect=(page.timings.dewarp or 0.0) + detect_ms[i], recognize=per_crop_ms * len(idx),
            )
            results[i] = Page(
                page.key, page.doc_id, page.page_index, page.width, page.height, page.dpi, page.dewarp,
                blocks=(Block(tuple(lines)),) if lines else (), timings=timings, geometry=page.geometry,
                unread_regions=unread,
            )
        return results

    def _crops(self, image: np.ndarray, found: Detections) -> tuple[list[np.ndarray], list[CropFrame | BandFrame],
                                                                    np.ndarray]:
        """A page's line crops from its detected lines, where each lies on the page, and their quads; a bent
        line is cut along its bend (:func:`~pipeline.imaging.geometry.crop_band`)."""
        crops, frames, quads = [], [], []
        for q, band in zip(found.boxes, found.bands):
            unrolled = crop_band(image, q, band) if band is not None else None
            crop, frame = unrolled if unrolled is not None else crop_with_frame(image, q)
            for piece, quad, x0 in split_at_gaps(crop, q, self.config.recognition.split_gap):
                crops.append(piece)
                frames.append(frame.shifted(x0) if x0 else frame)
                quads.append(quad)
        return crops, frames, np.asarray(quads, np.float32).reshape(-1, 4, 2)

    def _recognize(self, crops: list[np.ndarray]) -> list[Reading]:
        """Readings of the crops (turned upright first, with ``classifier.enabled``), the word
        spans in the crops as they were cut."""
        turned = [False] * len(crops)
        if self.models.classifier is not None and crops:
            crops, turned = self.models.classifier.orient(crops)
        readings = self.models.recognizer(crops, word_steps=True)
        for i, was_turned in enumerate(turned):
            if was_turned:  # read turned by 180 degrees: in the crop as cut, its words run right to left
                w = crops[i].shape[1]
                words = tuple(s._replace(start=w - s.end, end=w - s.start) for s in readings[i].words)
                readings[i] = readings[i]._replace(words=words)
        return readings

    def _recognize_per_page(self, pages, crops, owners, results) -> list[Reading | None]:
        readings: list[Reading | None] = [None] * len(crops)
        owners_arr = np.asarray(owners, dtype=np.int64)
        for page in sorted(set(owners)):
            idx = np.flatnonzero(owners_arr == page)
            try:
                for j, reading in zip(idx, self._recognize([crops[j] for j in idx])):
                    readings[j] = reading
            except Exception as e:  # noqa: BLE001 - this page's row says why
                results[page] = self._failed(pages[page], e, "recognition")
        return readings

    @staticmethod
    def _line(reading: Reading, quad: np.ndarray, crop: np.ndarray, frame: CropFrame | BandFrame) -> Line:
        polygon = tuple((float(x), float(y)) for x, y in quad)
        words = ()
        if reading.words:
            # left to right in the crop as cut (a line read turned has its words the other way)
            order = sorted(range(len(reading.words)), key=lambda k: reading.words[k].start)
            boxes = [None] * len(order)
            for k, box in zip(order, word_boxes(crop, [(reading.words[k].start, reading.words[k].end) for k in order])):
                boxes[k] = box
            corners = np.array([[[x0, y0], [x1, y0], [x1, y1], [x0, y1]] for x0, y0, x1, y1 in boxes], np.float64)
            on_page = frame.to_page(corners)
            words = tuple(
                Word(w.text, w.confidence, tuple((float(x), float(y)) for x, y in poly), w.in_text)
                for w, poly in zip(reading.words, on_page)
            )
        return Line(reading.text, reading.confidence, polygon, words)

    @staticmethod
    def _failed(page: PageImage, error: Exception, step: str) -> Page:
        if not isinstance(error, FolioError):
            error = OcrError(f"{step} failed: {type(error).__name__}: {error}")
            log.warning("OCR failed on page %s of %s", page.page_index, page.key, exc_info=True)
        else:
            log.warning("OCR failed on page %s of %s: %s", page.page_index, page.key, error)
        return page.failed(error.code, error.message, dewarp=page.timings.dewarp)
