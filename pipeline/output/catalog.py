"""Reading Folio's own output back: the tables under a destination, the newest row per
document, run statistics, and selections of documents to reprocess.

Reprocessing adds rows; it never rewrites old ones. A document processed twice
has two ``documents`` rows (each with its ``config_fingerprint``, ``run_id`` and
``processed_at``); readers take the newest per ``doc_id``. In DuckDB::

    SELECT * FROM read_parquet('out/documents/**/*.parquet', hive_partitioning = true)
    QUALIFY row_number() OVER (PARTITION BY doc_id ORDER BY processed_at DESC) = 1;

and the pages of those rows by joining on ``(doc_id, run_id)``. The functions
here do the same with pyarrow, through :mod:`pipeline.io.storage`, so they work on
local folders and ``s3://`` prefixes alike. Nothing here imports Prefect.
"""

from __future__ import annotations

import datetime as dt
import io
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from pipeline import schema
from pipeline.config import StorageConfig
from pipeline.errors import ConfigError, FolioError, StorageError
from pipeline.io.storage import get_storage, join
from pipeline.types import DocumentRef, RunTally

__all__ = ["read_table", "latest_documents", "document_confidence", "Selection", "select_documents", "run_stats",
           "selected_rows", "pages_of", "LATEST_DOCUMENTS_SQL"]

log = logging.getLogger(__name__)

#: The DuckDB query for the newest ``documents`` row per ``doc_id`` (``{dest}`` is the output root).
LATEST_DOCUMENTS_SQL = """\
SELECT * FROM read_parquet('{dest}/documents/**/*.parquet', hive_partitioning = true)
QUALIFY row_number() OVER (PARTITION BY doc_id ORDER BY processed_at DESC) = 1"""


def read_table(
    dest: str,
    table: str,
    columns: Sequence[str] | None = None,
    storage_config: StorageConfig | None = None,
    run_ids: Sequence[str] | None = None,
) -> pa.Table:
    """Every row of a table (``documents``, ``pages``, ``fields``, ``line_items``) under ``dest`` (an empty
    table when there is none).

    Args:
        dest: output root, local or ``s3://``.
        table: the table's name.
        columns: the columns to read (default all).
        storage_config: object-store client settings.
        run_ids: only the files written by these runs, or by runs whose id starts with one of
            these followed by ``-`` (file names carry the run id).
    """
    table_schema = schema.TABLES.get(table)
    if table_schema is None:
        raise ValueError(f"table must be one of {', '.join(schema.TABLES)}, got {table!r}")
    wanted = list(columns) if columns else table_schema.names
    storage = get_storage(dest, storage_config)
    parts = []
    for path in storage.glob(join(dest, table), ".parquet"):
        name = path.rsplit("/", 1)[-1]
        if run_ids is not None and not any(name.startswith(f"part-{r}-") for r in run_ids):
            continue
        try:
            file = pq.ParquetFile(io.BytesIO(storage.read(path)))
            # a file written before a column existed is read without it (and gets it as null below)
            part = file.read(columns=[c for c in wanted if c in file.schema_arrow.names])
        except (pa.ArrowException, OSError) as e:
            raise StorageError(f"output file {path} is unreadable: {e}", retryable=False) from e
        parts.append(part)
    empty = pa.schema([table_schema.field(c) for c in wanted]).empty_table()
    if not parts:
        return empty
    # Files written before a column or a nested field existed (words, schema version 1; text_source,
    # version 4) get it as null.
    return pa.concat_tables([empty, *parts], promote_options="permissive").select(wanted)


def latest_documents(dest: str, storage_config: StorageConfig | None = None, per: str = "doc_id",
                     run_ids: Sequence[str] | None = None) -> pa.Table:
    """The newest ``documents`` row per ``doc_id`` (or per ``source_uri`` with ``per="source_uri"``); with
    ``run_ids``, among the rows those runs wrote (as :func:`read_table` takes them)."""
    docs = read_table(dest, "documents", storage_config=storage_config, run_ids=run_ids)
    if docs.num_rows == 0:
        return docs
    order = pc.sort_indices(docs, [(per, "ascending"), ("processed_at", "descending")])
    keys = docs[per].take(order)
    first = pa.concat_arrays([
        pa.array([True]),
        pc.not_equal(keys.slice(1), keys.slice(0, len(keys) - 1)).combine_chunks(),
    ])
    return docs.take(pc.filter(order, first))


def document_confidence(dest: str, storage_config: StorageConfig | None = None,
                        run_ids: Sequence[str] | None = None) -> dict[tuple[str, str], float]:
    """Mean of the pages' ``mean_confidence`` per ``(doc_id, run_id)`` (pages without text left out)."""
    pages = read_table(dest, "pages", ["doc_id", "run_id", "mean_confidence"], storage_config, run_ids)
    pages = pages.filter(pc.is_valid(pages["mean_confidence"]))
    if pages.num_rows == 0:
        return {}
    means = pages.group_by(["doc_id", "run_id"]).aggregate([("mean_confidence", "mean")])
    return {
        (d, r): float(m)
        for d, r, m in zip(means["doc_id"].to_pylist(), means["run_id"].to_pylist(),
                           means["mean_confidence_mean"].to_pylist())
    }


@dataclass(frozen=True)
class Selection:
    """Which documents to reprocess; every criterion given must hold (AND).

    Attributes:
        doc_ids: these documents.
        source_prefix: documents whose ``source_uri`` starts with this.
        since / until: processed on or after / on or before these dates (UTC).
        stale: documents whose newest row has a fingerprint other than ``current_fingerprint``.
        fingerprints: documents whose newest row has one of these fingerprints.
        below_confidence: mean line confidence of the newest run below this.
        error_codes: documents whose newest row has one of these ``error_code`` values.
        everything: select every document (must be said explicitly).
    """

    doc_ids: tuple[str, ...] = ()
    source_prefix: str | None = None
    since: dt.date | None = None
    until: dt.date | None = None
    stale: bool = False
    fingerprints: tuple[str, ...] = ()
    below_confidence: float | None = None
    error_codes: tuple[str, ...] = ()
    everything: bool = False

    @property
    def empty(self) -> bool:
        return not (self.doc_ids or self.source_prefix or self.since or self.until or self.stale or self.fingerprints
                    or self.below_confidence is not None or self.error_codes or self.everything)

    def describe(self) -> str:
        parts = []
        if self.doc_ids:
            parts.append(f"{len(self.doc_ids)} doc ids")
        if self.source_prefix:
            parts.append(f"source under {self.source_prefix}")
        if self.since:
            parts.append(f"processed since {self.since}")
        if self.until:
            parts.append(f"processed until {self.until}")
        if self.stale:
            parts.append("fingerprint older than the current one")
        if self.fingerprints:
            parts.append(f"fingerprint in {list(self.fingerprints)}")
        if self.below_confidence is not None:
            parts.append(f"mean confidence below {self.below_confidence}")
        if self.error_codes:
            parts.append(f"error code in {list(self.error_codes)}")
        if self.everything:
            parts.append("every document")
        return ", ".join(parts)


@dataclass
class Selected:
    """The result of :func:`select_documents`: inputs to rerun, and the rows they came from."""

    refs: list[DocumentRef] = field(default_factory=list)
    doc_ids: list[str] = field(default_factory=list)
    considered: int = 0


def select_documents(
    dest: str,
    selection: Selection,
    current_fingerprint: str | None = None,
    storage_config: StorageConfig | None = None,
) -> Selected:
    """The inputs under ``dest`` that ``selection`` picks, judged on each document's newest row.

    Every input (``source_uri``) of a selected document is returned once, so a
    rerun writes a new row for each of them.

    Raises:
        ConfigError: an empty selection, or ``stale`` without ``current_fingerprint``.
    """
    if selection.empty:
        raise ConfigError("reprocess needs a selection: doc ids, a source prefix, a date range, stale, "
                          "fingerprints, a confidence threshold, error codes, or everything")
    if selection.stale and not current_fingerprint:
        raise ConfigError("selecting stale documents needs the current config fingerprint")
    latest = latest_documents(dest, storage_config)
    result = Selected(considered=latest.num_rows)
    if latest.num_rows == 0:
        return result
    confidence = document_confidence(dest, storage_config) if selection.below_confidence is not None else {}
    ids = set(selection.doc_ids)
    chosen: set[str] = set()
    for row in latest.to_pylist():
        day = row["processed_at"].date() if row["processed_at"] else None
        if ids and row["doc_id"] not in ids:
            continue
        if selection.source_prefix and not row["source_uri"].startswith(selection.source_prefix):
            continue
        if selection.since and (day is None or day < selection.since):
            continue
        if selection.until and (day is None or day > selection.until):
            continue
        if selection.stale and row["config_fingerprint"] == current_fingerprint:
            continue
        if selection.fingerprints and row["config_fingerprint"] not in selection.fingerprints:
            continue
        if selection.error_codes and row["error_code"] not in selection.error_codes:
            continue
        if selection.below_confidence is not None:
            conf = confidence.get((row["doc_id"], row["run_id"]))
            if conf is None or conf >= selection.below_confidence:
                continue
        chosen.add(row["doc_id"])
    # Every input of a chosen document, from its newest row per source_uri.
    per_uri = latest_documents(dest, storage_config, per="source_uri")
    for row in sorted(per_uri.to_pylist(), key=lambda r: r["source_uri"]):
        if row["doc_id"] in chosen:
            result.refs.append(DocumentRef(row["source_uri"], row["size_bytes"], row["source_etag"]))
    result.doc_ids = sorted(chosen)
    return result


def run_stats(dest: str, run_ids: Sequence[str], storage_config: StorageConfig | None = None,
              lowest: int = 10) -> RunTally:
    """The tally of ``run_ids`` (run ids or run id prefixes, as :func:`read_table` takes them) read back
    from the Parquet they wrote: counts, errors by code, mean confidence, the lowest-confidence
    documents, and (runs with fields) the documents that need review and the fields found."""
    stats = RunTally()
    if not run_ids:
        return stats
    docs = read_table(dest, "documents", ["doc_id", "source_uri", "status", "error_code", "run_id", "needs_review",
                                          "review_reasons"], storage_config, run_ids)
    pages = read_table(dest, "pages", ["doc_id", "run_id", "status", "mean_confidence"], storage_config, run_ids)
    stats.pages = pages.num_rows
    stats.page_errors = pages.num_rows - int(pc.sum(pc.equal(pages["status"], "ok")).as_py() or 0)
    doc_rows = docs.to_pylist()
    for row in doc_rows:
        stats.add_document(row["status"], row["error_code"])
        if row["needs_review"]:
            stats.needs_review.append({"doc_id": row["doc_id"], "source_uri": row["source_uri"],
                                       "reasons": list(row["review_reasons"] or [])})
    fields = read_table(dest, "fields", ["field"], storage_config, run_ids)
    for name in fields.column("field").to_pylist():
        stats.fields_found[name] = stats.fields_found.get(name, 0) + 1
    valid = pages.filter(pc.is_valid(pages["mean_confidence"]))
    if valid.num_rows:
        stats.mean_confidence = float(pc.mean(valid["mean_confidence"]).as_py())
    conf = document_confidence(dest, storage_config, run_ids)
    uris = {(r["doc_id"], r["run_id"]): r["source_uri"] for r in doc_rows}
    ranked = sorted(((c, k) for k, c in conf.items() if k in uris), key=lambda t: t[0])[:lowest]
    stats.lowest_confidence = [{"doc_id": k[0], "source_uri": uris[k], "mean_confidence": round(c, 4)}
                               for c, k in ranked]
    return stats


def selected_rows(src: str, selection: Selection | None, run_ids: Sequence[str] | None,
                  storage_config: StorageConfig | None = None) -> list[dict]:
    """The newest ``documents`` row of each selected document, by source URI (what ``folio export`` and
    ``folio fields`` read): of every document, or those ``selection`` picks, or those ``run_ids`` wrote.

    Raises:
        FolioError: ``src`` holds no Folio output.
    """
    if run_ids is not None:
        rows = latest_documents(src, storage_config, per="source_uri", run_ids=run_ids).to_pylist()
    else:
        rows = latest_documents(src, storage_config, per="source_uri").to_pylist()
        if not rows:
            raise FolioError(f"no Folio output under {src}: no documents table (SRC is what `folio run` wrote)",
                             code="no_output")
        if selection is not None and not selection.empty:
            chosen = set(select_documents(src, selection, storage_config=storage_config).doc_ids)
            rows = [r for r in rows if r["doc_id"] in chosen]
    return sorted(rows, key=lambda r: r["source_uri"])


def pages_of(src: str, rows: list[dict],
             storage_config: StorageConfig | None = None) -> dict[tuple[str, str], list[dict]]:
    """The ``pages`` rows of the documents' runs, by ``(doc_id, run_id)``."""
    wanted = {(r["doc_id"], r["run_id"]) for r in rows}
    out: dict[tuple[str, str], list[dict]] = {}
    if not wanted:
        return out
    table = read_table(src, "pages", storage_config=storage_config, run_ids=sorted({r["run_id"] for r in rows}))
    for page in table.to_pylist():
        key = (page["doc_id"], page["run_id"])
        if key in wanted:
            out.setdefault(key, []).append(page)
    return out
