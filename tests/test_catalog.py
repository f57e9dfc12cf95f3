"""Reading output back: newest row per document, selections for reprocessing, run statistics,
and the README's DuckDB query for the newest results."""

from __future__ import annotations

import datetime as dt
import re
import shutil
from pathlib import Path

import pytest

from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.output.catalog import Selection, latest_documents, read_table, run_stats, select_documents
from pipeline.run import fingerprint, run
from pipeline.types import DocumentRef
from tests import badinputs
from tests.conftest import FAST

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def output(scans, tmp_path_factory):
    """Three inputs (one empty) run once, then two of them again under another config."""
    src = tmp_path_factory.mktemp("cat_in")
    for p in scans(("invoice", 2, 41, ("png",), False), dpi=100).iterdir():
        shutil.copy(p, src)
    (src / "empty.pdf").write_bytes(badinputs.zero_bytes())
    dest = tmp_path_factory.mktemp("cat_out")
    old = load_config(overrides=FAST, environ={})
    first = run(str(src), str(dest), old, progress=False)
    new = load_config(overrides=FAST | {"detection.box_thresh": 0.55}, environ={})
    redo = sorted(src.glob("*.png"))[:1] + [src / "empty.pdf"]
    second = run([DocumentRef(str(p.resolve())) for p in redo], str(dest), new, progress=False)
    return src, dest, old, new, first, second


def test_latest_documents_takes_the_newest_row_per_document(output):
    src, dest, old, new, first, second = output
    assert len(read_table(str(dest), "documents")) == 5
    latest = {Path(r["source_uri"]).name: r for r in latest_documents(str(dest)).to_pylist()}
    assert len(latest) == 3
    names = sorted(p.name for p in src.glob("*.png"))
    assert latest[names[0]]["run_id"] == second.run_id
    assert latest["empty.pdf"]["run_id"] == second.run_id
    assert latest[names[1]]["run_id"] == first.run_id
    assert latest[names[0]]["config_fingerprint"] == fingerprint(new) != fingerprint(old)


def test_the_readme_duckdb_query_gives_the_same_newest_rows(output):
    duckdb = pytest.importorskip("duckdb")
    src, dest, *_ = output
    readme = (REPO / "README.md").read_text()
    block = re.search(r"```sql\n(-- DuckDB: the newest result of every document.*?)```", readme, re.S)
    assert block, "README lost its query for the newest rows"
    sql = block.group(1).replace("DEST", str(dest))
    rows = duckdb.sql(sql).fetchall()
    got = {(uri, fp) for uri, fp, _, _ in rows}
    latest = latest_documents(str(dest))
    pages = {r["doc_id"] + r["run_id"] for r in read_table(str(dest), "pages", ["doc_id", "run_id"]).to_pylist()}
    want = {(r["source_uri"], r["config_fingerprint"]) for r in latest.to_pylist() if r["doc_id"] + r["run_id"] in pages}
    assert got == want and len(got) == 2  # the empty file has no pages


def test_selections(output):
    src, dest, old, new, first, second = output
    fp_new = fingerprint(new)
    d = str(dest)

    def names(sel, fp=fp_new):
        return sorted(Path(r.uri).name for r in select_documents(d, sel, fp).refs)

    pngs = sorted(p.name for p in src.glob("*.png"))
    assert names(Selection(stale=True)) == [pngs[1]]
    assert names(Selection(stale=True), fingerprint(old)) == sorted([pngs[0], "empty.pdf"])
    assert names(Selection(error_codes=("empty_file",))) == ["empty.pdf"]
    assert names(Selection(fingerprints=(fingerprint(old),))) == [pngs[1]]
    assert names(Selection(everything=True)) == sorted([*pngs, "empty.pdf"])
    today = dt.datetime.now(dt.timezone.utc).date()
    assert names(Selection(since=today + dt.timedelta(days=1))) == []
    assert names(Selection(until=today, source_prefix=str(src))) == sorted([*pngs, "empty.pdf"])
    assert names(Selection(source_prefix=str(src / pngs[0]))) == [pngs[0]]
    doc = next(r for r in latest_documents(d).to_pylist() if r["source_uri"].endswith(pngs[1]))
    assert names(Selection(doc_ids=(doc["doc_id"],))) == [pngs[1]]
    # confidence: every page of these clean pages reads above 0.5 and below 1.0
    assert names(Selection(below_confidence=0.5)) == []
    assert names(Selection(below_confidence=1.0)) == pngs
    with pytest.raises(ConfigError, match="needs a selection"):
        select_documents(d, Selection(), fp_new)
    with pytest.raises(ConfigError, match="current config fingerprint"):
        select_documents(d, Selection(stale=True), None)


def test_run_stats_match_the_rows(output):
    src, dest, old, new, first, second = output
    stats = run_stats(str(dest), [first.run_id])
    assert (stats.documents, stats.ok, stats.errors, stats.pages) == (3, 2, 1, 2)
    assert stats.errors_by_code == {"empty_file": 1}
    assert 0.5 < stats.mean_confidence <= 1.0
    assert [Path(d["source_uri"]).name for d in stats.lowest_confidence] and len(stats.lowest_confidence) == 2
    assert stats.lowest_confidence[0]["mean_confidence"] <= stats.lowest_confidence[1]["mean_confidence"]
    assert (stats.pages, stats.page_errors) == (2, 0)
    both = run_stats(str(dest), [first.run_id, second.run_id])
    assert (both.documents, both.pages) == (5, 3)
