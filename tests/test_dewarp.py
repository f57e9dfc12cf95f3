"""Dewarping (``pipeline.imaging.dewarp`` and the dewarp stage) on constructed pages with a known answer, real
models where it needs them."""

from __future__ import annotations

import json
import math

import cv2
import numpy as np
import pytest
from PIL import Image

from measure import synth
from measure.scoring import polygon_iou
from pipeline.config import DewarpConfig, FolioConfig
from pipeline.imaging.dewarp import Dewarper, PageGeometry, find_page_quad, fit_curl, ink_mask, remap, text_angle
from pipeline.types import Dewarp, PageImage


@pytest.fixture(scope="module")
def page(scans) -> tuple[np.ndarray, dict]:
    """A clean synthetic book page at 100 dpi and its ground truth."""
    folder = scans(("book", 1, 21, ("png",), False), dpi=100, truth=True)
    (path,) = folder.glob("*.png")
    gt = json.loads(path.with_suffix(".json").read_text())["pages"][0]
    return np.asarray(Image.open(path).convert("RGB")), gt


@pytest.fixture(scope="module")
def models():
    from pipeline.models.bundle import OcrModels

    return OcrModels.load(FolioConfig(dewarp=DewarpConfig(enabled=True)))


def _photo(page: np.ndarray, corners: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """``page`` warped onto a dark, slightly noisy table of (w, h) ``size`` with its corners at ``corners``."""
    h, w = page.shape[:2]
    src = np.float32([[0, 0], [w, 0], [w, h], [0, h]])
    m = cv2.getPerspectiveTransform(src, corners.astype(np.float32))
    rng = np.random.default_rng(0)
    table = np.clip(rng.normal(70, 6, (size[1], size[0], 3)), 0, 255).astype(np.uint8)
    warped = cv2.warpPerspective(page, m, size, flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.full((h, w), 255, np.uint8), m, size, flags=cv2.INTER_LINEAR)
    a = mask[:, :, None].astype(np.float32) / 255
    return np.clip(warped * a + table * (1 - a), 0, 255).astype(np.uint8)


def test_perspective_quad_comes_back_within_2px(page):
    img, _ = page
    corners = np.array([[180.0, 95.0], [1010.0, 140.0], [960.0, 1290.0], [120.0, 1230.0]])
    photo = _photo(img, corners, (1150, 1400))
    quad, why = find_page_quad(cv2.cvtColor(photo, cv2.COLOR_RGB2GRAY))
    assert why is None
    assert np.abs(quad - corners).max() <= 2.0, quad
    flat, geo = Dewarper(DewarpConfig())(photo)
    assert geo.quad is not None and np.abs(geo.quad - corners).max() <= 2.0
    # the flat page is the page: its aspect ratio and its content
    ratio = flat.shape[1] / flat.shape[0]
    assert ratio == pytest.approx(img.shape[1] / img.shape[0], rel=0.08)
    # flat pixels map back onto the photo's pixels
    pts = np.array([[0.0, 0.0], [flat.shape[1], 0.0], [flat.shape[1], flat.shape[0]], [0.0, flat.shape[0]]])
    assert np.abs(geo.to_original(pts) - corners).max() <= 2.0


def test_a_full_bleed_scan_and_an_upright_page_on_a_scanner_bed_are_left_alone(page):
    img, _ = page
    flat, geo = Dewarper(DewarpConfig())(img)
    assert flat is img and geo.identity and geo.rotation == 0 and geo.skew_deg == 0.0 and geo.quad is None
    h, w = img.shape[:2]
    bed = _photo(img, np.array([[40.0, 30.0], [40.0 + w, 30.0], [40.0 + w, 30.0 + h], [40.0, 30.0 + h]]),
                 (w + 90, h + 70))
    flat, geo = Dewarper(DewarpConfig())(bed)
    assert flat is bed and geo.quad is None and "upright rectangle" in geo.skipped


@pytest.mark.parametrize("turns", [1, 2, 3])
def test_a_turned_page_comes_back_upright(page, models, turns):
    img, _ = page
    turned = np.ascontiguousarray(np.rot90(img, turns))  # counterclockwise
    flat, geo = Dewarper(DewarpConfig(), models.recognizer)(turned)
    assert geo.rotation == 90 * turns and geo.skew_deg == 0.0
    assert flat.shape == img.shape
    assert np.abs(flat.astype(int) - img.astype(int)).mean() < 2.0


def test_labels_up_the_margin_do_not_turn_a_page_whose_text_runs_across(page, monkeypatch):
    """Do no harm: when the ink profile leaves the line direction open (monospaced receipts do), the
    other direction is read too; two labels printed up the margin (a form number) may read better
    than the page's own lines, but they are far fewer lines, so the page is not turned (a FUNSD form
    and a SROIE receipt were turned by 270 degrees this way)."""
    import pipeline.imaging.dewarp as dewarp

    img, gt = page
    h, w = img.shape[:2]
    canvas = np.full((h, w + 120, 3), 255, np.uint8)
    canvas[:, :w] = img
    for k, line in enumerate(sorted(gt["lines"], key=lambda line: -len(line["text"]))[:2]):
        xs, ys = zip(*line["polygon"])
        x0, y0, y1 = int(min(xs)), int(min(ys)), int(max(ys))
        label = np.rot90(img[y0 : y1 + 1, x0 : min(x0 + 300, int(max(xs)) + 1)], -1)  # reads downwards
        top, left = h // 4, w + 20 + 50 * k
        canvas[top : top + label.shape[0], left : left + label.shape[1]] = label
    monkeypatch.setattr(dewarp, "text_angle", lambda ink, max_skew: (0.0, 3.0, 2.0, 90.0))  # both directions open
    calls = []

    def recognize(crops):  # the page's lines read fairly, the labels (second direction) read very well turned
        calls.append(len(crops))
        up, down = (0.7, 0.3) if len(calls) == 1 else (0.3, 0.95)
        n = len(crops) // 2
        return [("text", up)] * n + [("text", down)] * n

    flat, geo = Dewarper(DewarpConfig(), recognize)(canvas)
    assert len(calls) == 2, "both directions must have been read"
    assert geo.rotation == 0 and geo.skew_deg == 0.0, geo
    assert flat is canvas


def test_a_direction_with_one_readable_line_is_not_judged(page, monkeypatch):
    """One line is too easily misread to turn a page on; blobs that read as nothing (rules) do not count."""
    import pipeline.imaging.dewarp as dewarp

    img, _ = page
    monkeypatch.setattr(dewarp, "text_angle", lambda ink, max_skew: (0.0, 3.0, 2.0, 90.0))

    first = [True]

    def recognize(crops):  # only the first line the check reads says anything, and it reads best upside down
        n = len(crops) // 2
        up, down = [("", 0.0)] * n, [("", 0.0)] * n
        if first[0]:
            up[0], down[0], first[0] = ("Text", 0.6), ("txeT", 0.99), False
        return up + down

    flat, geo = Dewarper(DewarpConfig(), recognize)(img)
    assert geo.rotation == 0 and flat is img
    assert "no text lines to check which way up" in geo.skipped


def test_the_line_classifier_spares_reading_clearly_upright_pages_but_never_turns_one(page, models):
    """The classifier's quick look only ever skips the check; turning a page is the recogniser's call."""
    img, _ = page
    calls = []

    def recognize(crops):
        calls.append(len(crops))
        return models.recognizer(crops)

    flat, geo = Dewarper(DewarpConfig(), recognize, lambda crops: np.zeros(len(crops)))(img)
    assert calls == [] and geo.rotation == 0 and flat is img
    upside_down = np.ascontiguousarray(img[::-1, ::-1])
    # a classifier that is unsure leaves the decision to the recogniser ...
    flat, geo = Dewarper(DewarpConfig(), recognize, lambda crops: np.full(len(crops), 0.5))(upside_down)
    assert calls and geo.rotation == 180
    # ... and one that finds everything upside down turns nothing the recogniser reads upright
    calls.clear()
    flat, geo = Dewarper(DewarpConfig(), recognize, lambda crops: np.ones(len(crops)))(img)
    assert calls and geo.rotation == 0 and flat is img
    # the real classifier on the real page, as the dewarp stage uses it
    from pipeline.stages.dewarp import DewarpStage

    [turned] = DewarpStage(FolioConfig(dewarp=DewarpConfig(enabled=True)), models)([PageImage("d", "d", 0, upside_down)])
    assert turned.dewarp.rotation == 180 and turned.geometry is not None and turned.timings.dewarp > 0


@pytest.mark.parametrize("kind", ["shear", "rotation"])
@pytest.mark.parametrize("degrees", [4.0, -4.0])
def test_a_4_degree_skew_is_measured_within_0_3(page, kind, degrees):
    img, _ = page
    h, w = img.shape[:2]
    t = math.tan(math.radians(degrees))
    if kind == "shear":  # text lines rise by `degrees` to the right, verticals stay vertical
        m = np.float32([[1, 0, 0], [-t, 1, t * w]])
        size = (w, int(h + abs(t) * w) + 1)
    else:
        m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
        size = (w, h)
    skewed = cv2.warpAffine(img, m, size, borderMode=cv2.BORDER_CONSTANT, borderValue=(255, 255, 255))
    angle = text_angle(ink_mask(cv2.cvtColor(skewed, cv2.COLOR_RGB2GRAY)), 15.0)[0]
    assert abs(angle - degrees) <= 0.3
    flat, geo = Dewarper(DewarpConfig())(skewed)
    assert abs(geo.skew_deg - degrees) <= 0.3 and geo.rotation == 0
    # levelled: the text now measures flat
    again = text_angle(ink_mask(cv2.cvtColor(flat, cv2.COLOR_RGB2GRAY)), 15.0)[0]
    assert abs(again) <= 0.3


def test_small_skew_is_left_alone(page):
    img, _ = page
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.2, 1.0)
    skewed = cv2.warpAffine(img, m, (w, h), borderValue=(255, 255, 255))
    flat, geo = Dewarper(DewarpConfig(min_skew_deg=0.5))(skewed)
    assert flat is skewed and geo.identity


def test_curl_model_recovers_a_known_bend():
    rng = np.random.default_rng(1)
    w, h = 1000.0, 1400.0
    pts = []
    for k, y0 in enumerate(np.linspace(150, 1250, 25)):
        x = np.linspace(100, 900, 40)
        d = 60 * np.clip(1 - x / 450, 0, None) ** 2 * (1 + 0.5 * (y0 - 700) / 700)
        pts.append(np.stack([x, y0 + d + rng.normal(0, 0.4, x.size), np.full(x.size, k)], axis=1))
    model, sags, before, after = fit_curl(np.concatenate(pts), int(w), int(h))
    assert after < 0.3 * before
    assert np.percentile(sags, 90) > 20
    x = np.linspace(100, 900, 40)
    for y0 in (300.0, 700.0, 1100.0):
        truth = 60 * np.clip(1 - x / 450, 0, None) ** 2 * (1 + 0.5 * (y0 - 700) / 700)
        fitted = model.displacement(x, y0 + truth)
        # the model fixes the centre column (no constant term), so compare shapes
        assert np.abs((fitted - fitted[20]) - (truth - truth[20])).max() < 3.0


def test_a_curled_page_is_straightened_and_polygons_map_back(tmp_path):
    from pipeline.stages.factory import create_page_stage

    (path,) = synth.generate(tmp_path, 1, "book", seed=5, formats=("png",), damage=False, dpi=100, distort="curl")
    gt = json.loads(path.with_suffix(".json").read_text())["pages"][0]
    img = np.asarray(Image.open(path).convert("RGB"))
    [page] = create_page_stage(FolioConfig(dewarp=DewarpConfig(enabled=True)))([PageImage("d", "d", 0, img)])
    assert page.dewarp.curl_corrected is True and page.status == "ok" and page.geometry is None
    gt_lines = [ln for ln in gt["lines"] if ln["text"]]
    matched = sum(
        1 for g in gt_lines if any(polygon_iou(g["polygon"], ln.polygon) >= 0.5 for ln in page.lines)
    )
    assert matched >= 0.9 * len(gt_lines)
    # words follow their lines back through the curl: each lies on its line, left to right
    for line in page.lines:
        xs = [np.mean([x for x, _ in w.polygon]) for w in line.words]
        assert xs == sorted(xs)
        for w in line.words:
            assert polygon_iou(w.polygon, line.polygon) > 0


@pytest.mark.parametrize(
    "image",
    [
        np.full((600, 400, 3), 250, np.uint8),
        np.random.default_rng(3).integers(0, 256, (700, 500, 3), dtype=np.uint8),
        np.full((20, 30, 3), 128, np.uint8),
        np.zeros((300, 300, 3), np.uint8),
    ],
    ids=["blank", "noise", "tiny", "black"],
)
def test_degenerate_pages_are_skipped_and_say_why(image, models):
    flat, geo = Dewarper(DewarpConfig(), models.recognizer)(image)
    assert flat is image and geo.identity and geo.skipped
    assert geo.record() == Dewarp(0, 0.0, None, False, geo.skipped)


def test_torch_grid_sample_matches_opencv_remap(page):
    torch = pytest.importorskip("torch")
    del torch
    img, _ = page
    h, w = img.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 7.0, 1.0)
    skewed = cv2.warpAffine(img, m, (w, h), borderValue=(255, 255, 255))
    _, geo = Dewarper(DewarpConfig(remap="opencv"))(skewed)
    assert geo.skew_deg != 0.0
    from pipeline.imaging.dewarp import CurlModel

    coef = np.zeros((5, 3))
    coef[1, 0] = 12.0
    curled = PageGeometry(size=geo.size, homography=geo.homography,
                          curl=CurlModel(coef, w / 2, h / 2, w / 2, h / 2, (-1.0, 1.0), (-1.0, 1.0)))
    for g in (geo, curled):
        a = remap(skewed, g, "opencv").astype(int)
        b = remap(skewed, g, "torch").astype(int)
        assert a.shape == b.shape
        diff = np.abs(a - b)
        assert diff.mean() < 0.5 and np.percentile(diff, 99.9) <= 4


def test_remap_grids_agree_with_the_point_map():
    """The pixels of the flat page come from where its polygons are mapped back to (within half a pixel)."""
    from pipeline.imaging.dewarp import CurlModel

    coef = np.zeros((5, 3))
    coef[1, 0], coef[0, 1] = 12.0, 5.0
    h = np.array([[0.9, 0.1, 5.0], [-0.1, 1.1, 3.0], [0.0, 0.0, 1.0]])
    for curl in (None, CurlModel(coef, 100, 150, 100, 150, (-1.0, 1.0), (-1.0, 1.0))):
        geo = PageGeometry(size=(300, 200), homography=h, curl=curl)
        mx, my = geo.maps()
        rng = np.random.default_rng(0)
        ys, xs = rng.integers(0, 300, 200), rng.integers(0, 200, 200)
        ref = geo.to_original(np.stack([xs + 0.5, ys + 0.5], axis=1)) - 0.5
        assert np.abs(mx[ys, xs] - ref[:, 0]).max() < 0.5 and np.abs(my[ys, xs] - ref[:, 1]).max() < 0.5


def test_the_pages_row_says_what_dewarping_did(tmp_path):
    """Through the local runner: a page scanned a quarter turn off comes back upright, the row says by how much."""
    import json

    import pyarrow.dataset as ds

    from pipeline.config import load_config
    from pipeline.run import run

    src = tmp_path / "src"
    synth.generate(src, 1, "invoice", seed=3, formats=("png",), damage=False, dpi=100, distort="rotate")
    truth = json.loads(next(src.glob("*.json")).read_text())["pages"][0]["distortion"]["rotation"]
    config = load_config(overrides={"dewarp.enabled": True, "detection.max_side_len": 960}, environ={})
    run(str(src), str(tmp_path / "out"), config, progress=False, exclude=("*.json",))
    (page,) = ds.dataset(tmp_path / "out" / "pages", partitioning="hive").to_table().to_pylist()
    assert page["status"] == "ok" and page["text"]
    assert (page["rotation"] - truth) % 360 == 0 or (page["rotation"] + truth) % 360 == 0
    assert page["rotation"] != 0 and page["curl_corrected"] is False
    # polygons, of lines and of words, are in the pixels of the image as it was stored (rotated), not of
    # the upright page
    h, w = page["height"], page["width"]
    assert all(0 <= x <= w and 0 <= y <= h for line in page["lines"] for x, y in line["polygon"])
    words = [word for line in page["lines"] for word in line["words"]]
    assert words and all(0 <= x <= w + 1 and 0 <= y <= h + 1 for word in words for x, y in word["polygon"])


def test_folio_dewarp_check_and_samples_report_what_was_found(tmp_path):
    """`folio dewarp check` scores a distorted synthetic set against its truth; `folio dewarp samples`
    OCRs photos both ways and says so for photos without reference text."""
    from click.testing import CliRunner

    from pipeline.cli import main

    src = tmp_path / "rot"
    synth.generate(src, 2, "invoice", seed=5, formats=("png",), damage=False, dpi=72, distort="rotate")
    out = tmp_path / "check.json"
    result = CliRunner().invoke(main, ["dewarp", "check", str(src), "--json", str(out)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(out.read_text())
    assert report["pages"] == 2 and report["rotation_right"] == 2 and report["rotation_wrong"] == []
    assert result.output.splitlines()[-1].startswith(f"dewarp on {src} (2 pages): upright 2/2")

    photos = tmp_path / "photos"
    photos.mkdir()
    next(src.glob("*.png")).rename(photos / "one.png")
    result = CliRunner().invoke(main, ["dewarp", "samples", str(photos), "--set", "detection.max_side_len=640"],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "one.png" in result.output and "no reference text" in result.output.splitlines()[-1]
    out = tmp_path / "rows.json"
    result = CliRunner().invoke(main, ["dewarp", "samples", str(photos), "--no-ocr", "--json", str(out)],
                                catch_exceptions=False)
    assert result.exit_code == 0, result.output
    (row,) = json.loads(out.read_text())
    assert row["image"] == "one.png" and row["rotation"] in (90, 180, 270) and row["dewarp_ms"] > 0
    assert "seconds_on" not in row and "cer_on" not in row
    (photos / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")  # a bad file is a row, the rest go on
    result = CliRunner().invoke(main, ["dewarp", "samples", str(photos), "--no-ocr"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert "broken.jpg" in result.output and "not read" in result.output
    assert result.output.splitlines()[-1].startswith("dewarp on 2 photos (1 not read)")
    empty = tmp_path / "empty"
    empty.mkdir()
    assert CliRunner().invoke(main, ["dewarp", "check", str(empty)]).exit_code == 2
