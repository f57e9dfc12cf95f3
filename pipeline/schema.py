"""The Arrow schemas of Folio's output tables, declared once.

``documents``: one row per input object. ``pages``: one row per page, with the
recognised lines nested. Column names are a contract: DuckDB queries, Spark
jobs and Athena tables outside this repo read them. Add columns freely; never
rename or drop one. Both schemas carry their version in the Arrow metadata.
"""

from __future__ import annotations

import pyarrow as pa

__all__ = ["SCHEMA_VERSION", "POLYGON", "LINE", "DOCUMENTS", "PAGES", "PARTITION_COLUMN", "count_document"]

SCHEMA_VERSION = "1"

#: Hive partition key of both tables (``run_date=YYYY-MM-DD`` folders).
PARTITION_COLUMN = "run_date"

#: Four (x, y) corners, clockwise from top-left, in pixels of the original page image.
POLYGON = pa.list_(pa.list_(pa.float32(), 2))

LINE = pa.struct(
    [
        pa.field("text", pa.string()),
        pa.field("confidence", pa.float32()),
        pa.field("polygon", POLYGON),
        pa.field("block_index", pa.int32()),
        pa.field("line_index", pa.int32()),
    ]
)

MODEL = pa.struct([pa.field("role", pa.string()), pa.field("name", pa.string()), pa.field("sha256", pa.string())])


def _meta(table: str) -> dict[bytes, bytes]:
    from pipeline import __version__

    return {
        b"folio.table": table.encode(),
        b"folio.schema_version": SCHEMA_VERSION.encode(),
        b"folio.pipeline_version": __version__.encode(),
    }


DOCUMENTS = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("source_uri", pa.string(), nullable=False),
        pa.field("source_etag", pa.string()),
        pa.field("size_bytes", pa.int64()),
        pa.field("mime", pa.string()),
        pa.field("page_count", pa.int32()),
        pa.field("pages_ok", pa.int32()),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error_code", pa.string()),
        pa.field("error_message", pa.string()),
        pa.field("pipeline_version", pa.string()),
        pa.field("config_fingerprint", pa.string()),
        pa.field("engine", pa.string()),
        pa.field("models", pa.list_(MODEL)),
        pa.field("run_id", pa.string()),
        pa.field("processed_at", pa.timestamp("us", tz="UTC")),
        pa.field(
            "timings_ms",
            pa.struct(
                [
                    pa.field("read", pa.float32()),
                    pa.field("decode", pa.float32()),
                    pa.field("ocr", pa.float32()),
                    pa.field("total", pa.float32()),
                ]
            ),
        ),
    ],
    metadata=_meta("documents"),
)

PAGES = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("page_index", pa.int32(), nullable=False),
        pa.field("width", pa.int32()),
        pa.field("height", pa.int32()),
        pa.field("dpi", pa.float32()),
        pa.field("rotation", pa.int16()),
        pa.field("skew_deg", pa.float32()),
        pa.field("quad", POLYGON),
        pa.field("curl_corrected", pa.bool_()),
        pa.field("text", pa.string()),
        pa.field("mean_confidence", pa.float32()),
        pa.field("line_count", pa.int32()),
        pa.field("lines", pa.list_(LINE)),
        pa.field("status", pa.string(), nullable=False),
        pa.field("error_code", pa.string()),
        pa.field("error_message", pa.string()),
        pa.field("config_fingerprint", pa.string()),
        pa.field("run_id", pa.string()),
        pa.field(
            "timings_ms",
            pa.struct(
                [
                    pa.field("decode", pa.float32()),
                    pa.field("detect", pa.float32()),
                    pa.field("recognize", pa.float32()),
                ]
            ),
        ),
    ],
    metadata=_meta("pages"),
)


def count_document(counts, status: str, error_code: str | None) -> None:
    """Add one ``documents`` row to ``counts`` (an object with ``ok``, ``partial``, ``errors`` and
    ``errors_by_code``): what a run's summary and a report read back from Parquet both count."""
    if status == "ok":
        counts.ok += 1
        return
    if status == "partial":
        counts.partial += 1
    else:
        counts.errors += 1
    counts.errors_by_code[error_code] = counts.errors_by_code.get(error_code, 0) + 1
