"""`folio eval` and `folio bench` end to end on a few synthetic documents."""

import json
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from measure.evaluate import detect_format
from measure.systems import _parse_tsv_lines
from pipeline.cli import main


@pytest.fixture(scope="module")
def synth_set(scans):
    return scans(("invoice", 2, 11, ("png", "jpeg"), False), truth=True)


def test_eval_scores_folio_on_synthetic_pages(synth_set, tmp_path):
    out = tmp_path / "eval.json"
    result = CliRunner().invoke(main, ["eval", "synth", str(synth_set), "--json", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("folio on synth (2 pages): word P")
    summary = json.loads(out.read_text())
    for key in ("pages", "word_precision", "word_recall", "word_f1", "cer", "det_hmean", "seconds_per_page"):
        assert key in summary
    assert summary["pages"] == 2 and len(summary["per_page"]) == 2
    assert summary["word_f1"] > 0.95 and summary["cer"] < 0.03 and summary["det_hmean"] > 0.9


def test_eval_limit_and_bad_format(synth_set):
    result = CliRunner().invoke(main, ["eval", "synth", str(synth_set), "--limit", "1", "--quiet"])
    assert result.exit_code == 0 and "(1 pages)" in result.output
    assert CliRunner().invoke(main, ["eval", "nope", str(synth_set)]).exit_code == 2


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract not installed")
def test_bench_compares_folio_with_peers(synth_set, tmp_path):
    md = tmp_path / "bench.md"
    js = tmp_path / "bench.json"
    args = ["bench", str(synth_set), "--repeat", "2", "--limit", "1", "--json", str(js), "--markdown", str(md)]
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(js.read_text())
    systems = {r["system"]: r for r in report["results"]}
    assert set(systems) == {"folio", "rapidocr", "tesseract"}
    for r in systems.values():
        assert r["pages"] == 1 and r["pages_per_s"] > 0 and r["peak_rss_mb"] > 50 and 0 <= r["word_f1"] <= 1
        assert r["runs"] == 2 and len(r["seconds"]) == 2
    # the repeats are interleaved: every system's first run comes before any system's second
    folio, rapid, tess = (systems[name]["started"] for name in ("folio", "rapidocr", "tesseract"))
    assert folio[0] < rapid[0] < tess[0] < folio[1] < rapid[1] < tess[1]
    assert systems["folio"]["word_f1"] > 0.9
    assert "folio/rapidocr pages_per_s" in report["ratios"]
    assert "| folio |" in md.read_text() and "Machine:" in md.read_text()
    # where Folio's time went: every part that ran took time, and the engines most of it
    split = systems["folio"]["time_ms_per_page"]
    assert all(split[part] > 0 for part in ("decode", "detection", "recognition", "post_processing", "write"))
    assert split["detection"] + split["recognition"] > split["post_processing"]
    assert 0.2 < systems["folio"]["cpu_cores_used"] <= 4
    assert "| folio | " in md.read_text().split("Where the time goes")[1]


def test_merge_runs_takes_the_median_timing_and_the_highest_peaks():
    from measure.bench.core import merge_runs

    def run(seconds, rss, cpu, ocr_peak, started):
        return {"system": "folio-ray", "pages": 10, "seconds": [seconds], "pages_per_s": 10 / seconds,
                "peak_rss_mb": rss, "word_f1": 0.5, "cpu_seconds_by_role": {"ocr": cpu, "driver": 1.0},
                "ray_memory_by_role_mb": {"ocr": {"peak": ocr_peak, "first": 1.0}}, "started": started}

    merged = merge_runs([run(30.0, 100, 50.0, 900, 3.0), run(10.0, 300, 20.0, 700, 1.0), run(20.0, 200, 30.0, 800, 2.0)])
    assert sorted(merged["seconds"]) == [10.0, 20.0, 30.0] and merged["runs"] == 3
    assert merged["pages_per_s"] == 10 / 20.0  # the median timing
    assert merged["peak_rss_mb"] == 300  # the highest peak any run reached
    assert merged["cpu_seconds_by_role"] == {"driver": 1.0, "ocr": 30.0}
    assert merged["ray_memory_by_role_mb"]["ocr"]["peak"] == 900
    assert merged["started"] == [1.0, 2.0, 3.0] and merged["word_f1"] == 0.5


def test_a_bench_rerun_replaces_its_section(tmp_path):
    """The heading is the command without where its report went, so a rerun with another --json
    path replaces its table; what the file says before its first table stays."""
    from measure.bench.report import update_markdown
    from measure.cli import _bench_args

    args = ["../eval/funsd", "--limit", "30", "--json", "/tmp/a.json", "--markdown=x.md", "--repeat", "3"]
    assert _bench_args(args) == ["../eval/funsd", "--limit", "30", "--repeat", "3"]
    md = tmp_path / "b.md"
    md.write_text("# Benchmarks\n\nMachine notes.\n")
    update_markdown(md, "folio bench a", "| old |")
    update_markdown(md, "folio bench b", "| b |")
    update_markdown(md, "folio bench a", "| new |")
    text = md.read_text()
    assert text.startswith("# Benchmarks\n\nMachine notes.\n")
    assert "| new |" in text and "| old |" not in text and "| b |" in text
    assert text.count("## `folio bench a`") == 1


def test_detect_format(synth_set, tmp_path):
    assert detect_format(synth_set) == "synth"
    (tmp_path / "annotations").mkdir()
    (tmp_path / "images").mkdir()
    assert detect_format(tmp_path) == "funsd"


def test_tesseract_tsv_lines():
    tsv = (
        "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n"
        "5\t1\t1\t1\t1\t1\t10\t20\t30\t10\t90\tHello\n"
        "5\t1\t1\t1\t1\t2\t45\t21\t40\t11\t70\tworld\n"
        "5\t1\t2\t1\t1\t1\t10\t60\t30\t10\t50\tNext\n"
    )
    pred = _parse_tsv_lines(tsv)
    assert [l[1] for l in pred.lines] == ["Hello world", "Next"]
    assert pred.lines[0][0] == [[10, 20], [85, 20], [85, 32], [10, 32]]
    assert pred.lines[0][2] == pytest.approx(0.8)
    assert pred.words == [([[10, 20], [40, 20], [40, 30], [10, 30]], "Hello"), ([[45, 21], [85, 21], [85, 32], [45, 32]], "world"),
                          ([[10, 60], [40, 60], [40, 70], [10, 70]], "Next")]


def test_benchmark_markdown_keeps_other_commands_tables(tmp_path):
    from measure.bench.report import update_markdown

    md = tmp_path / "benchmarks.md"
    update_markdown(md, "folio bench a", "| table a |")
    update_markdown(md, "folio bench b", "| table b |")
    update_markdown(md, "folio bench a", "| table a2 |")
    text = md.read_text()
    assert text.startswith("# Benchmarks")
    assert "| table a2 |" in text and "| table b |" in text and "| table a |" not in text
    assert text.index("folio bench a") < text.index("folio bench b")


def test_the_null_stage_runs_the_pipeline_without_reading(synth_set, tmp_path):
    """`plugins.stage=measure.systems:null_stage` measures a runner alone: every page gets the same
    40 lines, in the pipeline's own row shape, and nothing is recognised."""
    import pyarrow.dataset as ds

    from pipeline.config import load_config
    from pipeline.run import run

    config = load_config(overrides={"plugins.stage": "measure.systems:null_stage"}, environ={})
    summary = run(str(synth_set), str(tmp_path / "out"), config, progress=False, exclude=("*.json",))
    assert summary.documents == 2 and summary.ok == 2
    pages = ds.dataset(tmp_path / "out" / "pages", partitioning="hive").to_table().to_pylist()
    assert len(pages) == 2
    for page in pages:
        assert page["status"] == "ok" and page["line_count"] == 40
        assert [line["line_index"] for line in page["lines"]] == list(range(40))
        assert all(0 <= y <= page["height"] for line in page["lines"] for _, y in line["polygon"])
        assert page["text"].splitlines()[0] == "line 0 of a page the null stage did not read"


def test_eval_scores_the_reading_order_of_the_ground_truths_own_lines():
    """--system gt-lines: no OCR, Folio's layout on the ground truth's lines; the PAGE fixture's two
    columns come out in its reading order (the right column's region comes first in the file)."""
    fixture = Path(__file__).parent / "fixtures" / "eval" / "page"
    result = CliRunner().invoke(main, ["eval", "page", str(fixture), "--system", "gt-lines", "--quiet"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "F1 1.000" in result.output and "reading-order CER 0.000" in result.output
    rows = CliRunner().invoke(main, ["eval", "page", str(fixture), "--system", "gt-lines", "--quiet", "--set",
                                     "layout.reading_order=rows"], catch_exceptions=False)
    assert "reading-order CER 0.000" not in rows.output  # row by row interleaves the two columns


def test_bench_export_times_each_writer_and_alto_from_parquet(tmp_path):
    out = tmp_path / "export.json"
    result = CliRunner().invoke(main, ["bench-export", "--pages", "3", "--repeat", "1", "--json", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["pages"] == 3
    for fmt in ("alto", "alto_from_parquet", "page", "hocr", "pdf"):
        assert report[fmt]["pages_per_s"] > 0 and f"{fmt}:" in result.output


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract not installed")
def test_tesseract_own_alto_and_pdf_read_back_as_its_tsv():
    import cv2
    import numpy as np

    from measure.systems import make_system
    from pipeline.config import FolioConfig

    image = np.full((200, 900, 3), 255, np.uint8)
    cv2.putText(image, "Hello archive world", (20, 80), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (0, 0, 0), 3)
    cv2.putText(image, "second line here", (20, 160), cv2.FONT_HERSHEY_SIMPLEX, 1.6, (0, 0, 0), 3)
    texts = {}
    for name in ("tesseract", "tesseract-alto", "tesseract-pdf"):
        [pred] = make_system(name, FolioConfig()).predict([image])
        texts[name] = pred.text.split()
        assert len(pred.lines) == 2 and pred.words
        assert all(0 <= p[0] <= 900 and 0 <= p[1] <= 200 for poly, _ in pred.words for p in poly)
    assert texts["tesseract-alto"] == texts["tesseract"] == texts["tesseract-pdf"]
    assert "archive" in " ".join(texts["tesseract"]).lower()
