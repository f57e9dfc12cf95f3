"""Text detection with a DB (Differentiable Binarization) model: page in, line quadrilaterals out.

The predictor is composed of three injected parts (doctr's shape):
:class:`DetectionPreprocessor` (scale and pad to the network stride),
an :class:`~pipeline.models.engine.Engine`, and :class:`DBPostProcessor`
(probability map to boxes). Box coordinates are returned in pixels of the page
image that went in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import NamedTuple

import cv2
import numpy as np
import pyclipper

from pipeline.config import DetectionConfig
from pipeline.models.engine import Engine

__all__ = ["STRIDE", "Detections", "DetectionInput", "DetectionPreprocessor", "DBPostProcessor", "TextDetector",
           "order_quad"]

log = logging.getLogger(__name__)

#: The DB network downsamples by 32; inputs are padded to multiples of it.
STRIDE = 32


@dataclass(frozen=True)
class DetectionInput:
    """A page prepared for the network.

    Attributes:
        tensor: float32 (1, 3, H, W) with H and W multiples of :data:`STRIDE`.
        scale: resized size / original size (same on both axes: aspect ratio kept).
        valid_hw: height and width of the resized page inside the padded tensor.
    """

    tensor: np.ndarray
    scale: float
    valid_hw: tuple[int, int]


class DetectionPreprocessor:
    """Scale a page into the detector's working range and pad it to the stride.

    The page is scaled by one factor (no aspect distortion): up until the shorter
    side reaches ``min_side_len``, then down until the longer side fits
    ``max_side_len``. Padding goes right and bottom in the paper colour (median
    of the border pixels), so it adds no edges for the detector to find.
    """

    def __init__(self, config: DetectionConfig):
        self.min_side = config.min_side_len
        self.max_side = config.max_side_len
        self.multiple = config.size_multiple

    def scale_for(self, height: int, width: int) -> float:
        scale = 1.0
        if min(height, width) * scale < self.min_side:
            scale = self.min_side / min(height, width)
        if max(height, width) * scale > self.max_side:
            scale = self.max_side / max(height, width)
        return scale

    def __call__(self, image: np.ndarray) -> DetectionInput:
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            raise ValueError(f"expected an RGB uint8 (H, W, 3) page, got {image.dtype} of shape {image.shape}")
        h, w = image.shape[:2]
        scale = self.scale_for(h, w)
        rh, rw = max(1, round(h * scale)), max(1, round(w * scale))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        resized = image if (rh, rw) == (h, w) else cv2.resize(image, (rw, rh), interpolation=interp)
        ph, pw = -(-rh // self.multiple) * self.multiple, -(-rw // self.multiple) * self.multiple
        if (ph, pw) != (rh, rw):
            border = np.concatenate([resized[-1, :, :], resized[:, -1, :]], axis=0)
            paper = np.median(border, axis=0).astype(np.uint8).tolist()
            resized = cv2.copyMakeBorder(resized, 0, ph - rh, 0, pw - rw, cv2.BORDER_CONSTANT, value=paper)
        # (x / 255 - 0.5) / 0.5 in one fused step
        tensor = resized.astype(np.float32).transpose(2, 0, 1)[None]
        tensor *= 2.0 / 255.0
        tensor -= 1.0
        return DetectionInput(np.ascontiguousarray(tensor), scale, (rh, rw))


def order_quad(points: np.ndarray) -> np.ndarray:
    """Order four corners clockwise starting at the top-left one."""
    pts = np.asarray(points, dtype=np.float32).reshape(4, 2)
    by_x = pts[np.argsort(pts[:, 0], kind="stable")]
    left, right = by_x[:2], by_x[2:]
    tl, bl = left[np.argsort(left[:, 1], kind="stable")]
    tr, br = right[np.argsort(right[:, 1], kind="stable")]
    return np.stack([tl, tr, br, bl])


class Detections(NamedTuple):
    """A page's detected lines.

    Attributes:
        boxes: float32 (N, 4, 2) quads in page pixels, clockwise from top-left.
        scores: float32 (N,) mean probabilities.
        bands: per box, the outline of a bent line's text region (float32 (K, 2), page pixels) where the
            line fills too little of its quad to be cut as one (``detection.bent_lines: unroll``), else None.
    """

    boxes: np.ndarray
    scores: np.ndarray
    bands: tuple[np.ndarray | None, ...]

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4, 2), np.float32), np.zeros((0,), np.float32), ())


#: A region that fills less of its minimum-area rectangle than this is a bent line (a straight line's fills
#: about nine tenths of it).
BENT_FILL = 0.75


class DBPostProcessor:
    """Turn a DB probability map into scored text quadrilaterals.

    Steps: threshold the map, optionally dilate, take contours, fit a minimum
    area rectangle to each, score it by the mean probability inside (the
    rectangle's, or with ``score_mode: contour`` the contour's own), grow it
    back by ``unclip_ratio`` (DB trains on shrunk kernels), refit, and map to
    page pixels.

    A bent line's rectangle holds much background beside its text, so its
    rectangle's mean falls below ``box_thresh`` however sure the map is of the
    text: scored on its contour, the line is kept. Its region's own outline,
    grown back like the rectangle, goes with it (``bands``), so recognition can
    cut the line along its bend (``detection.bent_lines: unroll``).
    """

    def __init__(self, config: DetectionConfig):
        self.thresh = config.thresh
        self.box_thresh = config.box_thresh
        self.unclip_ratio = config.unclip_ratio
        self.min_size = config.min_size
        self.max_candidates = config.max_candidates
        self.kernel = np.ones((2, 2), np.uint8) if config.dilate else None
        self.score_contour = config.score_mode == "contour"
        self.unroll = config.bent_lines == "unroll"

    @staticmethod
    def _mini_box(points: np.ndarray) -> tuple[np.ndarray, float]:
        rect = cv2.minAreaRect(points.astype(np.float32))
        box = order_quad(cv2.boxPoints(rect))
        return box, float(min(rect[1]))

    @staticmethod
    def _box_score(prob: np.ndarray, box: np.ndarray) -> float:
        """The mean probability inside the polygon ``box`` (map pixels)."""
        h, w = prob.shape
        x0 = int(np.clip(np.floor(box[:, 0].min()), 0, w - 1))
        x1 = int(np.clip(np.ceil(box[:, 0].max()), 0, w - 1))
        y0 = int(np.clip(np.floor(box[:, 1].min()), 0, h - 1))
        y1 = int(np.clip(np.ceil(box[:, 1].max()), 0, h - 1))
        mask = np.zeros((y1 - y0 + 1, x1 - x0 + 1), np.uint8)
        shifted = (box - np.array([x0, y0], np.float32)).round().astype(np.int32)
        cv2.fillPoly(mask, [shifted], 1)
        return float(cv2.mean(prob[y0 : y1 + 1, x0 : x1 + 1], mask)[0])

    def _unclip(self, box: np.ndarray) -> np.ndarray | None:
        area = cv2.contourArea(box)
        length = cv2.arcLength(box, True)
        if length == 0:
            return None
        distance = area * self.unclip_ratio / length
        offset = pyclipper.PyclipperOffset()
        offset.AddPath(box.round().astype(np.int64).tolist(), pyclipper.JT_ROUND, pyclipper.ET_CLOSEDPOLYGON)
        grown = offset.Execute(distance)
        if len(grown) != 1:
            return None
        return np.asarray(grown[0], dtype=np.float32)

    def _band(self, points: np.ndarray, rect_box: np.ndarray) -> np.ndarray | None:
        """A bent line's outline grown back (map pixels): where its region fills less than
        :data:`BENT_FILL` of its long rectangle; None for a straight line."""
        w = float(np.linalg.norm(rect_box[1] - rect_box[0]))
        h = float(np.linalg.norm(rect_box[3] - rect_box[0]))
        if w < 4 * h or cv2.contourArea(points) >= BENT_FILL * w * h:
            return None
        outline = cv2.approxPolyDP(points.reshape(-1, 1, 2).astype(np.float32), 0.5, True).reshape(-1, 2)
        return self._unclip(outline) if len(outline) >= 4 else None

    def __call__(self, prob: np.ndarray, scale: float, page_hw: tuple[int, int]) -> Detections:
        """Lines from one probability map.

        Args:
            prob: (H, W) float map, already cropped to the valid (unpadded) area.
            scale: map size / page size.
            page_hw: page height and width, to clip boxes to.

        Returns:
            The :class:`Detections`; empty arrays when there is no text.
        """
        bitmap = (prob > self.thresh).astype(np.uint8)
        if self.kernel is not None:
            bitmap = cv2.dilate(bitmap, self.kernel)
        contours, _ = cv2.findContours(bitmap, cv2.RETR_LIST, cv2.CHAIN_APPROX_SIMPLE)
        boxes, scores, bands = [], [], []
        page_h, page_w = page_hw
        for contour in contours[: self.max_candidates]:
            if len(contour) < 4:
                continue
            box, short_side = self._mini_box(contour.reshape(-1, 2))
            if short_side < self.min_size:
                continue
            score = self._box_score(prob, contour.reshape(-1, 2).astype(np.float32) if self.score_contour else box)
            if score < self.box_thresh:
                continue
            band = self._band(contour.reshape(-1, 2).astype(np.float32), box) if self.unroll else None
            grown = self._unclip(box)
            if grown is None:
                continue
            box, short_side = self._mini_box(grown)
            if short_side < self.min_size + 2:
                continue
            box = box / scale
            box[:, 0] = np.clip(box[:, 0], 0, page_w)
            box[:, 1] = np.clip(box[:, 1], 0, page_h)
            boxes.append(box)
            scores.append(score)
            bands.append(None if band is None else (band / scale).astype(np.float32))
        if not boxes:
            return Detections.empty()
        return Detections(np.stack(boxes).astype(np.float32), np.asarray(scores, np.float32), tuple(bands))


class TextDetector:
    """Page image to text-line quadrilaterals: preprocess, engine, DB post-processing.

    :meth:`detect_many` runs the engine on batches of pages of one padded size
    (``batch_pages`` at most), which is what keeps a GPU busy; a page's boxes do
    not depend on its batch.
    """

    def __init__(self, engine: Engine, config: DetectionConfig, batch_pages: int = 1):
        self.engine = engine
        self.preprocess = DetectionPreprocessor(config)
        self.postprocess = DBPostProcessor(config)
        self.batch_pages = max(1, int(batch_pages))

    def __call__(self, image: np.ndarray) -> Detections:
        """Detect lines on one RGB page; see :meth:`DBPostProcessor.__call__` for the result."""
        result = self.detect_many([image])[0]
        if isinstance(result, Exception):
            raise result
        return result

    def detect_many(self, images: list[np.ndarray]) -> list[Detections | Exception]:
        """Detect lines on several RGB pages, in batches of pages of one padded size.

        Returns:
            Per page, in order, what :meth:`DBPostProcessor.__call__` returns, or the exception
            that stopped that page (a batch the engine refuses is run again page by page, so one
            bad page does not fail the others).
        """
        results: list = [None] * len(images)
        inputs: dict[int, DetectionInput] = {}
        for i, image in enumerate(images):
            h, w = image.shape[:2]
            if h < 2 or w < 2:
                results[i] = Detections.empty()
                continue
            try:
                inputs[i] = self.preprocess(image)
            except Exception as e:  # noqa: BLE001 - that page's error
                results[i] = e
        by_shape: dict[tuple[int, ...], list[int]] = {}
        for i, inp in inputs.items():
            by_shape.setdefault(inp.tensor.shape, []).append(i)
        for members in by_shape.values():
            for start in range(0, len(members), self.batch_pages):
                chunk = members[start : start + self.batch_pages]
                try:
                    if len(chunk) == 1:
                        outs = [self.engine(inputs[chunk[0]].tensor)]
                    else:
                        out = self.engine(np.concatenate([inputs[i].tensor for i in chunk]))
                        outs = [out[k : k + 1] for k in range(len(chunk))]
                except Exception as e:  # noqa: BLE001 - find the page the batch fails on
                    if len(chunk) == 1:
                        results[chunk[0]] = e
                        continue
                    log.warning("batched detection failed; retrying page by page", exc_info=True)
                    for i in chunk:
                        results[i] = self._one(inputs[i], images[i])
                    continue
                for i, out in zip(chunk, outs):
                    results[i] = self._post(out, inputs[i], images[i])
        return results

    def _one(self, inp: DetectionInput, image: np.ndarray):
        try:
            return self._post(self.engine(inp.tensor), inp, image)
        except Exception as e:  # noqa: BLE001 - that page's error
            return e

    def _post(self, out: np.ndarray, inp: DetectionInput, image: np.ndarray):
        vh, vw = inp.valid_hw
        try:
            return self.postprocess(out[0, 0, :vh, :vw], inp.scale, image.shape[:2])
        except Exception as e:  # noqa: BLE001 - that page's error
            return e
