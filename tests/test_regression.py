"""The rows Folio writes for a fixed set of inputs, against rows recorded earlier (tests/golden/rows.json).

The set: clean, damaged and warped synthetic documents, the small real scans
of tests/fixtures/eval, and the hostile corpus. For each input the test
compares the ``documents`` row's status, error code, type and page counts, and
for each page its status, error code, text, geometry, what dewarping did and
every line's text, block, index and polygon (to 0.05 px). A change to the
code that changes any of them fails here, with the differences listed. The
config fingerprints the two runs write are recorded too: a change to them
makes every archive reprocess everything, so it must be deliberate. A change
meant to change any of this records new rows with::

    FOLIO_RECORD_GOLDEN=1 .venv/bin/python -m pytest tests/test_regression.py

and says why in its commit.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from measure import hostile, synth
from pipeline.config import load_config
from pipeline.run import run

GOLDEN = Path(__file__).parent / "golden" / "rows.json"
FIXTURES = Path(__file__).parent / "fixtures" / "eval"
RECORD = os.environ.get("FOLIO_RECORD_GOLDEN") == "1"

#: The hostile corpus's own limits, and the test-only settings of tests/test_hostile.py.
HOSTILE = {**hostile.CORPUS_OVERRIDES, "decode.pdf_dpi": 100, "decode.max_pixels": 20_000_000,
           "detection.max_side_len": 960, "detection.min_side_len": 64}
#: Coordinates are compared to this many pixels.
TOLERANCE = 0.05


def _inputs(root: Path) -> tuple[Path, Path]:
    """The documents run with the defaults, and the hostile corpus."""
    plain = root / "plain"
    synth.generate(plain / "clean", 2, "invoice", seed=1, formats=("png", "pdf"), damage=False)
    synth.generate(plain / "clean", 1, "form", seed=2, formats=("tiff",), damage=False)
    synth.generate(plain / "clean", 1, "book", seed=3, formats=("jpeg",), damage=False)
    synth.generate(plain / "damaged", 1, "invoice", seed=4, formats=("pdf",), damage=True)
    synth.generate(plain / "damaged", 2, "form", seed=5, formats=("png", "jpeg"), damage=True)
    synth.generate(plain / "warped", 1, "book", seed=7, formats=("png",), damage=True, distort="all")
    for folder in ("funsd/images", "sroie/img", "alto/docA", "alto/docB", "lines/sub"):
        for f in sorted((FIXTURES / folder).iterdir()):
            if f.suffix.lower() in (".png", ".jpg", ".tif"):
                target = plain / "real" / folder / f.name
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy(f, target)
    hostile_src = root / "hostile"
    hostile.generate(hostile_src)
    return plain, hostile_src


def _round(polygon) -> list[list[float]] | None:
    return None if polygon is None else [[round(x, 2), round(y, 2)] for x, y in polygon]


#: A page with more lines is recorded by digests of its text and lines (the 200,000-character page of the
#: hostile corpus, read from the file: no model in the way, so its rows are exact).
_DIGEST_LINES = 200


def _digest(value) -> str:
    return "sha256:" + hashlib.sha256(json.dumps(value, ensure_ascii=False).encode()).hexdigest()


def _page(p: dict) -> dict:
    text = p["text"]
    lines = [[line["text"], line["block_index"], line["line_index"], _round(line["polygon"])] for line in p["lines"]]
    if len(lines) > _DIGEST_LINES:
        text, lines = _digest(text), _digest(lines)
    return {
        "page_index": p["page_index"], "status": p["status"], "error_code": p["error_code"],
        "width": p["width"], "height": p["height"], "rotation": p["rotation"],
        "skew_deg": round(p["skew_deg"], 3), "quad": _round(p["quad"]),
        "curl_corrected": p["curl_corrected"], "text": text, "line_count": p["line_count"],
        "text_source": p["text_source"], "lines": lines,
    }


def _rows(src: Path, dest: Path) -> dict[str, dict]:
    """Per input (its path under ``src``): the documents row and its pages, as the test compares them."""
    docs = ds.dataset(dest / "documents", partitioning="hive").to_table().to_pylist()
    pages: dict[str, list[dict]] = {}
    for p in ds.dataset(dest / "pages", partitioning="hive").to_table().to_pylist():
        pages.setdefault(p["doc_id"], []).append(p)
    out = {}
    for d in docs:
        rel = Path(d["source_uri"]).relative_to(src.resolve()).as_posix()
        out[rel] = {
            "status": d["status"], "error_code": d["error_code"], "mime": d["mime"],
            "page_count": d["page_count"], "pages_ok": d["pages_ok"],
            "pages": [_page(p) for p in sorted(pages.get(d["doc_id"], []), key=lambda p: p["page_index"])],
        }
    return out


def _differences(want, got, path: str = "") -> list[str]:
    """Where ``got`` differs from ``want``: numbers to :data:`TOLERANCE`, everything else exactly."""
    if isinstance(want, dict) and isinstance(got, dict):
        out = [f"{path}/{k}: missing" for k in want if k not in got]
        out += [f"{path}/{k}: unexpected" for k in got if k not in want]
        for k in want:
            if k in got:
                out += _differences(want[k], got[k], f"{path}/{k}")
        return out
    if isinstance(want, list) and isinstance(got, list):
        if len(want) != len(got):
            return [f"{path}: {len(got)} items, recorded {len(want)}: {got!r:.300} vs {want!r:.300}"]
        return [d for i, (w, g) in enumerate(zip(want, got)) for d in _differences(w, g, f"{path}[{i}]")]
    numbers = (int, float)
    if isinstance(want, numbers) and isinstance(got, numbers) and not isinstance(want, bool):
        return [] if abs(want - got) <= TOLERANCE else [f"{path}: {got} (recorded {want})"]
    return [] if want == got else [f"{path}: {got!r} (recorded {want!r})"]


@pytest.fixture(scope="module")
def written(tmp_path_factory) -> dict[str, dict]:
    root = tmp_path_factory.mktemp("regression")
    plain, hostile_src = _inputs(root)
    plain_run = run(str(plain), str(root / "out_plain"), load_config(environ={}), progress=False,
                    exclude=("*.json",))
    hostile_run = run(str(hostile_src), str(root / "out_hostile"), load_config(overrides=HOSTILE, environ={}),
                      progress=False, exclude=("*.json",))
    rows = {f"plain/{k}": v for k, v in _rows(plain, root / "out_plain").items()}
    rows |= {f"hostile/{k}": v for k, v in _rows(hostile_src, root / "out_hostile").items()}
    rows["_config_fingerprint"] = {"plain": plain_run.fingerprint, "hostile": hostile_run.fingerprint}
    return rows


def test_rows_are_the_recorded_ones(written):
    if RECORD:
        GOLDEN.parent.mkdir(exist_ok=True)
        GOLDEN.write_text(json.dumps(written, indent=1, ensure_ascii=False, sort_keys=True) + "\n", encoding="utf-8")
        pytest.skip(f"recorded {len(written)} inputs in {GOLDEN}")
    recorded = json.loads(GOLDEN.read_text(encoding="utf-8"))
    differences = _differences(recorded, written)
    assert not differences, f"{len(differences)} differences:\n" + "\n".join(differences[:40])
