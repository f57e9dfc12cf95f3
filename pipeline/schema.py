"""The Arrow schemas of Folio's output tables, declared once, and the one conversion between the page
model (:mod:`pipeline.types`) and ``pages`` rows.

``documents``: one row per input object. ``pages``: one row per page, with the
recognised lines nested and each line's words nested in it. ``fields`` and
``line_items`` (runs with ``fields.enabled``): one row per document and field
found, and per line of a document's table of goods or services. Column names are
a contract: DuckDB queries, Spark jobs and Athena tables outside this repo
read them. Add columns freely; never rename or drop one. Every schema carries
their version in the Arrow metadata.
"""

from __future__ import annotations

import pyarrow as pa

from pipeline.types import Block, Dewarp, DocumentFields, Line, Page, PageTimings, Polygon, Word

__all__ = ["SCHEMA_VERSION", "POLYGON", "WORD", "LINE", "DOCUMENTS", "PAGES", "FIELDS", "LINE_ITEMS", "TABLES",
           "PARTITION_COLUMN", "page_row", "page_from_row", "field_rows", "line_item_rows"]

SCHEMA_VERSION = "6"

#: Hive partition key of both tables (``run_date=YYYY-MM-DD`` folders).
PARTITION_COLUMN = "run_date"

#: Four (x, y) corners, clockwise from top-left, in pixels of the original page image.
POLYGON = pa.list_(pa.list_(pa.float32(), 2))

WORD = pa.struct(
    [
        pa.field("text", pa.string()),
        pa.field("confidence", pa.float32()),
        pa.field("polygon", POLYGON),
        pa.field("in_text", pa.bool_()),
    ]
)

LINE = pa.struct(
    [
        pa.field("text", pa.string()),
        pa.field("confidence", pa.float32()),
        pa.field("polygon", POLYGON),
        pa.field("block_index", pa.int32()),
        pa.field("block_kind", pa.string()),
        pa.field("line_index", pa.int32()),
        pa.field("words", pa.list_(WORD)),
        pa.field("source", pa.string()),
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
        pa.field("pages_pdf_text", pa.int32()),
        pa.field("pages_ocr", pa.int32()),
        pa.field("needs_review", pa.bool_()),
        pa.field("review_reasons", pa.list_(pa.string())),
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
        pa.field("text_source", pa.string()),
        pa.field("unread_regions", pa.int32()),
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


FIELDS = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("config_fingerprint", pa.string()),
        pa.field("field", pa.string(), nullable=False),
        pa.field("value", pa.string()),
        pa.field("raw_text", pa.string()),
        pa.field("confidence", pa.float32()),
        pa.field("page_index", pa.int32()),
        pa.field("polygon", POLYGON),
        pa.field("method", pa.string()),
    ],
    metadata=_meta("fields"),
)

LINE_ITEMS = pa.schema(
    [
        pa.field("doc_id", pa.string(), nullable=False),
        pa.field("run_id", pa.string(), nullable=False),
        pa.field("config_fingerprint", pa.string()),
        pa.field("item_index", pa.int32(), nullable=False),
        pa.field("description", pa.string()),
        pa.field("quantity", pa.string()),
        pa.field("unit_price", pa.string()),
        pa.field("amount", pa.string()),
        pa.field("confidence", pa.float32()),
        pa.field("page_index", pa.int32()),
        pa.field("polygon", POLYGON),
    ],
    metadata=_meta("line_items"),
)

#: Every table by name, in the order a shard writes them (``documents`` last: it marks a document done).
TABLES = {"pages": PAGES, "fields": FIELDS, "line_items": LINE_ITEMS, "documents": DOCUMENTS}


def _polygon(polygon: Polygon | None) -> list[list[float]] | None:
    return None if polygon is None else [[float(x), float(y)] for x, y in polygon]


def _tuple_polygon(polygon) -> Polygon | None:
    return None if polygon is None else tuple((float(x), float(y)) for x, y in polygon)


def page_row(page: Page, *, run_id: str, fingerprint: str) -> dict:
    """The ``pages`` row of a page whose polygons are in original pixels."""
    if page.geometry is not None:
        raise ValueError("the page's polygons are still in the dewarped image's pixels")
    lines = [
        {
            "text": line.text, "confidence": float(line.confidence), "polygon": _polygon(line.polygon),
            "block_index": block_index, "block_kind": page.blocks[block_index].kind, "line_index": line_index,
            "words": [{"text": w.text, "confidence": float(w.confidence), "polygon": _polygon(w.polygon),
                       "in_text": bool(w.in_text)} for w in line.words],
            "source": line.source,
        }
        for block_index, line_index, line in page.iter_lines()
    ]
    t = page.timings
    return {
        "doc_id": page.doc_id, "page_index": int(page.page_index), "width": page.width, "height": page.height,
        "dpi": page.dpi, "rotation": int(page.dewarp.rotation), "skew_deg": float(page.dewarp.skew_deg),
        "quad": _polygon(page.dewarp.quad), "curl_corrected": bool(page.dewarp.curl_corrected),
        "text": page.text, "mean_confidence": page.mean_confidence, "line_count": len(lines), "lines": lines,
        "status": page.status, "error_code": page.error_code, "error_message": page.error_message,
        "config_fingerprint": fingerprint, "run_id": run_id,
        "text_source": page.text_source if page.status == "ok" else None,
        "unread_regions": int(page.unread_regions) if page.status == "ok" else None,
        "timings_ms": {"decode": t.decode, "detect": t.detect, "recognize": t.recognize},
    }


def field_rows(doc_id: str, found: DocumentFields, *, run_id: str, fingerprint: str) -> list[dict]:
    """The ``fields`` rows of a document."""
    return [{"doc_id": doc_id, "run_id": run_id, "config_fingerprint": fingerprint, "field": f.name,
             "value": f.value, "raw_text": f.raw_text, "confidence": float(f.confidence),
             "page_index": f.page_index, "polygon": _polygon(f.polygon), "method": f.method}
            for f in found.fields]


def line_item_rows(doc_id: str, found: DocumentFields, *, run_id: str, fingerprint: str) -> list[dict]:
    """The ``line_items`` rows of a document."""
    return [{"doc_id": doc_id, "run_id": run_id, "config_fingerprint": fingerprint, "item_index": item.index,
             "description": item.description, "quantity": item.quantity, "unit_price": item.unit_price,
             "amount": item.amount, "confidence": float(item.confidence), "page_index": item.page_index,
             "polygon": _polygon(item.polygon)}
            for item in found.line_items]


def page_from_row(row: dict, key: str | None = None) -> Page:
    """The page model of a ``pages`` row (what exports and fields read); ``key`` defaults to the doc id.

    Rows written before words existed (schema version 1) give lines without words.
    """
    blocks: list[list[Line]] = []
    kinds: dict[int, str] = {}
    for line in sorted(row.get("lines") or [], key=lambda r: (r.get("line_index") or 0)):
        b = int(line.get("block_index") or 0)
        while len(blocks) <= b:
            blocks.append([])
        kinds.setdefault(b, line.get("block_kind") or "text")
        words = tuple(Word(w["text"], float(w["confidence"]), _tuple_polygon(w["polygon"]), w.get("in_text") is not False)
                      for w in (line.get("words") or []))
        blocks[b].append(Line(line["text"], float(line["confidence"]), _tuple_polygon(line["polygon"]), words,
                              line.get("source") or "ocr"))
    timings = row.get("timings_ms") or {}
    return Page(
        key=key or row["doc_id"], doc_id=row["doc_id"], page_index=int(row["page_index"]),
        width=row.get("width") or 0, height=row.get("height") or 0, dpi=row.get("dpi"),
        dewarp=Dewarp(int(row.get("rotation") or 0), float(row.get("skew_deg") or 0.0),
                      _tuple_polygon(row.get("quad")), bool(row.get("curl_corrected"))),
        blocks=tuple(Block(tuple(lines), kinds[b]) for b, lines in enumerate(blocks) if lines),
        text=row.get("text") or "",
        status=row["status"], error_code=row.get("error_code"), error_message=row.get("error_message"),
        timings=PageTimings(timings.get("decode"), None, timings.get("detect"), timings.get("recognize")),
        text_source=row.get("text_source") or "ocr",
        unread_regions=int(row.get("unread_regions") or 0),
    )
