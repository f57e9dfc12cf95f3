"""Tests for the synthetic document generator (``measure.synth``).

Fast and offline: small page counts, mostly at a low dpi.
"""

from __future__ import annotations

import datetime as dt
import json
import re
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
        assert set(gt) - DOC_KEYS <= (INVOICE_DOC_KEYS | INVOICE_OPTIONAL_KEYS if kind == "invoice" else set())
        assert DOC_KEYS | (INVOICE_DOC_KEYS if kind == "invoice" else set()) <= set(gt)
        assert gt["doc"] == path.stem and gt["kind"] == kind and gt["seed"] == 5
        assert gt["damaged"] is True and gt["dpi"] == 150
        (img,) = _frames(path)
        for pi, page in enumerate(gt["pages"]):
            extra = INVOICE_PAGE_KEYS | INVOICE_PAGE_OPTIONAL if kind == "invoice" else set()
            assert PAGE_KEYS <= set(page) <= PAGE_KEYS | extra
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


# ----------------------------------------------------------------- invoice fields and anomalies

INVOICE_DOC_KEYS = {"locale", "fields", "fields_raw", "line_items"}  # always, on invoices
INVOICE_OPTIONAL_KEYS = {"other_amounts", "conflicts", "conflicts_raw", "date_order", "date_order_fields",
                         "invoice_per_page", "anomaly", "expected_review"}
INVOICE_PAGE_KEYS = {"fields", "fields_raw", "line_items"}
INVOICE_PAGE_OPTIONAL = {"other_amounts", "conflicts", "conflicts_raw", "date_order", "date_order_fields"}
_MONTHS = [m.lower() for m in synth._MONTHS]
_ORDER_RE = {
    "DMY": r"(\d{2})[/.\-](\d{2})[/.\-](\d{4})",
    "MDY": r"(\d{2})/(\d{2})/(\d{4})",
    "YMD": r"(\d{4})-(\d{2})-(\d{2})",
}
_TOTAL_LABEL = re.compile(r"(total|total due|total [a-z]{3}|amount due|balance due)", re.IGNORECASE)
_USUAL_ORDER = {"us": "MDY", "uk": "DMY", "de": "DMY", "fr": "DMY", "nl": "DMY"}


def _cents(printed: str) -> int:
    """A printed amount (``$1,234.56``, ``1.234,56 EUR``, ``EUR 1 234,56``) in cents: the last separator is decimal."""
    m = re.fullmatch(r"(?:[$\u00a3\u20ac]|[A-Z]{3} )?(-?\d{1,3}(?:[ .,]\d{3})*)[.,](\d{2})(?: [\u20ac]|[ ][A-Z]{3})?",
                     printed)
    assert m, printed
    return int(re.sub(r"[ .,]", "", m[1])) * 100 + int(m[2])


def _dec(value: str) -> int:
    """A normalised amount (``"1234.56"``: no thousands separators, two decimals as printed) in cents."""
    assert re.fullmatch(r"\d+\.\d{2}", value), value
    return int(value.replace(".", ""))


def _iso(printed: str, order: str | None) -> str:
    """A printed date as ISO 8601; ``order`` reads the numeric forms."""
    words = printed.replace(",", "").replace("-", " ").split()
    months = [i for i, w in enumerate(words) if w.lower()[:3] in {m[:3] for m in _MONTHS}]
    if months and len(words) == 3:  # "March 5 2018", "5 March 2018", "05 Mar 2018", "05-Mar-2018"
        (i,) = months
        mon = [m[:3] for m in _MONTHS].index(words[i].lower()[:3]) + 1
        day, year = (int(w) for j, w in enumerate(words) if j != i)
        return dt.date(year, mon, day).isoformat()
    m = re.fullmatch(_ORDER_RE[order], printed)
    assert m, (printed, order)
    a, b, c = (int(g) for g in m.groups())
    y, mo, d = {"DMY": (c, b, a), "MDY": (c, a, b), "YMD": (a, b, c)}[order]
    return dt.date(y, mo, d).isoformat()


def _texts(page: dict) -> list[str]:
    return [ln["text"] for ln in page["lines"] if ln["text"]]


def _totals_block(page: dict) -> list[str]:
    """The lines of the totals block (the block holding "Subtotal"), in drawing order."""
    (block,) = {ln["block_index"] for ln in page["lines"] if ln["text"] == "Subtotal"}
    return [ln["text"] for ln in page["lines"] if ln["block_index"] == block]


def _check_invoice_page(page: dict, gt: dict) -> None:
    """The fields a page records are what it draws, and add up."""
    assert INVOICE_PAGE_KEYS <= set(page) <= INVOICE_PAGE_KEYS | INVOICE_PAGE_OPTIONAL | PAGE_KEYS | {"distortion"}
    f, raw, texts = page["fields"], page["fields_raw"], _texts(page)
    assert list(f) == [k for k in synth.INVOICE_FIELDS if k in f] and set(f) == set(raw)
    assert not {"period_start", "period_end"} & set(f)  # never drawn
    assert f["supplier_name"] in texts and f["customer_name"] in texts
    assert all(s in texts for s in raw["supplier_address"].split("\n"))
    assert f["supplier_address"] == raw["supplier_address"].replace("\n", ", ")
    if "supplier_tax_id" in f:
        assert raw["supplier_tax_id"].endswith(f["supplier_tax_id"])
        assert any(t == raw["supplier_tax_id"] or t.startswith(raw["supplier_tax_id"] + ",") for t in texts)
    assert any(t.endswith(raw["document_number"]) for t in texts)
    assert f["document_number"] == raw["document_number"].removeprefix("#")
    orders = {"document_date": page.get("date_order"), "due_date": page.get("date_order"),
              **page.get("date_order_fields", {})}
    for name in ("document_date", "due_date"):
        assert any(t.endswith(raw[name]) for t in texts), raw[name]
        assert f[name] == _iso(raw[name], orders[name]) == dt.date.fromisoformat(f[name]).isoformat()
    assert f["due_date"] > f["document_date"]
    assert f["currency"] in ("USD", "GBP", "EUR")
    assert raw["currency"] in (f["currency"], {"USD": "$", "GBP": "\u00a3", "EUR": "\u20ac"}[f["currency"]])
    assert any(raw["currency"] in t for t in texts)
    block = _totals_block(page)
    money = {name: raw[name] for name in ("subtotal", "tax", "total") if name in raw}
    for name, printed in money.items():
        assert printed in block and f[name] == f"{_cents(printed) / 100:.2f}", (name, printed)
        assert raw["currency"] in printed or f"({f['currency']})" in " ".join(texts)
    items = page["line_items"]
    assert items and all(set(it) == {"description", "quantity", "unit_price", "amount"} for it in items)
    for it in items:
        assert it["description"] in texts and it["quantity"].isdigit()
        assert int(it["quantity"]) * _dec(it["unit_price"]) == _dec(it["amount"])
        assert re.fullmatch(r"\d+\.\d{2}", it["unit_price"]) and re.fullmatch(r"\d+\.\d{2}", it["amount"])
    assert sum(_dec(it["amount"]) for it in items) == _dec(f["subtotal"])
    shipping = _dec(page.get("other_amounts", {}).get("shipping", "0.00"))
    if shipping:
        assert "Shipping" in block
    if "total" in f and gt.get("anomaly") is None:
        assert _dec(f["subtotal"]) + shipping + _dec(f["tax"]) == _dec(f["total"])


def test_invoice_fields_are_what_is_drawn(tmp_path: Path) -> None:
    paths = generate(tmp_path, 16, "invoice", seed=2, formats=("png", "png", "tiff"), damage=False, dpi=50)
    locales, multi = set(), 0
    for path in paths:
        gt = _gt(path)
        assert INVOICE_DOC_KEYS <= set(gt) <= DOC_KEYS | INVOICE_DOC_KEYS | INVOICE_OPTIONAL_KEYS
        assert "anomaly" not in gt and "expected_review" not in gt
        locales.add(gt["locale"])
        for page in gt["pages"]:
            _check_invoice_page(page, gt)
        # the document's fields: what its pages agree on; the rest conflicts
        pages = gt["pages"]
        assert gt["line_items"] == [it for pg in pages for it in pg["line_items"]]
        for name in synth.INVOICE_FIELDS:
            values = list(dict.fromkeys(pg["fields"][name] for pg in pages if name in pg["fields"]))
            if len(values) == 1:
                assert gt["fields"][name] == values[0] and name not in gt.get("conflicts", {})
            elif values:
                assert name not in gt["fields"] and gt["conflicts"][name] == values
        assert gt.get("invoice_per_page", False) == (len(pages) > 1)
        multi += len(pages) > 1
        if len(pages) == 1:
            assert {k: gt[k] for k in INVOICE_PAGE_KEYS} == {k: pages[0][k] for k in INVOICE_PAGE_KEYS}
            assert gt.get("other_amounts") == pages[0].get("other_amounts") and "conflicts" not in gt
            assert {"supplier_tax_id", "subtotal", "tax", "total"} & set(gt["fields"]) >= {"subtotal", "tax", "total"}
    assert len(locales) >= 4 and multi >= 1


def test_invoice_fields_of_one_known_invoice(tmp_path: Path) -> None:
    """Seed 3, document 1: a German invoice (the amounts depend on how many item rows the fonts leave room for)."""
    _, path = generate(tmp_path, 2, "invoice", seed=3, formats=("png",), damage=False, dpi=50)
    gt = _gt(path)
    assert gt["locale"] == "de" and gt["date_order"] == "YMD" and "conflicts" not in gt
    fixed = {k: v for k, v in gt["fields"].items() if k not in ("subtotal", "tax", "total")}
    assert fixed == {
        "supplier_name": "Wright & Partners GmbH",
        "supplier_address": "Bridgestrasse 113, 10115 Berlin, Germany",
        "supplier_tax_id": "DE229486766",
        "customer_name": "Jonas Moreau",
        "document_number": "F191580",
        "document_date": "2023-06-25",
        "due_date": "2023-08-24",
        "currency": "EUR",
    }
    assert gt["fields_raw"]["supplier_tax_id"] == "USt-IdNr. DE229486766"
    assert gt["fields_raw"]["supplier_address"] == "Bridgestrasse 113\n10115 Berlin, Germany"
    assert re.fullmatch(r"\d{1,3}(\.\d{3})*,\d{2} EUR", gt["fields_raw"]["total"])
    assert gt["line_items"][0] == {"description": "Data backup service", "quantity": "5", "unit_price": "2211.46",
                                   "amount": "11057.30"}
    assert _dec(gt["fields"]["subtotal"]) + _dec(gt["fields"]["tax"]) == _dec(gt["fields"]["total"])
    assert round(_dec(gt["fields"]["subtotal"]) * 0.19) == _dec(gt["fields"]["tax"])  # VAT 19 %


@pytest.mark.parametrize("anomaly", list(synth.ANOMALIES))
def test_invoice_anomalies_are_drawn_and_recorded(tmp_path: Path, anomaly: str) -> None:
    plain = generate(tmp_path / "plain", 4, "invoice", seed=9, formats=("png",), damage=False, dpi=50)
    paths = generate(tmp_path / "odd", 4, "invoice", seed=9, formats=("png",), damage=False, dpi=50, anomaly=anomaly)
    again = generate(tmp_path / "again", 4, "invoice", seed=9, formats=("png",), damage=False, dpi=50, anomaly=anomaly)
    assert [p.read_bytes() for p in paths] == [p.read_bytes() for p in again]  # seeded
    locales = set()
    for path, ref in zip(paths, plain):
        gt, ref_gt = _gt(path), _gt(ref)
        (page,) = gt["pages"]
        locales.add(gt["locale"])
        assert gt["anomaly"] == anomaly and gt["expected_review"] == list(synth.ANOMALIES[anomaly])
        _check_invoice_page(page, gt)
        f, raw, block = gt["fields"], gt["fields_raw"], _totals_block(page)
        labels = [t for t in block if _TOTAL_LABEL.fullmatch(t)]
        shipping = _dec(gt.get("other_amounts", {}).get("shipping", "0.00"))
        # the rest of the invoice is as without the anomaly (two totals take a row of the items table's room)
        changed = {"total", "document_date", "due_date", *(("subtotal", "tax") if anomaly == "two-totals" else ())}
        same = {k: v for k, v in ref_gt["fields"].items() if k not in changed}
        assert {k: f[k] for k in same} == same
        if anomaly == "no-total":
            assert "total" not in f and "conflicts" not in gt and not labels
            assert not any(_TOTAL_LABEL.match(t) for t in _texts(page))  # no line starts with a total label
        elif anomaly == "two-totals":
            v1, v2 = gt["conflicts"]["total"]
            assert "total" not in f and v1 != v2 and len(labels) == 2
            r1, r2 = gt["conflicts_raw"]["total"]
            assert block[block.index(labels[0]) + 1] == r1 and block[block.index(labels[1]) + 1] == r2
            assert [f"{_cents(r) / 100:.2f}" for r in (r1, r2)] == [v1, v2]
            assert _dec(f["subtotal"]) + shipping + _dec(f["tax"]) == _dec(v1)  # the first adds up
        elif anomaly == "amounts-mismatch":
            assert len(labels) == 1 and block[block.index(labels[0]) + 1] == raw["total"]
            off = abs(_dec(f["subtotal"]) + shipping + _dec(f["tax"]) - _dec(f["total"]))
            assert 100 <= off < 1000  # off by a few units; the items still sum to the subtotal (checked above)
        else:  # date-order
            order = gt["date_order_fields"]["document_date"]
            assert order != _USUAL_ORDER[gt["locale"]] and order in ("DMY", "MDY")
            a, b, _ = re.fullmatch(r"(\d{2})/(\d{2})/(\d{4})", raw["document_date"]).groups()
            assert int(a) <= 12 and int(b) <= 12 and a != b  # either order is a date: ambiguous
            assert f["document_date"] == _iso(raw["document_date"], order)
            assert _iso(raw["document_date"], _USUAL_ORDER[gt["locale"]]) != f["document_date"]
            assert any(t.endswith(raw["document_date"]) for t in _texts(page))
            assert f["due_date"] == (dt.date.fromisoformat(f["document_date"])
                                     + (dt.date.fromisoformat(ref_gt["fields"]["due_date"])
                                        - dt.date.fromisoformat(ref_gt["fields"]["document_date"]))).isoformat()
    assert len(locales) >= 2


def test_anomaly_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no-total"):
        generate(tmp_path, 1, "invoice", anomaly="wrong-vat")
    with pytest.raises(ValueError, match="invoices only"):
        generate(tmp_path, 1, "form", anomaly="no-total")
    assert not list(tmp_path.iterdir())
    assert synth._main([str(tmp_path / "cli"), "--pages", "1", "--formats", "png", "--dpi", "50", "--clean",
                        "--anomaly", "two-totals"]) == 0
    (png,) = (tmp_path / "cli").glob("*.png")
    assert _gt(png)["anomaly"] == "two-totals" and len(_gt(png)["conflicts"]["total"]) == 2
    with pytest.raises(SystemExit):
        synth._main([str(tmp_path / "cli2"), "--kind", "book", "--anomaly", "no-total"])
