"""Running an OCR system over a labelled set and scoring it: what ``folio eval`` does, and the page
loading ``folio bench`` shares with it."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from measure.datasets import GtPage, read_dataset
from measure.scoring import PageScore, score_page, summarize
from measure.systems import System
from pipeline.config import DecodeConfig, FolioConfig
from pipeline.io.decode import open_document
from pipeline.run import plan
from pipeline.types import DocumentRef, Page, PageImage, SourceDocument

__all__ = ["evaluate", "evaluate_documents", "evaluate_files", "evaluate_layout", "DocumentReader", "detect_format",
           "load_samples", "load_page"]

log = logging.getLogger(__name__)


def load_page(sample: GtPage, config: FolioConfig, cache: dict) -> tuple[np.ndarray, float | None]:
    """The sample's page image and dpi; ``cache`` keeps one open document between calls."""
    path = sample.image_path
    if path not in cache:
        cache.clear()  # one open document at a time
        cache[path] = open_document(path.read_bytes(), config.decode)
    return cache[path].page(sample.page_index)


def evaluate(
    system: System, samples: Sequence[GtPage], config: FolioConfig, progress: bool = False
) -> tuple[dict, list[PageScore]]:
    """OCR every sample with ``system`` and score it.

    Timing covers the system's OCR call only (not reading or decoding the file),
    the same way for every system; batched systems share a batch's time equally.

    Returns:
        The :func:`~measure.scoring.summarize` dict and the per-page scores.
    """
    cache: dict = {}
    scores: list[PageScore] = []
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(samples), unit="page", desc=f"eval {system.name}", file=sys.stderr)
    try:
        for start in range(0, len(samples), system.batch):
            chunk = samples[start : start + system.batch]
            images = [load_page(s, config, cache)[0] for s in chunk]
            t0 = time.perf_counter()
            preds = system.predict(images)
            seconds = (time.perf_counter() - t0) / len(chunk)
            for sample, image, pred in zip(chunk, images, preds):
                size = (image.shape[1], image.shape[0])
                scores.append(
                    score_page(sample, [(l[0], l[1]) for l in pred.lines], pred.text, seconds, pred_size=size,
                               pred_words=pred.words)
                )
            if bar is not None:
                bar.update(len(chunk))
    finally:
        for doc in cache.values():
            doc.close()
        if bar is not None:
            bar.close()
    return summarize(scores), scores


class DocumentReader:
    """Pages of a file as ``folio run`` reads them: the decode stage (a PDF page with text of its own is
    read from the file), then the page stage, loaded on the first page that needs OCR, for the pages
    that need it."""

    def __init__(self, config: FolioConfig):
        from pipeline.stages.decode import DecodeStage

        self.config = config
        self.decode = DecodeStage(config)
        self.stage = None

    def __call__(self, path: Path) -> tuple[list[Page], float, str | None]:
        """The file's pages that were read, in page order; the milliseconds its decoding and OCR took
        (not loading the models); and why it failed (``code: message``, ``no_pages_read``) or None."""
        from pipeline.stages.factory import create_page_stage

        t0 = time.perf_counter()
        items = list(self.decode(DocumentRef(str(path))))
        images = [item for item in items if isinstance(item, PageImage)]
        ms = (time.perf_counter() - t0) * 1000
        if images and self.stage is None:  # loading the models is not the document's time
            self.stage = create_page_stage(self.config)
        t1 = time.perf_counter()
        read = [item for item in items if isinstance(item, Page)] + (self.stage(images) if images else [])
        ms += (time.perf_counter() - t1) * 1000
        failure = next((i.failure for i in items if isinstance(i, SourceDocument) and i.failure), None)
        pages = sorted((p for p in read if p.status == "ok"), key=lambda p: p.page_index)
        error = f"{failure.code}: {failure.message}" if failure else (None if pages else "no_pages_read")
        return pages, ms, error


def evaluate_documents(samples: Sequence[GtPage], config: FolioConfig,
                       progress: bool = False) -> tuple[dict, list[PageScore]]:
    """Folio on each sample's whole file, as ``folio run`` reads it (:class:`DocumentReader`), scored
    against the samples; a file's time (models loaded beforehand) is shared out among its pages.

    Only words read from the file's own text are scored (lines with ``source`` ``pdf``; all lines
    on pages with another source), so ``folio eval pdf-text`` says whether Folio's words are the
    file's; the summary adds ``text_sources`` (pages by ``text_source``) and ``ocr_words_added``
    (words OCR read in image regions, on top of the file's).
    """
    reader = DocumentReader(config)
    by_file: dict[Path, list[GtPage]] = {}
    for sample in samples:
        by_file.setdefault(sample.image_path, []).append(sample)
    scores: list[PageScore] = []
    sources: dict[str, int] = {}
    added = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(samples), unit="page", desc="eval folio (documents)", file=sys.stderr)
    try:
        for path, wanted in by_file.items():
            read, ms, _ = reader(path)
            pages = {page.page_index: page for page in read}
            seconds = ms / 1000 / max(len(wanted), 1)
            for sample in wanted:
                page = pages.get(sample.page_index)
                if page is None:
                    scores.append(score_page(sample, [], "", seconds))
                    continue
                sources[page.text_source] = sources.get(page.text_source, 0) + 1
                own = page.lines if page.text_source == "ocr" else [ln for ln in page.lines if ln.source == "pdf"]
                if page.text_source != "ocr":
                    added += sum(len(ln.text.split()) for ln in page.lines if ln.source != "pdf")
                scores.append(score_page(sample, [(line.polygon, line.text) for line in own],
                                         "\n".join(line.text for line in own), seconds))
            if bar is not None:
                bar.update(len(wanted))
    finally:
        if bar is not None:
            bar.close()
    summary = summarize(scores)
    summary["text_sources"] = sources
    summary["ocr_words_added"] = added
    return summary, scores


def detect_format(path: str | os.PathLike) -> str | None:
    """Guess a labelled set's format from its layout; None for a plain folder of documents."""
    root = Path(path)
    if (root / "annotations").is_dir() and (root / "images").is_dir():
        return "funsd"
    if (root / "box").is_dir() and (root / "img").is_dir():
        return "sroie"
    if any(root.rglob("*.gt.txt")):
        return "lines"
    xml = next(root.rglob("*.xml"), None)
    if xml is not None:
        with open(xml, "rb") as f:
            head = f.read(4096)
        return "page" if b"PcGts" in head else "alto"
    for f in root.glob("*.json"):
        try:
            if "pages" in json.loads(f.read_text()):
                return "synth"
        except (ValueError, OSError):
            continue
    return None


def load_samples(path: str, fmt: str | None, limit: int | None) -> list[GtPage]:
    """The labelled pages of a set in ``fmt`` (guessed when None); for a plain folder of documents,
    every page of every file, without ground truth."""
    fmt = fmt or detect_format(path)
    if fmt is None:
        samples = []
        for ref in plan(path, exclude=("*.json",)):
            try:
                with open_document(Path(ref.uri).read_bytes(), DecodeConfig()) as doc:
                    n = doc.page_count
            except Exception as e:  # noqa: BLE001 - unreadable files are left out of a benchmark, with a note
                log.warning("bench: leaving out %s: %s", ref.uri, e)
                continue
            samples.extend(GtPage(f"{ref.uri}#{i}", Path(ref.uri), i, None, None, (), ()) for i in range(n))
        return samples[:limit] if limit else samples
    return read_dataset(fmt, path, limit)


def evaluate_layout(samples: Sequence[GtPage], config: FolioConfig) -> tuple[dict, list[PageScore]]:
    """Folio's layout stage on each sample's own ground-truth lines (their boxes and text, no OCR):
    the reading-order CER then measures the order alone (``folio eval ... --system gt-lines``)."""
    from pipeline.stages.layout import order_lines
    from pipeline.types import Line

    scores = []
    for sample in samples:
        lines = []
        for g in sample.lines:
            if g.text and g.polygon:
                xs, ys = [p[0] for p in g.polygon], [p[1] for p in g.polygon]
                box = ((min(xs), min(ys)), (max(xs), min(ys)), (max(xs), max(ys)), (min(xs), max(ys)))
                lines.append(Line(g.text, 1.0, tuple((float(x), float(y)) for x, y in box)))
        t0 = time.perf_counter()
        blocks, text = order_lines(lines, sample.height, config.layout.reading_order)
        pred = [(line.polygon, line.text) for block in blocks for line in block.lines]
        scores.append(score_page(sample, pred, text, time.perf_counter() - t0))
    return summarize(scores), scores


def evaluate_files(samples: Sequence[GtPage], predicted: Sequence[GtPage]) -> tuple[dict, list[PageScore]]:
    """Another system's output read from files (``folio eval ... --prediction DIR``): each sample is scored
    against the predicted page of the same image file name, its lines in the file's order; a sample with no
    such page counts as one read as nothing."""
    by_image = {(p.image_path.name, p.page_index): p for p in predicted}
    scores = []
    for sample in samples:
        found = by_image.get((sample.image_path.name, sample.page_index))
        lines = [(g.polygon, g.text) for g in found.lines if g.text] if found is not None else []
        scores.append(score_page(sample, lines, "\n".join(t for _, t in lines), 0.0,
                                 pred_size=(found.width, found.height) if found and found.width else None))
    return summarize(scores), scores
