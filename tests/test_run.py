"""`folio run` end to end on synthetic documents and on bad inputs: real models, real files, no mocks."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from measure.datasets import read_dataset
from measure.scoring import score_page, summarize
from pipeline.cli import EXIT_DOCUMENTS_FAILED, EXIT_OK, EXIT_USAGE, main
from tests import badinputs
from tests.conftest import read_rows

_read = read_rows


def _run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(main, ["run", *args, "--exclude", "*.json"], catch_exceptions=False)
    return result.exit_code, result.output


def _score(src: Path, dest: Path) -> dict:
    """Score every page in DEST against the synthetic ground truth in SRC."""
    docs = {Path(r["source_uri"]).name: r["doc_id"] for r in _read(dest, "documents")}
    pages = {(r["doc_id"], r["page_index"]): r for r in _read(dest, "pages")}
    scores = []
    for sample in read_dataset("synth", src):
        row = pages[(docs[sample.image_path.name], sample.page_index)]
        assert row["status"] == "ok", row["error_message"]
        pred = [(line["polygon"], line["text"]) for line in row["lines"]]
        scores.append(score_page(sample, pred, row["text"], 0.0, pred_size=(row["width"], row["height"])))
    return summarize(scores)


@pytest.fixture(scope="module")
def damaged_docs(scans) -> Path:
    return scans(("invoice", 1, 4, ("pdf",), True), ("form", 2, 5, ("png", "jpeg"), True),
                 ("book", 2, 6, ("tiff",), True), truth=True)


@pytest.fixture(scope="module")
def clean_run(clean_docs, tmp_path_factory) -> tuple[Path, int, str]:
    dest = tmp_path_factory.mktemp("clean_out")
    code, out = _run(str(clean_docs), str(dest), "--quiet")
    return dest, code, out


def test_clean_pages_are_read_with_low_cer(clean_docs, clean_run):
    dest, code, _ = clean_run
    assert code == EXIT_OK
    summary = _score(clean_docs, dest)
    assert summary["pages"] == 4
    assert summary["cer"] <= 0.02, summary
    assert summary["word_f1"] >= 0.95, summary


def test_damaged_pages_are_read_with_low_cer(damaged_docs, tmp_path):
    code, _ = _run(str(damaged_docs), str(tmp_path), "--quiet")
    assert code == EXIT_OK
    summary = _score(damaged_docs, tmp_path)
    assert summary["pages"] == 5
    assert summary["cer"] <= 0.05, summary


def test_ocr_threads_do_not_change_the_rows(clean_docs, clean_run, tmp_path):
    """Batches OCR'd in two threads at once give the rows of the default one-after-the-other run."""
    dest, code, _ = clean_run
    assert code == EXIT_OK
    code, out = _run(str(clean_docs), str(tmp_path / "threads"), "--quiet", "--set", "runner.ocr_threads=2", "--set",
                     "runner.batch_pages=1")
    assert code == EXIT_OK, out

    def rows(d: Path) -> dict:
        return {(r["doc_id"], r["page_index"]): (r["status"], r["text"], [(l["text"], l["polygon"]) for l in r["lines"]])
                for r in _read(d, "pages")}

    serial, threaded = rows(dest), rows(tmp_path / "threads")
    assert len(threaded) == 4 and threaded == serial
    code, out = _run(str(clean_docs), str(tmp_path / "ahead"), "--quiet", "--set", "runner.decode_threads=3",
                     "--set", "detection.batch_pages=4", "--set", "runner.batch_pages=3")
    assert code == EXIT_OK, out
    assert rows(tmp_path / "ahead") == serial


def test_inputs_decoded_ahead_come_in_order_and_ask_in_order():
    """Threads decode inputs ahead, but items arrive in the order of the inputs, ``wanted`` is asked in
    that order (so the first of two inputs with the same bytes is the one read), and an error
    reaches the consumer in its place."""
    import time as clock

    from pipeline.runner.local import decoded_ahead
    from pipeline.types import DocumentRef

    asked = []

    def decode(ref, wanted):
        n = int(ref.uri.split("-")[1])
        clock.sleep(0.05 * (5 - n))  # later inputs finish reading first
        if ref.uri.endswith("unread"):
            yield ("source", ref.uri)  # a read failure: wanted is never asked
            return
        if ref.uri.endswith("boom"):
            raise RuntimeError("decoder bug")
        if wanted(ref.uri.split("-")[0], ref.uri):
            for k in range(6):
                yield (ref.uri, k)
        yield ("source", ref.uri)

    def wanted(doc_id, uri):
        asked.append(uri)
        return doc_id != "same" or "same" not in [a.split("-")[0] for a in asked[:-1]]

    refs = [DocumentRef(u) for u in ("a-0", "same-1", "b-2-unread", "same-3", "c-4")]
    got = [item for items in decoded_ahead(refs, decode, wanted, threads=4, depth=2) for item in items]
    assert asked == ["a-0", "same-1", "same-3", "c-4"]
    assert got == [*[("a-0", k) for k in range(6)], ("source", "a-0"), *[("same-1", k) for k in range(6)],
                   ("source", "same-1"), ("source", "b-2-unread"), ("source", "same-3"),
                   *[("c-4", k) for k in range(6)], ("source", "c-4")]
    with pytest.raises(RuntimeError, match="decoder bug"):
        for items in decoded_ahead([DocumentRef("a-0"), DocumentRef("x-1-boom")], decode, wanted, 2, 2):
            list(items)


def test_output_tables_follow_the_contract(clean_docs, clean_run):
    dest, _, _ = clean_run
    inputs = sorted(p for p in clean_docs.iterdir() if p.suffix != ".json")
    docs = _read(dest, "documents")
    assert len(docs) == len(inputs)  # one documents row per input
    assert {Path(d["source_uri"]) for d in docs} == {p.resolve() for p in inputs}
    for d in docs:
        assert d["status"] == "ok" and d["error_code"] is None
        assert d["doc_id"] == __import__("hashlib").sha256(Path(d["source_uri"]).read_bytes()).hexdigest()
        assert {m["role"] for m in d["models"]} == {"detection", "recognition", "orientation"}
        assert all(len(m["sha256"]) == 64 for m in d["models"])
        assert d["run_date"]  # hive partition column
    pages = _read(dest, "pages")
    assert sum(d["page_count"] for d in docs) == len(pages)
    pdf_page = next(p for p in pages if p["dpi"] == 300)  # PDFs render at the default 300 dpi
    assert abs(pdf_page["width"] - 2480) <= 1  # 1240 px at 150 dpi, rendered at 300
    for p in pages:
        assert p["text"] and p["line_count"] == len(p["lines"])
        for line in p["lines"]:
            assert len(line["polygon"]) == 4
            assert all(0 <= x <= p["width"] and 0 <= y <= p["height"] for x, y in line["polygon"])
            assert 0 < line["confidence"] <= 1
            # every line has its words, each with a quadrilateral on the page and a confidence
            assert line["words"] and all(w["text"] and " " not in w["text"] for w in line["words"])
            assert " ".join(w["text"] for w in line["words"] if w["in_text"]) == " ".join(line["text"].split())
            for w in line["words"]:
                assert len(w["polygon"]) == 4 and 0 < w["confidence"] <= 1
                assert all(-1 <= x <= p["width"] + 1 and -1 <= y <= p["height"] + 1 for x, y in w["polygon"])
    manifest = json.loads(next((dest / "_runs").glob("*.json")).read_text())
    assert manifest["complete"] and len(manifest["inputs"]) == len(inputs)
    assert manifest["counts"]["ok"] == len(inputs)


def test_duckdb_reads_the_output(clean_run):
    duckdb = pytest.importorskip("duckdb")
    dest = clean_run[0]
    n = duckdb.sql(f"select count(*) from read_parquet('{dest}/pages/**/*.parquet', hive_partitioning=true)").fetchall()[0][0]
    assert n == len(_read(dest, "pages"))


def test_rerun_skips_and_force_redoes(clean_docs, tmp_path):
    src = tmp_path / "src"
    shutil.copytree(clean_docs, src, ignore=shutil.ignore_patterns("*.json", "*.pdf", "*.tif", "*.jpg"))
    dest = tmp_path / "out"
    assert _run(str(src), str(dest), "--quiet")[0] == EXIT_OK
    first = _read(dest, "documents")
    code, out = _run(str(src), str(dest))
    assert code == EXIT_OK and "1 skipped" in out
    assert _read(dest, "documents") == first  # nothing new written
    # the same bytes under a new name: recorded as an input, not OCR'd again
    png = next(src.glob("*.png"))
    shutil.copy(png, src / "copy-of.png")
    assert _run(str(src), str(dest), "--quiet")[0] == EXIT_OK
    docs = _read(dest, "documents")
    assert len(docs) == 2 and len({d["doc_id"] for d in docs}) == 1
    assert len(_read(dest, "pages")) == 1
    # a config that changes the output is a new fingerprint: redone
    assert _run(str(src), str(dest), "--quiet", "--set", "detection.box_thresh=0.55")[0] == EXIT_OK
    assert len({d["config_fingerprint"] for d in _read(dest, "documents")}) == 2
    assert _run(str(src), str(dest), "--quiet", "--force")[0] == EXIT_OK
    assert len(_read(dest, "documents")) == 6


BAD_INPUTS = {
    "empty.pdf": (badinputs.zero_bytes, "empty_file"),
    "truncated.pdf": (badinputs.truncated_pdf, "corrupt_pdf"),
    "encrypted.pdf": (badinputs.encrypted_pdf, "encrypted_pdf"),
    "notes.pdf": (badinputs.text_as_pdf, "unsupported_format"),
    "bomb.png": (badinputs.png_bomb, "image_too_large"),
    "huge.pdf": (lambda: badinputs.pdf_pages(30), "too_many_pages"),
    "truncated.jpg": (badinputs.truncated_jpeg, "corrupt_image"),
}


def test_bad_inputs_get_error_rows_and_the_rest_succeeds(clean_docs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    good = next(clean_docs.glob("*.png"))
    shutil.copy(good, src / "b-good.png")
    for name, (build, _) in BAD_INPUTS.items():
        (src / name).write_bytes(build())
    dest = tmp_path / "out"
    code, out = _run(str(src), str(dest), "--set", "decode.max_pages=20")
    assert code == EXIT_DOCUMENTS_FAILED
    docs = {Path(d["source_uri"]).name: d for d in _read(dest, "documents")}
    assert len(docs) == len(BAD_INPUTS) + 1
    assert docs["b-good.png"]["status"] == "ok"
    for name, (_, code_expected) in BAD_INPUTS.items():
        row = docs[name]
        assert (row["status"], row["error_code"]) == ("error", code_expected), name
        assert len(row["error_message"]) > 15
    pages = _read(dest, "pages")
    assert [p["doc_id"] for p in pages if p["status"] == "ok"] == [docs["b-good.png"]["doc_id"]]
    # a document that opened but whose every page failed keeps its page rows, each saying why
    assert all(p["error_code"] for p in pages if p["status"] != "ok")
    assert not list(dest.rglob(".tmp-*"))  # no partial files left behind
    assert "image_too_large: 1" in out


def test_a_bad_page_makes_the_document_partial(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    (src / "three.pdf").write_bytes(badinputs.pdf_with_bad_page(3, bad=1))
    code, _ = _run(str(src), str(tmp_path / "out"), "--quiet", "--set", "decode.pdf_dpi=72")
    assert code == EXIT_DOCUMENTS_FAILED
    [doc] = _read(tmp_path / "out", "documents")
    assert doc["status"] == "partial" and doc["error_code"] == "corrupt_pdf" and doc["pages_ok"] == 2
    pages = sorted(_read(tmp_path / "out", "pages"), key=lambda p: p["page_index"])
    assert [p["status"] for p in pages] == ["ok", "error", "ok"]


def test_usage_errors_exit_2(tmp_path):
    assert _run(str(tmp_path / "missing"), str(tmp_path / "out"))[0] == EXIT_USAGE
    assert _run(str(tmp_path), str(tmp_path / "out"), "--set", "detection.box_thresh=7")[0] == EXIT_USAGE
    assert _run(str(tmp_path), str(tmp_path / "out"), "--engine", "nope")[0] == EXIT_USAGE


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract not installed")
def test_tesseract_engine_writes_the_same_tables(clean_docs, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    shutil.copy(next(clean_docs.glob("*.png")), src)
    shutil.copy(next(clean_docs.glob("*.json")), src)  # ignored through --exclude
    code, _ = _run(str(src), str(tmp_path / "out"), "--quiet", "--engine", "tesseract")
    assert code == EXIT_OK
    [doc] = _read(tmp_path / "out", "documents")
    assert doc["engine"] == "tesseract" and doc["models"][0]["role"] == "tesseract"
    [page] = _read(tmp_path / "out", "pages")
    assert page["line_count"] > 10 and all(len(l["polygon"]) == 4 for l in page["lines"])


@pytest.mark.parametrize("threads", [1, 2])
def test_a_run_that_dies_midway_is_completed_by_a_rerun(clean_docs, tmp_path, threads):
    """Shards already written survive a crash (raised in an OCR thread too); the rerun skips them and
    writes each document once."""
    from pipeline.config import load_config
    from pipeline.run import run
    from pipeline.stages.factory import create_page_stage

    calls = {"n": 0}

    class Crash(BaseException):
        """What a dying process looks like to the code after it: nothing catches it."""

    def dies_on_third_batch(config):  # the production seam, with a crash injected
        stage = create_page_stage(config)

        def run_batch(pages):
            calls["n"] += 1
            if calls["n"] == 3:
                raise Crash("injected crash")
            return stage(pages)

        return run_batch

    config = load_config(overrides={"runner.flush_documents": 1, "runner.batch_pages": 1,
                                    "runner.ocr_threads": threads}, environ={})
    dest = tmp_path / "out"
    with pytest.raises(Crash, match="injected"):
        run(str(clean_docs), str(dest), config, progress=False, exclude=("*.json",), stage_factory=dies_on_third_batch)
    written = {d["source_uri"] for d in _read(dest, "documents")}
    assert 1 <= len(written) < 4
    summary = run(str(clean_docs), str(dest), config, progress=False, exclude=("*.json",))
    assert summary.skipped == len(written)
    docs = _read(dest, "documents")
    assert len(docs) == 4 and len({d["source_uri"] for d in docs}) == 4
    pages = _read(dest, "pages")
    assert len({(p["doc_id"], p["page_index"]) for p in pages}) == len(pages) == sum(d["page_count"] for d in docs)
