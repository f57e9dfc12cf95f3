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
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

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
    "RayConfig",
    "StorageConfig",
    "FolioConfig",
    "load_config",
    "config_fingerprint",
    "to_yaml",
    "DEFAULTS_HEADER",
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
    batch_size: int = Field(
        8, ge=1, description="Most crops per recognition call (small batches are fastest on CPU; raise on GPU)."
    )
    max_batch_pixels: int = Field(
        48 * 320 * 64, ge=1, description="Most padded pixels per recognition call (caps memory on long lines)."
    )
    width_step: int = Field(
        32,
        ge=1,
        description="Crops are padded to their width rounded up to this and batched only with crops of the same "
        "padded width, so a line reads the same whatever else is in its batch (local and Ray runners agree).",
    )
    min_width: int = Field(
        128,
        ge=8,
        description="Narrowest padded batch width in pixels: short crops are padded up to it so the CTC "
        "sequence stays long enough for repeated characters.",
    )
    min_confidence: float = Field(0.5, ge=0, le=1, description="Lines recognised with lower confidence are dropped.")
    split_gap: float = Field(
        1.0,
        ge=0,
        description="Cut a detected line where its ink has a gap wider than this many line heights "
        "(form fields and table cells on one baseline); 0 never cuts.",
    )
    charset: Literal["all", "latin", "ascii"] = Field(
        "all",
        description="Characters recognition may emit: all (the model's multilingual charset), latin "
        "(Latin letters with accents, punctuation, currency and common symbols) or ascii.",
    )


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


class RayConfig(_Section):
    """How the Ray runner sizes its work. On small machines keep
    ``ocr_actors * ocr_num_cpus`` below the cluster's CPUs: an actor pool that
    reserves every CPU leaves none for the decode tasks that feed it, and Ray
    Data waits forever."""

    address: str | None = Field(
        None, description="Ray cluster to join (ray://host:10001 or host:6379); default: RAY_ADDRESS, else a local Ray."
    )
    ocr_actors: int = Field(1, ge=1, description="Most OCR actors (each loads the models once).")
    ocr_num_cpus: float = Field(
        1.0, gt=0, description="CPUs reserved per OCR actor; match engine.intra_op_threads on CPU workers."
    )
    ocr_num_gpus: float | None = Field(
        None, ge=0, description="GPUs per OCR actor; default: 1 when the cluster has GPUs, else 0."
    )
    decode_num_cpus: float = Field(
        0.5, gt=0, description="CPUs reserved per fetch-and-decode task (fractional, so decode keeps up on small nodes)."
    )
    max_decode_tasks: int = Field(4, ge=1, description="Most fetch-and-decode tasks in flight.")


class OutputConfig(_Section):
    compression: Literal["zstd", "snappy", "gzip", "none"] = Field("zstd", description="Parquet compression codec.")


class StorageConfig(_Section):
    endpoint_url: str | None = Field(
        None,
        description="S3-compatible endpoint, e.g. http://minio:9000 for MinIO; default: AWS_ENDPOINT_URL_S3 or "
        "AWS_ENDPOINT_URL when set, else AWS S3. Credentials never go here: they come from the standard AWS "
        "chain (environment, profile, instance or pod role).",
    )
    region: str | None = Field(
        None, description="AWS region of the buckets; default: AWS_REGION, AWS_DEFAULT_REGION or the profile's."
    )
    addressing_style: Literal["auto", "path", "virtual"] = Field(
        "auto",
        description="How buckets appear in request URLs. auto: path-style (http://host/bucket/key) when an "
        "endpoint is configured (MinIO and most S3-compatible stores need it), AWS's default otherwise.",
    )
    max_attempts: int = Field(
        10, ge=1, description="Attempts per request, the first included, before a storage_error is reported."
    )
    retry_mode: Literal["adaptive", "standard", "legacy"] = Field(
        "adaptive",
        description="botocore retry mode; adaptive also slows the client down when the store throttles (SlowDown).",
    )
    connect_timeout_s: float = Field(10.0, gt=0, description="Seconds to wait for a connection to the store.")
    read_timeout_s: float = Field(60.0, gt=0, description="Seconds to wait for data on an open connection.")
    multipart_threshold_bytes: int = Field(
        64 << 20,
        ge=1,
        description="Outputs up to this size are written with one PUT; larger ones with a multipart upload "
        "(parts of this size, at least 5 MiB) that becomes visible only when complete.",
    )
    max_pool_connections: int = Field(16, ge=1, description="Most open HTTP connections per S3 client.")

    @field_validator("endpoint_url")
    @classmethod
    def _plain_endpoint(cls, value: str | None) -> str | None:
        if value is None:
            return value
        scheme, sep, rest = value.partition("://")
        if not sep or scheme not in ("http", "https") or not rest:
            raise ValueError(f"must be an http:// or https:// URL, got {value!r}")
        if "@" in rest.split("/", 1)[0]:  # said without echoing it: it holds a secret
            raise ValueError("must not carry credentials (user:password@); they come from the AWS chain")
        return value


#: Sections whose settings never change the output, left out of the fingerprint.
_NOT_FINGERPRINTED = {"runner", "output", "storage", "ray"}
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
    ray: RayConfig = RayConfig()
    storage: StorageConfig = StorageConfig()


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


def to_yaml(config: FolioConfig, header: str = "") -> str:
    """The config as commented YAML: every section and field with its description.

    ``configs/default.yaml`` is ``to_yaml(FolioConfig(), DEFAULTS_HEADER)``
    (``folio config --defaults`` prints it), so the file cannot drift from the code.
    """
    import textwrap

    lines = [header.rstrip("\n"), ""] if header else []
    for name in type(config).model_fields:
        section = getattr(config, name)
        lines.append(f"{name}:")
        for field_name, info in type(section).model_fields.items():
            for chunk in textwrap.wrap(info.description or "", 100):
                lines.append(f"  # {chunk}")
            value = yaml.safe_dump(getattr(section, field_name), default_flow_style=True, width=1000).strip()
            if value.endswith("\n..."):
                value = value[:-4]
            value = value.removesuffix("...").strip()
            lines.append(f"  {field_name}: {value}")
        lines.append("")
    return "\n".join(lines)


DEFAULTS_HEADER = """\
# Folio defaults: every setting with its default value.
# Override with --config FILE, FOLIO_<SECTION>__<FIELD> environment variables, or --set section.field=value.
# Generated by `folio config --defaults > configs/default.yaml`; tests/test_config.py checks it matches.
"""
