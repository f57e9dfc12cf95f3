"""Stages: callable classes that run the same way in a plain loop and in Ray actors.

A stage's ``__init__(config)`` loads what it needs once (models); its
``__call__(batch)`` maps a dict of columns to a dict of columns, the batch
format of Ray Data's ``map_batches``. Per-page failures become rows with a
``status`` of ``error`` and an ``error_code``; they never escape as exceptions,
because Ray Data would drop a whole failed block.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

import cv2
import numpy as np

from pipeline.config import FolioConfig
from pipeline.errors import ConfigError, FolioError, OcrError
from pipeline.models.detection import TextDetector
from pipeline.models.engine import create_engine
from pipeline.models.recognition import (
    ALTERNATIVES,
    LineClassifier,
    TextRecognizer,
    charset_classes,
    crop_quad,
    split_at_gaps,
)
from pipeline.models.zoo import ModelFile, resolve_model
from pipeline.types import TextLine

if TYPE_CHECKING:
    from pipeline.models.tesseract import TesseractStage

__all__ = ["OcrStage", "order_lines", "model_files", "create_stage", "stage_models"]

log = logging.getLogger(__name__)


def model_files(config: FolioConfig) -> dict[str, ModelFile]:
    """The verified model files a config uses, by role."""
    d = config.engine.model_dir
    files = {
        "detection": resolve_model(config.detection.model, d),
        "recognition": resolve_model(config.recognition.model, d),
    }
    if config.classifier.enabled:
        files["classifier"] = resolve_model(config.classifier.model, d)
    if config.dewarp.enabled and config.dewarp.orientation:  # the dewarp step's quick way-up check
        files["orientation"] = resolve_model(config.classifier.model, d)
    return files


def order_lines(
    quads: np.ndarray, texts: Sequence[str], confidences: Sequence[float]
) -> tuple[list[TextLine], str]:
    """Put recognised lines in reading order, number rows and blocks, and build the page text.

    Lines are grouped into visual rows (boxes whose vertical extents overlap by
    at least half the smaller height); rows are read top to bottom and boxes in
    a row left to right. A new block starts where the gap to the previous row is
    larger than the median line height. In the page text, boxes of one row are
    joined by a space, rows by a newline and blocks by a blank line.

    Args:
        quads: (N, 4, 2) corners in page pixels.
        texts: recognised text per quad.
        confidences: confidence per quad.

    Returns:
        ``TextLine`` objects in reading order with ``block_index`` and
        ``line_index`` set, and the page text.
    """
    n = len(texts)
    if n == 0:
        return [], ""
    quads = np.asarray(quads, np.float32).reshape(n, 4, 2)
    y0, y1 = quads[:, :, 1].min(axis=1), quads[:, :, 1].max(axis=1)
    x0 = quads[:, :, 0].min(axis=1)
    heights = np.maximum(y1 - y0, 1.0)
    rows: list[list[int]] = []
    row_top = row_bottom = 0.0
    for i in np.argsort((y0 + y1) / 2, kind="stable").tolist():
        if rows:
            overlap = min(row_bottom, y1[i]) - max(row_top, y0[i])
            if overlap >= 0.5 * min(row_bottom - row_top, heights[i]):
                rows[-1].append(i)
                continue
        rows.append([i])
        row_top, row_bottom = float(y0[i]), float(y1[i])
    median_h = float(np.median(heights))
    lines: list[TextLine] = []
    parts: list[str] = []
    block = 0
    prev_bottom = None
    for row in rows:
        top = float(y0[row].min())
        if prev_bottom is not None:
            if top - prev_bottom > median_h:
                block += 1
                parts.append("\n\n")
            else:
                parts.append("\n")
        prev_bottom = float(y1[row].max())
        ordered = sorted(row, key=lambda j: x0[j])
        parts.append(" ".join(texts[i] for i in ordered))
        for i in ordered:
            poly = tuple((float(x), float(y)) for x, y in quads[i])
            lines.append(TextLine(texts[i], float(confidences[i]), poly, block, len(lines)))
    return lines, "".join(parts)


#: Columns every OCR stage returns besides ``doc_id`` and ``page_index``.
STAGE_COLUMNS = (
    "width", "height", "lines", "text", "mean_confidence", "status", "error_code", "error_message", "detect_ms",
    "recognize_ms",
)
#: What dewarping did to each page (:class:`OcrStage` only; the runner defaults them for other stages).
DEWARP_COLUMNS = ("rotation", "skew_deg", "quad", "curl_corrected", "dewarp_ms", "dewarp_note")


def stage_result(batch: dict[str, np.ndarray], out: dict[str, list]) -> dict[str, np.ndarray]:
    """A stage's output batch: the input's ``doc_id`` and ``page_index`` and ``out``'s columns as object arrays."""
    result = {"doc_id": np.asarray(batch["doc_id"]), "page_index": np.asarray(batch["page_index"])}
    for key, values in out.items():
        result[key] = np.array(values + [None], dtype=object)[:-1]  # keep lists as objects
    return result


class OcrStage:
    """Detect and recognise text on a batch of pages.

    Detection runs page by page (pages differ in size); the crops of all pages
    then go through one bucketed recognition call, doctr's shape, which is what
    keeps a GPU busy.

    Input columns: ``doc_id``, ``page_index``, ``image`` (object array of RGB
    uint8 arrays). Output columns: ``doc_id``, ``page_index``, ``width``,
    ``height``, ``lines`` (object array of lists of line dicts), ``text``,
    ``mean_confidence``, ``status``, ``error_code``, ``error_message``,
    ``detect_ms``, ``recognize_ms``, and what dewarping did: ``rotation``,
    ``skew_deg``, ``quad``, ``curl_corrected``, ``dewarp_ms`` (included in
    ``detect_ms``) and ``dewarp_note`` (why a step was skipped).

    With ``dewarp.enabled`` each page is flattened by
    :class:`~pipeline.dewarp.Dewarper` before detection; lines are detected and
    read on the flat page and their polygons mapped back to the original
    page's pixels.
    """

    def __init__(self, config: FolioConfig):
        self.config = config
        files = model_files(config)
        self.models = files
        self.detector = TextDetector(create_engine(files["detection"], config.engine), config.detection)
        rec = files["recognition"]
        # With a restricted charset the model's head computes only the classes it allows, and the
        # engine returns each frame's best class rather than every class's probability.
        self.recognizer = TextRecognizer(
            create_engine(rec, config.engine, charset_classes(rec, config.recognition.charset), best_class=True,
                          alternatives=ALTERNATIVES if config.recognition.lexicon else 0),
            config.recognition,
        )
        self.classifier = (
            LineClassifier(create_engine(files["classifier"], config.engine), config.classifier)
            if "classifier" in files
            else None
        )
        self.dewarper = None
        if config.dewarp.enabled:
            from pipeline.dewarp import Dewarper

            orientation = None
            if "orientation" in files:  # the same model as the line classifier: one engine when both are on
                orientation = self.classifier or LineClassifier(
                    create_engine(files["orientation"], config.engine), config.classifier
                )
            self.dewarper = Dewarper(config.dewarp, self.recognizer, orientation.upside_down if orientation else None)

    def _recognize(self, crops: list[np.ndarray]) -> list[tuple[str, float]]:
        if self.classifier is not None:
            crops = self.classifier(crops)
        return self.recognizer(crops, words=True)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        for column in ("doc_id", "page_index", "image"):
            if column not in batch:
                raise ValueError(f"OcrStage batch needs a {column!r} column, got {sorted(batch)}")
        images = list(batch["image"])
        n = len(images)
        out: dict[str, list] = {k: [None] * n for k in STAGE_COLUMNS + DEWARP_COLUMNS}
        geometries: list = [None] * n
        quads: list[np.ndarray | None] = [None] * n
        crops: list[np.ndarray] = []
        owners: list[int] = []
        for i, image in enumerate(images):
            image = np.asarray(image)
            out["height"][i], out["width"][i] = (int(image.shape[0]), int(image.shape[1])) if image.ndim >= 2 else (0, 0)
            t0 = time.perf_counter()
            try:
                if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                    raise OcrError(f"page image must be RGB uint8 (H, W, 3), got {image.dtype} {image.shape}", retryable=False)
                if self.dewarper is not None:
                    t1 = time.perf_counter()
                    image, geometries[i] = self._dewarp(image)
                    out["dewarp_ms"][i] = (time.perf_counter() - t1) * 1000
                    for key, value in geometries[i].as_row().items():
                        out[key][i] = value
                    out["dewarp_note"][i] = geometries[i].skipped
                boxes, _ = self.detector(image)
                page_crops, page_quads = [], []
                for q in boxes:
                    for crop, quad in split_at_gaps(crop_quad(image, q), q, self.config.recognition.split_gap):
                        page_crops.append(crop)
                        page_quads.append(quad)
                boxes = np.asarray(page_quads, np.float32).reshape(-1, 4, 2)
            except FolioError as e:
                self._fail(out, i, e)
                continue
            out["detect_ms"][i] = (time.perf_counter() - t0) * 1000
            quads[i] = boxes
            crops.extend(page_crops)
            owners.extend([i] * len(page_crops))

        t0 = time.perf_counter()
        try:
            recognized = self._recognize(crops)
        except FolioError:
            log.warning("batched recognition failed; retrying page by page to isolate the bad page", exc_info=True)
            recognized = self._recognize_per_page(crops, owners, out)
        per_crop_ms = (time.perf_counter() - t0) * 1000 / max(len(crops), 1)

        owners_arr = np.asarray(owners, dtype=np.int64)
        min_conf = self.config.recognition.min_confidence
        for i in range(n):
            if out["status"][i] == "error":
                continue
            idx = np.flatnonzero(owners_arr == i)
            keep = [j for j in idx if recognized[j] is not None and recognized[j][0].strip() and recognized[j][1] >= min_conf]
            lines, text = order_lines(
                quads[i][[j - idx[0] for j in keep]] if keep else np.zeros((0, 4, 2), np.float32),
                [recognized[j][0] for j in keep],
                [recognized[j][1] for j in keep],
            )
            rows = [line.to_row() for line in lines]
            geometry = geometries[i]
            if rows and geometry is not None and not geometry.identity:
                mapped = geometry.map_quads(np.asarray([r["polygon"] for r in rows], np.float64))
                for r, poly in zip(rows, mapped):
                    r["polygon"] = [[float(x), float(y)] for x, y in poly]
            out["lines"][i] = rows
            out["text"][i] = text
            out["mean_confidence"][i] = float(np.mean([l.confidence for l in lines])) if lines else None
            out["status"][i] = "ok"
            out["recognize_ms"][i] = per_crop_ms * len(idx)
        return stage_result(batch, out)

    def _dewarp(self, image: np.ndarray):
        try:
            return self.dewarper(image)
        except (cv2.error, np.linalg.LinAlgError, ValueError) as e:  # geometry must never cost the page
            from pipeline.dewarp import PageGeometry

            log.warning("dewarping failed on a page, OCR'd as is: %s", e)
            return image, PageGeometry(skipped=f"dewarp failed: {e}", size=image.shape[:2])

    def _recognize_per_page(self, crops, owners, out) -> list[tuple[str, float] | None]:
        results: list[tuple[str, float] | None] = [None] * len(crops)
        owners_arr = np.asarray(owners, dtype=np.int64)
        for page in sorted(set(owners)):
            idx = np.flatnonzero(owners_arr == page)
            try:
                for j, res in zip(idx, self._recognize([crops[j] for j in idx])):
                    results[j] = res
            except FolioError as e:
                self._fail(out, page, e)
        return results

    @staticmethod
    def _fail(out: dict[str, list], i: int, error: FolioError) -> None:
        log.warning("OCR failed on a page: %s", error)
        out["status"][i] = "error"
        out["error_code"][i] = error.code
        out["error_message"][i] = error.message
        out["lines"][i] = []
        out["text"][i] = ""


def create_stage(config: FolioConfig) -> OcrStage | TesseractStage:
    """Build the OCR stage ``engine.name`` names; the one place an engine name becomes a stage.

    Both stages take the same batches and return the same columns. The
    tesseract stage is imported only when asked for. ``onnxruntime``, ``torch``
    and ``auto`` all run the PP-OCR models in :class:`OcrStage`; its engines
    come from :func:`~pipeline.models.engine.create_engine`. ``plugins.stage``
    (``module:callable``) replaces all of them with a factory of the user's.
    """
    if config.plugins.stage:
        return _plugin_factory(config.plugins.stage)(config)
    if config.engine.name == "tesseract":
        from pipeline.models.tesseract import TesseractStage

        return TesseractStage(config)
    if config.engine.name in ("onnxruntime", "torch", "auto"):
        return OcrStage(config)
    raise ConfigError(f"unknown engine {config.engine.name!r}")


def _plugin_factory(path: str):
    import importlib

    module, sep, attr = path.partition(":")
    if not sep or not module or not attr:
        raise ConfigError(f"plugins.stage must be module:callable, got {path!r}")
    try:
        factory = getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"plugins.stage {path!r} cannot be loaded: {e}") from e
    if not callable(factory):
        raise ConfigError(f"plugins.stage {path!r} is not callable")
    return factory


def stage_models(config: FolioConfig) -> dict[str, ModelFile]:
    """The models the stage of ``create_stage(config)`` uses, by role, without building it.

    Raises:
        ModelError: a model file, the tesseract program or its language data is missing.
    """
    if config.engine.name == "tesseract":
        from pipeline.models.tesseract import tesseract_model_info

        return tesseract_model_info(config)
    return model_files(config)
