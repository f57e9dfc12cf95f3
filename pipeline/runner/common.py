"""What every runner shares: planning, reading documents into records, OCR on records,
and assembling records into Parquet rows.

A run is a stream of flat records (dicts with the keys of :data:`RECORD_FIELDS`):

- ``kind="page"``: a decoded page to OCR (pixels in ``image``, or ``image_bytes``
  plus ``height``/``width`` where records cross process boundaries);
- ``kind="page_error"``: a page that could not be decoded;
- ``kind="doc"``: one per input, after its pages: what reading and decoding the
  whole document found (its id, type, page count, or the error that stopped it).

:func:`read_document` produces them (a CPU task on Ray), :class:`OcrRecords`
turns page records into page results (an actor on Ray), and :class:`Assembler`
(always in the driver) joins them back into ``documents`` and ``pages`` rows,
whatever order they arrive in, and writes Parquet shards and the manifest.
Only small results reach the assembler: pixels never leave the workers.
"""

from __future__ import annotations

import datetime as dt
import fnmatch
import hashlib
import logging
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np

from pipeline import __version__
from pipeline.config import FolioConfig, StorageConfig, config_fingerprint
from pipeline.decode import open_document
from pipeline.errors import FolioError, StorageError, WorkerLost
from pipeline.output import DatasetWriter, DoneIndex, new_run_id
from pipeline.schema import count_document
from pipeline.storage import Storage, get_storage
from pipeline.types import DocumentRef

__all__ = ["run_fingerprint", "RECORD_FIELDS", "RECORD_SCHEMA", "records_table", "start_run", "RunSummary", "plan", "read_document", "OcrRecords", "Assembler", "Progress"]

log = logging.getLogger(__name__)

#: Keys of every record, so that a batch of records is a table with fixed columns.
RECORD_FIELDS: dict[str, object] = {
    "kind": "",
    "key": "",  # the input's URI: unique per run, routes pages to their document
    "doc_id": "",
    "page_index": -1,
    "image": None,
    "image_bytes": None,
    "height": 0,
    "width": 0,
    "dpi": None,
    "decode_ms": 0.0,
    "read_ms": 0.0,
    "etag": None,
    "size": 0,
    "mime": None,
    "page_count": 0,
    "pages_seen": 0,
    "decoded": True,
    "error_code": None,
    "error_message": None,
    "error_retryable": False,
    # filled in by OcrRecords
    "lines": None,
    "text": None,
    "mean_confidence": None,
    "status": None,
    "detect_ms": None,
    "recognize_ms": None,
    # what dewarping did (OcrStage with dewarp.enabled; absent from other stages)
    "rotation": 0,
    "skew_deg": 0.0,
    "quad": None,
    "curl_corrected": False,
}


def _record_schema():
    import pyarrow as pa

    from pipeline.schema import LINE, POLYGON

    types = {
        "kind": pa.string(), "key": pa.string(), "doc_id": pa.string(), "page_index": pa.int32(),
        "image_bytes": pa.large_binary(), "height": pa.int32(), "width": pa.int32(), "dpi": pa.float64(),
        "decode_ms": pa.float64(), "read_ms": pa.float64(), "etag": pa.string(), "size": pa.int64(),
        "mime": pa.string(), "page_count": pa.int32(), "pages_seen": pa.int32(), "decoded": pa.bool_(),
        "error_code": pa.string(), "error_message": pa.string(), "error_retryable": pa.bool_(),
        "lines": pa.list_(LINE), "text": pa.string(), "mean_confidence": pa.float64(), "status": pa.string(),
        "detect_ms": pa.float64(), "recognize_ms": pa.float64(),
        "rotation": pa.int16(), "skew_deg": pa.float64(), "quad": POLYGON, "curl_corrected": pa.bool_(),
    }
    return pa.schema([pa.field(k, t) for k, t in types.items()])


#: Arrow schema of records crossing process boundaries (all fields but the in-process ``image``).
RECORD_SCHEMA = _record_schema()


def records_table(records: Sequence[dict]):
    """Records as a table with :data:`RECORD_SCHEMA` (fixed types, whatever values are None)."""
    import pyarrow as pa

    return pa.Table.from_pylist([{k: r.get(k) for k in RECORD_SCHEMA.names} for r in records], schema=RECORD_SCHEMA)


def _record(**values) -> dict:
    rec = dict(RECORD_FIELDS)
    rec.update(values)
    return rec


def run_fingerprint(config: FolioConfig, models: dict | None = None) -> str:
    """The ``config_fingerprint`` rows of a run with ``config`` carry: settings plus model sha256s.

    Args:
        config: the run's configuration.
        models: ``stage_models(config)`` when already at hand (they are looked up otherwise).
    """
    if models is None:
        from pipeline.stages import stage_models

        models = stage_models(config)
    return config_fingerprint(config, {k: m.sha256 for k, m in models.items()})


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


def plan(source: str, exclude: Sequence[str] = (), storage_config: StorageConfig | None = None) -> list[DocumentRef]:
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


def read_document(
    ref: DocumentRef,
    storage: Storage,
    config: FolioConfig,
    *,
    wanted: Callable[[str, str], bool] | None = None,
    as_bytes: bool = False,
) -> Iterator[dict]:
    """Read, hash and decode one input into records: its pages, then one ``doc`` record.

    Nothing raises for a bad document: a read or decode failure is the ``doc``
    record's error, a bad page a ``page_error`` record.

    Args:
        ref: the input.
        storage: where it lives.
        config: decode limits.
        wanted: ``wanted(doc_id, uri)``; when it says no (already done, or a
            duplicate of another input) the pages are not decoded.
        as_bytes: put pixels in ``image_bytes`` (for records that cross processes).
    """
    t0 = time.perf_counter()
    try:
        data = storage.read(ref.uri)
    except StorageError as e:
        # No bytes, so no content hash: the id comes from the URI and the row says why.
        yield _record(kind="doc", key=ref.uri, doc_id=hashlib.sha256(ref.uri.encode()).hexdigest(), etag=ref.etag,
                      size=ref.size or 0, error_code=e.code, error_message=e.message, error_retryable=e.retryable)
        return
    doc_id = hashlib.sha256(data).hexdigest()
    base = {"key": ref.uri, "doc_id": doc_id}
    doc = _record(kind="doc", etag=ref.etag, size=len(data), read_ms=(time.perf_counter() - t0) * 1000, **base)
    if wanted is not None and not wanted(doc_id, ref.uri):
        doc["decoded"] = False
        yield doc
        return
    decode_ms = 0.0
    t1 = time.perf_counter()
    try:
        with open_document(data, config.decode) as document:
            del data
            doc["mime"], doc["page_count"] = document.mime, document.page_count
            for index, image, dpi, error in document.pages():
                ms = (time.perf_counter() - t1) * 1000
                decode_ms += ms
                doc["pages_seen"] += 1
                if error is not None:
                    yield _record(kind="page_error", page_index=index, decode_ms=ms, error_code=error.code,
                                  error_message=error.message, **base)
                elif as_bytes:
                    yield _record(kind="page", page_index=index, image_bytes=image.tobytes(), height=image.shape[0],
                                  width=image.shape[1], dpi=dpi, decode_ms=ms, **base)
                else:
                    yield _record(kind="page", page_index=index, image=image, height=image.shape[0],
                                  width=image.shape[1], dpi=dpi, decode_ms=ms, **base)
                t1 = time.perf_counter()
    except FolioError as e:
        doc.update(error_code=e.code, error_message=e.message, error_retryable=e.retryable)
    except Exception as e:  # a decoder bug must cost one document, not the run
        log.exception("unexpected error decoding %s", ref.uri)
        err = FolioError(f"unexpected {type(e).__name__} while decoding: {e}")
        doc.update(error_code=err.code, error_message=err.message, error_retryable=err.retryable)
    doc["decode_ms"] = decode_ms
    yield doc


class SharedOrAlone:
    """Batches share an OCR process (``runner.ocr_threads``); a page run alone to isolate a crash has it
    to itself.

    When an actor dies, every batch it was running comes back, innocent ones too.
    Their pages are then run one at a time, and each such solo run counts towards
    ``ray.max_page_attempts``: were a poisonous page's solo run to overlap an
    innocent page's, the innocent page would die with it and be counted, and
    could end as a ``worker_lost`` row it did not cause. Solo runs wait until
    no batch is running and keep new batches waiting meanwhile.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._shared = 0
        self._alone = False
        self._waiting_alone = 0

    @contextmanager
    def shared(self):
        with self._cond:
            self._cond.wait_for(lambda: not self._alone and not self._waiting_alone)
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                self._cond.notify_all()

    @contextmanager
    def alone(self):
        with self._cond:
            self._waiting_alone += 1
            self._cond.wait_for(lambda: not self._alone and not self._shared)
            self._waiting_alone -= 1
            self._alone = True
        try:
            yield
        finally:
            with self._cond:
                self._alone = False
                self._cond.notify_all()


class OcrRecords:
    """Run an OCR stage over the ``page`` records of a batch; other records pass through.

    A callable class in Ray Data's ``map_batches`` shape: the stage (and its
    models) is built once per instance, i.e. once per actor.
    """

    def __init__(self, config: FolioConfig, stage_factory: Callable[[FolioConfig], object] | None = None,
                 attempts=None):
        """
        Args:
            config: the run's configuration.
            stage_factory: builds the OCR stage (default :func:`pipeline.stages.create_stage`).
            attempts: on Ray, the handle of the run's page-attempts actor (see :meth:`__call__`).
        """
        if stage_factory is None:
            from pipeline.stages import create_stage

            stage_factory = create_stage
        self.stage = stage_factory(config)
        self.attempts = attempts
        self.max_page_attempts = config.ray.max_page_attempts
        self._isolation = SharedOrAlone()

    def process(self, records: list[dict]) -> list[dict]:
        pages = [r for r in records if r["kind"] == "page"]
        if pages:
            images = np.empty(len(pages), dtype=object)
            for i, r in enumerate(pages):
                if r["image"] is not None:
                    images[i] = r["image"]
                else:
                    images[i] = np.frombuffer(r["image_bytes"], np.uint8).reshape(int(r["height"]), int(r["width"]), 3)
            out = self.stage(
                {
                    "doc_id": np.array([r["doc_id"] for r in pages], dtype=object),
                    "page_index": np.array([r["page_index"] for r in pages], dtype=np.int64),
                    "image": images,
                }
            )
            for i, r in enumerate(pages):
                r["image"] = r["image_bytes"] = None
                r["kind"] = "page_result"
                for column in ("lines", "text", "mean_confidence", "status", "error_code", "error_message",
                               "detect_ms", "recognize_ms"):
                    r[column] = out[column][i]
                for column in ("rotation", "skew_deg", "quad", "curl_corrected"):  # dewarping, when the stage did it
                    if column in out and out[column][i] is not None:
                        r[column] = out[column][i]
        return records

    def __call__(self, batch):
        """Ray Data entry point: a ``pyarrow.Table`` of records in and out (:data:`RECORD_SCHEMA`).

        Ray Data retries the batch of an actor that died (killed for memory, a
        crash in native code) on a new actor. A batch that comes back is run
        one page at a time, and a page on which actors died
        ``ray.max_page_attempts`` times alone becomes a ``worker_lost`` error
        row, so one poisonous page can neither take its batch down with it nor
        be retried forever.
        """
        records = [dict(RECORD_FIELDS) | r for r in batch.to_pylist()]
        out = records_table(self._guarded(records) if self.attempts is not None else self.process(records))
        del records, batch
        release_heap()
        return out

    def _guarded(self, records: list[dict]) -> list[dict]:
        import ray

        pages = [r for r in records if r["kind"] == "page"]
        if not pages:
            return self.process(records)
        keys = [f"{r['doc_id']}:{r['page_index']}" for r in pages]
        try:
            tries = ray.get(self.attempts.begin.remote(keys, "batch"), timeout=60)
        except (ray.exceptions.RayError, TimeoutError) as e:
            # The counter is a convenience: losing it (its node died) must not lose the batch.
            log.warning("page-attempts actor unavailable (%s); running the batch without isolation", e)
            return self.process(records)
        if max(tries) <= 1:
            with self._isolation.shared():
                out = self.process(records)
            self.attempts.end.remote(keys)
            return out
        log.warning("a batch of %d pages is back after its OCR worker died: running its pages one by one", len(pages))
        out = [r for r in records if r["kind"] != "page"]
        for record, key in zip(pages, keys):
            with self._isolation.alone():  # counted and run with nothing else in this process
                try:
                    solo = ray.get(self.attempts.begin.remote([key], "solo"), timeout=60)[0]
                except (ray.exceptions.RayError, TimeoutError):
                    solo = 1
                if solo > self.max_page_attempts:
                    error = WorkerLost(f"the OCR worker died on this page {solo - 1} times (killed for memory?)")
                    log.error("page %s: %s", key, error)
                    record.update(kind="page_result", image=None, image_bytes=None, status="error", lines=[],
                                  text="", error_code=error.code, error_message=error.message)
                    out.append(record)
                else:
                    out.extend(self.process([record]))
                    # It read alone without killing the actor: innocent. Should a later page of this
                    # batch kill the actor, this one's rerun must not count towards giving up on it.
                    self.attempts.end.remote([key])
        self.attempts.end.remote(keys)
        return out


def release_heap() -> None:
    """Give freed heap pages back to the OS after a batch (glibc ``malloc_trim``; a no-op elsewhere).

    Pages and crops differ in size from batch to batch and glibc keeps freed
    chunks in its arenas; trimming after each batch lets a long-lived OCR
    actor's resident memory fall back between batches.
    """
    global _malloc_trim
    if _malloc_trim is None:
        try:
            import ctypes

            _malloc_trim = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _malloc_trim = False
    if _malloc_trim:
        _malloc_trim(0)


_malloc_trim = None


class Progress:
    """tqdm bar over documents with pages, pages/s and errors; silent when disabled."""

    def __init__(self, total: int, enabled: bool):
        self.bar = None
        self.start = time.perf_counter()
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="doc", dynamic_ncols=True, desc="folio run")

    def update(self, summary: RunSummary) -> None:
        if self.bar is None:
            return
        elapsed = max(time.perf_counter() - self.start, 1e-9)
        self.bar.update(1)
        self.bar.set_postfix(pages=summary.pages, pages_s=f"{summary.pages / elapsed:.2f}", errors=summary.failed)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@dataclass(eq=False)
class _Doc:
    key: str
    record: dict | None = None  # the ``doc`` record, once it has arrived
    pages: dict[int, dict] = field(default_factory=dict)  # by page index: a retried task cannot add a page twice
    ocr_ms: float = 0.0

    @property
    def page_rows(self) -> list[dict]:
        return [self.pages[i] for i in sorted(self.pages)]

    @property
    def complete(self) -> bool:
        return self.record is not None and len(self.pages) == self.record["pages_seen"]


#: What a documents row for an input with the same bytes as an earlier one copies from it.
_TWIN_FIELDS = ("mime", "page_count", "pages_ok", "status", "error_code", "error_message")
_RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")


class Assembler:
    """Joins records into ``documents`` and ``pages`` rows and writes them.

    Skips inputs the destination already holds (same ``doc_id`` and config
    fingerprint, same URI), records inputs whose bytes were already processed
    (earlier run, or another input of this run) as documents rows without
    pages, and flushes a Parquet shard every ``runner.flush_documents`` documents.
    """

    def __init__(
        self,
        config: FolioConfig,
        dest: str,
        done: DoneIndex,
        models: dict,
        *,
        force: bool = False,
        redo_before: dt.datetime | None = None,
        progress: Progress | None = None,
        run_id: str | None = None,
    ):
        self.config = config
        self.dest = dest
        self.done = done
        self.force = force
        self.redo_before = redo_before
        self.progress = progress or Progress(0, False)
        self.model_rows = [{"role": k, "name": m.name, "sha256": m.sha256} for k, m in models.items()]
        self.fingerprint = run_fingerprint(config, models)
        if run_id is not None and not _RUN_ID.fullmatch(run_id):
            raise ValueError(f"run id {run_id!r} must be 1-128 letters, digits, '.', '_' or '-' (it names files)")
        self.run_id = run_id or new_run_id()
        self.writer = DatasetWriter(dest, self.run_id, config.output.compression, storage_config=config.storage)
        self.summary = RunSummary(self.run_id, dest, self.fingerprint)
        self.docs: dict[str, _Doc] = {}
        self.dropped: set[str] = set()  # keys finished or not wanted: later records for them are ignored
        # doc_id -> keys with the same bytes waiting for it (list), or its finished documents row (dict)
        self.twins: dict[str, list[str] | dict] = {}
        self.owner: dict[str, str] = {}  # doc_id -> the key whose pages are kept
        self.finished_docs: list[dict] = []
        self.finished_pages: list[dict] = []
        self.shard = 0
        self.outcomes: list[dict] = []
        self.started_at = dt.datetime.now(dt.timezone.utc)
        self.started = time.perf_counter()

    # -- decisions ----------------------------------------------------------------------------
    def _earlier(self, doc_id: str) -> dict | None:
        """The row that makes ``doc_id`` done already, or None when it must be (re)done.

        ``force`` redoes everything; ``redo_before`` redoes rows processed before
        that time, so the retries of a reprocessing job keep what its first
        attempt finished.
        """
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

    # -- records ------------------------------------------------------------------------------
    def add(self, record: dict) -> None:
        key = record["key"]
        if key in self.dropped:
            return
        doc = self.docs.setdefault(key, _Doc(key))
        if record["kind"] == "doc":
            self._on_doc(doc, record)
        elif record["kind"] == "page_error":
            doc.pages[int(record["page_index"])] = (self._page_row(record, status="error", error_code=record["error_code"],
                                                error_message=record["error_message"],
                                                timings_ms={"decode": record["decode_ms"]}))
        elif record["kind"] == "page_result":
            lines = list(record["lines"] or [])
            ms = (record["detect_ms"] or 0.0) + (record["recognize_ms"] or 0.0)
            doc.ocr_ms += ms
            doc.pages[int(record["page_index"])] = (
                self._page_row(
                    record, width=int(record["width"]), height=int(record["height"]), dpi=record["dpi"],
                    rotation=int(record.get("rotation") or 0), skew_deg=float(record.get("skew_deg") or 0.0),
                    quad=record.get("quad"), curl_corrected=bool(record.get("curl_corrected")),
                    text=record["text"] or "", mean_confidence=record["mean_confidence"], line_count=len(lines),
                    lines=lines, status=record["status"], error_code=record["error_code"],
                    error_message=record["error_message"],
                    timings_ms={"decode": record["decode_ms"], "detect": record["detect_ms"],
                                "recognize": record["recognize_ms"]},
                )
            )
        else:
            raise ValueError(f"unexpected record kind {record['kind']!r}")
        if doc.complete:
            self._finish(doc)

    def _on_doc(self, doc: _Doc, record: dict) -> None:
        doc_id, key = record["doc_id"], record["key"]
        if not (record["error_code"] is not None and record["error_retryable"]):
            earlier = self._earlier(doc_id)
            if earlier is not None:
                self._drop(doc)
                if self.done.has_uri(doc_id, self.fingerprint, key):
                    self.summary.skipped += 1
                    self.outcomes.append({"uri": key, "doc_id": doc_id, "status": "skipped"})
                    self.progress.update(self.summary)
                else:  # same bytes under a new name: record the input, OCR nothing
                    self._finish_duplicate(record, earlier)
                return
        if record["error_code"] is None and self.owner.setdefault(doc_id, key) != key:
            self._drop(doc)
            twin = self.twins.setdefault(doc_id, [])
            if isinstance(twin, dict):
                self._finish_duplicate(record, twin)
            else:
                twin.append(record)
            return
        if record["error_code"] is not None:
            doc.pages.clear()
            record["pages_seen"] = 0
        doc.record = record

    def _drop(self, doc: _Doc) -> None:
        self.dropped.add(doc.key)
        self.docs.pop(doc.key, None)

    # -- rows ---------------------------------------------------------------------------------
    def _page_row(self, record: dict, **values) -> dict:
        row = {
            "doc_id": record["doc_id"], "page_index": int(record["page_index"]), "rotation": 0, "skew_deg": 0.0,
            "quad": None, "curl_corrected": False, "text": "", "line_count": 0, "lines": [], "status": "ok",
            "config_fingerprint": self.fingerprint, "run_id": self.run_id,
        }
        row.update(values)
        return row

    def _doc_row(self, record: dict, page_rows: list[dict], ocr_ms: float = 0.0) -> dict:
        pages_ok = sum(1 for p in page_rows if p["status"] == "ok")
        if record["error_code"] is not None:
            status, code, message = "error", record["error_code"], record["error_message"]
        elif page_rows and pages_ok == len(page_rows):
            status, code, message = "ok", None, None
        else:
            bad = [p for p in page_rows if p["status"] != "ok"]
            status = "error" if pages_ok == 0 else "partial"
            code = bad[0]["error_code"] if bad else "no_pages"
            message = (
                f"{len(bad)} of {len(page_rows)} pages failed; first: page {bad[0]['page_index']}: "
                f"{bad[0]['error_message']}"
                if bad
                else "document has no pages"
            )
        read_ms, decode_ms = float(record["read_ms"] or 0), float(record["decode_ms"] or 0)
        return {
            "doc_id": record["doc_id"], "source_uri": record["key"], "source_etag": record["etag"],
            "size_bytes": int(record["size"] or 0), "mime": record["mime"], "page_count": int(record["page_count"]),
            "pages_ok": pages_ok, "status": status, "error_code": code, "error_message": message,
            "pipeline_version": __version__, "config_fingerprint": self.fingerprint,
            "engine": self.config.engine.name, "models": self.model_rows, "run_id": self.run_id,
            "processed_at": dt.datetime.now(dt.timezone.utc),
            "timings_ms": {"read": read_ms, "decode": decode_ms, "ocr": ocr_ms, "total": read_ms + decode_ms + ocr_ms},
        }

    def _finish(self, doc: _Doc) -> None:
        record = doc.record
        pages = doc.page_rows
        row = self._doc_row(record, pages, doc.ocr_ms)
        del self.docs[doc.key]
        self.dropped.add(doc.key)
        self.finished_docs.append(row)
        self.finished_pages.extend(pages)
        self._count(row, pages)
        self.outcomes.append({"uri": doc.key, "doc_id": row["doc_id"], "status": row["status"],
                              "error_code": row["error_code"], "pages": len(pages)})
        self.progress.update(self.summary)
        waiting = self.twins.get(row["doc_id"])
        # only what a later input with the same bytes copies (a full row per document would grow with the run)
        self.twins[row["doc_id"]] = {k: row[k] for k in _TWIN_FIELDS}
        if isinstance(waiting, list):
            for twin in waiting:
                self._finish_duplicate(twin, row)
        if len(self.finished_docs) >= self.config.runner.flush_documents:
            self.flush()

    def _finish_duplicate(self, record: dict, twin: dict) -> None:
        """A documents row for an input whose bytes were already processed; no pages rows."""
        row = self._doc_row(record, [])
        for key in _TWIN_FIELDS:
            row[key] = twin.get(key)
        self._count(row, pages=[])
        self.finished_docs.append(row)
        self.outcomes.append({"uri": record["key"], "doc_id": record["doc_id"], "status": row["status"],
                              "error_code": row["error_code"], "duplicate": True})
        self.progress.update(self.summary)

    def _count(self, row: dict, pages: list[dict]) -> None:
        s = self.summary
        s.documents += 1
        s.pages += len(pages)
        s.page_errors += sum(1 for p in pages if p["status"] != "ok")
        count_document(s, row["status"], row["error_code"])

    # -- output -------------------------------------------------------------------------------
    def flush(self) -> None:
        if not self.finished_docs:
            return
        self.writer.write_shard(self.shard, self.finished_docs, self.finished_pages)
        self.shard += 1
        self.finished_docs, self.finished_pages = [], []
        self.write_manifest(final=False)

    def close(self, source: str | None = None) -> RunSummary:
        """Write what is left and the final manifest; every input must have been seen."""
        if self.docs:
            missing = sorted(self.docs)[:5]
            raise RuntimeError(f"run ended with {len(self.docs)} documents incomplete, e.g. {missing}")
        self.flush()
        self.summary.seconds = time.perf_counter() - self.started
        self.write_manifest(final=True, source=source)
        return self.summary

    def write_manifest(self, final: bool, source: str | None = None) -> str:
        s = self.summary
        manifest = {
            "run_id": self.run_id, "complete": final, "source": source, "dest": self.dest,
            "started_at": self.started_at.isoformat(),
            "updated_at": dt.datetime.now(dt.timezone.utc).isoformat(),
            "finished_at": dt.datetime.now(dt.timezone.utc).isoformat() if final else None,
            "pipeline_version": __version__, "config_fingerprint": self.fingerprint,
            "config": self.config.model_dump(mode="json"), "models": self.model_rows,
            "counts": {"documents": s.documents, "skipped": s.skipped, "ok": s.ok, "partial": s.partial,
                       "error": s.errors, "pages": s.pages, "page_errors": s.page_errors},
            "errors_by_code": s.errors_by_code, "files": self.writer.files, "inputs": self.outcomes,
        }
        s.manifest = self.writer.write_manifest(manifest)
        return s.manifest


def start_run(
    source: str | Iterable[DocumentRef],
    dest: str,
    config: FolioConfig,
    *,
    force: bool,
    progress: bool,
    exclude: Sequence[str],
    redo_before: dt.datetime | None = None,
    run_id: str | None = None,
) -> tuple[list[DocumentRef], Assembler]:
    """What every runner does first: plan the inputs and set up the assembler (and its progress bar)."""
    from pipeline.output import load_done_index, retire_orphan_pages
    from pipeline.stages import stage_models

    refs = plan(source, exclude, config.storage) if isinstance(source, str) else list(source)
    retire_orphan_pages(dest, config.storage, config.output.orphan_after_s)
    done = load_done_index(dest, config.storage)
    bar = Progress(len(refs), progress)
    assembler = Assembler(config, dest, done, stage_models(config), force=force, redo_before=redo_before,
                           progress=bar, run_id=run_id)
    if refs:
        assembler.write_manifest(final=False)  # the run's lease: others see it is alive (retire_orphan_pages)
    return refs, assembler
