"""Inference engines: the one seam between Folio's pre/post-processing and a runtime.

An engine wraps one model and maps a float32 NCHW array to the model's output
array. Detection and recognition never touch ONNX Runtime directly, so the
torch engine (:mod:`pipeline.models.torch_engine`, the default on CUDA) slots in
behind the same two methods. Engines are built from names in exactly one place,
:func:`create_engine`; ``engine.name=auto`` is resolved in one place too,
:func:`resolve_engine_name`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from pipeline.config import EngineConfig
from pipeline.errors import ModelError, OcrError
from pipeline.models.graph import (
    ALTERNATIVE_OUTPUTS,
    BEST_CLASS_OUTPUTS,
    append_best_class,
    flush_denormals,
    select_classes,
)
from pipeline.models.zoo import ModelFile, load_onnx

__all__ = ["Engine", "OnnxRuntimeEngine", "create_engine", "engine_label", "resolve_engine", "resolve_engine_name"]

log = logging.getLogger(__name__)


class Engine(Protocol):
    """What detection and recognition need from a runtime."""

    model: ModelFile
    #: The output classes a cut-down classification head computes (see
    #: :func:`~pipeline.models.graph.select_classes`); None: all.
    classes: tuple[int, ...] | None
    #: True: the engine returns each frame's best class instead of every class's probability (see
    #: :func:`append_best_class`).
    best_class: bool
    #: With ``best_class``: how many next-best classes per frame it also returns (0: none).
    alternatives: int

    def __call__(self, inputs: np.ndarray) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Run the model on one float32 NCHW batch and return its first output; with ``best_class``,
        the ``(best, best_prob, last_prob)`` arrays :func:`append_best_class` describes, followed
        with ``alternatives`` by ``(alt_class, alt_prob)``."""

    def metadata(self) -> dict[str, str]:
        """Custom metadata stored in the model (PP-OCR keeps the charset there)."""


class OnnxRuntimeEngine:
    """ONNX Runtime on CPU with thread counts from config, never from ``os.cpu_count()``.

    With ``classes``, the model's classification head computes only those output
    classes (:func:`select_classes`); ``self.classes`` says which. With
    ``best_class``, it returns each frame's best class (:func:`append_best_class`).
    """

    def __init__(
        self,
        model: ModelFile,
        config: EngineConfig,
        classes: Sequence[int] | None = None,
        best_class: bool = False,
        alternatives: int = 0,
    ):
        try:
            import onnxruntime as ort
        except ImportError as e:  # pragma: no cover - a core dependency
            raise ModelError("onnxruntime is not installed: `pip install onnxruntime`") from e
        options = ort.SessionOptions()
        options.intra_op_num_threads = config.intra_op_threads
        options.inter_op_num_threads = config.inter_op_threads
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Page and line sizes vary from call to call; the arena would keep the
        # largest allocation ever seen, so growth is bounded by turning it off.
        options.enable_cpu_mem_arena = False
        options.log_severity_level = 3
        proto = load_onnx(model)
        flushed = flush_denormals(proto)
        if flushed:
            log.debug("%s: %d subnormal weights set to zero", model.name, flushed)
        if classes is not None:  # only these classes in its head
            select_classes(proto, classes)
        if best_class:
            append_best_class(proto, alternatives)
        source = proto.SerializeToString()
        try:
            self._session = ort.InferenceSession(source, sess_options=options, providers=["CPUExecutionProvider"])
        except Exception as e:  # ORT raises its own untyped errors for bad graphs
            raise ModelError(f"ONNX Runtime cannot load {model.path}: {e}") from e
        self.model = model
        self.classes = None if classes is None else tuple(int(c) for c in classes)
        self.best_class = best_class
        self.alternatives = alternatives if best_class else 0
        self._input = self._session.get_inputs()[0].name
        self._outputs = [self._session.get_outputs()[0].name]
        if best_class:
            self._outputs = list(BEST_CLASS_OUTPUTS) + (list(ALTERNATIVE_OUTPUTS) if self.alternatives else [])

    def __call__(self, inputs: np.ndarray) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
        if inputs.dtype != np.float32 or inputs.ndim != 4:
            raise ValueError(f"expected a float32 NCHW array, got {inputs.dtype} of shape {inputs.shape}")
        try:
            outputs = self._session.run(self._outputs, {self._input: inputs})
            return tuple(outputs) if self.best_class else outputs[0]
        except Exception as e:
            raise OcrError(f"{self.model.name} failed on input of shape {inputs.shape}: {e}") from e

    def metadata(self) -> dict[str, str]:
        return dict(self._session.get_modelmeta().custom_metadata_map)


def _nvidia_driver_present() -> bool:
    """Whether this machine shows signs of an NVIDIA driver, checked without importing torch
    (which costs seconds): its device nodes, its /proc entry, or its libcuda."""
    import ctypes.util
    import os

    return (os.path.exists("/dev/nvidiactl") or os.path.exists("/proc/driver/nvidia")
            or ctypes.util.find_library("cuda") is not None)


@functools.cache
def _torch_cuda_available() -> bool:
    if not _nvidia_driver_present():
        return False
    from pipeline.models.torch_engine import torch_available

    if not torch_available():
        return False
    import torch

    return bool(torch.cuda.is_available())


def resolve_engine_name(config: EngineConfig) -> str:
    """The engine ``engine.name`` stands for in this process: ``auto`` is torch on CUDA, ONNX Runtime
    otherwise.

    ``auto`` picks torch when this machine has an NVIDIA driver, torch imports and sees a
    CUDA device, and ``engine.device`` is not ``cpu`` (on a CPU, ONNX Runtime is the faster of
    the two). Every other name is returned as it is.
    """
    if config.name != "auto":
        return config.name
    if config.device != "cpu" and _torch_cuda_available():
        return "torch"
    return "onnxruntime"


def resolve_engine(config, cuda: bool | None = None):
    """``config`` with the engine that will run made concrete: ``engine.name: auto`` replaced by the
    engine, and for torch ``engine.device`` and ``engine.dtype`` by the device and precision it
    computes in.

    Runners call this once, where the run starts, with what they know of the workers that
    compute, so the fingerprint, the ``engine`` column and the workers all agree: the Ray
    runner passes whether its OCR actors hold a GPU (its driver may run on a CPU-only head or
    flow pod); ``None`` asks this process (the local runner's workers are this process).
    A resolved config resolves to itself.

    Args:
        config: a :class:`~pipeline.config.FolioConfig`.
        cuda: whether the OCR workers have a CUDA device, when known.
    """
    from pipeline.models.torch_engine import resolve_dtype  # imports no torch

    engine = config.engine
    if engine.name not in ("auto", "torch"):
        return config
    if cuda is None:
        if engine.name == "auto":
            cuda = resolve_engine_name(engine) == "torch"
        elif engine.device == "auto":
            from pipeline.models.torch_engine import resolve_device

            cuda = resolve_device(engine).startswith("cuda")
        else:
            cuda = engine.device.startswith("cuda")
    name = engine.name
    if name == "auto":
        name = "torch" if cuda and engine.device != "cpu" else "onnxruntime"
    update: dict = {"name": name}
    if name == "torch":
        device = engine.device if engine.device != "auto" else ("cuda" if cuda else "cpu")
        update["device"] = device
        update["dtype"] = resolve_dtype(engine, device)
    return config.model_copy(update={"engine": engine.model_copy(update=update)})


def engine_label(config: EngineConfig) -> str:
    """What the ``engine`` column says of a resolved engine: its name, and for torch the device kind
    and precision it computes in (``torch/cuda/float16``), so rows say what computed them."""
    if config.name != "torch":
        return config.name
    device = "cuda" if config.device.startswith("cuda") else config.device
    return f"torch/{device}/{config.dtype}"


def create_engine(
    model: ModelFile,
    config: EngineConfig,
    classes: Sequence[int] | None = None,
    best_class: bool = False,
    alternatives: int = 0,
) -> Engine:
    """Build the engine the config names (``auto`` resolved) for one model file.

    Args:
        model: the model file.
        config: the ``engine`` settings.
        classes: output classes to keep in a classification head (:func:`select_classes`);
            None runs the model whole.
        best_class: return each frame's best class, its probability and the last class's
            probability instead of the ``(N, T, C)`` probabilities (:func:`append_best_class`).
        alternatives: with ``best_class``, also return each frame's next this many classes and
            their probabilities (for lexicon correction).
    """
    name = resolve_engine_name(config)
    if name == "onnxruntime":
        return OnnxRuntimeEngine(model, config, classes, best_class, alternatives)
    if name == "torch":
        from pipeline.models.torch_engine import TorchEngine

        return TorchEngine(model, config, classes, best_class, alternatives)
    raise ModelError(f"engine {name!r} does not run ONNX models")
