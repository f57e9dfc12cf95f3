"""Archive formats derived from Folio's Parquet: ALTO, PAGE-XML, hOCR, searchable PDF/A and plain text.

Parquet is the source of truth; every export is a pure function of one
document's newest rows (:class:`ExportDocument`), turned back into the page
model (:func:`pipeline.schema.page_from_row`). Its pages carry their blocks in
reading order (``Block.kind`` says what a block is: :data:`BLOCK_KINDS`), each
block its lines, each line its words, every polygon in pixels of the original
page image. The writers return bytes; ``folio export`` names and stores them.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from dataclasses import dataclass, field

from pipeline.types import BLOCK_KINDS, Block, Page

__all__ = ["BLOCK_KINDS", "ExportDocument", "text_words_only"]

@dataclass(frozen=True)
class ExportDocument:
    """One document as the exports see it.

    Attributes:
        doc_id: the document's id (sha256 of its bytes).
        source_uri: the input it was read from.
        name: what its exports are named after: the source's file name without its extension.
        mime: the source's type (``application/pdf``, ``image/tiff``, ...).
        pipeline_version / config_fingerprint / engine / models: what produced the rows
            (``models``: ``{"role", "name", "sha256"}`` dicts).
        run_id / processed_at: the run that wrote them.
        pages: the pages that were read (status ``ok``), in page order.
        failed_pages: indices of the pages that failed (they export nothing).
    """

    doc_id: str
    source_uri: str
    name: str
    mime: str | None
    pipeline_version: str
    config_fingerprint: str
    engine: str
    models: tuple[dict, ...]
    run_id: str
    processed_at: dt.datetime | None
    pages: tuple[Page, ...]
    failed_pages: tuple[int, ...] = field(default=())


def text_words_only(page: Page) -> Page:
    """The page with only the words of its text (``output.export_words: text``): words read below
    ``recognition.min_word_confidence`` are left out, as the page text leaves them out."""
    if all(w.in_text for line in page.lines for w in line.words):
        return page
    blocks = tuple(Block(tuple(dataclasses.replace(line, words=line.text_words) for line in block.lines), block.kind)
                   for block in page.blocks)
    return dataclasses.replace(page, blocks=blocks)
