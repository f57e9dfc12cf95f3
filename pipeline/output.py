"""Writing the ``documents`` and ``pages`` Parquet datasets and the run manifest.

Layout under the destination::

    documents/run_date=YYYY-MM-DD/part-<run_id>-<shard>.parquet
    pages/run_date=YYYY-MM-DD/part-<run_id>-<shard>.parquet
    _runs/<run_id>.json

Both tables are Hive-partitioned datasets: ``pyarrow.dataset.dataset(dest +
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
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.parquet as pq

from pipeline import schema
from pipeline.config import StorageConfig
from pipeline.errors import RETRYABLE_CODES, StorageError
from pipeline.storage import get_storage, join

__all__ = ["DatasetWriter", "DoneIndex", "load_done_index", "new_run_id"]

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

    def write_shard(self, shard: int, documents: Sequence[dict], pages: Sequence[dict]) -> None:
        """Write one shard: pages first, then documents.

        A document counts as done once its ``documents`` row exists, so a crash
        between the two writes leaves at worst page rows that a rerun writes again.
        """
        if pages:
            path = self._path("pages", shard)
            self.storage.write_atomic(path, _to_parquet(pages, schema.PAGES, self.compression))
            self.files.append(path)
        if documents:
            path = self._path("documents", shard)
            self.storage.write_atomic(path, _to_parquet(documents, schema.DOCUMENTS, self.compression))
            self.files.append(path)

    def write_manifest(self, manifest: dict) -> str:
        path = join(self.dest, "_runs", f"{self.run_id}.json")
        self.storage.write_atomic(path, json.dumps(manifest, indent=2, default=str).encode())
        return path


@dataclass(frozen=True)
class DoneIndex:
    """What earlier runs already produced under one destination.

    Attributes:
        rows: ``(doc_id, config_fingerprint)`` to a summary of its documents row.
        uris: ``(doc_id, config_fingerprint, source_uri)`` triples already recorded.
    """

    rows: dict[tuple[str, str], dict]
    uris: frozenset[tuple[str, str, str]]

    def row(self, doc_id: str, fingerprint: str) -> dict | None:
        return self.rows.get((doc_id, fingerprint))

    def has_uri(self, doc_id: str, fingerprint: str, uri: str) -> bool:
        return (doc_id, fingerprint, uri) in self.uris


def load_done_index(dest: str, storage_config: StorageConfig | None = None) -> DoneIndex:
    """Read the ``documents`` rows already under ``dest``.

    Documents whose error is retryable (storage hiccups, engine failures) are not
    counted as done, so a rerun tries them again. ``storage_config`` sets up the
    object-store client when ``dest`` is an ``s3://`` URI.
    """
    storage = get_storage(dest, storage_config)
    rows: dict[tuple[str, str], dict] = {}
    uris: set[tuple[str, str, str]] = set()
    columns = ["doc_id", "config_fingerprint", "source_uri", "mime", "page_count", "pages_ok", "status",
               "error_code", "error_message"]
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
    return DoneIndex(rows, frozenset(uris))
