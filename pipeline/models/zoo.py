"""Where model files live, and proof that they are the ones we expect.

Folio runs the PP-OCR ONNX models that ship inside the ``rapidocr`` wheel (its
``models/`` folder). Nothing is downloaded at run time: clusters are often
air-gapped. Every known model file is checked against its sha256 before it is
loaded; a file we do not know (a custom ``engine.model_dir``) is accepted and
its hash recorded in the output so results stay traceable.
"""

from __future__ import annotations

import hashlib
import importlib.util
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from pipeline.errors import ModelError

__all__ = ["KNOWN_MODELS", "ModelFile", "default_model_dir", "files_sha256", "load_onnx", "model_metadata",
           "package_folder", "resolve_model"]

log = logging.getLogger(__name__)

#: sha256 of the model files shipped in rapidocr 3.10's wheel.
KNOWN_MODELS: dict[str, str] = {
    "PP-OCRv6_det_small.onnx": "090f04abcd9d9a7498bc4ebf677e4cb9bdce1fe4197ddb7e529f1ef44e1ff94f",
    "PP-OCRv6_rec_small.onnx": "6f327246b50388f3c176ae304bd95767ea6dc0c9ae92153ef8cbe210b3c14884",
    "ch_ppocr_mobile_v2.0_cls_mobile.onnx": "e47acedf663230f8863ff1ab0e64dd2d82b838fceb5957146dab185a89d6215c",
}

_hash_cache: dict[tuple, str] = {}
_hash_lock = threading.Lock()


@dataclass(frozen=True)
class ModelFile:
    """A verified model file: ``name`` is the file name, ``sha256`` its digest."""

    name: str
    path: Path
    sha256: str


def package_folder(package: str, folder: str, missing: str) -> Path:
    """``folder`` inside the installed ``package`` (found without importing it), for the data a
    wheel ships: rapidocr's models, pyspellchecker's word lists.

    Raises:
        ModelError: ``missing``, when the package is not installed.
    """
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(missing)
    return Path(next(iter(spec.submodule_search_locations))) / folder


def default_model_dir() -> Path:
    """The ``models/`` folder of the installed rapidocr wheel (found without importing it)."""
    return package_folder(
        "rapidocr",
        "models",
        "the rapidocr package (which ships the PP-OCR models) is not installed; "
        "install Folio with its dependencies (`pip install -e .`) or set engine.model_dir",
    )


def files_sha256(*paths: Path) -> str:
    """sha256 of the files' bytes, one after the other (for one file: that file's sha256).

    Cached by path, size and mtime: model files are hashed once per process.
    """
    key = tuple((str(p), p.stat().st_size, p.stat().st_mtime_ns) for p in paths)
    with _hash_lock:
        if key in _hash_cache:
            return _hash_cache[key]
    digest = hashlib.sha256()
    for path in paths:
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    value = digest.hexdigest()
    with _hash_lock:
        _hash_cache[key] = value
    return value


def resolve_model(name: str, model_dir: str | os.PathLike | None = None) -> ModelFile:
    """Locate ``name`` and verify its sha256.

    Raises:
        ModelError: the file is missing, or a known model's bytes do not match its hash.
    """
    folder = Path(model_dir) if model_dir is not None else default_model_dir()
    path = folder / name
    if not path.is_file():
        raise ModelError(f"model file {name!r} not found in {folder}; Folio never downloads models at run time")
    digest = files_sha256(path)
    expected = KNOWN_MODELS.get(name)
    if expected is not None and digest != expected:
        raise ModelError(f"model file {path} has sha256 {digest}, expected {expected}: the file is corrupt or replaced")
    if expected is None:
        log.warning("model %s is not a known Folio model; using it with sha256 %s", path, digest)
    return ModelFile(name=name, path=path, sha256=digest)


_metadata_cache: dict[tuple[str, str], dict[str, str]] = {}


def load_onnx(model: ModelFile):
    """The model file's ``onnx.ModelProto`` (to read or edit; the engines run their own copy).

    Raises:
        ModelError: the onnx package is missing or cannot read the file.
    """
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - a core dependency
        raise ModelError("the onnx package is not installed: `pip install onnx`") from e
    try:
        return onnx.load(str(model.path))
    except Exception as e:  # onnx raises DecodeError and friends for a bad file
        raise ModelError(f"onnx cannot read {model.path}: {e}") from e


def model_metadata(model: ModelFile) -> dict[str, str]:
    """The custom metadata stored in an ONNX model file (PP-OCR keeps the charset there), read
    without building an inference session; cached per file and sha256."""
    key = (str(model.path), model.sha256)
    with _hash_lock:
        if key in _metadata_cache:
            return dict(_metadata_cache[key])
    metadata = {p.key: p.value for p in load_onnx(model).metadata_props}
    with _hash_lock:
        _metadata_cache[key] = metadata
    return dict(metadata)
