"""Tests for the multi-column kinds of ``measure.synth``: ``newspaper`` and ``journal``.

The ground truth's line order is the reading order (column 1 top to bottom,
then column 2, ...), while lines of neighbouring columns share baselines, so a
row-by-row reading would interleave them. The tests recover the columns from
the ground truth alone (where the line polygons pile up horizontally) and check
both properties. Fast: clean renders at 100 dpi, one page per document.
"""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import PIL
import pytest
from PIL import features

from measure import synth
from measure.synth import FORMATS, KINDS, generate

DPI = 100


def _gt(path: Path) -> dict:
    return json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))


def _pages(tmp_path: Path, kind: str, seed: int, pages: int) -> list[dict]:
    paths = generate(tmp_path / f"{kind}{seed}", pages, kind, seed=seed, formats=("png",), damage=False, dpi=DPI)
    return [pg for p in paths for pg in _gt(p)["pages"]]


def _boxes(page: dict) -> list[tuple[float, float, float, float]]:
    """Each line's polygon as (left, top, right, bottom); clean pages are axis-aligned."""
    out = []
    for ln in page["lines"]:
        xs = [p[0] for p in ln["polygon"]]
        ys = [p[1] for p in ln["polygon"]]
        out.append((min(xs), min(ys), max(xs), max(ys)))
    return out


def _column_runs(boxes: list, width: int) -> list[tuple[int, int]]:
    """Columns: x ranges covered by many (not page-wide) lines; gutters are covered by a few headings only."""
    left, right = min(b[0] for b in boxes), max(b[2] for b in boxes)
    cover = np.zeros(width + 2)
    for x0, _, x1, _ in boxes:
        if x1 - x0 < 0.6 * (right - left):
            cover[int(x0) : int(np.ceil(x1))] += 1
    on = cover >= 0.4 * cover.max()
    runs, start = [], None
    for x, v in enumerate(on):
        if v and start is None:
            start = x
        elif not v and start is not None:
            runs.append((start, x))
            start = None
    return [r for r in runs if r[1] - r[0] >= 0.08 * (right - left)]


class _Layout:
    """One page's lines sorted into columns, lines spanning columns, and the rest (header, footer)."""

    def __init__(self, page: dict):
        self.boxes = _boxes(page)
        self.runs = _column_runs(self.boxes, page["width"])
        tol = 3.0
        where: list[tuple[str, object]] = []
        for x0, _, x1, _ in self.boxes:
            hit = [j for j, (a, b) in enumerate(self.runs) if min(x1, b) - max(x0, a) > tol]
            inside = [j for j in hit if x0 >= self.runs[j][0] - tol and x1 <= self.runs[j][1] + tol]
            if len(hit) >= 2:
                where.append(("span", frozenset(hit)))
            elif inside:
                where.append(("col", inside[0]))
            else:
                where.append(("other", None))
        # A block is in a column when all its lines are; it spans when any line does.
        by_block: dict[int, list[int]] = {}
        for i, ln in enumerate(page["lines"]):
            by_block.setdefault(ln["block_index"], []).append(i)
        self.col: dict[int, int] = {}  # line index -> column
        self.span: dict[int, frozenset] = {}  # line index -> columns it crosses
        singles: list[tuple[int, int]] = []
        for idx in by_block.values():
            kinds = [where[i] for i in idx]
            if any(k == "span" for k, _ in kinds):
                cols = frozenset().union(*(c for k, c in kinds if k == "span"))
                self.span.update({i: cols for i in idx})
            elif all(k == "col" for k, _ in kinds) and len({c for _, c in kinds}) == 1:
                if len(idx) >= 2:
                    self.col.update({i: kinds[0][1] for i in idx})
                else:
                    singles.append((idx[0], kinds[0][1]))
        # One-line blocks (bylines, headings, jump lines, a paragraph's last line at a column top) count when
        # they lie within the columns' vertical band, a grid row above or below the other blocks at most
        # (the first row may hold one-line blocks only); a running header or page number lies further out.
        yc = [(b[1] + b[3]) / 2 for b in self.boxes]
        steps = []
        for j in range(len(self.runs)):
            ys = sorted(yc[i] for i, c in self.col.items() if c == j)
            steps += [b - a for a, b in itertools.pairwise(ys)]
        row = float(np.median(steps))  # the grid's line height
        top = min(yc[i] for i in self.col) - 1.2 * row
        bottom = max(yc[i] for i in self.col) + 1.2 * row
        self.col.update({i: j for i, j in singles if top <= yc[i] <= bottom})
        self.yc = yc

    def lines_of(self, j: int) -> list[int]:
        return sorted(i for i, c in self.col.items() if c == j)

    def second_story(self) -> bool:
        """A spanning headline inside the column area (below the first column line)."""
        first = min(self.yc[i] for i in self.col)
        return any(self.yc[i] > first for i in self.span)


def _check_columns(page: dict, lay: _Layout, ncols: tuple[int, ...]) -> None:
    runs = lay.runs
    assert len(runs) in ncols, (runs, page["text"][:200])
    for (_, b), (a, _) in itertools.pairwise(runs):
        assert a - b >= 2, runs  # the columns' polygons do not overlap horizontally
    for j in range(len(runs)):
        assert len(lay.lines_of(j)) >= 5, (j, runs)
    for i, j in lay.col.items():  # every column line lies inside its column
        x0, _, x1, _ = lay.boxes[i]
        assert runs[j][0] - 3 <= x0 and x1 <= runs[j][1] + 3


def _check_shared_baselines(lay: _Layout) -> None:
    """Neighbouring columns are set on one baseline grid: most lines have a partner at the same height.

    Same height: tops within 2 px (both lines have ascenders) or bottoms within 2 px (both have
    descenders, or neither); lines on the next grid row are a whole line height away.
    """
    for j in range(len(lay.runs) - 1):
        left, right = lay.lines_of(j), lay.lines_of(j + 1)
        same = 0
        for b in right:
            _, t1, _, b1 = lay.boxes[b]
            if any(abs(lay.boxes[a][1] - t1) <= 2 or abs(lay.boxes[a][3] - b1) <= 2 for a in left):
                same += 1
        assert same >= 3 and same >= 0.5 * len(right), (j, same, len(right))


def _check_reading_order(lay: _Layout) -> None:
    """The JSON order reads each column top to bottom and column j before column j+1 (story by story)."""
    cols = {j: lay.lines_of(j) for j in range(len(lay.runs))}
    for idx in cols.values():  # top to bottom inside a column
        ys = [lay.yc[i] for i in idx]
        assert ys == sorted(ys), ys
    spans = list(lay.span.items())

    def separated(a: int, b: int, ja: int, jb: int) -> bool:
        """A headline across both columns lies between the two lines: they belong to different stories."""
        lo, hi = sorted((lay.yc[a], lay.yc[b]))
        return any(ja in cs and jb in cs and lo < lay.yc[s] < hi for s, cs in spans)

    for ja, lines_a in cols.items():
        for jb, lines_b in cols.items():
            if ja < jb:
                for a in lines_a:
                    for b in lines_b:
                        if not separated(a, b, ja, jb):
                            assert a < b, (ja, jb, a, b)
    # A spanning line (headline, title) comes after the column lines above it and before those below.
    for s, cs in spans:
        for j in cs:
            for a in cols.get(j, []):
                assert (a < s) == (lay.yc[a] < lay.yc[s]), (s, a)


def test_new_kinds_are_listed() -> None:
    assert KINDS[:3] == ("invoice", "form", "book")
    assert "newspaper" in KINDS and "journal" in KINDS


def test_newspaper_columns_baselines_and_order(tmp_path: Path) -> None:
    plain = second = four = 0
    for seed in (0, 1, 2, 3, 5):
        for page in _pages(tmp_path, "newspaper", seed, 1):
            lay = _Layout(page)
            _check_columns(page, lay, (3, 4))
            _check_shared_baselines(lay)
            _check_reading_order(lay)
            four += len(lay.runs) == 4
            if lay.second_story():
                second += 1
            else:
                plain += 1
                # No second story: every line of column j comes before the first of column j+1.
                for j in range(len(lay.runs) - 1):
                    assert max(lay.lines_of(j)) < min(lay.lines_of(j + 1)), j
    assert plain and second and four, (plain, second, four)  # the seeds cover each layout


def test_journal_columns_baselines_and_order(tmp_path: Path) -> None:
    for seed in (0, 1, 2):
        for pi, page in enumerate(_pages(tmp_path, "journal", seed, 1)):
            lay = _Layout(page)
            _check_columns(page, lay, (2,))
            _check_shared_baselines(lay)
            _check_reading_order(lay)
            assert max(lay.lines_of(0)) < min(lay.lines_of(1))
            # The title block spans both columns above them (and comes first: _check_reading_order).
            first = min(lay.yc[i] for i in lay.col)
            assert sum(lay.yc[s] < first for s in lay.span) >= 2


def test_journal_pages_after_the_first(tmp_path: Path) -> None:
    # A pdf document of 2-3 pages: the article continues (no title block), still two ordered columns.
    paths = generate(tmp_path, 3, "journal", seed=4, formats=("pdf",), damage=False, dpi=DPI)
    pages = [pg for p in paths for pg in _gt(p)["pages"]]
    assert len(pages) == 3
    for page in pages[1:]:
        lay = _Layout(page)
        _check_columns(page, lay, (2,))
        _check_shared_baselines(lay)
        _check_reading_order(lay)
        assert max(lay.lines_of(0)) < min(lay.lines_of(1))


@pytest.mark.parametrize("kind", ["newspaper", "journal"])
def test_deterministic_all_formats_with_damage(tmp_path: Path, kind: str) -> None:
    a = generate(tmp_path / "a", 5, kind, seed=3, formats=FORMATS, dpi=60)
    b = generate(tmp_path / "b", 5, kind, seed=3, formats=FORMATS, dpi=60)
    assert [p.name for p in a] == [p.name for p in b]
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
        assert pa.with_suffix(".json").read_bytes() == pb.with_suffix(".json").read_bytes()
        gt = _gt(pa)
        assert gt["kind"] == kind and gt["damaged"] is True
        assert all(pg["damage"] and len(pg["lines"]) >= 20 for pg in gt["pages"])
    assert sum(len(_gt(p)["pages"]) for p in a) == 5
    c = generate(tmp_path / "c", 1, kind, seed=4, formats=("png",), dpi=60)
    assert c[0].read_bytes() != a[0].read_bytes()


@pytest.mark.parametrize("kind", ["newspaper", "journal"])
def test_distortions_apply(tmp_path: Path, kind: str) -> None:
    paths = generate(tmp_path, 1, kind, seed=6, formats=("png",), dpi=50, distort="all")
    assert len(paths) == len(synth.DISTORTIONS)
    for p in paths:
        (page,) = _gt(p)["pages"]
        assert page["distortion"]["kind"] == p.parent.name
        assert len(page["lines"]) >= 20


# ----------------------------------------------------------------- older kinds unchanged
#
# sha256 of the PNG and of its JSON for invoice, form and book (seed 3, 72 dpi, one page, with and
# without scan damage), computed with measure/synth.py before newspaper and journal were added (the
# invoice JSON's again when invoices gained their true fields: the PNGs did not change). They
# pin the generator's output for these fonts and libraries (font files, Pillow, FreeType, raqm, zlib,
# libjpeg, OpenCV, NumPy): elsewhere the fingerprint differs and the test skips instead of failing.
_PIN_FINGERPRINT = "6fc6fe6da83e0592"
_PINNED = {
    ("invoice", True): (
        "7d7c5c35c3aabf9ad22250758d11d9ee86cc2fc25f6060be275d07792ed6a320",
        "2b757a8fa861e73678d4833c9b98036601afb014002a50bb553db4a25df60301",
    ),
    ("invoice", False): (
        "cf11b3553949bb02d8efa7370723883d575318c88d9d159076f6caf410e4e6b0",
        "4513264ec787d313d38399e173e90c56e13cc841dd9fd09c652d2c740c8d97d6",
    ),
    ("form", True): (
        "6e9d3a34393bbba01e4ae1d660db349a8a61d82bec566d36c0f586bcc11c349a",
        "70353f710505fe5a3610b6d585b2e8bcf03faa553c702628e9b7f74535296b9c",
    ),
    ("form", False): (
        "a363fb4cc29d03e4ca854dd678f2ad3737ff1a314bf60628992aae1b25c5124f",
        "f8b1bbeadb28780999709633d4856bf1c44498550e5ebd8c3bd6460ba44a7d87",
    ),
    ("book", True): (
        "94828893fb4bd777e7ea0246f8b26436cc8afa2f2410195faba12d2f5a3b7d72",
        "29137066d2a93a0310ed3264c327f81f0eb1b46f5e27449317181a49e80a6278",
    ),
    ("book", False): (
        "c0b76cef8da50e9f5edbdaa231daa80dc44610213f7bee872694133bedc3afe6",
        "c6de7844ea6aa35f82fea61635a0d58a343ef203f6bcec59fc00e16674e80368",
    ),
}


def _fingerprint() -> str:
    h = hashlib.sha256()
    for fam in synth._families():
        for p in (fam.regular, fam.bold):
            h.update(Path(p).name.encode())
            h.update(hashlib.sha256(Path(p).read_bytes()).digest())
    versions = [
        PIL.__version__,
        cv2.__version__,
        np.__version__,
        features.version("freetype2"),
        features.version("zlib"),
        features.version("jpg"),
        features.version("raqm"),
    ]
    h.update(repr(versions).encode())
    return h.hexdigest()[:16]


@pytest.mark.parametrize(("kind", "damage"), sorted(_PINNED))
def test_older_kinds_output_unchanged(tmp_path: Path, kind: str, damage: bool) -> None:
    if _fingerprint() != _PIN_FINGERPRINT:
        pytest.skip("fonts or imaging libraries differ from those the hashes were pinned with")
    (p,) = generate(tmp_path, 1, kind, seed=3, formats=("png",), damage=damage, dpi=72)
    png, js = _PINNED[(kind, damage)]
    assert hashlib.sha256(p.read_bytes()).hexdigest() == png
    assert hashlib.sha256(p.with_suffix(".json").read_bytes()).hexdigest() == js
