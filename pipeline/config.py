"""Typed, validated configuration.

A run's configuration comes from, in increasing priority:

1. the defaults declared here (``configs/default.yaml`` spells them out),
2. a YAML file (``--config FILE``),
3. ``FOLIO_<SECTION>__<FIELD>`` environment variables, e.g.
   ``FOLIO_DETECTION__BOX_THRESH=0.6`` or ``FOLIO_ENGINE__INTRA_OP_THREADS=4``,
4. explicit overrides (``--set detection.box_thresh=0.6`` or ``--engine NAME``).

The config is a pydantic model: picklable, so a Ray actor rebuilds its models
from it. :func:`config_fingerprint` hashes every setting that can change the
output (not thread counts, batch sizes, time limits or the settings of an engine
not in use), so a rerun with an equivalent config is skipped and a changed one
is redone.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from pipeline.errors import ConfigError

__all__ = [
    "DecodeConfig",
    "DetectionConfig",
    "RecognitionConfig",
    "ClassifierConfig",
    "EngineConfig",
    "TesseractConfig",
    "RunnerConfig",
    "OutputConfig",
    "FolioConfig",
    "load_config",
    "config_fingerprint",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DecodeConfig(_Section):
    pdf_dpi: int = Field(300, ge=36, le=1200, description="Resolution PDF pages are rasterised at.")
    max_pixels: int = Field(
        150_000_000,
        ge=1,
        description="Largest page (width x height) decoded; larger images are refused as "
        "image_too_large (decompression-bomb guard). PDF pages are rendered at a lower DPI "
        "instead when the configured DPI would exceed it.",
    )
    max_pages: int = Field(2000, ge=1, description="Documents with more pages are refused as too_many_pages.")
    max_file_bytes: int = Field(
        1 << 30, ge=1, description="Inputs larger than this many bytes are refused as file_too_large."
    )


class DetectionConfig(_Section):
    model: str = Field("PP-OCRv6_det_small.onnx", description="Detection model file in the model directory.")
    max_side_len: int = Field(2000, ge=64, description="Pages are scaled down so the longer side is at most this.")
    min_side_len: int = Field(736, ge=32, description="Pages are scaled up so the shorter side is at least this.")
    thresh: float = Field(0.3, gt=0, lt=1, description="Probability above which a DB map pixel is text.")
    box_thresh: float = Field(0.5, gt=0, lt=1, description="Minimum mean probability inside a box to keep it.")
    unclip_ratio: float = Field(1.6, gt=0, description="How far DB's shrunk text kernels are grown back.")
    min_size: float = Field(3.0, ge=0, description="Boxes with a shorter side (map pixels) are dropped.")
    max_candidates: int = Field(1000, ge=1, description="At most this many contours per page are considered.")
    dilate: bool = Field(True, description="Dilate the binary map with a 2x2 kernel before finding contours.")


class RecognitionConfig(_Section):
    model: str = Field("PP-OCRv6_rec_small.onnx", description="Recognition model file in the model directory.")
    image_height: int = Field(48, description="Crop height the recognition model expects.")
    batch_size: int = Field(32, ge=1, description="Most crops per recognition call.")
    max_batch_pixels: int = Field(
        48 * 320 * 64, ge=1, description="Most padded pixels per recognition call (caps memory on long lines)."
    )
    bucket_ratio: float = Field(
        1.5,
        ge=1.0,
        description="A batch is closed when its widest crop would be this many times its narrowest, "
        "keeping padding small.",
    )
    min_width: int = Field(
        320,
        ge=8,
        description="Narrowest padded batch width in pixels. PP-OCR trains recognition on 320-wide inputs; "
        "padding short crops up to this keeps the CTC sequence long enough.",
    )
    min_confidence: float = Field(0.5, ge=0, le=1, description="Lines recognised with lower confidence are dropped.")


class ClassifierConfig(_Section):
    enabled: bool = Field(
        False,
        description="Run the 180-degree text-line classifier. Off by default: on upright scans it "
        "turns some correct lines upside down.",
    )
    model: str = Field("ch_ppocr_mobile_v2.0_cls_mobile.onnx", description="Classifier model file.")
    thresh: float = Field(0.9, gt=0, lt=1, description="Minimum confidence to rotate a line by 180 degrees.")


class EngineConfig(_Section):
    name: Literal["onnxruntime", "tesseract"] = Field(
        "onnxruntime",
        description="Inference engine: onnxruntime (the PP-OCR models) or tesseract (the "
        "tesseract-ocr program; settings in the tesseract section).",
    )
    intra_op_threads: int = Field(
        2, ge=1, description="Threads inside one operator. Set it from the cores each worker owns."
    )
    inter_op_threads: int = Field(1, ge=1, description="Operators run in parallel.")
    model_dir: str | None = Field(
        None, description="Folder holding the model files; default: the installed rapidocr wheel's models/."
    )


class TesseractConfig(_Section):
    lang: str = Field(
        "eng",
        pattern=r"^[A-Za-z0-9_/-]+(\+[A-Za-z0-9_/-]+)*$",
        description="Tesseract language(s), joined by + as in eng+deu; each needs its traineddata "
        "file, on Debian from the package tesseract-ocr-<lang>.",
    )
    psm: int = Field(3, ge=0, le=13, description="Page segmentation mode (tesseract --psm); 3 is fully automatic.")
    oem: int = Field(1, ge=0, le=3, description="OCR engine mode (tesseract --oem); 1 is the LSTM recogniser.")
    threads: int = Field(1, ge=1, description="OpenMP threads inside one tesseract process (OMP_THREAD_LIMIT).")
    processes: int = Field(
        1, ge=1, description="Pages of a batch OCR'd at the same time, one tesseract process each."
    )
    timeout_s: float = Field(120.0, gt=0, description="Seconds one page may take before it is an ocr_failed error.")
    min_confidence: float = Field(
        0.0, ge=0, le=1, description="Words recognised with lower confidence (0..1) are dropped."
    )


class RunnerConfig(_Section):
    batch_pages: int = Field(4, ge=1, description="Pages per OCR batch (recognition is batched across them).")
    flush_documents: int = Field(
        64, ge=1, description="Documents buffered before a Parquet file is written (bounds what a crash can lose)."
    )


class OutputConfig(_Section):
    compression: Literal["zstd", "snappy", "gzip", "none"] = Field("zstd", description="Parquet compression codec.")


#: Sections whose settings never change the output, left out of the fingerprint.
_NOT_FINGERPRINTED = {"runner", "output"}
#: Per section, the settings that never change the output (threads, paths, time limits).
_FIELDS_NOT_FINGERPRINTED = {
    "engine": {"intra_op_threads", "inter_op_threads", "model_dir"},
    "tesseract": {"threads", "processes", "timeout_s"},
}
#: Sections only one engine reads; those of the engines not in use are left out of the fingerprint.
_ENGINE_SECTIONS = {
    "onnxruntime": {"detection", "recognition", "classifier"},
    "tesseract": {"tesseract"},
}


class FolioConfig(BaseModel):
    """Everything a run needs to know; see ``configs/default.yaml``."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    decode: DecodeConfig = DecodeConfig()
    detection: DetectionConfig = DetectionConfig()
    recognition: RecognitionConfig = RecognitionConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    engine: EngineConfig = EngineConfig()
    tesseract: TesseractConfig = TesseractConfig()
    runner: RunnerConfig = RunnerConfig()
    output: OutputConfig = OutputConfig()


def _set_path(tree: dict, dotted: str, value: Any) -> None:
    keys = [k for k in dotted.split(".") if k]
    if len(keys) < 2:
        raise ConfigError(f"override {dotted!r} must name a section and a field, e.g. detection.box_thresh")
    node = tree
    for key in keys[:-1]:
        node = node.setdefault(key, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override {dotted!r}: {key!r} is not a section")
    node[keys[-1]] = value


def _env_overrides(environ: dict[str, str]) -> dict[str, Any]:
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith("FOLIO_") or "__" not in name:
            continue
        dotted = name[len("FOLIO_") :].lower().replace("__", ".")
        _set_path(tree, dotted, yaml.safe_load(raw))
    return tree


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def load_config(
    path: str | os.PathLike | None = None,
    overrides: dict[str, Any] | None = None,
    environ: dict[str, str] | None = None,
) -> FolioConfig:
    """Build the effective config.

    Args:
        path: YAML file; ``None`` for the defaults.
        overrides: dotted keys to values (``{"detection.box_thresh": 0.6}``), applied last.
        environ: environment to read ``FOLIO_*`` overrides from (default ``os.environ``).

    Raises:
        ConfigError: unreadable file, unknown key or invalid value; the message names it.
    """
    tree: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
        except FileNotFoundError as e:
            raise ConfigError(f"config file not found: {p}") from e
        except yaml.YAMLError as e:
            raise ConfigError(f"config file {p} is not valid YAML: {e}") from e
        if loaded is None:
            loaded = {}
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {p} must hold a mapping of sections, got {type(loaded).__name__}")
        tree = loaded
    tree = _merge(tree, _env_overrides(dict(os.environ if environ is None else environ)))
    for dotted, value in (overrides or {}).items():
        _set_path(tree, dotted, value)
    try:
        return FolioConfig.model_validate(tree)
    except ValidationError as e:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from e


def config_fingerprint(config: FolioConfig, model_hashes: dict[str, str] | None = None) -> str:
    """Short stable hash of every setting (and model file) that can change the output."""
    data = config.model_dump(mode="json")
    for section in _NOT_FINGERPRINTED:
        data.pop(section, None)
    for engine, sections in _ENGINE_SECTIONS.items():
        if engine != config.engine.name:
            for section in sections:
                data.pop(section, None)
    for section, keys in _FIELDS_NOT_FINGERPRINTED.items():
        for key in keys:
            data.get(section, {}).pop(key, None)
    from pipeline import __version__

    payload = {"config": data, "models": dict(sorted((model_hashes or {}).items())), "version": __version__}
    blob = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(blob).hexdigest()[:16]
