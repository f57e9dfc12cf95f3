"""Tests for the synthetic document generator (``measure.synth``).

Fast and offline: small page counts, mostly at a low dpi.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pikepdf
import pypdfium2
import pypdfium2.raw as pdfium_c
import pytest
from PIL import Image, ImageSequence

from measure import synth
from measure.synth import _MARGIN, FORMATS, KINDS, generate

DOC_KEYS = {"doc", "kind", "file", "format", "seed", "damaged", "dpi", "pages"}
PAGE_KEYS = {"page_index", "width", "height", "text", "lines", "damage"}
LINE_KEYS = {"text", "polygon", "block_index"}
DAMAGE_KEYS = {"skew_deg", "noise_sigma", "blur_sigma", "jpeg_quality", "lighting", "bleed_through"}


def _gt(path: Path) -> dict:
    return json.loads(path.with_suffix(".json").read_text(encoding="utf-8"))


def _frames(path: Path) -> list[np.ndarray]:
    """Decode every page (frame) of a written raster image to grayscale pixels."""
    with Image.open(path) as im:
        return [np.asarray(f.convert("L")) for f in ImageSequence.Iterator(im)]


def test_bad_kind_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="invoice, form, book"):
        generate(tmp_path, 1, "letter")
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize(
    "kwargs",
    [{"pages": 0}, {"pages": 1, "formats": ("bmp",)}, {"pages": 1, "formats": ()}, {"pages": 1, "seed": -1}],
)
def test_bad_arguments_raise(tmp_path: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        generate(tmp_path, kind="form", **kwargs)


def test_deterministic_bytes(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", 5, "invoice", seed=3, formats=FORMATS, dpi=72)
    b = generate(tmp_path / "b", 5, "invoice", seed=3, formats=FORMATS, dpi=72)
    assert [p.name for p in a] == [p.name for p in b]
    for pa, pb in zip(a, b):
        assert pa.read_bytes() == pb.read_bytes(), pa.name
        assert pa.with_suffix(".json").read_bytes() == pb.with_suffix(".json").read_bytes()
    c = generate(tmp_path / "c", 1, "invoice", seed=4, formats=("png",), dpi=72)
    assert c[0].read_bytes() != a[0].read_bytes()


@pytest.mark.parametrize(
    ("formats", "pages"),
    [(("png",), 3), (("jpeg",), 2), (("tiff",), 7), (("pdf",), 5), (("pdf-text",), 3), (("png", "tiff", "pdf", "jpg"), 9)],
)
def test_page_totals_frames_and_names(tmp_path: Path, formats: tuple[str, ...], pages: int) -> None:
    dpi = 60
    paths = generate(tmp_path, pages, "book", seed=11, formats=formats, damage=False, dpi=dpi)
    total = 0
    for i, path in enumerate(paths):
        gt = _gt(path)
        fmt = synth._FORMAT_ALIASES.get(formats[i % len(formats)], formats[i % len(formats)])
        assert path.name == f"book_0011_{i:04d}.{synth._EXT[fmt]}"
        assert gt["format"] == fmt and gt["file"] == path.name
        n = len(gt["pages"])
        assert (n == 1) if fmt in ("png", "jpeg") else (1 <= n <= 3)
        if fmt == "tiff":
            with Image.open(path) as im:
                assert im.format == "TIFF"
                assert sum(1 for _ in ImageSequence.Iterator(im)) == n
                assert im.info.get("compression") in ("tiff_lzw", "tiff_adobe_deflate")
        elif fmt in ("pdf", "pdf-text"):
            pdf = pypdfium2.PdfDocument(str(path))
            try:
                assert len(pdf) == n
                w_pt, h_pt = pdf[0].get_size()
            finally:
                pdf.close()
            page = gt["pages"][0]
            assert w_pt == pytest.approx(page["width"] / dpi * 72, abs=0.5)
            assert h_pt == pytest.approx(page["height"] / dpi * 72, abs=0.5)
        total += n
    assert total == pages
    assert sorted(p.name for p in tmp_path.glob("*.json")) == sorted(p.with_suffix(".json").name for p in paths)


@pytest.mark.parametrize("kind", KINDS)
def test_json_schema_and_polygons_inside_page(tmp_path: Path, kind: str) -> None:
    paths = generate(tmp_path, 2, kind, seed=5, formats=("png", "jpeg"))
    for path in paths:
        gt = _gt(path)
        assert set(gt) == DOC_KEYS
        assert gt["doc"] == path.stem and gt["kind"] == kind and gt["seed"] == 5
        assert gt["damaged"] is True and gt["dpi"] == 150
        (img,) = _frames(path)
        for pi, page in enumerate(gt["pages"]):
            assert set(page) == PAGE_KEYS
            assert page["page_index"] == pi
            assert (page["width"], page["height"]) == (1240, 1754) == (img.shape[1], img.shape[0])
            assert set(page["damage"]) == DAMAGE_KEYS
            assert abs(page["damage"]["skew_deg"]) <= 1.5
            assert 40 <= page["damage"]["jpeg_quality"] <= 70
            assert len(page["lines"]) >= 10
            assert page["text"] == "\n".join(ln["text"] for ln in page["lines"] if ln["text"])  # empty: non-text marks
            for ln in page["lines"]:
                assert set(ln) == LINE_KEYS
                assert ln["text"] == ln["text"].strip() and "  " not in ln["text"] and ln["text"].isprintable()
                assert isinstance(ln["block_index"], int) and ln["block_index"] >= 0
                poly = np.asarray(ln["polygon"], dtype=float)
                assert poly.shape == (4, 2)
                assert (poly[:, 0] >= 0).all() and (poly[:, 0] <= page["width"]).all()
                assert (poly[:, 1] >= 0).all() and (poly[:, 1] <= page["height"]).all()
                # Clockwise from top-left.
                tl, tr, br, bl = poly
                assert tr[0] > tl[0] and br[1] > tr[1] and bl[0] < br[0] and bl[1] > tl[1]


def test_clean_pages_are_axis_aligned(tmp_path: Path) -> None:
    (path,) = generate(tmp_path, 1, "form", seed=2, formats=("png",), damage=False, dpi=100)
    gt = _gt(path)
    assert gt["damaged"] is False
    page = gt["pages"][0]
    assert page["damage"] == {}
    for ln in page["lines"]:
        (l0, t0), (r0, t1), (r1, b0), (l1, b1) = ln["polygon"]
        assert l0 == l1 and r0 == r1 and t0 == t1 and b0 == b1


@pytest.mark.parametrize("kind", KINDS)
def test_lines_on_one_row_do_not_touch(tmp_path: Path, kind: str) -> None:
    """Separate entries on one baseline are far apart, else a detector would merge them."""
    paths = generate(tmp_path, 2, kind, seed=8, formats=("png",), damage=False, dpi=100)
    for path in paths:
        page = _gt(path)["pages"][0]
        boxes = []
        for ln in page["lines"]:  # undo the annotation margin to compare ink boxes
            x0, y0, x1, y1 = ln["polygon"][0][0], ln["polygon"][0][1], ln["polygon"][2][0], ln["polygon"][2][1]
            h = (y1 - y0) / (1 + 2 * _MARGIN[1])
            boxes.append((x0 + _MARGIN[0] * h, y0 + _MARGIN[1] * h, x1 - _MARGIN[0] * h, y1 - _MARGIN[1] * h))
        for i, a in enumerate(boxes):
            for b in boxes[i + 1 :]:
                overlap_y = min(a[3], b[3]) - max(a[1], b[1])
                if overlap_y > 0.5 * min(a[3] - a[1], b[3] - b[1]):
                    gap = max(a[0], b[0]) - min(a[2], b[2])
                    assert gap > 10, (path.name, a, b)  # >= ~2 characters at 100 dpi


def _poly_mask(shape: tuple[int, int], polys: list, grow: int) -> np.ndarray:
    mask = np.zeros(shape, np.uint8)
    cv2.fillPoly(mask, [np.round(np.asarray(p)).astype(np.int32) for p in polys], 255)
    if grow:
        mask = cv2.dilate(mask, np.ones((2 * grow + 1, 2 * grow + 1), np.uint8))
    return mask > 0


def _unskew(polys: list, skew_deg: float, w: int, h: int) -> list:
    m = cv2.getRotationMatrix2D((w / 2.0, h / 2.0), -skew_deg, 1.0)
    return [np.asarray(p) @ m[:, :2].T + m[:, 2] for p in polys]


def test_skew_moves_polygons_with_the_ink(tmp_path: Path) -> None:
    # A book page (text only, no rules) that got a clearly visible skew.
    for seed in range(20):
        (path,) = generate(tmp_path / str(seed), 1, "book", seed=seed, formats=("png",), damage=True, dpi=100)
        page = _gt(path)["pages"][0]
        if abs(page["damage"]["skew_deg"]) >= 0.9:
            break
    else:
        pytest.fail("no seed gave a skew >= 0.9 degrees")
    (img,) = _frames(path)
    ink = img < 110  # far darker than paper, lighting, noise or bleed-through
    polys = [ln["polygon"] for ln in page["lines"]]
    covered = _poly_mask(img.shape, polys, grow=1)
    assert ink.sum() > 2000
    assert (ink & covered).sum() / ink.sum() > 0.995
    for p in polys:  # every line has ink inside it
        assert (ink & _poly_mask(img.shape, [p], grow=0)).sum() > 3
    # The same polygons without the skew miss a visible part of the ink.
    unskewed = _poly_mask(img.shape, _unskew(polys, page["damage"]["skew_deg"], img.shape[1], img.shape[0]), grow=0)
    assert (ink & unskewed).sum() / ink.sum() < 0.97


def test_missing_fonts_raise_runtime_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(synth, "_font_dirs", lambda: [])
    synth._families.cache_clear()
    try:
        with pytest.raises(RuntimeError, match="fonts-dejavu-core"):
            generate(tmp_path, 1, "book")
        assert not list(tmp_path.iterdir())
    finally:
        monkeypatch.undo()
        synth._families.cache_clear()
    assert synth.available_fonts()  # the real fonts come back


def test_fonts_found() -> None:
    names = synth.available_fonts()
    assert names and len(set(names)) == len(names)


def test_unknown_distortion_raises(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="perspective"):
        generate(tmp_path, 1, "book", distort="fold")


@pytest.mark.parametrize("distortion", synth.DISTORTIONS)
def test_distorted_pages_keep_flat_text_and_polygons_follow_the_ink(tmp_path: Path, distortion: str) -> None:
    (flat,) = generate(tmp_path / "flat", 1, "book", seed=4, formats=("png",), damage=False, dpi=72)
    (path,) = generate(tmp_path / "warped", 1, "book", seed=4, formats=("png",), damage=False, dpi=72,
                       distort=distortion)
    gt, flat_gt = _gt(path), _gt(flat)
    assert gt["distort"] == distortion
    page = gt["pages"][0]
    assert page["distortion"]["kind"] == distortion
    assert page["text"] == flat_gt["pages"][0]["text"]
    (img,) = _frames(path)
    assert (page["width"], page["height"]) == (img.shape[1], img.shape[0])
    if distortion == "rotate":
        assert page["distortion"]["rotation"] in (90, 180, 270)
    elif distortion == "skew":
        assert 2 <= abs(page["distortion"]["skew_deg"]) <= 15
    elif distortion == "perspective":
        assert np.asarray(page["distortion"]["quad"]).shape == (4, 2)
    polys = [ln["polygon"] for ln in page["lines"] if ln["text"]]
    for p in polys:
        p = np.asarray(p)
        assert len(p) >= 4 and (p[:, 0] <= page["width"]).all() and (p[:, 1] <= page["height"]).all()
    ink = img < 110
    if distortion == "perspective":  # the table is dark too: only count ink on the page
        quad = np.round(np.asarray(page["distortion"]["quad"])).astype(np.int32)
        on_page = np.zeros(img.shape, np.uint8)
        cv2.fillPoly(on_page, [quad], 1)
        on_page = cv2.erode(on_page, np.ones((9, 9), np.uint8)) > 0
        # a blurred photo of small print: ink is what is clearly darker than the paper around it
        ink = on_page & (img < np.median(img[on_page]) - 60)
    covered = _poly_mask(img.shape, [np.asarray(p) for p in polys], grow=2)
    assert ink.sum() > 1000
    assert (ink & covered).sum() / ink.sum() > 0.97


def test_distort_all_writes_one_folder_per_distortion(tmp_path: Path) -> None:
    paths = generate(tmp_path, 1, "invoice", seed=2, formats=("png",), damage=False, dpi=60, distort="all")
    assert sorted(p.parent.name for p in paths) == sorted(synth.DISTORTIONS)


# ----------------------------------------------------------------- pdf-text (born-digital)


def _pdf_words(textpage: pypdfium2.PdfTextPage, dpi: int, height: int) -> list[tuple[str, tuple[float, ...]]]:
    """Every word PDFium extracts with its box (union of its characters' boxes) in page pixels, y down."""
    k = dpi / 72.0
    words: list[tuple[str, tuple[float, ...]]] = []
    chars: list[str] = []
    box: list[float] = []
    for i in range(textpage.count_chars() + 1):
        ch = textpage.get_text_range(i, 1) if i < textpage.count_chars() else " "
        if not ch or ch.isspace():
            if chars:
                words.append(("".join(chars), tuple(box)))
            chars, box = [], []
            continue
        left, bottom, right, top = textpage.get_charbox(i)
        b = [left * k, height - top * k, right * k, height - bottom * k]
        box = b if not box else [min(box[0], b[0]), min(box[1], b[1]), max(box[2], b[2]), max(box[3], b[3])]
        chars.append(ch)
    return words


@pytest.mark.parametrize(("kind", "seed", "pages"), [("invoice", 1, 3), ("newspaper", 2, 1)])
def test_pdf_text_words_boxes_and_ink(tmp_path: Path, kind: str, seed: int, pages: int) -> None:
    """A born-digital page: PDFium extracts every GT word, inside its line's polygon, and renders ink there."""
    dpi = 100
    paths = generate(tmp_path, pages, kind, seed=seed, formats=("pdf-text",), damage=True, dpi=dpi)
    assert sum(len(_gt(p)["pages"]) for p in paths) == pages
    for path in paths:
        gt = _gt(path)
        assert path.suffix == ".pdf" and gt["format"] == "pdf-text" and gt["damaged"] is False  # damage ignored
        with pikepdf.open(path) as pk:  # embedded subset TrueType, Identity-H, ToUnicode; no image, no dates
            assert "/CreationDate" not in pk.docinfo and "/ModDate" not in pk.docinfo
            for pg in pk.pages:
                assert not pg.images
                for font in pg.Resources.Font.values():
                    cid = font.DescendantFonts[0]
                    assert font.Subtype == "/Type0" and font.Encoding == "/Identity-H" and "/ToUnicode" in font
                    assert cid.Subtype == "/CIDFontType2" and cid.CIDToGIDMap == "/Identity" and "/W" in cid
                    assert "/FontFile2" in cid.FontDescriptor and str(cid.BaseFont)[7] == "+"
        pdf = pypdfium2.PdfDocument(str(path))
        try:
            assert len(pdf) == len(gt["pages"])
            for page, pg in zip(pdf, gt["pages"]):
                assert pg["damage"] == {}
                assert page.get_size() == pytest.approx((pg["width"] * 72 / dpi, pg["height"] * 72 / dpi), abs=0.01)
                assert not list(page.get_objects(filter=[pdfium_c.FPDF_PAGEOBJ_IMAGE]))
                textpage = page.get_textpage()
                tokens = set(textpage.get_text_bounded().split())
                lines = [(ln["text"], np.asarray(ln["polygon"], float)) for ln in pg["lines"] if ln["text"]]
                assert len(lines) >= 10
                for text, _ in lines:
                    assert set(text.split()) <= tokens, text
                words = _pdf_words(textpage, dpi, pg["height"])
                assert len(words) >= sum(len(t.split()) for t, _ in lines)
                holders: dict[str, list[tuple[float, ...]]] = {}  # word -> boxes of the lines holding it
                for t, p in lines:
                    for w in set(t.split()):
                        holders.setdefault(w, []).append((*p.min(axis=0), *p.max(axis=0)))
                for word, (x0, y0, x1, y1) in words:  # inside (2 px) the polygon of a line holding the word
                    dist = min(max(l - x0, t - y0, x1 - r, y1 - b) for l, t, r, b in holders[word])
                    assert dist <= 2.0, (word, (x0, y0, x1, y1))
                img = page.render(scale=dpi / 72, grayscale=True).to_numpy()
                img = img[..., 0] if img.ndim == 3 else img
                ink = img[: pg["height"], : pg["width"]] < 128
                for text, p in lines:
                    assert (ink & _poly_mask(ink.shape, [p], grow=0)).sum() > 3, text
                textpage.close()
                page.close()
        finally:
            pdf.close()


def test_pdf_text_is_deterministic_and_the_twin_of_pdf(tmp_path: Path) -> None:
    a = generate(tmp_path / "a", 3, "invoice", seed=7, formats=("pdf-text",), dpi=72)
    b = generate(tmp_path / "b", 3, "invoice", seed=7, formats=("pdf-text",), dpi=72)
    scan = generate(tmp_path / "scan", 3, "invoice", seed=7, formats=("pdf",), damage=False, dpi=72)
    assert [p.name for p in a] == [p.name for p in b] == [p.name for p in scan]
    for pa, pb, ps in zip(a, b, scan):
        assert pa.read_bytes() == pb.read_bytes()
        assert b"CreationDate" not in pa.read_bytes()
        twin = _gt(ps)
        assert _gt(pa) == {**twin, "format": "pdf-text"}  # same pages, same ground truth


def test_pdf_text_refuses_distortion_and_runs_from_the_command_line(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="pdf-text"):
        generate(tmp_path / "d", 1, "invoice", formats=("png", "pdf-text"), distort="rotate")
    assert not (tmp_path / "d").exists()
    assert synth._main([str(tmp_path / "cli"), "--formats", "pdf-text", "--kind", "form", "--pages", "1",
                        "--dpi", "72"]) == 0
    (pdf,) = (tmp_path / "cli").glob("*.pdf")
    assert _gt(pdf)["format"] == "pdf-text"
