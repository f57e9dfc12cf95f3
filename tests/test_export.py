"""``folio export``: a Folio output in, archive formats out, named after the sources, bad rows listed."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from pipeline.cli import EXIT_DOCUMENTS_FAILED, EXIT_FATAL, EXIT_OK, main
from pipeline.output.catalog import read_table
from pipeline.output.exports.export import export, export_names
from tests.conftest import FAST

SETS = [arg for key, value in FAST.items() for arg in ("--set", f"{key}={value}")]


@pytest.fixture(scope="module")
def output(clean_docs, tmp_path_factory) -> tuple[Path, Path]:
    """Folio's output for the clean documents plus one file that is not a document."""
    src = tmp_path_factory.mktemp("export_src")
    for f in clean_docs.iterdir():
        if f.suffix != ".json":
            shutil.copy(f, src / f.name)
    (src / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    dest = tmp_path_factory.mktemp("export_out")
    result = CliRunner().invoke(main, ["run", str(src), str(dest), "--quiet", *SETS], catch_exceptions=False)
    assert result.exit_code == EXIT_DOCUMENTS_FAILED, result.output  # broken.png is an error row
    return src, dest


def test_export_writes_each_format_named_after_the_sources(output, tmp_path):
    src, dest = output
    result = CliRunner().invoke(main, ["export", str(dest), str(tmp_path), "--format", "alto", "--format", "page",
                                       "--format", "hocr", "--format", "txt", "--quiet"], catch_exceptions=False)
    assert result.exit_code == EXIT_DOCUMENTS_FAILED  # broken.png exported nothing, and says so
    assert "not exported" in result.output and "broken.png" in result.output
    docs = [d for d in read_table(str(dest), "documents").to_pylist() if d["status"] == "ok"]
    pages = read_table(str(dest), "pages").to_pylist()
    for doc in docs:
        name = Path(doc["source_uri"]).stem
        count = doc["page_count"]
        alto = [tmp_path / "alto" / (f"{name}.xml" if count == 1 else f"{name}_{i + 1:04d}.xml") for i in range(count)]
        assert all(p.is_file() for p in alto), alto
        assert (tmp_path / "hocr" / f"{name}.hocr").is_file()
        text = (tmp_path / "txt" / f"{name}.txt").read_text(encoding="utf-8")
        page_texts = [p["text"] for p in sorted(pages, key=lambda p: p["page_index"]) if p["doc_id"] == doc["doc_id"]]
        assert text.rstrip("\n").split("\f") == page_texts
        assert len(list((tmp_path / "page").glob(f"{name}*.xml"))) == count
    assert not list(tmp_path.rglob("broken*"))


def test_exported_alto_and_page_are_valid_and_carry_the_words(output, tmp_path):
    etree = pytest.importorskip("lxml.etree")
    _, dest = output
    report = export(str(dest), str(tmp_path), ["alto", "page"])
    assert report.documents == 4 and report.files["alto"] >= 4 and len(report.failed) == 1
    schemas = Path(__file__).parent / "data" / "schemas"
    alto_schema = etree.XMLSchema(etree.parse(str(schemas / "alto-4-4.xsd")))
    page_schema = etree.XMLSchema(etree.parse(str(schemas / "pagecontent-2019-07-15.xsd")))
    rows = [w for p in read_table(str(dest), "pages").to_pylist() for line in p["lines"] or [] for w in line["words"] or []]

    def strings(folder: Path) -> int:
        count = 0
        for f in folder.glob("*.xml"):
            tree = etree.parse(str(f))
            alto_schema.assertValid(tree)
            count += len(tree.findall(".//{*}String"))
        return count

    assert strings(tmp_path / "alto") == sum(1 for w in rows if w["in_text"])  # the words of the text
    for f in (tmp_path / "page").glob("*.xml"):
        page_schema.assertValid(etree.parse(str(f)))
    export(str(dest), str(tmp_path / "all"), ["alto"], words="all")  # and every word read, unsure ones too
    assert strings(tmp_path / "all" / "alto") == len(rows) > sum(1 for w in rows if w["in_text"])


def test_export_selects_documents_and_fails_clearly_without_an_output(output, tmp_path):
    src, dest = output
    doc = next(d for d in read_table(str(dest), "documents").to_pylist() if d["status"] == "ok")
    result = CliRunner().invoke(main, ["export", str(dest), str(tmp_path / "one"), "--format", "txt", "--doc-id",
                                       doc["doc_id"], "--quiet"], catch_exceptions=False)
    assert result.exit_code == EXIT_OK, result.output
    assert [p.name for p in (tmp_path / "one" / "txt").iterdir()] == [f"{Path(doc['source_uri']).stem}.txt"]
    empty = tmp_path / "empty"
    empty.mkdir()
    result = CliRunner().invoke(main, ["export", str(empty), str(tmp_path / "x"), "--format", "alto"])
    assert result.exit_code == EXIT_FATAL and "no Folio output" in result.output
    result = CliRunner().invoke(main, ["export", str(tmp_path / "missing"), str(tmp_path / "x"), "--format", "alto"])
    assert result.exit_code == 2


def test_export_names_keep_the_sources_layout():
    assert export_names("s3://b/scans/2024/a.tif", "s3://b/scans") == "2024/a"
    assert export_names("/data/in/x.png", "/data/in/") == "x"
    assert export_names("/elsewhere/y.pdf", "/data/in") == "y"


def test_export_reads_and_writes_object_storage(output, s3_endpoint):
    """A Folio output in S3 (moto in server mode, through boto3) exported to S3: the same files."""
    boto3 = pytest.importorskip("boto3")
    _, dest = output
    s3 = boto3.client("s3", endpoint_url=s3_endpoint)
    s3.create_bucket(Bucket="archive")
    for f in dest.rglob("*"):
        if f.is_file():
            s3.upload_file(str(f), "archive", f"out/{f.relative_to(dest).as_posix()}")
    result = CliRunner().invoke(main, ["export", "s3://archive/out", "s3://archive/exports", "--format", "alto",
                                       "--format", "pdf", "--quiet"], catch_exceptions=False)
    assert result.exit_code == EXIT_DOCUMENTS_FAILED  # broken.png, listed
    keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket="archive", Prefix="exports/")["Contents"])
    docs = [d for d in read_table(str(dest), "documents").to_pylist() if d["status"] == "ok"]
    assert sum(k.startswith("exports/pdf/") for k in keys) == len(docs)
    assert sum(k.startswith("exports/alto/") for k in keys) == sum(d["page_count"] for d in docs)
    pdf = s3.get_object(Bucket="archive", Key=next(k for k in keys if k.endswith(".pdf")))["Body"].read()
    assert pdf.startswith(b"%PDF-")
