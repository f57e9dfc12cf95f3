"""The dewarp stage: every page flat and upright before detection (``dewarp.enabled``).

Each :class:`~pipeline.types.PageImage` gets the flattened image,
:class:`~pipeline.types.Dewarp` (what was done) and the ``geometry`` that maps
the flat image's pixels back to the original's; a page that needs nothing
keeps its image. Dewarping must never cost a page: when the geometry cannot
be computed (OpenCV or linear algebra giving up on a strange page), the page
is read as it is, with a note saying why.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Sequence

import cv2
import numpy as np

from pipeline.config import FolioConfig
from pipeline.imaging.dewarp import Dewarper, PageGeometry
from pipeline.models.bundle import OcrModels
from pipeline.types import PageImage

__all__ = ["DewarpStage"]

log = logging.getLogger(__name__)


class DewarpStage:
    """Flatten a batch of pages (see :mod:`pipeline.imaging.dewarp`); the models' recognizer and
    line classifier decide which way up a page reads."""

    def __init__(self, config: FolioConfig, models: OcrModels):
        orientation = models.orientation
        self.dewarper = Dewarper(config.dewarp, models.recognizer, orientation.upside_down if orientation else None)

    def __call__(self, pages: Sequence[PageImage]) -> list[PageImage]:
        return [self._one(page) for page in pages]

    def _one(self, page: PageImage) -> PageImage:
        image = np.asarray(page.image)
        if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
            return page  # not a page image: the OCR stage says so in its row
        if page.text_source != "ocr":
            return page  # a PDF page with text in the file: flat, upright, its lines in these pixels
        t0 = time.perf_counter()
        try:
            flat, geometry = self.dewarper(image)
        except (cv2.error, np.linalg.LinAlgError, ValueError) as e:  # geometry must never cost the page
            log.warning("dewarping failed on page %s of %s, read as it is: %s", page.page_index, page.key, e)
            flat, geometry = image, PageGeometry(skipped=f"dewarp failed: {e}", size=image.shape[:2])
        ms = (time.perf_counter() - t0) * 1000
        return dataclasses.replace(
            page, image=flat, dewarp=geometry.record(), geometry=None if geometry.identity else geometry,
            timings=dataclasses.replace(page.timings, dewarp=ms),
        )
