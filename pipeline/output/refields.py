"""``folio fields``: the fields of documents already read, without reading them again.

The fields stage reads only the page model, so a Folio output holds all it
needs: :func:`extract_fields` takes each selected document's newest rows under
``src``, runs the fields stage on its pages, and writes a new run under
``dest``: the ``fields`` and ``line_items`` rows, and copies of the
document's ``documents`` row (with ``needs_review`` and ``review_reasons``)
and ``pages`` rows under the new run id, so that ``dest`` reads like any
Folio output (the newest row of each document, and its pages by
``(doc_id, run_id)``). ``dest`` may be ``src``: the new rows are the newest.

The new rows' ``config_fingerprint`` is the OCR rows' with the fields
settings and calibration folded in, so fields extracted with other settings
are told apart. Documents whose newest row is an error, or with no page read,
are left out and listed.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Callable, Sequence

from pipeline import __version__
from pipeline.config import FolioConfig
from pipeline.output.catalog import Selection, pages_of, selected_rows
from pipeline.output.parquet import DatasetWriter, new_run_id
from pipeline.schema import page_from_row
from pipeline.stages.fields import FieldsStage, calibration_model
from pipeline.types import RunTally

__all__ = ["FieldsReport", "extract_fields", "fields_fingerprint"]

log = logging.getLogger(__name__)


@dataclasses.dataclass
class FieldsReport:
    """What :func:`extract_fields` did.

    Attributes:
        tally: documents written (with ``run_id``, ``manifest``, ``seconds``).
        skipped: ``(source_uri, why)`` of the selected documents left out.
        needs_review: documents flagged, by ``source_uri``: their reasons.
        fields_found: fields found, by field name.
    """

    tally: RunTally
    skipped: list[tuple[str, str]] = dataclasses.field(default_factory=list)
    needs_review: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    fields_found: dict[str, int] = dataclasses.field(default_factory=dict)


def fields_fingerprint(ocr_fingerprint: str, config: FolioConfig) -> str:
    """The fingerprint of fields extracted with ``config`` from rows written under ``ocr_fingerprint``."""
    payload = {"ocr": ocr_fingerprint, "fields": config.fields.model_dump(mode="json"),
               "calibration": calibration_model().sha256, "version": __version__}
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def extract_fields(
    src: str,
    dest: str,
    config: FolioConfig,
    *,
    selection: Selection | None = None,
    run_ids: Sequence[str] | None = None,
    run_id: str | None = None,
    on_document: Callable[[FieldsReport], None] | None = None,
) -> FieldsReport:
    """Extract the fields of the documents under ``src`` into a new run under ``dest``.

    Args:
        src: a Folio output (local or ``s3://``).
        dest: where to write (may be ``src``).
        config: its ``fields`` section says how (``fields.enabled`` need not be set).
        selection: which documents (as the reprocess flow selects them); None: every document.
        run_ids: only the documents these runs (or run id prefixes) wrote.
        run_id: the new run's id (default a new one).
        on_document: called with the report after each document.

    Raises:
        FolioError: ``src`` holds no Folio output.
        StorageError: ``dest`` cannot be written.
    """
    started = time.perf_counter()
    run_id = run_id or new_run_id()
    stage = FieldsStage(config.fields)
    model = calibration_model()
    rows = selected_rows(src, selection, run_ids, config.storage)
    pages_by_run = pages_of(src, [r for r in rows if r["status"] != "error"], config.storage)
    writer = DatasetWriter(dest, run_id, config.output.compression, storage_config=config.storage)
    report = FieldsReport(RunTally(run_id=run_id, dest=dest))
    documents: list[dict] = []
    pages: list = []
    found: list = []
    shard = 0

    def flush() -> None:
        nonlocal shard, documents, pages, found
        if documents:
            for doc_rows, doc_pages, doc_found, fp in _by_fingerprint(documents, pages, found):
                writer.write_shard(shard, doc_rows, doc_pages, fp, doc_found)
                shard += 1
            documents, pages, found = [], [], []

    now = dt.datetime.now(dt.timezone.utc)
    for row in rows:
        uri = row["source_uri"]
        if row["status"] == "error":
            report.skipped.append((uri, f"{row['error_code']}: {row['error_message']}"))
            continue
        page_rows = sorted(pages_by_run.get((row["doc_id"], row["run_id"]), []), key=lambda p: p["page_index"])
        doc_pages = [page_from_row(p, key=uri) for p in page_rows]
        read = [p for p in doc_pages if p.status == "ok"]
        if not read:
            report.skipped.append((uri, "no page was read"))
            continue
        result = stage(read)
        fingerprint = fields_fingerprint(row["config_fingerprint"] or "", config)
        models = [m for m in (row.get("models") or []) if m.get("role") != "fields"]
        models.append({"role": "fields", "name": model.name, "sha256": model.sha256})
        documents.append({**row, "run_id": run_id, "config_fingerprint": fingerprint, "processed_at": now,
                          "models": models, "needs_review": bool(result.review),
                          "review_reasons": list(result.review)})
        pages.extend((fingerprint, p) for p in doc_pages)
        found.append((fingerprint, row["doc_id"], result))
        report.tally.add_document(row["status"], row["error_code"])
        report.tally.pages += len(doc_pages)
        if result.review:
            report.needs_review[uri] = list(result.review)
        for f in result.fields:
            report.fields_found[f.name] = report.fields_found.get(f.name, 0) + 1
        if len(documents) >= config.runner.flush_documents:
            flush()
        if on_document is not None:
            on_document(report)
    flush()
    report.tally.seconds = time.perf_counter() - started
    report.tally.manifest = writer.write_manifest({
        "run_id": run_id, "kind": "fields", "complete": True, "source": src, "dest": dest,
        "finished_at": dt.datetime.now(dt.timezone.utc).isoformat(), "pipeline_version": __version__,
        "config": config.model_dump(mode="json"), "models": [{"role": "fields", "name": model.name,
                                                              "sha256": model.sha256}],
        "counts": {"documents": report.tally.documents, "skipped": len(report.skipped),
                   "needs_review": len(report.needs_review)},
        "files": writer.files, "skipped": [{"uri": u, "why": w} for u, w in report.skipped],
    })
    log.info("fields run %s: %d documents (%d need review), %d skipped in %.1f s", run_id, report.tally.documents,
             len(report.needs_review), len(report.skipped), report.tally.seconds)
    return report


def _by_fingerprint(documents: list[dict], pages: list, found: list):
    """The pending rows split by fingerprint (a shard's rows share one)."""
    for fp in dict.fromkeys(d["config_fingerprint"] for d in documents):
        yield ([d for d in documents if d["config_fingerprint"] == fp], [p for f, p in pages if f == fp],
               [(doc_id, r) for f, doc_id, r in found if f == fp], fp)
