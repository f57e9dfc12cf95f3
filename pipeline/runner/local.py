"""The local runner: the whole pipeline in one process, the reference every other runner matches.

For each planned document: read the bytes, hash them (``doc_id``), skip it if
the destination already holds it under the same config fingerprint, decode its
pages, OCR them in batches that span documents, assemble rows, and flush
Parquet shards every ``runner.flush_documents`` documents. A failure that
belongs to one document (corrupt file, over a limit, unreadable) becomes its
``status=error`` row; the run goes on.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from pipeline import __version__
from pipeline.config import FolioConfig, StorageConfig, config_fingerprint
from pipeline.decode import open_document
from pipeline.errors import FolioError, StorageError
from pipeline.output import DatasetWriter, DoneIndex, load_done_index, new_run_id
from pipeline.stages import OcrStage, create_stage, stage_models
from pipeline.storage import get_storage
from pipeline.types import DocumentRef

__all__ = ["RunSummary", "run_local", "plan"]

log = logging.getLogger(__name__)


@dataclass
class RunSummary:
    """What a run did. ``failed`` counts documents whose status is ``error`` or ``partial``."""

    run_id: str
    dest: str
    fingerprint: str
    documents: int = 0
    skipped: int = 0
    pages: int = 0
    page_errors: int = 0
    ok: int = 0
    partial: int = 0
    errors: int = 0
    seconds: float = 0.0
    manifest: str | None = None
    errors_by_code: dict[str, int] = field(default_factory=dict)

    @property
    def failed(self) -> int:
        return self.partial + self.errors

    @property
    def pages_per_second(self) -> float:
        return self.pages / self.seconds if self.seconds > 0 else 0.0


def plan(
    source: str, exclude: Sequence[str] = (), storage_config: StorageConfig | None = None
) -> list[DocumentRef]:
    """Every document under ``source`` (folder, recursively, or one file), sorted.

    Args:
        source: folder, file or URI prefix (``s3://bucket/prefix``).
        exclude: glob patterns (``fnmatch``) matched against each object's path
            relative to ``source`` and against its base name; matches are left out.
        storage_config: object-store client settings (default ``StorageConfig()``).
    """
    refs = get_storage(source, storage_config).list(source)
    if not exclude:
        return list(refs)
    root = source.rstrip("/")
    kept = []
    for ref in refs:
        rel = ref.uri[len(root) :].lstrip("/") if ref.uri.startswith(root) else ref.uri
        name = rel.rsplit("/", 1)[-1]
        if not any(fnmatch.fnmatch(rel, pat) or fnmatch.fnmatch(name, pat) for pat in exclude):
            kept.append(ref)
    return kept


@dataclass(eq=False)
class _Doc:
    ref: DocumentRef
    doc_id: str
    size: int
    mime: str | None = None
    page_count: int = 0
    pages_seen: int = 0
    decoding_done: bool = False
    page_rows: list[dict] = field(default_factory=list)
    read_ms: float = 0.0
    decode_ms: float = 0.0
    ocr_ms: float = 0.0
    error: FolioError | None = None
    started: float = field(default_factory=time.perf_counter)

    @property
    def complete(self) -> bool:
        return self.decoding_done and len(self.page_rows) == self.pages_seen


class _Progress:
    """tqdm bar over documents with pages, pages/s and errors; silent when disabled."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        self.start = time.perf_counter()
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="doc", dynamic_ncols=True, desc="folio run")

    def update(self, summary: RunSummary, docs: int = 1) -> None:
        if self.bar is None:
            return
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        self.bar.update(docs)
        self.bar.set_postfix(pages=summary.pages, pages_s=f"{summary.pages / elapsed:.2f}", errors=summary.failed)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class LocalRun:
    """State of one local run; see :func:`run_local`."""

    def __init__(self, config: FolioConfig, dest: str, *, force: bool, stage_factory: Callable[[FolioConfig], OcrStage]):
        self.config = config
        self.dest = dest
        self.force = force
        self.models = stage_models(config)
        self.fingerprint = config_fingerprint(config, {k: m.sha256 for k, m in self.models.items()})
        self.model_rows = [{"role": k, "name": m.name, "sha256": m.sha256} for k, m in self.models.items()]
        self.run_id = new_run_id()
        self.writer = DatasetWriter(dest, self.run_id, config.output.compression, storage_config=config.storage)
        self.summary = RunSummary(self.run_id, dest, self.fingerprint)
        self._stage_factory = stage_factory
        self._stage: OcrStage | None = None
        self.pending: list[tuple[_Doc, int, np.ndarray, float | None, float]] = []
        self.open_docs: list[_Doc] = []
        self.finished_docs: list[dict] = []
        self.finished_pages: list[dict] = []
        self.shard = 0
        self.outcomes: list[dict] = []
        # doc_id -> inputs with the same bytes waiting for it (list), or its finished row (dict)
        self.twins: dict[str, list[_Doc] | dict] = {}
        self.started_at = dt.datetime.now(dt.timezone.utc)

    @property
    def stage(self) -> OcrStage:
        if self._stage is None:  # models load only when there is a page to OCR
            self._stage = self._stage_factory(self.config)
        return self._stage

    # -- rows ---------------------------------------------------------------------------------
    def _page_row(self, doc: _Doc, index: int, **values) -> dict:
        row = {
            "doc_id": doc.doc_id,
            "page_index": index,
            "rotation": 0,
            "skew_deg": 0.0,
            "quad": None,
            "curl_corrected": False,
            "text": "",
            "line_count": 0,
            "lines": [],
            "status": "ok",
            "config_fingerprint": self.fingerprint,
            "run_id": self.run_id,
        }
        row.update(values)
        return row

    def _doc_row(self, doc: _Doc) -> dict:
        pages_ok = sum(1 for p in doc.page_rows if p["status"] == "ok")
        if doc.error is not None:
            status, code, message = "error", doc.error.code, doc.error.message
        elif pages_ok == len(doc.page_rows) and doc.page_rows:
            status, code, message = "ok", None, None
        else:
            bad = [p for p in doc.page_rows if p["status"] != "ok"]
            status = "error" if pages_ok == 0 else "partial"
            code = bad[0]["error_code"] if bad else "no_pages"
            message = (
                f"{len(bad)} of {len(doc.page_rows)} pages failed; first: page {bad[0]['page_index']}: "
                f"{bad[0]['error_message']}"
                if bad
                else "document has no pages"
            )
        return {
            "doc_id": doc.doc_id,
            "source_uri": doc.ref.uri,
            "source_etag": doc.ref.etag,
            "size_bytes": doc.size,
            "mime": doc.mime,
            "page_count": doc.page_count,
            "pages_ok": pages_ok,
            "status": status,
            "error_code": code,
            "error_message": message,
            "pipeline_version": __version__,
            "config_fingerprint": self.fingerprint,
            "engine": self.config.engine.name,
            "models": self.model_rows,
            "run_id": self.run_id,
            "processed_at": dt.datetime.now(dt.timezone.utc),
            "timings_ms": {
                "read": doc.read_ms,
                "decode": doc.decode_ms,
                "ocr": doc.ocr_ms,
                "total": (time.perf_counter() - doc.started) * 1000,
            },
        }

    # -- flow ---------------------------------------------------------------------------------
    def add(self, ref: DocumentRef, storage, done: DoneIndex, progress: _Progress) -> None:
        t0 = time.perf_counter()
        try:
            data = storage.read(ref.uri)
        except StorageError as e:
            # No bytes, so no content hash: the id comes from the URI and the row says why.
            doc = _Doc(ref, hashlib.sha256(ref.uri.encode()).hexdigest(), ref.size or 0, error=e, decoding_done=True)
            self._finish(doc, progress)
            return
        doc_id = hashlib.sha256(data).hexdigest()
        doc = _Doc(ref, doc_id, len(data), read_ms=(time.perf_counter() - t0) * 1000)
        if not self.force:
            earlier = done.row(doc_id, self.fingerprint)
            if earlier is not None and done.has_uri(doc_id, self.fingerprint, ref.uri):
                self.summary.skipped += 1
                self.outcomes.append({"uri": ref.uri, "doc_id": doc_id, "status": "skipped"})
                progress.update(self.summary)
                return
            if earlier is not None:  # same bytes under a new name: record the input, OCR nothing
                self._finish_duplicate(doc, earlier, progress)
                return
        if doc_id in self.twins:  # same bytes twice in this run
            twin = self.twins[doc_id]
            if isinstance(twin, dict):
                self._finish_duplicate(doc, twin, progress)
            else:
                twin.append(doc)
            return
        self.twins[doc_id] = []
        self.open_docs.append(doc)
        t1 = time.perf_counter()
        try:
            with open_document(data, self.config.decode) as document:
                del data
                doc.mime, doc.page_count = document.mime, document.page_count
                for index, image, dpi, error in document.pages():
                    decode_ms = (time.perf_counter() - t1) * 1000
                    doc.decode_ms += decode_ms
                    doc.pages_seen += 1
                    if error is not None:
                        doc.page_rows.append(
                            self._page_row(doc, index, status="error", error_code=error.code,
                                           error_message=error.message, timings_ms={"decode": decode_ms})
                        )
                    else:
                        self.pending.append((doc, index, image, dpi, decode_ms))
                        if len(self.pending) >= self.config.runner.batch_pages:
                            self._ocr_pending(progress)
                    t1 = time.perf_counter()
        except FolioError as e:
            doc.error = e
        except Exception as e:  # a decoder bug must cost one document, not the run
            log.exception("unexpected error decoding %s", ref.uri)
            doc.error = FolioError(f"unexpected {type(e).__name__} while decoding: {e}")
        if doc.error is not None:
            self.pending = [p for p in self.pending if p[0] is not doc]
            doc.page_rows.clear()
            doc.pages_seen = 0
        doc.decoding_done = True
        self._finish_complete(progress)

    def _finish_duplicate(self, doc: _Doc, twin: dict, progress: _Progress) -> None:
        """A documents row for an input whose bytes were already processed; no pages rows."""
        row = self._doc_row(doc)
        for key in ("mime", "page_count", "pages_ok", "status", "error_code", "error_message"):
            row[key] = twin.get(key)
        self._count(row, pages=[])
        self.finished_docs.append(row)
        self.outcomes.append({"uri": doc.ref.uri, "doc_id": doc.doc_id, "status": row["status"],
                              "error_code": row["error_code"], "duplicate": True})
        progress.update(self.summary)

    def _ocr_pending(self, progress: _Progress) -> None:
        if not self.pending:
            return
        batch = self.pending
        self.pending = []
        images = np.empty(len(batch), dtype=object)
        for i, item in enumerate(batch):
            images[i] = item[2]
        t0 = time.perf_counter()
        out = self.stage(
            {
                "doc_id": np.array([b[0].doc_id for b in batch], dtype=object),
                "page_index": np.array([b[1] for b in batch], dtype=np.int64),
                "image": images,
            }
        )
        elapsed = (time.perf_counter() - t0) * 1000
        for i, (doc, index, _image, dpi, decode_ms) in enumerate(batch):
            doc.ocr_ms += elapsed / len(batch)
            lines = out["lines"][i] or []
            doc.page_rows.append(
                self._page_row(
                    doc,
                    index,
                    width=out["width"][i],
                    height=out["height"][i],
                    dpi=dpi,
                    text=out["text"][i],
                    mean_confidence=out["mean_confidence"][i],
                    line_count=len(lines),
                    lines=lines,
                    status=out["status"][i],
                    error_code=out["error_code"][i],
                    error_message=out["error_message"][i],
                    timings_ms={"decode": decode_ms, "detect": out["detect_ms"][i], "recognize": out["recognize_ms"][i]},
                )
            )
        self._finish_complete(progress)

    def _finish_complete(self, progress: _Progress) -> None:
        still_open = []
        for doc in self.open_docs:
            if doc.complete:
                self._finish(doc, progress)
            else:
                still_open.append(doc)
        self.open_docs = still_open

    def _count(self, row: dict, pages: list[dict]) -> None:
        s = self.summary
        s.documents += 1
        s.pages += len(pages)
        s.page_errors += sum(1 for p in pages if p["status"] != "ok")
        if row["status"] == "ok":
            s.ok += 1
            return
        if row["status"] == "partial":
            s.partial += 1
        else:
            s.errors += 1
        s.errors_by_code[row["error_code"]] = s.errors_by_code.get(row["error_code"], 0) + 1

    def _finish(self, doc: _Doc, progress: _Progress) -> None:
        row = self._doc_row(doc)
        pages = sorted(doc.page_rows, key=lambda r: r["page_index"])
        self.finished_docs.append(row)
        self.finished_pages.extend(pages)
        self._count(row, pages)
        self.outcomes.append(
            {"uri": doc.ref.uri, "doc_id": doc.doc_id, "status": row["status"], "error_code": row["error_code"],
             "pages": len(pages)}
        )
        progress.update(self.summary)
        waiting = self.twins.get(doc.doc_id)
        if isinstance(waiting, list):
            self.twins[doc.doc_id] = row
            for twin in waiting:
                self._finish_duplicate(twin, row, progress)
        if len(self.finished_docs) >= self.config.runner.flush_documents:
            self.flush()

    def flush(self) -> None:
        if not self.finished_docs:
            return
        self.writer.write_shard(self.shard, self.finished_docs, self.finished_pages)
        self.shard += 1
        self.finished_docs, self.finished_pages = [], []
        self.write_manifest(final=False)

    def finish(self, progress: _Progress) -> None:
        self._ocr_pending(progress)
        self._finish_complete(progress)
        self.flush()

    def write_manifest(self, final: bool, source: str | None = None) -> str:
        s = self.summary
        manifest = {
            "run_id": self.run_id,
            "complete": final,
            "source": source,
            "dest": self.dest,
            "started_at": self.started_at.isoformat(),
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat() if final else None,
            "pipeline_version": __version__,
            "config_fingerprint": self.fingerprint,
            "config": self.config.model_dump(mode="json"),
            "models": self.model_rows,
            "counts": {
                "documents": s.documents, "skipped": s.skipped, "ok": s.ok, "partial": s.partial, "error": s.errors,
                "pages": s.pages, "page_errors": s.page_errors,
            },
            "errors_by_code": s.errors_by_code,
            "files": self.writer.files,
            "inputs": self.outcomes,
        }
        s.manifest = self.writer.write_manifest(manifest)
        return s.manifest


def run_local(
    source: str | Iterable[DocumentRef],
    dest: str,
    config: FolioConfig,
    *,
    force: bool = False,
    progress: bool = True,
    exclude: Sequence[str] = (),
    stage_factory: Callable[[FolioConfig], OcrStage] = create_stage,
) -> RunSummary:
    """Run the pipeline over ``source`` in this process and write results to ``dest``.

    Args:
        source: folder, file or URI to plan from, or already planned refs.
        dest: output folder or URI.
        config: the run's configuration.
        force: redo documents the destination already holds under this config.
        exclude: glob patterns of inputs to leave out (see :func:`plan`).
        progress: show a progress bar on stderr.
        stage_factory: builds the OCR stage (the seam tests use to inject faults).

    Returns:
        The run's :class:`RunSummary`; the manifest path is in ``summary.manifest``.
    """
    t0 = time.perf_counter()
    refs = plan(source, exclude, config.storage) if isinstance(source, str) else list(source)
    run = LocalRun(config, dest, force=force, stage_factory=stage_factory)
    done = load_done_index(dest, config.storage)
    bar = _Progress(len(refs), progress)
    storages: dict[bool, object] = {}
    try:
        for ref in refs:
            storage = storages.setdefault("://" in ref.uri, get_storage(ref.uri, config.storage))
            run.add(ref, storage, done, bar)
        run.finish(bar)
    finally:
        bar.close()
    run.summary.seconds = time.perf_counter() - t0
    run.write_manifest(final=True, source=source if isinstance(source, str) else None)
    log.info(
        "run %s: %d documents (%d skipped), %d pages, %d failed in %.1f s",
        run.run_id, run.summary.documents, run.summary.skipped, run.summary.pages, run.summary.failed,
        run.summary.seconds,
    )
    return run.summary
