"""Measuring the dewarp stage: ``folio dewarp check`` (a distorted synthetic set against the
distortions it records) and ``folio dewarp samples`` (real photos, read with dewarping off and on)."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import numpy as np

from measure.scoring import cer, word_counts
from pipeline.config import FolioConfig
from pipeline.errors import FolioError
from pipeline.io.decode import open_document
from pipeline.models.bundle import OcrModels
from pipeline.stages.dewarp import DewarpStage
from pipeline.stages.factory import create_page_stage
from pipeline.types import Dewarp, PageImage

__all__ = ["check_synth", "check_samples"]


def _dewarp_row(dewarp: Dewarp) -> dict:
    return {"rotation": dewarp.rotation, "skew_deg": dewarp.skew_deg, "quad": dewarp.quad is not None,
            "curl_corrected": dewarp.curl_corrected, "dewarp_note": dewarp.note}


def check_synth(path: str, config=None, limit: int | None = None) -> dict:
    """Run the dewarper over a distorted synthetic set and compare with the distortion it records.

    Returns counts of pages whose rotation came out right, skew errors (degrees)
    on ``skew`` pages, page-corner errors (pixels) on ``perspective`` pages, and
    the mean milliseconds per page.
    """
    config = config or FolioConfig()
    stage = DewarpStage(config, OcrModels.load(config))
    dewarper = stage.dewarper
    pages, rot_ok, skew_err, quad_err, ms, wrong = 0, 0, [], [], [], []
    for js in sorted(Path(path).rglob("*.json")):
        meta = json.loads(js.read_text())
        if "pages" not in meta or "file" not in meta:
            continue
        with open_document((js.parent / meta["file"]).read_bytes(), config.decode) as doc:
            for gt in meta["pages"]:
                if limit is not None and pages >= limit:
                    break
                image = doc.page(gt["page_index"])[0]
                t0 = time.perf_counter()
                _, geo = dewarper(image)
                ms.append((time.perf_counter() - t0) * 1000)
                dist = gt.get("distortion", {})
                pages += 1
                want = dist.get("rotation", 0)
                if geo.rotation == want:
                    rot_ok += 1
                else:
                    wrong.append(f"{js.stem}#{gt['page_index']}: {geo.rotation} (want {want})")
                if "skew_deg" in dist:
                    skew_err.append(abs(geo.skew_deg - dist["skew_deg"]))
                if "quad" in dist and geo.quad is not None:
                    quad_err.append(float(np.abs(geo.quad - np.asarray(dist["quad"])).max()))
    return {
        "pages": pages, "rotation_right": rot_ok, "rotation_wrong": wrong,
        "skew_abs_err_mean": float(np.mean(skew_err)) if skew_err else None,
        "skew_abs_err_max": float(np.max(skew_err)) if skew_err else None,
        "quad_found": len(quad_err), "quad_corner_err_max_px": float(np.max(quad_err)) if quad_err else None,
        "ms_per_page": float(np.mean(ms)) if ms else None,
    }


def check_samples(path: str, config=None, ocr: bool = True) -> list[dict]:
    """Dewarp the photos of ``dewarp_samples/`` and OCR them with dewarping off and on.

    Every ``*.png``/``*.jpg`` under ``path`` is dewarped (what was found, how
    long it took) and, with ``ocr``, OCR'd both ways; DocUNet photos
    ``<n>_<k> copy.png`` whose scan has reference text in
    ``docunet_ocr_reference_text/tess_gt.json`` also get CER (whole page text,
    NFKC, whitespace collapsed) and word F1 both ways. Without ``ocr`` only
    the dewarp step runs: what it does to any folder of scans, and its time.
    """
    config = config or FolioConfig()
    on_config = config.model_copy(update={"dewarp": config.dewarp.model_copy(update={"enabled": True})})
    on = create_page_stage(on_config)
    dewarper = DewarpStage(on_config, OcrModels.load(on_config)).dewarper
    off = create_page_stage(config.model_copy(update={"dewarp": config.dewarp.model_copy(update={"enabled": False})})) if ocr else None
    refs = {}
    for gt in Path(path).rglob("tess_gt.json"):
        refs.update(json.loads(gt.read_text()))
    rows = []
    for img_path in sorted(p for p in Path(path).rglob("*") if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
        try:
            with open_document(img_path.read_bytes(), config.decode) as doc:  # as a run decodes it (EXIF turned)
                image = doc.page(0)[0]
        except FolioError as e:  # a bad file is a row that says so; the others go on
            rows.append({"image": img_path.name, "error": f"{e.code}: {e}"})
            continue
        row = {"image": img_path.name, "size": [int(image.shape[1]), int(image.shape[0])]}
        if not ocr:
            t0 = time.perf_counter()
            _, geo = dewarper(image)
            row["dewarp_ms"] = round((time.perf_counter() - t0) * 1000, 1)
            row.update(_dewarp_row(geo.record()))
            rows.append(row)
            continue
        for name, stage in (("off", off), ("on", on)):
            t0 = time.perf_counter()
            [page] = stage([PageImage(img_path.name, "s", 0, image)])
            row[f"seconds_{name}"] = round(time.perf_counter() - t0, 2)
            row[f"text_{name}"] = page.text
            if name == "on":
                row.update(_dewarp_row(page.dewarp))
                row["dewarp_ms"] = round(float(page.timings.dewarp or 0.0), 1)
        m = re.match(r"(\d+)_\d+", img_path.stem)
        ref = refs.get(f"./scan/{m.group(1)}") if m else None
        if ref is not None:
            for name in ("off", "on"):
                tp, n_pred, n_gt = word_counts(row[f"text_{name}"], ref.split())
                row[f"cer_{name}"] = round(cer(row[f"text_{name}"], ref), 4)
                row[f"word_f1_{name}"] = round(2 * tp / max(n_pred + n_gt, 1), 4)
        for name in ("off", "on"):
            row.pop(f"text_{name}")
        rows.append(row)
    return rows
