"""The Parquet contract: schemas round-trip through the writer and read back as Hive datasets."""

import datetime as dt

import pyarrow.dataset as ds
import pytest

from pipeline import schema
from pipeline.output.parquet import DatasetWriter, load_done_index
from pipeline.types import Block, Line, Page, PageTimings, Word


def _doc(doc_id, status="ok", code=None, fp="fp1", uri=None):
    return {
        "doc_id": doc_id, "source_uri": uri or f"/in/{doc_id}.pdf", "source_etag": "e", "size_bytes": 10,
        "mime": "application/pdf", "page_count": 1, "pages_ok": 1 if status == "ok" else 0, "status": status,
        "error_code": code, "error_message": None if code is None else "why", "pipeline_version": "0",
        "config_fingerprint": fp, "engine": "onnxruntime",
        "models": [{"role": "detection", "name": "d.onnx", "sha256": "0" * 64}], "run_id": "r1",
        "processed_at": dt.datetime(2026, 11, 25, tzinfo=dt.timezone.utc),
        "timings_ms": {"read": 1.0, "decode": 2.0, "ocr": 3.0, "total": 6.0},
    }


def _page(doc_id) -> Page:
    words = (Word("Total", 0.99, ((1.0, 2.0), (14.0, 2.0), (14.0, 12.0), (1.0, 12.0))),
             Word("12.50", 0.97, ((17.0, 2.0), (30.0, 2.0), (30.0, 12.0), (17.0, 12.0))))
    line = Line("Total 12.50", 0.98, ((1.0, 2.0), (30.0, 2.0), (30.0, 12.0), (1.0, 12.0)), words)
    return Page(f"/in/{doc_id}.pdf", doc_id, 0, 100, 50, 300.0, blocks=(Block((line,)),), text="Total 12.50",
                timings=PageTimings(decode=1.0, detect=2.0, recognize=3.0))


def test_rows_round_trip_through_hive_datasets(tmp_path):
    writer = DatasetWriter(str(tmp_path), "r1", run_date=dt.date(2026, 11, 25))
    writer.write_shard(0, [_doc("a"), _doc("b", "error", "corrupt_pdf")], [_page("a")], "fp1")
    docs = ds.dataset(tmp_path / "documents", partitioning="hive").to_table()
    pages = ds.dataset(tmp_path / "pages", partitioning="hive").to_table()
    assert docs.num_rows == 2 and pages.num_rows == 1
    assert str(docs.column("run_date")[0]) in ("2026-11-25",)
    row = pages.to_pylist()[0]
    assert (row["doc_id"], row["text"], row["status"], row["line_count"]) == ("a", "Total 12.50", "ok", 1)
    assert (row["config_fingerprint"], row["run_id"]) == ("fp1", "r1")
    assert row["mean_confidence"] == pytest.approx(0.98)
    assert row["lines"][0]["polygon"] == [[1.0, 2.0], [30.0, 2.0], [30.0, 12.0], [1.0, 12.0]]
    assert row["lines"][0]["confidence"] == pytest.approx(0.98)
    assert [w["text"] for w in row["lines"][0]["words"]] == ["Total", "12.50"]
    assert row["lines"][0]["words"][1]["polygon"] == [[17.0, 2.0], [30.0, 2.0], [30.0, 12.0], [17.0, 12.0]]
    assert row["timings_ms"] == {"decode": 1.0, "detect": 2.0, "recognize": 3.0}
    for name in schema.PAGES.names:
        assert name in pages.column_names
    assert pages.schema.field("lines").type == schema.PAGES.field("lines").type
    files = list((tmp_path / "pages").rglob("*.parquet"))
    import pyarrow.parquet as pq

    meta = pq.read_schema(files[0]).metadata
    assert meta[b"folio.table"] == b"pages" and meta[b"folio.schema_version"] == schema.SCHEMA_VERSION.encode()
    assert files[0].name == "part-r1-00000.parquet" and files[0].parent.name == "run_date=2026-11-25"


def test_a_retried_shard_replaces_its_file(tmp_path):
    writer = DatasetWriter(str(tmp_path), "r1")
    writer.write_shard(0, [_doc("a")], [_page("a")], "fp1")
    writer.write_shard(0, [_doc("a")], [_page("a")], "fp1")
    assert ds.dataset(tmp_path / "documents", partitioning="hive").count_rows() == 1


def test_schema_rejects_rows_that_break_the_contract(tmp_path):
    bad = _doc("a")
    bad["status"] = None  # status is not nullable
    with pytest.raises(Exception):
        DatasetWriter(str(tmp_path), "r1").write_shard(0, [bad], [], "fp1")
    assert not list(tmp_path.rglob("*.parquet"))


def test_done_index_skips_retryable_errors(tmp_path):
    writer = DatasetWriter(str(tmp_path), "r1")
    writer.write_shard(0, [_doc("a"), _doc("b", "error", "corrupt_pdf"), _doc("c", "error", "storage_error")], [], "fp1")
    done = load_done_index(str(tmp_path))
    assert done.row("a", "fp1") is not None and done.row("b", "fp1") is not None
    assert done.row("c", "fp1") is None  # retryable: a rerun tries again
    assert done.row("a", "other-fp") is None
    assert done.has_uri("a", "fp1", "/in/a.pdf") and not done.has_uri("a", "fp1", "/elsewhere.pdf")
