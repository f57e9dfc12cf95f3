"""The hostile-input corpus (measure/hostile.py): every case gets its expected outcome, in bounded
time and memory, through `folio run` and the Ray runner, with good documents in the same batch unaffected.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from measure import hostile
from pipeline.cli import EXIT_DOCUMENTS_FAILED, main
from pipeline.config import DecodeConfig, load_config
from pipeline.io.decode import open_document
from pipeline.errors import FolioError
from tests.conftest import SMALL_RAY, TWO_INVOICES, read_rows

#: The corpus's own limits plus settings that only make the test cheaper (outcomes do not depend on them):
#: low-resolution PDFs, small detection sizes, and a max_pixels that still lets a 200-inch page through.
OVERRIDES: dict[str, object] = {
    **hostile.CORPUS_OVERRIDES,
    "decode.pdf_dpi": 100,
    "decode.max_pixels": 20_000_000,
    "detection.max_side_len": 960,
    "detection.min_side_len": 64,
}
DECODE = DecodeConfig(pdf_dpi=100, max_pixels=20_000_000, max_pages=100)

#: What the issue asks the corpus to cover, by case name.
REQUIRED = {
    "zero-bytes", "truncated-pdf", "truncated-png", "truncated-jpeg", "truncated-tiff", "pdf-broken-xref",
    "pdf-encrypted", "pdf-encrypted-empty-password", "pdf-claims-100000-pages", "one-pixel", "png-bomb-60000",
    "tiff-500-frames", "cmyk-jpeg", "png-16-bit", "png-palette", "png-alpha", "jpeg-exif-rotated", "gif", "webp",
    "html-as-pdf", "zip-as-pdf", "elf-as-pdf", "weird-filename", "key-over-1000-chars", "pdf-200-inches-wide",
    "pdf-empty-page", "noise-page",
}


_rows = read_rows


@pytest.fixture(scope="module")
def corpus(scans, tmp_path_factory) -> tuple[Path, dict[str, hostile.HostileCase], list[Path]]:
    """The hostile corpus and two good synthetic documents, in one source folder."""
    src = tmp_path_factory.mktemp("hostile_src")
    written = hostile.generate(src / "hostile")
    shutil.copytree(scans(TWO_INVOICES, dpi=100), src / "good")
    good = sorted((src / "good").iterdir())
    by_path = {str(p.resolve()): case for p, case in written}
    return src, by_path, [p.resolve() for p in good]


def _check_outcomes(dest: Path, corpus) -> dict[str, dict]:
    """Every input has exactly one documents row with its expected outcome; good documents are ok with text."""
    _, cases, good = corpus
    docs = _rows(dest, "documents")
    by_uri: dict[str, list[dict]] = {}
    for d in docs:
        by_uri.setdefault(d["source_uri"], []).append(d)
    assert set(by_uri) == set(cases) | {str(p) for p in good}
    assert all(len(rows) == 1 for rows in by_uri.values())
    wrong = {
        case.name: (by_uri[uri][0]["status"], by_uri[uri][0]["error_code"], by_uri[uri][0]["error_message"])
        for uri, case in cases.items()
        if (by_uri[uri][0]["status"], by_uri[uri][0]["error_code"]) != (case.status, case.error_code)
    }
    assert not wrong, wrong
    pages = _rows(dest, "pages")
    for p in good:
        [row] = by_uri[str(p)]
        assert row["status"] == "ok"
        texts = [pg["text"] for pg in pages if pg["doc_id"] == row["doc_id"]]
        assert texts and all(len(t) > 50 for t in texts)
    for uri, case in cases.items():
        row = by_uri[uri][0]
        if case.status == "error":
            assert len(row["error_message"]) > 15, case.name
        if case.status == "partial":  # the failed pages say why; the others are ok
            statuses = {pg["status"] for pg in pages if pg["doc_id"] == row["doc_id"]}
            assert statuses == {"ok", "error"}, case.name
        if case.text_source:  # a text layer that lies is OCR'd; one that hides some text is read without it
            sources = {pg["text_source"] for pg in pages if pg["doc_id"] == row["doc_id"]}
            assert sources == {case.text_source}, case.name
    # The 200-inch page was rendered below the configured DPI to fit max_pixels, not refused.
    banner = next(by_uri[u][0] for u, c in cases.items() if c.name == "pdf-200-inches-wide")
    [page] = [pg for pg in pages if pg["doc_id"] == banner["doc_id"]]
    assert page["dpi"] < 100 and page["width"] * page["height"] <= 20_000_000 and page["width"] > 15 * page["height"]
    # Output object names come from run ids and doc ids, never from source names.
    for f in dest.rglob("*"):
        rel = str(f.relative_to(dest))
        assert not re.search(r"passwd|escape|long-prefix|résumé|文档|\.\.", rel), rel
    return {uri: rows[0] for uri, rows in by_uri.items()}


# --------------------------------------------------------------------------- the corpus itself


def test_corpus_covers_the_issue_and_writes_a_manifest(tmp_path):
    names = [c.name for c in hostile.CASES]
    assert len(names) >= 28 and len(set(names)) == len(names)
    assert REQUIRED <= set(names), REQUIRED - set(names)
    codes = {c.expected for c in hostile.CASES}
    assert {"ok", "partial", "empty_file", "corrupt_pdf", "corrupt_image", "encrypted_pdf", "unsupported_format",
            "image_too_large", "too_many_pages"} <= codes
    assert len(hostile.LONG_KEY) >= 1000 and all(len(p.encode()) <= 255 for p in hostile.LONG_KEY.split("/"))
    result = CliRunner().invoke(main, ["synth", "--hostile", str(tmp_path / "c")], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "--set decode.max_pages=100" in result.output
    manifest = json.loads((tmp_path / "c" / hostile.MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["config_overrides"] == hostile.CORPUS_OVERRIDES
    assert [e["name"] for e in manifest["cases"]] == names
    for entry in manifest["cases"]:
        assert (tmp_path / "c" / entry["path"]).stat().st_size == entry["bytes"]
    assert not list(tmp_path.glob("*escape*")) and not list(tmp_path.glob("etc"))  # nothing left the corpus folder


def test_generate_refuses_paths_that_leave_the_folder(tmp_path):
    for bad in ("../x.png", "a/../../x.png", "/etc/x.png"):
        case = hostile.HostileCase("bad", bad, hostile.zero_bytes, "empty_file", "")
        with pytest.raises(ValueError, match="leave"):
            hostile.generate(tmp_path / "c", [case])
    assert not (tmp_path / "x.png").exists()


# --------------------------------------------------------------------------- bounds, case by case


def _peak_rss_reset() -> bool:
    try:
        Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current RSS (Linux >= 4.0)
    except OSError:
        return False
    return True


def _rss_kib(field: str) -> int:
    return int(re.search(rf"{field}:\s+(\d+)", Path("/proc/self/status").read_text()).group(1))


def _decode_outcome(data: bytes, config: DecodeConfig) -> tuple[str, str | None]:
    """Open and decode every page; the outcome as (status, error_code) of a documents row."""
    try:
        with open_document(data, config) as doc:
            errors = [err.code for _, _, _, err in doc.pages() if err is not None]
            total = doc.page_count
    except FolioError as e:
        return "error", e.code
    if not errors:
        return "ok", None
    return ("error" if len(errors) == total else "partial"), errors[0]


@pytest.mark.skipif(not _peak_rss_reset(), reason="needs /proc/self/clear_refs (Linux) to measure peak memory")
def test_every_case_decodes_in_bounded_time_and_memory(capsys, reliability):
    """Each case decodes to its outcome within seconds, and memory stays within what max_pixels allows.

    Peak memory is the growth of the process's resident high-water mark (reset before each case).
    Refusals, the decompression bombs first, must not allocate: under 16 MiB each, with the default
    max_pixels too. Decoded pages may hold at most a few copies of a max_pixels RGB page.
    """
    page_budget_mib = 3 * DECODE.max_pixels * 3 / 2**20 + 64
    table = []
    for case in hostile.CASES:
        data = case.build()
        for config in (DECODE, DecodeConfig(max_pages=100)) if case.status == "error" else (DECODE,):
            _peak_rss_reset()
            before = _rss_kib("VmRSS")
            start = time.perf_counter()
            outcome = _decode_outcome(data, config)
            seconds = time.perf_counter() - start
            peak_mib = (_rss_kib("VmHWM") - before) / 1024
            assert outcome == (case.status, case.error_code), case.name
            assert seconds < 15, (case.name, seconds)  # seconds on a loaded 2-core machine; most take milliseconds
            if case.status == "error":
                assert peak_mib < 16, (case.name, peak_mib)
            else:
                assert peak_mib < page_budget_mib, (case.name, peak_mib)
            if config is DECODE:
                table.append((case.name, case.expected, seconds, peak_mib))
                happened = "decoded" if outcome[0] == "ok" else f"{outcome[0]} `{outcome[1]}`"
                name = case.filename if len(case.filename) <= 48 else f"{case.filename[:20]}...{case.filename[-20:]}"
                reliability("hostile input", f"{case.name} (`{name}`, {len(case.filename)} chars)"
                            if len(case.filename) > 48 else f"{case.name} (`{name}`)",
                            f"{happened}; decode alone, peak RSS growth", seconds, max(peak_mib, 0.0))
    with capsys.disabled():
        print("\ncase, expected, decode seconds, peak RSS growth MiB")
        for name, expected, seconds, peak in table:
            print(f"{name:32s} {expected:20s} {seconds:7.3f} {peak:8.1f}")


# --------------------------------------------------------------------------- whole batches


@pytest.fixture(scope="module")
def local_run(corpus, tmp_path_factory) -> tuple[Path, int, str]:
    src = corpus[0]
    dest = tmp_path_factory.mktemp("hostile_local")
    sets = [arg for k, v in OVERRIDES.items() for arg in ("--set", f"{k}={v}")]
    args = ["run", str(src), str(dest), "--exclude", "*.json", *sets]
    start = time.perf_counter()
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    _BATCH_SECONDS["local"] = time.perf_counter() - start
    return dest, result.exit_code, result.output


_BATCH_SECONDS: dict[str, float] = {}


def test_folio_run_gives_every_case_its_outcome_and_finishes_the_batch(corpus, local_run, reliability):
    dest, code, output = local_run
    assert code == EXIT_DOCUMENTS_FAILED, output
    _check_outcomes(dest, corpus)
    manifest = json.loads(next((dest / "_runs").glob("*.json")).read_text())
    assert manifest["complete"] and len(manifest["inputs"]) == len(corpus[1]) + len(corpus[2])
    for code in {c.error_code for c in corpus[1].values() if c.error_code}:
        count = sum(1 for c in corpus[1].values() if c.error_code == code)
        assert f"  {code}: {count}\n" in output, (code, count)
    reliability("hostile batch", f"all {len(corpus[1])} cases and {len(corpus[2])} good documents in one `folio run`",
                "every input one documents row with its expected outcome; the good documents ok; exit 1",
                seconds=_BATCH_SECONDS["local"])


def test_ray_runner_gives_the_same_outcomes(corpus, local_run, local_ray, tmp_path, reliability):
    from pipeline.run import run

    config = load_config(overrides={**OVERRIDES, **SMALL_RAY}, environ={})
    summary = run(str(corpus[0]), str(tmp_path), config, runner="ray", progress=False, exclude=("*.json",))
    assert summary.documents == len(corpus[1]) + len(corpus[2])
    ray_rows = _check_outcomes(tmp_path, corpus)
    local_rows = {d["source_uri"]: d for d in _rows(local_run[0], "documents")}

    def key(d):
        return d["doc_id"], d["status"], d["error_code"], d["page_count"], d["pages_ok"]

    assert {u: key(d) for u, d in ray_rows.items()} == {u: key(d) for u, d in local_rows.items()}
    reliability("hostile batch", "the same corpus through the Ray runner",
                "the same documents rows as the local runner (ids, status, codes, pages)")
