"""``folio train``'s side of the ground truth: line images cut from any set ``folio eval`` reads.

A line set (``lines``) gives its images whole. Page sets (``alto``, ``page``,
``funsd``, ``sroie``, ``synth``) give each ground-truth line's box, cut from the
page with a margin of a fifth of the line's height, as Folio's detector cuts a
line a little larger than its ink. Lines with no text or no box are skipped.

Each line is labelled with the document it comes from, so that a validation
split holds out whole documents: the page's folder below the set's root joined
with its file name without the numbers that end it (``alexis_ruhe01_1852_0018_022`` and
``alexis_ruhe01_1852_0035_019`` are one document, ``alexis_ruhe01``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Sequence

import numpy as np

from measure.datasets import GtPage, read_dataset
from pipeline.config import FolioConfig
from pipeline.errors import FolioError
from pipeline.models.training import LineSample

__all__ = ["document_of", "line_samples"]

log = logging.getLogger(__name__)

#: Margin around a ground-truth line box, as a share of the line's height.
MARGIN = 0.2


def document_of(sample: GtPage) -> str:
    """The document a sample belongs to (see the module docstring)."""
    sample_id = sample.sample_id.split("#", 1)[0]
    folder, _, name = sample_id.rpartition("/")
    stem = re.sub(r"([_\-. ]+\d+)+$", "", name) or name
    return f"{folder}/{stem}" if folder else stem


def line_samples(fmt: str, path: str, config: FolioConfig, limit: int | None = None,
                 ids: Sequence[str] | None = None,
                 progress: Callable[[int, int], None] | None = None) -> tuple[list[LineSample], list[str]]:
    """The set's lines as training samples, and the sample id of each.

    Args:
        ids: only the pages with these sample ids (``folio eval --ids``'s files list them).
    """
    from measure.evaluate import load_page

    pages = read_dataset(fmt, path, limit)
    if ids is not None:
        wanted = set(ids)
        pages = [p for p in pages if p.sample_id in wanted]
    out: list[LineSample] = []
    out_ids: list[str] = []
    cache: dict = {}
    for k, page in enumerate(pages, 1):
        try:
            image, _ = load_page(page, config, cache)
        except (FolioError, OSError) as e:
            log.warning("train: cannot read %s (%s), skipped", page.image_path, e)
            continue
        height, width = image.shape[:2]
        sx = width / page.width if page.width else 1.0
        sy = height / page.height if page.height else 1.0
        group = document_of(page)
        for line in page.lines:
            text = " ".join(line.text.split())
            if not text or line.polygon is None:
                continue
            xs = [p[0] * sx for p in line.polygon]
            ys = [p[1] * sy for p in line.polygon]
            margin = MARGIN * (max(ys) - min(ys))
            x0, x1 = int(max(0, min(xs) - margin)), int(min(width, max(xs) + margin + 1))
            y0, y1 = int(max(0, min(ys) - margin)), int(min(height, max(ys) + margin + 1))
            if x1 - x0 < 4 or y1 - y0 < 4:
                continue
            out.append(LineSample(np.ascontiguousarray(image[y0:y1, x0:x1]), text, group))
            out_ids.append(page.sample_id)
        if progress is not None:
            progress(k, len(pages))
    return out, out_ids
