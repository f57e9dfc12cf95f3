"""The assemble stage: items in, ``documents`` rows and finished pages out.

Items arrive in any order (a Ray run interleaves documents and retries
batches); :class:`Assembler` keeps each document until its
:class:`~pipeline.types.SourceDocument` and all its pages are in, then builds
its ``documents`` row, counts it in the run's :class:`~pipeline.types.RunTally`
and hands rows and pages to the run's sink every ``runner.flush_documents``
documents. It runs where the run is driven (the local process, the Ray
driver), does no I/O of its own, and sees only small items: pixels never
reach it.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from pipeline import __version__
from pipeline.config import FolioConfig
from pipeline.models.engine import engine_label
from pipeline.types import DocumentFields, DoneIndex, Failure, Item, Page, RunTally, SourceDocument

__all__ = ["Assembler"]

log = logging.getLogger(__name__)

#: What a documents row for an input with the same bytes as an earlier one copies from it.
_TWIN_FIELDS = ("mime", "page_count", "pages_ok", "status", "error_code", "error_message", "pages_pdf_text",
                "pages_ocr", "needs_review", "review_reasons")


@dataclass(eq=False)
class _Doc:
    key: str
    source: SourceDocument | None = None  # once it has arrived
    pages: dict[int, Page] = field(default_factory=dict)  # by page index: a retried task cannot add a page twice
    ocr_ms: float = 0.0

    @property
    def complete(self) -> bool:
        return self.source is not None and len(self.pages) == self.source.pages_seen


class Assembler:
    """Joins items into ``documents`` rows and finished pages.

    Skips inputs the destination already holds (same ``doc_id`` and config
    fingerprint, same URI), records inputs whose bytes were already processed
    (earlier run, or another input of this run) as documents rows without
    pages, and hands finished rows to ``sink`` every ``runner.flush_documents``
    documents. A document whose row cannot be built is an ``internal_error``
    row, never an exception that stops the run.

    Args:
        config: the run's configuration (``engine.name`` resolved).
        done: what the destination already holds.
        fingerprint: the run's config fingerprint.
        models: the ``models`` column (``role``, ``name``, ``sha256`` per model).
        run_id: the run's id.
        sink: ``sink(documents, pages, fields)`` writes a shard: ``documents`` rows, the
            :class:`~pipeline.types.Page` objects of their pages, and ``(doc_id, fields)`` of each.
        tally: where the counts go (a new one by default).
        force: redo documents the destination already holds under this fingerprint.
        redo_before: redo documents whose rows were processed before this time (a
            reprocessing job's retries keep what its first attempt finished).
        on_document: called with the tally after every input is accounted for.
        fields: the fields stage (``fields.enabled``): a document's pages to its fields; its review
            flags go in the document's row.
    """

    def __init__(
        self,
        config: FolioConfig,
        done: DoneIndex,
        fingerprint: str,
        models: list[dict],
        run_id: str,
        sink: Callable[[list[dict], list[Page], list[tuple[str, DocumentFields]]], None],
        *,
        tally: RunTally | None = None,
        force: bool = False,
        redo_before: dt.datetime | None = None,
        on_document: Callable[[RunTally], None] | None = None,
        fields: Callable[[list[Page]], DocumentFields] | None = None,
    ):
        self.config = config
        self.done = done
        self.fingerprint = fingerprint
        self.models = models
        self.run_id = run_id
        self.sink = sink
        self.tally = tally if tally is not None else RunTally()
        self.force = force
        self.redo_before = redo_before
        self.on_document = on_document or (lambda tally: None)
        self.docs: dict[str, _Doc] = {}
        self.dropped: set[str] = set()  # keys finished or not wanted: later items for them are ignored
        # doc_id -> inputs with the same bytes waiting for it (list), or its finished documents row (dict)
        self.twins: dict[str, list[SourceDocument] | dict] = {}
        self.owner: dict[str, str] = {}  # doc_id -> the key whose pages are kept
        self.finished_docs: list[dict] = []
        self.fields = fields
        self.finished_fields: list[tuple[str, DocumentFields]] = []
        self.finished_pages: list[Page] = []
        #: Every input's outcome, for the run's manifest.
        self.outcomes: list[dict] = []

    # -- decisions ----------------------------------------------------------------------------
    def _earlier(self, doc_id: str) -> dict | None:
        """The row that makes ``doc_id`` done already, or None when it must be (re)done."""
        row = self.done.row(doc_id, self.fingerprint)
        if row is None or self.force:
            return None
        if self.redo_before is not None and (row.get("processed_at") is None or row["processed_at"] < self.redo_before):
            return None
        return row

    def wanted(self, doc_id: str, uri: str) -> bool:
        """Whether an input's pages need OCR (not done before, not a twin of another input)."""
        if self._earlier(doc_id) is not None:
            return False
        return self.owner.setdefault(doc_id, uri) == uri

    # -- items --------------------------------------------------------------------------------
    def add(self, item: Item) -> None:
        """Take one item (a page or a source document) of the stream."""
        if not isinstance(item, (SourceDocument, Page)):
            raise TypeError(f"the assembler takes pages and source documents, got {type(item).__name__}")
        key = item.key
        if key in self.dropped:
            return
        doc = self.docs.setdefault(key, _Doc(key))
        if isinstance(item, SourceDocument):
            self._on_source(doc, item)
        else:
            doc.ocr_ms += (item.timings.detect or 0.0) + (item.timings.recognize or 0.0)
            doc.pages[int(item.page_index)] = item
        if doc.complete:
            self._finish(doc)

    def _on_source(self, doc: _Doc, source: SourceDocument) -> None:
        doc_id, key = source.doc_id, source.key
        if not (source.failure is not None and source.failure.retryable):
            earlier = self._earlier(doc_id)
            if earlier is not None:
                self._drop(doc)
                if self.done.has_uri(doc_id, self.fingerprint, key):
                    self.tally.skipped += 1
                    self.outcomes.append({"uri": key, "doc_id": doc_id, "status": "skipped"})
                    self.on_document(self.tally)
                else:  # same bytes under a new name: record the input, OCR nothing
                    self._finish_duplicate(source, earlier)
                return
        if source.failure is None and self.owner.setdefault(doc_id, key) != key:
            self._drop(doc)
            twin = self.twins.setdefault(doc_id, [])
            if isinstance(twin, dict):
                self._finish_duplicate(source, twin)
            else:
                twin.append(source)
            return
        if source.failure is not None:
            doc.pages.clear()
            source.pages_seen = 0
        doc.source = source

    def _drop(self, doc: _Doc) -> None:
        self.dropped.add(doc.key)
        self.docs.pop(doc.key, None)

    # -- rows ---------------------------------------------------------------------------------
    def _doc_row(self, source: SourceDocument, pages: list[Page], ocr_ms: float = 0.0) -> dict:
        pages_ok = sum(1 for p in pages if p.status == "ok")
        if source.failure is not None:
            status, code, message = "error", source.failure.code, source.failure.message
        elif pages and pages_ok == len(pages):
            status, code, message = "ok", None, None
        else:
            bad = [p for p in pages if p.status != "ok"]
            status = "error" if pages_ok == 0 else "partial"
            code = bad[0].error_code if bad else "no_pages"
            message = (
                f"{len(bad)} of {len(pages)} pages failed; first: page {bad[0].page_index}: {bad[0].error_message}"
                if bad
                else "document has no pages"
            )
        read_ms, decode_ms = float(source.read_ms or 0), float(source.decode_ms or 0)
        return {
            "doc_id": source.doc_id, "source_uri": source.key, "source_etag": source.etag,
            "size_bytes": int(source.size or 0), "mime": source.mime, "page_count": int(source.page_count),
            "pages_ok": pages_ok, "status": status, "error_code": code, "error_message": message,
            "pipeline_version": __version__, "config_fingerprint": self.fingerprint,
            "engine": engine_label(self.config.engine), "models": self.models, "run_id": self.run_id,
            "processed_at": dt.datetime.now(dt.timezone.utc),
            "pages_pdf_text": sum(1 for p in pages if p.status == "ok" and p.text_source != "ocr"),
            "pages_ocr": sum(1 for p in pages if p.status == "ok" and p.text_source != "pdf"),
            "timings_ms": {"read": read_ms, "decode": decode_ms, "ocr": ocr_ms, "total": read_ms + decode_ms + ocr_ms},
        }

    def _finish(self, doc: _Doc) -> None:
        source = doc.source
        pages = [doc.pages[i] for i in sorted(doc.pages)]
        del self.docs[doc.key]
        self.dropped.add(doc.key)
        try:
            for page in pages:
                if page.geometry is not None:
                    raise ValueError(f"page {page.page_index} still has polygons in dewarped pixels")
            row = self._doc_row(source, pages, doc.ocr_ms)
        except Exception as e:  # noqa: BLE001 - one document's row, never the run
            log.exception("assembling %s failed", doc.key)
            source.failure = Failure("internal_error", f"unexpected {type(e).__name__} while assembling: {e}", True)
            pages = []
            row = self._doc_row(source, pages)
        if self.fields is not None:
            self._add_fields(row, pages)
        self.finished_docs.append(row)
        self.finished_pages.extend(pages)
        self._count(row, pages)
        self.outcomes.append({"uri": doc.key, "doc_id": row["doc_id"], "status": row["status"],
                              "error_code": row["error_code"], "pages": len(pages)})
        self.on_document(self.tally)
        waiting = self.twins.get(row["doc_id"])
        # only what a later input with the same bytes copies (a full row per document would grow with the run)
        self.twins[row["doc_id"]] = {k: row.get(k) for k in _TWIN_FIELDS}
        if isinstance(waiting, list):
            for twin in waiting:
                self._finish_duplicate(twin, row)
        if len(self.finished_docs) >= self.config.runner.flush_documents:
            self.flush()

    def _add_fields(self, row: dict, pages: list[Page]) -> None:
        """The document's fields (kept for the sink) and its review flags (in its row)."""
        read = [p for p in pages if p.status == "ok"]
        if not read:  # nothing was read: no fields, and nothing a person could check against
            row["needs_review"], row["review_reasons"] = True, ["no_pages_read"]
            return
        try:
            found = self.fields(read)
        except Exception as e:  # noqa: BLE001 - a document whose fields fail is reviewed, never lost
            log.exception("extracting the fields of %s failed", row["source_uri"])
            found = DocumentFields(review=(f"fields_failed:{type(e).__name__}",))
        row["needs_review"], row["review_reasons"] = bool(found.review), list(found.review)
        self.finished_fields.append((row["doc_id"], found))

    def _finish_duplicate(self, source: SourceDocument, twin: dict) -> None:
        """A documents row for an input whose bytes were already processed; no pages rows."""
        row = self._doc_row(source, [])
        for key in _TWIN_FIELDS:
            row[key] = twin.get(key)
        self._count(row, pages=[])
        self.finished_docs.append(row)
        self.outcomes.append({"uri": source.key, "doc_id": source.doc_id, "status": row["status"],
                              "error_code": row["error_code"], "duplicate": True})
        self.on_document(self.tally)

    def _count(self, row: dict, pages: list[Page]) -> None:
        t = self.tally
        t.pages += len(pages)
        t.page_errors += sum(1 for p in pages if p.status != "ok")
        t.add_document(row["status"], row["error_code"])

    # -- output -------------------------------------------------------------------------------
    def flush(self) -> None:
        """Hand the finished rows to the sink."""
        if not self.finished_docs:
            return
        docs, pages, fields = self.finished_docs, self.finished_pages, self.finished_fields
        self.finished_docs, self.finished_pages, self.finished_fields = [], [], []
        self.sink(docs, pages, fields)

    def close(self) -> RunTally:
        """Flush what is left; every input must have been accounted for."""
        if self.docs:
            missing = sorted(self.docs)[:5]
            raise RuntimeError(f"run ended with {len(self.docs)} documents incomplete, e.g. {missing}")
        self.flush()
        return self.tally
