"""``write``: the neutral model -> an ONNX graph with one ``LSTM`` node per layer.

The graph is layout=0 throughout (onnxruntime's CPU LSTM refuses layout=1): a batch-first model
gets Transposes at its input and output. Weights are stored bit for bit (gate blocks reordered to
ONNX's i, o, f, c), B is ``[b_ih ‖ b_hh]`` per direction with zeros where a bias is absent.
Every written graph passes ``onnx.checker.check_model(full_check=True)`` (its large weights checked
by type and shape; their bytes are written as they are, see ``weight_stream``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from ...capabilities import check_carries
from ...errors import WriteError
from ...gates import PEEPHOLE_TO_ONNX, TO_ONNX, permute_blocks
from ...model import LSTMLayer, SequenceModel
from ...options import WriteOptions
from . import activations, weight_stream
from .graph_builder import GraphBuilder
from .lengths import emit_lengths
from .opsets import ir_version_for, resolve_opset

# Protobuf refuses messages of 2 GiB or more; weights beyond this total go to "<name>.data"
# beside the model (the margin leaves room for the graph itself).
EXTERNAL_DATA_THRESHOLD = 2**31 - 2**27
_INT64_MIN = np.iinfo(np.int64).min


def write(model: SequenceModel, path: Path, options: WriteOptions) -> None:
    """Write ``model`` to ``path`` (plus ``path.name + '.data'`` for models beyond 2 GB)."""
    write_model(model, path, options, EXTERNAL_DATA_THRESHOLD)


def write_model(model: SequenceModel, path: Path, options: WriteOptions,
                external_threshold: int = EXTERNAL_DATA_THRESHOLD) -> None:
    """``write`` with the external-data threshold exposed (tests force it low)."""
    opset = resolve_opset(options.opset)
    # The graph is built without its large weights, which are written straight from the model's
    # arrays: a protobuf holding them costs several full copies (message, graph, model, bytes).
    proto, pending = build_graph(model, opset)
    _check(lambda: onnx.checker.check_model(weight_stream.checkable(proto, pending), full_check=True))
    if sum(t.nbytes for t in pending) > external_threshold:
        weight_stream.write_external(proto, pending, path)
    else:
        weight_stream.write_inline(proto, pending, path)


def _check(check) -> None:
    try:
        check()
    except onnx.checker.ValidationError as exc:  # a writer bug, never the user's fault
        raise WriteError(f"the written graph fails the ONNX checker: {str(exc).splitlines()[0]}") from exc


def build_graph(model: SequenceModel, opset: int) -> tuple:
    """The ModelProto without its large weights, and those weights as ``weight_stream.PendingTensor``s."""
    dtype = _check_writable(model, opset)
    meta = model.meta.get("onnx", {}) if model.meta.get("source_format", "onnx") == "onnx" else {}
    input_name = (meta.get("input_names") or ["input"])[0]
    output_name = (meta.get("output_names") or ["output"])[0]
    if output_name == input_name:
        output_name = f"{output_name}_out"
    ids_type = np.dtype(meta.get("input_type", "int64")) if model.input_kind == "tokens" else dtype
    if model.input_kind == "tokens" and ids_type not in (np.dtype(np.int32), np.dtype(np.int64)):
        ids_type = np.dtype(np.int64)

    b = GraphBuilder(opset)
    b.reserve(input_name)
    b.reserve(output_name)
    time_axis = 1 if model.batch_first else 0
    lengths = ""
    if model.masked:
        lengths = emit_lengths(b, input_name, model.input_kind, time_axis, model.mask_value,
                               ids_type if model.input_kind == "tokens" else dtype)

    # Input -> (T, N, F).
    if model.input_kind == "tokens":
        ids = b.node("Transpose", [input_name], perm=[1, 0]) if model.batch_first else input_name
        table = b.const("embedding.weight", model.embedding.weight)
        seq = b.node("Gather", [table, ids], name="embedding", axis=0)
    else:
        seq = b.node("Transpose", [input_name], perm=[1, 0, 2]) if model.batch_first else input_name

    last = len(model.layers) - 1
    value = seq
    for k, layer in enumerate(model.layers):
        wants_state = k == last and model.readout == "last"
        y, y_h = _lstm_node(b, k, layer, value, lengths, wants_state)
        if wants_state:
            value = _merge_state(b, y_h, layer)
        else:
            value = _merge_sequence(b, y, layer)
            if layer.reversed_output:
                value = _reverse_time(b, value)

    for j, dense in enumerate(model.head):
        value = b.node("MatMul", [value, b.const(f"dense_{j}.weight", dense.weight.T)], name=f"dense_{j}")
        if dense.bias is not None:
            value = b.node("Add", [value, b.const(f"dense_{j}.bias", dense.bias)], name=f"dense_{j}_bias")
        if dense.activation == "softmax":
            value = b.node("Softmax", [value], name=f"dense_{j}_softmax", axis=-1)
        elif dense.activation != "linear":
            value = b.node(dense.activation.capitalize(), [value], name=f"dense_{j}_{dense.activation}")

    if model.readout == "sequence" and model.batch_first:
        value = b.node("Transpose", [value], perm=[1, 0, 2])
    b.rename_output(value, output_name)

    batch, time = "batch", "time"
    if model.input_kind == "tokens":
        in_shape = [batch, time] if model.batch_first else [time, batch]
    else:
        in_shape = [batch, time, model.input_size] if model.batch_first else [time, batch, model.input_size]
    if model.readout == "sequence":
        out_shape = [batch, time, model.output_size] if model.batch_first else [time, batch, model.output_size]
    else:
        out_shape = [batch, model.output_size]
    graph = onnx.helper.make_graph(
        b.nodes, "lstmconvert",
        [onnx.helper.make_tensor_value_info(input_name, _tensor_type(ids_type), in_shape)],
        [onnx.helper.make_tensor_value_info(output_name, _tensor_type(dtype), out_shape)],
        b.initializers,
    )
    proto = onnx.helper.make_model(
        graph, opset_imports=[onnx.helper.make_opsetid("", opset)], producer_name="lstmconvert",
        ir_version=ir_version_for(opset),
    )
    return proto, b.pending


def _check_writable(model: SequenceModel, opset: int):
    """The model's one dtype, after refusing what an ONNX LSTM cannot carry (``capabilities``)."""
    check_carries(model, "onnx")
    return next(iter(model.arrays().values())).dtype


def _tensor_type(dtype: np.dtype) -> int:
    return onnx.helper.np_dtype_to_tensor_dtype(np.dtype(dtype))


def _lstm_node(b: GraphBuilder, k: int, layer: LSTMLayer, x: str, lengths: str, wants_state: bool) -> tuple:
    """One LSTM node; returns (Y, Y_h) names ("" for the output not asked for)."""
    hidden = layer.hidden_size
    dirs = layer.directions
    # W and R: each direction's gate blocks in ONNX order, kept as views (no reordered copy).
    w = b.const_parts(f"lstm_{k}.W", _onnx_blocks([d.w_ih for d in dirs]),
                      (len(dirs),) + dirs[0].w_ih.shape, dirs[0].w_ih.dtype)
    r = b.const_parts(f"lstm_{k}.R", _onnx_blocks([d.w_hh for d in dirs]),
                      (len(dirs),) + dirs[0].w_hh.shape, dirs[0].w_hh.dtype)
    inputs = [x, w, r, "", lengths, "", "", ""]
    if any(d.has_bias for d in dirs):
        halves = []
        for d in dirs:
            zeros = np.zeros(4 * hidden, dtype=d.w_ih.dtype)
            ih = d.b_ih if d.b_ih is not None else zeros
            hh = d.b_hh if d.b_hh is not None else zeros
            halves.append(np.concatenate([permute_blocks(ih, TO_ONNX), permute_blocks(hh, TO_ONNX)]))
        inputs[3] = b.const(f"lstm_{k}.B", np.stack(halves))
    if any(d.peephole is not None for d in dirs):
        p = [permute_blocks(d.peephole, PEEPHOLE_TO_ONNX) if d.peephole is not None
             else np.zeros(3 * hidden, dtype=d.w_ih.dtype) for d in dirs]
        inputs[7] = b.const(f"lstm_{k}.P", np.stack(p))
    attrs = {"hidden_size": hidden}
    attrs["direction"] = "bidirectional" if layer.bidirectional else ("reverse" if layer.reverse else "forward")
    attrs.update(activations.encode([d.activations for d in dirs]))
    if layer.clip is not None:
        attrs["clip"] = float(layer.clip)
    if layer.input_forget:
        attrs["input_forget"] = 1
    outputs = b.node("LSTM", inputs, outputs=2, name=f"lstm_{k}", **attrs)
    y, y_h = outputs
    node = b.nodes[-1]
    # Only the output that is used is named, so runtimes need not materialise the other.
    if wants_state:
        node.output[0] = ""
        return "", y_h
    del node.output[1]
    return y, ""


def _onnx_blocks(matrices: list) -> list:
    """The row blocks of each (4H, n) matrix in ONNX gate order (``gates.TO_ONNX``), as views."""
    parts = []
    for matrix in matrices:
        blocks = np.split(np.ascontiguousarray(matrix), 4, axis=0)
        parts += [blocks[i] for i in TO_ONNX]
    return parts


def _axes(b: GraphBuilder, axes: list) -> str:
    return b.const("axes", np.array(axes, dtype=np.int64))


def _merge_sequence(b: GraphBuilder, y: str, layer: LSTMLayer) -> str:
    """Y (T, D, N, H) -> (T, N, width) as the layer's merge mode says."""
    if not layer.bidirectional:
        return b.node("Squeeze", [y, _axes(b, [1])])
    if layer.merge == "concat":  # forward then backward along the features
        moved = b.node("Transpose", [y], perm=[0, 2, 1, 3])
        return b.node("Reshape", [moved, b.const("shape", np.array([0, 0, -1], dtype=np.int64))])
    return _merge_directions(b, y, 1, layer.merge)


def _merge_state(b: GraphBuilder, y_h: str, layer: LSTMLayer) -> str:
    """Y_h (D, N, H) -> (N, width); the reverse state is the one after t=0, as Keras and PyTorch have it."""
    if not layer.bidirectional:
        return b.node("Squeeze", [y_h, _axes(b, [0])])
    if layer.merge == "concat":
        moved = b.node("Transpose", [y_h], perm=[1, 0, 2])
        return b.node("Reshape", [moved, b.const("shape", np.array([0, -1], dtype=np.int64))])
    return _merge_directions(b, y_h, 0, layer.merge)


def _merge_directions(b: GraphBuilder, value: str, axis: int, merge: str) -> str:
    if merge == "sum":
        return b.reduce("ReduceSum", value, axis)
    if merge == "ave":
        return b.reduce("ReduceMean", value, axis)
    forward = b.node("Gather", [value, b.const("index", np.array(0, dtype=np.int64))], axis=axis)
    backward = b.node("Gather", [value, b.const("index", np.array(1, dtype=np.int64))], axis=axis)
    return b.node("Mul", [forward, backward])


def _reverse_time(b: GraphBuilder, seq: str) -> str:
    """Keras go_backwards layers return their sequence reversed in time: flip (T, N, F) along T."""
    return b.node("Slice", [seq, b.const("starts", np.array([-1], dtype=np.int64)),
                            b.const("ends", np.array([_INT64_MIN], dtype=np.int64)),
                            b.const("axes", np.array([0], dtype=np.int64)),
                            b.const("steps", np.array([-1], dtype=np.int64))])
