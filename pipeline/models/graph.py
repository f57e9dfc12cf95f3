"""Edits Folio makes to an ONNX graph before an engine runs it, the same for every engine.

- :func:`flush_denormals`: subnormal weights set to zero (they are slow on x86 and change nothing);
- :func:`select_classes`: a classification head cut down to the classes decoding may emit;
- :func:`append_best_class`: each frame's best class (and next-best ones) taken inside the graph;
- :func:`output_logits`: the scores before the classification head's softmax as the output, to train on.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.errors import ModelError

__all__ = ["ALTERNATIVE_OUTPUTS", "BEST_CLASS_OUTPUTS", "append_best_class", "flush_denormals", "head",
           "output_logits", "select_classes"]


def head(model):
    """A recognition model's classification head: its ``Softmax``, ``Add`` nodes and the ``[D, C]`` weight
    and ``[C]`` bias initializers of the ``MatMul`` -> ``Add`` -> ``Softmax`` the first output comes from
    (``Identity`` nodes in between are followed).

    Raises:
        ModelError: the graph does not end in that head, its weights are not constants used by it alone,
            or the softmax is not over the classes.
    """
    graph = model.graph
    producer = {out: node for node in graph.node for out in node.output}
    initializers = {t.name: t for t in graph.initializer}
    uses: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            uses[name] = uses.get(name, 0) + 1

    def source(name: str):
        node = producer.get(name)
        while node is not None and node.op_type == "Identity":
            node = producer.get(node.input[0])
        return node

    softmax = source(graph.output[0].name)
    add = source(softmax.input[0]) if softmax is not None and softmax.op_type == "Softmax" else None
    matmul = source(add.input[0]) if add is not None and add.op_type == "Add" else None
    if matmul is None or matmul.op_type != "MatMul":
        raise ModelError("the model does not end in MatMul -> Add -> Softmax; its classes cannot be selected")
    weight, bias = initializers.get(matmul.input[1]), initializers.get(add.input[1])
    if weight is None or bias is None or len(weight.dims) != 2 or list(bias.dims) != [weight.dims[1]]:
        raise ModelError("the classification head's weights are not constant [D, C] and [C] tensors")
    if uses.get(weight.name) != 1 or uses.get(bias.name) != 1:
        raise ModelError("the classification head's weights are shared with other nodes")
    axis = next((a.i for a in softmax.attribute if a.name == "axis"), -1)
    if axis not in (-1, len(graph.output[0].type.tensor_type.shape.dim) - 1):
        raise ModelError(f"the model's softmax is over axis {axis}, not the classes")
    return softmax, add, weight, bias


def output_logits(model) -> None:
    """Make a recognition model output its class scores before the softmax, in place, and drop the
    softmax and what follows it: a CTC loss takes their log-softmax, which is exact where a log of
    the probabilities would lose the small ones.

    Raises:
        ModelError: as :func:`head`.
    """
    graph = model.graph
    softmax, add, _, _ = head(model)
    out = graph.output[0]
    producer = {o: node for node in graph.node for o in node.output}
    drop, name = [], out.name
    while name != softmax.output[0]:
        node = producer[name]
        drop.append(node)
        name = node.input[0]
    drop.append(softmax)
    for node in drop:
        graph.node.remove(node)
    out.name = add.output[0]


def select_classes(model, classes: Sequence[int]) -> None:
    """Cut a model's classification head down to the output ``classes``, in place.

    PP-OCR's recognition model ends in ``MatMul`` (weights ``[D, C]``) ->
    ``Add`` (bias ``[C]``) -> ``Softmax`` over the classes, and that head is
    the largest single layer (18,710 classes x 120). When decoding may only
    emit some classes (``recognition.charset``), computing the others is waste:
    their columns are dropped, so the model outputs ``len(classes)``
    probabilities, in the order given, with the softmax taken over them alone.

    Args:
        model: an ``onnx.ModelProto`` whose first output is that softmax
            (``Identity`` nodes in between are followed).
        classes: output class indices to keep.

    Raises:
        ModelError: the graph does not end in that head, or a class index is out of range.
    """
    from onnx import numpy_helper

    graph = model.graph
    _, add, weight, bias = head(model)
    count = int(weight.dims[1])
    keep = np.asarray(classes, dtype=np.int64)
    if keep.ndim != 1 or keep.size == 0 or keep.min() < 0 or keep.max() >= count:
        raise ModelError(f"classes to keep must be indices below {count}")
    for tensor, array in ((weight, numpy_helper.to_array(weight)[:, keep]),
                          (bias, numpy_helper.to_array(bias)[keep])):
        tensor.CopyFrom(numpy_helper.from_array(np.ascontiguousarray(array), tensor.name))
    for value in list(graph.output) + list(graph.value_info):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[-1].HasField("dim_value") and dims[-1].dim_value == count:
            dims[-1].dim_value = int(keep.size)


def flush_denormals(model) -> int:
    """Set the subnormal values of a model's floating-point weights to zero, in place.

    A subnormal float (below 1.2e-38 in float32) is too small to change any
    sum it enters, but x86 CPUs compute with one through a microcode assist,
    far slower than with a normal number. PP-OCRv6's detection model has many
    in two 1x1 convolutions of its last stage, which made those layers most of
    the model's time on CPU (docs/benchmarks.md). The outputs stay the same:
    each flushed value contributes less than float32's smallest normal number
    to a sum.

    ONNX Runtime's ``session.set_denormal_as_zero`` is not used instead: it
    sets the calling thread's floating-point mode for good, so numpy in that
    thread would read every subnormal as zero afterwards.

    Returns:
        How many values were set to zero.
    """
    from onnx import numpy_helper

    flushed = 0
    for tensor in model.graph.initializer:
        bits = _FLOAT_BITS.get(tensor.data_type)
        if bits is None:
            continue
        array = numpy_helper.to_array(tensor)
        # Found by their bits, not by comparing values: where a runtime has set the CPU to treat
        # subnormals as zero (denormals-are-zero), a comparison would see them as 0 already.
        raw = array.view(bits[0])
        subnormal = ((raw & bits[1]) == 0) & ((raw & bits[2]) != 0)
        count = int(np.count_nonzero(subnormal))
        if count:
            raw = raw.copy()
            raw[subnormal] = 0
            tensor.CopyFrom(numpy_helper.from_array(raw.view(array.dtype), tensor.name))
            flushed += count
    return flushed


#: ONNX float types: the unsigned integer of their width, their exponent bits and their mantissa bits.
_FLOAT_BITS = {
    1: (np.uint32, 0x7F800000, 0x007FFFFF),  # TensorProto.FLOAT
    10: (np.uint16, 0x7C00, 0x03FF),  # FLOAT16
    11: (np.uint64, 0x7FF0000000000000, 0x000FFFFFFFFFFFFF),  # DOUBLE
}


#: Names of the outputs :func:`append_best_class` gives a graph, in order.
BEST_CLASS_OUTPUTS = ("folio_best_class", "folio_best_prob", "folio_last_prob")
#: And the two it adds with ``alternatives``.
ALTERNATIVE_OUTPUTS = ("folio_alt_class", "folio_alt_prob")


def append_best_class(model, alternatives: int = 0) -> None:
    """Make a graph whose output is each frame's class probabilities output each frame's best class instead.

    PP-OCR's recognition model outputs ``(N, T, C)`` probabilities: with the
    multilingual charset, 18,710 floats per frame, of which greedy CTC decoding
    reads three: the best class, its probability, and the probability of the
    last class (the space). Taking them inside the graph keeps the full array
    from being copied out of the runtime (and, on a GPU, off the device) and
    scanned again in numpy. The graph's outputs become
    :data:`BEST_CLASS_OUTPUTS`: ``(N, T)`` int64 best class (the first, on a
    tie, as ``numpy.argmax``), ``(N, T)`` its probability, ``(N, T)`` the last
    class's probability. The values are those the full output holds, bit for bit.

    With ``alternatives`` > 0, two more outputs follow (:data:`ALTERNATIVE_OUTPUTS`): each
    frame's next ``alternatives`` classes after the best, by falling probability, ``(N, T, A)``
    int64, and their ``(N, T, A)`` probabilities; lexicon correction reads them. One ``TopK``
    then gives the best class and the next ones (the same best class and probability).

    Raises:
        ModelError: the first output is not a ``(N, T, C)`` tensor with a fixed ``C``.
    """
    from onnx import TensorProto, helper, numpy_helper

    graph = model.graph
    probs = graph.output[0]
    dims = probs.type.tensor_type.shape.dim
    if len(dims) != 3 or not dims[2].HasField("dim_value"):
        raise ModelError("the model's output is not (N, T, classes) with a fixed class count")
    last = int(dims[2].dim_value) - 1
    opset = next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)
    graph.initializer.append(numpy_helper.from_array(np.array(last, np.int64), "folio_last_class"))
    last_prob = helper.make_node("Gather", [probs.name, "folio_last_class"], [BEST_CLASS_OUTPUTS[2]], axis=2)
    elem = probs.type.tensor_type.elem_type
    frames = [d.dim_value if d.HasField("dim_value") else (d.dim_param or None) for d in (dims[0], dims[1])]
    outputs = [helper.make_tensor_value_info(name, kind, frames)
               for name, kind in zip(BEST_CLASS_OUTPUTS, (TensorProto.INT64, elem, elem))]
    if alternatives <= 0:
        if opset >= 18:  # ReduceMax takes its axes as an input from opset 18
            graph.initializer.append(numpy_helper.from_array(np.array([2], np.int64), "folio_class_axis"))
            reduce_max = helper.make_node("ReduceMax", [probs.name, "folio_class_axis"], [BEST_CLASS_OUTPUTS[1]],
                                          keepdims=0)
        else:
            reduce_max = helper.make_node("ReduceMax", [probs.name], [BEST_CLASS_OUTPUTS[1]], axes=[2], keepdims=0)
        graph.node.extend([
            helper.make_node("ArgMax", [probs.name], [BEST_CLASS_OUTPUTS[0]], axis=2, keepdims=0),
            reduce_max,
            last_prob,
        ])
    else:
        if alternatives > last:
            raise ModelError(f"{alternatives} alternatives asked of a model with {last + 1} classes")
        # One TopK gives the best class and the next ones (on a tie the lower class first, as
        # ArgMax), in one pass over the classes: on CPU faster than ArgMax and ReduceMax's two.
        graph.initializer.extend([
            numpy_helper.from_array(np.array([alternatives + 1], np.int64), "folio_top_k"),
            numpy_helper.from_array(np.array(0, np.int64), "folio_first"),
            numpy_helper.from_array(np.array([1], np.int64), "folio_alt_start"),
            numpy_helper.from_array(np.array([alternatives + 1], np.int64), "folio_alt_end"),
            numpy_helper.from_array(np.array([2], np.int64), "folio_alt_axis"),
        ])
        graph.node.extend([
            helper.make_node("TopK", [probs.name, "folio_top_k"], ["folio_top_prob", "folio_top_class"], axis=2),
            helper.make_node("Gather", ["folio_top_class", "folio_first"], [BEST_CLASS_OUTPUTS[0]], axis=2),
            helper.make_node("Gather", ["folio_top_prob", "folio_first"], [BEST_CLASS_OUTPUTS[1]], axis=2),
            last_prob,
            helper.make_node("Slice", ["folio_top_class", "folio_alt_start", "folio_alt_end", "folio_alt_axis"],
                             [ALTERNATIVE_OUTPUTS[0]]),
            helper.make_node("Slice", ["folio_top_prob", "folio_alt_start", "folio_alt_end", "folio_alt_axis"],
                             [ALTERNATIVE_OUTPUTS[1]]),
        ])
        outputs += [helper.make_tensor_value_info(name, kind, [*frames, alternatives])
                    for name, kind in zip(ALTERNATIVE_OUTPUTS, (TensorProto.INT64, elem))]
    del graph.output[:]
    graph.output.extend(outputs)
