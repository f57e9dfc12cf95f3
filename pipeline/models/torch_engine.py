"""The PP-OCR ONNX models run by torch: the engine Folio uses on CUDA.

The ONNX graph is converted with onnx2torch after two rewrites of our own,
for what onnx2torch cannot convert (checked with the onnx package on the
models Folio ships):

- ``auto_pad=SAME_UPPER`` / ``SAME_LOWER`` on Conv and pooling nodes (the
  detection and recognition models' stems) becomes explicit ``pads``. ONNX
  computes SAME pads from the input size; for an input whose size is a
  multiple of the node's stride the total pad is
  ``dilation * (kernel - 1) + 1 - stride`` whatever the size, so fixed pads
  are exact. Folio pads its inputs to multiples of the network stride
  (detection pages to multiples of 32, recognition crops to multiples of
  ``recognition.width_step``), and the engine checks that precondition on
  every call of a rewritten model, raising a ``ValueError`` that names the
  expected multiple. (In the shipped models the SAME nodes have stride 1, so
  their pads do not depend on the input size at all; the check still guards
  the stated contract, and with it the FPN/stride arithmetic of the graph.)
- ``Constant`` nodes (the classifier keeps every weight in one) become graph
  initializers, which is where onnx2torch looks for Conv weights.

Weights and inputs run in float16 on CUDA by default (``engine.dtype``),
float32 on CPU. The converted module is cached per process, so a second
engine on the same model file converts nothing.
"""

from __future__ import annotations

import copy
import logging
import math
import os
import sys
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.config import EngineConfig
from pipeline.errors import ModelError, OcrError
from pipeline.models.graph import flush_denormals, select_classes
from pipeline.models.zoo import ModelFile, load_onnx

__all__ = ["TorchEngine", "import_torch", "rewrite_graph", "network_stride", "resolve_device", "resolve_dtype",
           "torch_available"]

log = logging.getLogger(__name__)

_INSTALL_HINT = "install the torch extra: `pip install 'folio[torch]'`"
#: Ops whose ``auto_pad`` onnx2torch cannot convert and :func:`rewrite_graph` turns into ``pads``.
_SAME_PAD_OPS = ("Conv", "MaxPool", "AveragePool", "LpPool")
#: Ops that downsample by their ``strides`` (for :func:`network_stride`).
_STRIDED_OPS = ("Conv", "MaxPool", "AveragePool", "LpPool")


def _quiet_openmp() -> None:
    """Let idle OpenMP threads sleep instead of spin, unless the environment says otherwise.

    Must run before torch is first imported (libgomp reads it once). On CPUs
    shared with decode tasks and other workers, torch's spinning OpenMP threads
    stall each other at every operator's barrier, many times slower than with
    ``OMP_WAIT_POLICY=PASSIVE``, which is as fast when the cores are idle.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def import_torch() -> tuple[Any, Any, Any]:
    """torch, onnx and onnx2torch's ``convert``, imported on first use."""
    _quiet_openmp()
    try:
        import onnx
        import torch
        from onnx2torch import convert
    except ImportError as e:
        raise ModelError(f"the torch engine needs torch, onnx and onnx2torch ({e}); {_INSTALL_HINT}") from e
    # onnx2torch's Slice indexes with a list; torch warns about it on every new shape.
    warnings.filterwarnings(
        "ignore", message="Using a non-tuple sequence for multidimensional indexing", category=UserWarning
    )
    return torch, onnx, convert


def torch_available() -> bool:
    """Whether torch can be imported here (without importing it when it is not installed)."""
    import importlib.util

    if importlib.util.find_spec("torch") is None:
        return False
    _quiet_openmp()
    try:
        import torch  # noqa: F401
    except (ImportError, OSError) as e:  # a broken CUDA install raises OSError on import
        log.warning("torch is installed but cannot be imported: %s", e)
        return False
    return True


def resolve_device(config: EngineConfig) -> str:
    """The torch device ``engine.device`` names: ``auto`` is ``cuda`` when available, else ``cpu``."""
    if config.device != "auto":
        return config.device
    if not torch_available():
        return "cpu"
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def resolve_dtype(config: EngineConfig, device: str) -> str:
    """The precision the torch engine runs in: ``engine.dtype``, else float16 on CUDA and float32 on CPU."""
    if config.dtype is not None:
        return config.dtype
    return "float16" if device.startswith("cuda") else "float32"


# -- graph rewrites -------------------------------------------------------------------------------


def _attrs(node) -> dict[str, Any]:
    from onnx import helper

    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def rewrite_graph(model) -> dict[str, int]:
    """Make an ONNX model convertible by onnx2torch, in place.

    Args:
        model: an ``onnx.ModelProto``.

    Returns:
        How many nodes each rewrite changed: ``{"same_pads": n, "constants": m}``.

    Raises:
        ModelError: a SAME-padded op this rewrite does not know (``ConvTranspose``).
    """
    from onnx import TensorProto, helper

    graph = model.graph
    initializers = {t.name: t for t in graph.initializer}
    same = 0
    for node in graph.node:
        attrs = _attrs(node)
        auto_pad = attrs.get("auto_pad", b"NOTSET")
        auto_pad = auto_pad.decode() if isinstance(auto_pad, bytes) else auto_pad
        if auto_pad not in ("SAME_UPPER", "SAME_LOWER"):
            continue
        if node.op_type not in _SAME_PAD_OPS:
            raise ModelError(f"{node.op_type} node {node.name!r} uses auto_pad={auto_pad}, which Folio cannot rewrite")
        if "kernel_shape" in attrs:
            kernel = list(attrs["kernel_shape"])
        elif len(node.input) > 1 and node.input[1] in initializers:
            kernel = list(initializers[node.input[1]].dims[2:])
        else:
            raise ModelError(f"{node.op_type} node {node.name!r}: kernel shape unknown, cannot rewrite auto_pad")
        rank = len(kernel)
        strides = list(attrs.get("strides", [1] * rank))
        dilations = list(attrs.get("dilations", [1] * rank))
        # ONNX: total pad = (ceil(in / s) - 1) * s + d * (k - 1) + 1 - in, which for in % s == 0 is:
        total = [max(0, d * (k - 1) + 1 - s) for k, s, d in zip(kernel, strides, dilations)]
        small, large = [t // 2 for t in total], [t - t // 2 for t in total]
        pads = small + large if auto_pad == "SAME_UPPER" else large + small
        for attr in [a for a in node.attribute if a.name in ("auto_pad", "pads")]:
            node.attribute.remove(attr)
        node.attribute.append(helper.make_attribute("pads", pads))
        same += 1
    constants = 0
    for node in list(graph.node):
        if node.op_type == "Constant" and len(node.attribute) == 1 and node.attribute[0].name == "value":
            tensor = TensorProto()
            tensor.CopyFrom(node.attribute[0].t)
            tensor.name = node.output[0]
            graph.initializer.append(tensor)
            graph.node.remove(node)
            constants += 1
    return {"same_pads": same, "constants": constants}


def network_stride(model) -> tuple[int, int]:
    """The total downsampling of a 2-D network along height and width.

    Strides of Conv and pooling nodes multiply along every path from the input;
    the result is the largest product found (upsampling is ignored, so this is
    the stride of the deepest feature map, e.g. 32 x 32 for the DB detector).
    """
    graph = model.graph
    initializer_names = {t.name for t in graph.initializer}
    inputs = [i.name for i in graph.input if i.name not in initializer_names]
    cumulative: dict[str, tuple[int, int]] = {name: (1, 1) for name in inputs}
    best = (1, 1)
    for node in graph.node:
        seen = [cumulative[name] for name in node.input if name in cumulative]
        if not seen:
            continue
        h, w = max(s[0] for s in seen), max(s[1] for s in seen)
        if node.op_type in _STRIDED_OPS:
            strides = list(_attrs(node).get("strides", [1, 1]))
            if len(strides) == 2:
                h, w = h * strides[0], w * strides[1]
        for name in node.output:
            cumulative[name] = (h, w)
        best = (max(best[0], h), max(best[1], w))
    return best


# -- conversion cache -----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Converted:
    module: Any  # torch.fx.GraphModule, float32 on CPU
    metadata: dict[str, str]
    #: (height, width) multiples every input must have; (1, 1) when nothing was rewritten.
    multiples: tuple[int, int]
    rewrites: dict[str, int]


_converted: dict[tuple, _Converted] = {}
_prepared: dict[tuple, Any] = {}
_cache_lock = threading.Lock()


def _convert(model: ModelFile, classes: tuple[int, ...] | None = None) -> _Converted:
    """The model (its head cut down to ``classes``, if given) converted once per process
    (keyed by path, sha256 and classes)."""
    key = (str(model.path), model.sha256, classes)
    with _cache_lock:
        if key in _converted:
            return _converted[key]
        convert = import_torch()[2]
        proto = load_onnx(model)
        flush_denormals(proto)  # subnormal weights are slow on a CPU, and change nothing
        if classes is not None:
            select_classes(proto, classes)
        metadata = {p.key: p.value for p in proto.metadata_props}
        rewrites = rewrite_graph(proto)
        multiples = network_stride(proto) if rewrites["same_pads"] else (1, 1)
        try:
            module = convert(proto).eval()
        except (NotImplementedError, KeyError, ValueError, RuntimeError) as e:
            raise ModelError(f"onnx2torch cannot convert {model.name}: {e!r}") from e
        module.requires_grad_(False)
        log.info("converted %s to torch (rewrites %s, input multiples %s)", model.name, rewrites, multiples)
        converted = _Converted(module, metadata, multiples, rewrites)
        _converted[key] = converted
        return converted


def _prepare(model: ModelFile, converted: _Converted, device: str, dtype: str, compile_: bool,
             classes: tuple[int, ...] | None = None):
    """The module moved to ``device`` and cast to ``dtype`` (and compiled), cached per process."""
    key = (str(model.path), model.sha256, device, dtype, compile_, classes)
    with _cache_lock:
        if key in _prepared:
            return _prepared[key]
        torch = import_torch()[0]
        # channels_last: oneDNN (CPU) and cuDNN (tensor cores) convolve NHWC without reordering.
        module = copy.deepcopy(converted.module).to(memory_format=torch.channels_last)
        if device != "cpu" or dtype != "float32":
            module = module.to(device=torch.device(device), dtype=getattr(torch, dtype))
        if compile_:
            module = torch.compile(module)
        _prepared[key] = module
        return module


# -- the engine -----------------------------------------------------------------------------------


class TorchEngine:
    """A PP-OCR ONNX model run by torch (see the module docstring for the conversion).

    Args:
        model: the verified ONNX model file.
        config: ``engine`` settings: ``device``, ``dtype``, ``compile``, ``intra_op_threads``.

    Raises:
        ModelError: torch, onnx or onnx2torch missing; CUDA asked for but absent; the graph
            cannot be converted.
    """

    def __init__(
        self,
        model: ModelFile,
        config: EngineConfig,
        classes: Sequence[int] | None = None,
        best_class: bool = False,
        alternatives: int = 0,
    ):
        torch = import_torch()[0]
        self._torch = torch
        self.model = model
        #: Output classes of a cut-down classification head (see engine.select_classes); None: all.
        self.classes = None if classes is None else tuple(int(c) for c in classes)
        #: Return each frame's best class, its probability and the last class's probability
        #: (engine.append_best_class), reduced on the device before the copy to the host.
        self.best_class = best_class
        #: With best_class, also each frame's next this many classes and their probabilities.
        self.alternatives = alternatives if best_class else 0
        self.device = resolve_device(config)
        if self.device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise ModelError(
                    f"engine.device={config.device} but torch sees no CUDA device "
                    f"(torch {torch.__version__}, built for CUDA {torch.version.cuda}); use engine.device=cpu"
                )
            index = torch.device(self.device).index
            if index is not None and index >= torch.cuda.device_count():
                raise ModelError(f"engine.device={self.device} but only {torch.cuda.device_count()} CUDA devices exist")
        self.dtype = resolve_dtype(config, self.device)
        self._torch_dtype = getattr(torch, self.dtype)
        # Thread counts come from the config, never from the cores Python sees.
        torch.set_num_threads(config.intra_op_threads)
        if torch.get_num_interop_threads() != config.inter_op_threads:
            try:
                torch.set_num_interop_threads(config.inter_op_threads)
            except RuntimeError:  # torch allows it only before the first parallel work
                log.debug("torch inter-op threads already fixed at %d", torch.get_num_interop_threads())
        self._cuda = self.device.startswith("cuda")
        if self._cuda and self.dtype == "float32":
            # TF32 convolutions would drift from ONNX Runtime by ~1e-3; float32 means float32.
            torch.backends.cudnn.allow_tf32 = False
            torch.backends.cuda.matmul.allow_tf32 = False
        converted = _convert(model, self.classes)
        self._metadata = converted.metadata
        self.multiples = converted.multiples
        self._module = _prepare(model, converted, self.device, self.dtype, config.compile, self.classes)
        #: On a GPU, recognition sizes batches by padded pixels only (see TextRecognizer).
        self.batch_by_pixels = self._cuda

    def check_input(self, inputs: np.ndarray) -> None:
        """Raise ``ValueError`` unless ``inputs`` is float32 NCHW with H and W multiples of the network stride."""
        if inputs.dtype != np.float32 or inputs.ndim != 4:
            raise ValueError(f"expected a float32 NCHW array, got {inputs.dtype} of shape {inputs.shape}")
        (mh, mw), (h, w) = self.multiples, inputs.shape[2:]
        if h % mh or w % mw:
            raise ValueError(
                f"{self.model.name}: input height x width {h} x {w} must be multiples of {mh} x {mw}, the "
                "network stride: the torch engine replaced auto_pad=SAME_* by fixed pads, exact only for such "
                f"inputs (pad to {math.ceil(h / mh) * mh} x {math.ceil(w / mw) * mw}; Folio pads detection "
                "pages to multiples of 32 and recognition crops to multiples of recognition.width_step)"
            )

    def __call__(self, inputs: np.ndarray) -> np.ndarray | tuple[np.ndarray, np.ndarray, np.ndarray]:
        self.check_input(inputs)
        torch = self._torch
        try:
            with torch.inference_mode():
                x = torch.from_numpy(inputs)
                if self._cuda:
                    x = x.pin_memory().to(self.device, non_blocking=True)
                x = x.to(self._torch_dtype).contiguous(memory_format=torch.channels_last)
                out = self._module(x)
                if isinstance(out, (tuple, list)):
                    out = out[0]
                if not self.best_class:
                    return self._to_host(out.float())[0]
                if out.ndim != 3:
                    raise ModelError(f"{self.model.name}: best_class needs (N, T, classes) output, got {tuple(out.shape)}")
                best_prob, best = out.max(dim=2)  # on a tie the first class, as numpy.argmax
                tensors = [best, best_prob.float(), out[..., -1].float()]
                if self.alternatives:
                    top_prob, top_class = out.topk(self.alternatives + 1, dim=2)
                    tensors += [top_class[..., 1:], top_prob[..., 1:].float()]
                return tuple(self._to_host(*tensors))
        except RuntimeError as e:  # torch reports shape errors and CUDA out-of-memory as RuntimeError
            raise OcrError(f"{self.model.name} failed on input of shape {inputs.shape}: {e}") from e

    def _to_host(self, *tensors) -> list[np.ndarray]:
        """The tensors as numpy arrays; from a GPU through pinned buffers, one synchronisation for all."""
        if not self._cuda:
            return [t.contiguous().numpy() for t in tensors]
        torch = self._torch
        hosts = []
        for t in tensors:
            host = torch.empty(t.shape, dtype=t.dtype, pin_memory=True)
            host.copy_(t, non_blocking=True)
            hosts.append(host)
        torch.cuda.current_stream(torch.device(self.device)).synchronize()
        return [h.numpy() for h in hosts]

    def metadata(self) -> dict[str, str]:
        return dict(self._metadata)
