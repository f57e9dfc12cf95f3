"""Writing the ``documents``, ``pages``, ``fields`` and ``line_items`` Parquet datasets and the run manifest.

Layout under the destination::

    documents/run_date=YYYY-MM-DD/part-<run_id>-<shard>.parquet
    pages/run_date=YYYY-MM-DD/part-<run_id>-<shard>.parquet
    fields/run_date=YYYY-MM-DD/part-<run_id>-<shard>.parquet       (runs with fields.enabled)
    line_items/run_date=YYYY-MM-DD/part-<run_id>-<shard>.parquet   (runs with fields.enabled)
    _runs/<run_id>.json

The tables are Hive-partitioned datasets: ``pyarrow.dataset.dataset(dest +
"/pages", partitioning="hive")`` or DuckDB's ``read_parquet('dest/pages/**/*.parquet',
hive_partitioning=true)`` read them as they are. File names carry the run id and
shard number, so a retried shard overwrites its own file instead of adding rows.
Each file is serialised in memory and written atomically.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import logging
from collections.abc import Sequence

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import schema
from pipeline.config import StorageConfig
from pipeline.errors import RETRYABLE_CODES, StorageError
from pipeline.io.storage import get_storage, join
from pipeline.types import DocumentFields, DoneIndex, Page

__all__ = ["DatasetWriter", "load_done_index", "new_run_id", "retire_orphan_pages"]

log = logging.getLogger(__name__)


def new_run_id(now: dt.datetime | None = None) -> str:
    """A sortable, unique run id such as ``20261125T183000Z-3f2a9c``."""
    import secrets

    now = now or dt.datetime.now(dt.timezone.utc)
    return f"{now:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}"


def _to_parquet(rows: Sequence[dict], table_schema: pa.Schema, compression: str) -> bytes:
    table = pa.Table.from_pylist(list(rows), schema=table_schema)
    buf = io.BytesIO()
    pq.write_table(table, buf, compression=None if compression == "none" else compression)
    return buf.getvalue()


class DatasetWriter:
    """Writes shards of rows for one run.

    ``storage_config`` sets up the object-store client when ``dest`` is an ``s3://`` URI.
    """

    def __init__(
        self,
        dest: str,
        run_id: str,
        compression: str = "zstd",
        run_date: dt.date | None = None,
        storage_config: StorageConfig | None = None,
    ):
        self.dest = dest
        self.run_id = run_id
        self.compression = compression
        self.run_date = (run_date or dt.datetime.now(dt.timezone.utc).date()).isoformat()
        self.storage = get_storage(dest, storage_config)
        self.files: list[str] = []

    def _path(self, table: str, shard: int) -> str:
        return join(self.dest, table, f"{schema.PARTITION_COLUMN}={self.run_date}", f"part-{self.run_id}-{shard:05d}.parquet")

    def write_shard(self, shard: int, documents: Sequence[dict], pages: Sequence[Page], fingerprint: str,
                    fields: Sequence[tuple[str, DocumentFields]] = ()) -> None:
        """Write one shard: pages first, then fields and line items, then documents.

        A document counts as done once its ``documents`` row exists, so a crash
        between the writes leaves at worst rows that a rerun writes again.

        Args:
            fields: ``(doc_id, what the fields stage found)`` of the shard's documents.
        """
        if pages:
            path = self._path("pages", shard)
            rows = [schema.page_row(p, run_id=self.run_id, fingerprint=fingerprint) for p in pages]
            self.storage.write_atomic(path, _to_parquet(rows, schema.PAGES, self.compression))
            self.files.append(path)
        for table, make in (("fields", schema.field_rows), ("line_items", schema.line_item_rows)):
            rows = [row for doc_id, found in fields for row in make(doc_id, found, run_id=self.run_id,
                                                                     fingerprint=fingerprint)]
            if rows:
                path = self._path(table, shard)
                self.storage.write_atomic(path, _to_parquet(rows, schema.TABLES[table], self.compression))
                self.files.append(path)
        if documents:
            path = self._path("documents", shard)
            self.storage.write_atomic(path, _to_parquet(documents, schema.DOCUMENTS, self.compression))
            self.files.append(path)

    def write_manifest(self, manifest: dict) -> str:
        path = join(self.dest, "_runs", f"{self.run_id}.json")
        self.storage.write_atomic(path, json.dumps(manifest, indent=2, default=str).encode())
        return path


def load_done_index(dest: str, storage_config: StorageConfig | None = None) -> DoneIndex:
    """Read the ``documents`` rows already under ``dest``.

    Documents whose error is retryable (storage hiccups, engine failures) are not
    counted as done, so a rerun tries them again. ``storage_config`` sets up the
    object-store client when ``dest`` is an ``s3://`` URI.
    """
    storage = get_storage(dest, storage_config)
    rows: dict[tuple[str, str], dict] = {}
    uris: set[tuple[str, str, str]] = set()
    etags: set[tuple[str, str, str]] = set()
    columns = ["doc_id", "config_fingerprint", "source_uri", "source_etag", "mime", "page_count", "pages_ok", "status",
               "error_code", "error_message", "processed_at"]
    for path in storage.glob(join(dest, "documents"), ".parquet"):
        try:
            table = pq.read_table(io.BytesIO(storage.read(path)), columns=columns)
        except (pa.ArrowException, OSError) as e:
            raise StorageError(f"existing output file {path} is unreadable: {e}", retryable=False) from e
        for row in table.to_pylist():
            if row["status"] == "error" and row["error_code"] in RETRYABLE_CODES:
                continue
            rows[(row["doc_id"], row["config_fingerprint"])] = row
            uris.add((row["doc_id"], row["config_fingerprint"], row["source_uri"]))
            if row["source_etag"]:
                etags.add((row["source_uri"], row["source_etag"], row["config_fingerprint"]))
    return DoneIndex(rows, frozenset(uris), frozenset(etags))


def _run_id_of(path: str) -> str | None:
    name = path.rsplit("/", 1)[-1]
    if not (name.startswith("part-") and name.endswith(".parquet")):
        return None
    return name[len("part-"):-len(".parquet")].rsplit("-", 1)[0]


def retire_orphan_pages(
    dest: str, storage_config: StorageConfig | None = None, older_than_s: float = 900.0,
    now: dt.datetime | None = None,
) -> list[str]:
    """Empty the ``pages`` (and ``fields``, ``line_items``) files whose ``documents`` file was never written.

    A shard is written pages first, then documents, and a document counts as
    done once its documents row exists; a run killed between the writes
    leaves rows for documents the next run processes again. Those files
    are replaced by an empty table (a plain write: no delete permission needed)
    once the dead run's manifest is ``older_than_s`` old, so a live run, which
    refreshes its manifest at every shard, is never touched.

    Returns:
        The files that were emptied.
    """
    storage = get_storage(dest, storage_config)
    docs_root = join(dest, "documents")
    documents = {p[len(docs_root):] for p in storage.glob(docs_root, ".parquet")}
    now = now or dt.datetime.now(dt.timezone.utc)
    ages: dict[str, float] = {}
    retired = []
    for table in ("pages", "fields", "line_items"):
        root = join(dest, table)
        for path in storage.glob(root, ".parquet"):
            if path[len(root):] in documents:
                continue
            run_id = _run_id_of(path)
            if run_id is None:
                continue
            if run_id not in ages:
                ages[run_id] = _manifest_age(storage, dest, run_id, now)
            if ages[run_id] < older_than_s:
                continue  # a run that may still be writing
            log.warning("emptying %s: its run %s died before writing the documents of this shard", path, run_id)
            storage.write_atomic(path, _to_parquet([], schema.TABLES[table], "zstd"))
            retired.append(path)
    return retired


def _manifest_age(storage, dest: str, run_id: str, now: dt.datetime) -> float:
    """Seconds since the run's manifest was last written; infinite when it is complete or missing."""
    path = join(dest, "_runs", f"{run_id}.json")
    try:
        manifest = json.loads(storage.read(path))
    except (StorageError, ValueError):
        return float("inf")  # runs write their manifest before their first shard: none means long gone
    stamp = manifest.get("updated_at") or manifest.get("started_at")
    if manifest.get("complete") or not stamp:
        return float("inf")
    return (now - dt.datetime.fromisoformat(stamp)).total_seconds()

