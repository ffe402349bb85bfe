"""Reading an ONNX graph as ``[embedding] -> LSTM stack -> [dense head]``.

The reader starts at the graph output and asks, recursively, what each tensor on the data path is
(a ``Flow``). Every op it meets must fit the model's shape: Gather of the input ids (embedding),
LSTM nodes, the Transposes/Squeezes/Reshapes/Slices/Concats that exporters put around them,
MatMul/Gemm + Add (dense layers) and their activations. Side computations (shapes, zero initial
states, sequence lengths) are evaluated where they are used, not walked. Anything else is refused
with the op type and node name, so a graph that is more than this never converts approximately.
"""

from __future__ import annotations

import warnings
from typing import Optional

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from ...errors import UnsupportedError
from ...model import Dense, Embedding, LSTMLayer, SequenceModel
from ...options import ReadHints
from . import lstm_node
from .flow import INPUT_ATOMS, Entry, Flow, LayerRecord, Prefix, group_reshape
from .graph_index import GraphIndex, attribute, axes_argument, clamp_slice, describe, slice_arguments
from .index_remap import unwrapped_ids
from .lengths import match_lengths
from .symbolic import Dim

_ACTIVATIONS = {"Softmax": "softmax", "Sigmoid": "sigmoid", "Relu": "relu", "Tanh": "tanh"}
_INT_TYPES = {TensorProto.INT32, TensorProto.INT64}
_BIG = 2 ** 30  # Slice ends at or beyond this mean "to the end"


class GraphReader:
    """Turns one graph into a SequenceModel; ``read()`` is the entry point."""

    def __init__(self, index: GraphIndex) -> None:
        self.index = index
        self._flows: dict = {}
        self._layers: dict = {}
        self._active: set = set()
        self._settled: dict = {}
        self._joined: dict = {}

    # -- entry point -----------------------------------------------------------------------------
    def read(self, hints: ReadHints) -> SequenceModel:
        index = self.index
        self._drop_state_outputs()
        self._check_weights_are_stored()
        if index.overridable:
            shown = ", ".join(map(repr, index.overridable[:3])) + (", ..." if len(index.overridable) > 3 else "")
            warnings.warn(
                f"{len(index.overridable)} initializer(s) ({shown}) are also graph inputs, so onnxruntime lets a "
                "caller replace them; lstmconvert reads their stored values as the weights",
                stacklevel=3,
            )
        output = index.outputs[0].name
        flow = self._settle(self.flow(output), f"the graph output {output!r}")
        if flow.reversed_atom:
            raise UnsupportedError(f"the graph output {output!r} is the input reversed in time")
        prefix = flow.prefix
        if not prefix.layers:
            raise UnsupportedError(f"the graph output {output!r} does not come from an LSTM node")
        batch_first = self._check_output_layout(flow, output)
        self._check_inputs(prefix)
        if hints.batch_first is not None and hints.batch_first != batch_first:
            raise UnsupportedError(f"the file's input is {'batch' if batch_first else 'time'}-first; "
                                   "--batch-first/--seq-first cannot change that for ONNX")
        if hints.readout is not None and hints.readout != flow.readout:
            raise UnsupportedError(f"the file's readout is {flow.readout!r}; --readout cannot change that for ONNX")
        masked = prefix.lengths is not None
        mask_value = 0.0  # token padding is id 0; lengths given as an input assume 0.0 padding too
        if masked and prefix.input_kind == "features" and prefix.lengths.pad_value is not None:
            mask_value = prefix.lengths.pad_value
        return SequenceModel(
            layers=[record.layer for record in prefix.layers],
            embedding=prefix.embedding,
            head=list(flow.head),
            input_kind=prefix.input_kind,
            batch_first=batch_first,
            readout=flow.readout,
            masked=masked,
            mask_value=mask_value,
            meta={"onnx": self._meta(prefix, output)},
        )

    def _drop_state_outputs(self) -> None:
        """Read the first graph output; further outputs may only be LSTM states, which are dropped.

        PyTorch modules often return ``(output, (h_n, c_n))`` and Keras layers ``return_state``;
        those states are by-products of the output the model is for. Any other extra output (a
        second head, say) would be lost, so it is refused.
        """
        outputs = self.index.outputs
        if not outputs:
            raise UnsupportedError("the graph has no output")
        names = ", ".join(repr(o.name) for o in outputs)
        for extra in outputs[1:]:
            if not self._is_lstm_state(extra.name):
                raise UnsupportedError(
                    f"the graph has {len(outputs)} outputs ({names}); lstmconvert models have one, and of the "
                    f"others only LSTM states can be left out, but {extra.name!r} is not an LSTM state"
                )
        if len(outputs) > 1:
            dropped = ", ".join(repr(o.name) for o in outputs[1:])
            warnings.warn(f"the graph output(s) {dropped} (LSTM states) are left out: lstmconvert reads the first "
                          f"output {outputs[0].name!r}", stacklevel=4)

    def _is_lstm_state(self, name: str) -> bool:
        """Is ``name`` made only of LSTM ``Y_h``/``Y_c`` outputs, rearranged by layout ops?"""
        found = self.index.producer.get(name)
        if found is None:
            return False
        node, out_index = found
        if node.op_type == "LSTM":
            return out_index in (1, 2)
        if node.op_type == "Concat":
            return all(self._is_lstm_state(i) for i in node.input if i)
        if node.op_type in ("Identity", "Transpose", "Squeeze", "Unsqueeze", "Reshape", "Slice", "Gather", "Cast",
                            "Flatten"):
            return bool(node.input) and self._is_lstm_state(node.input[0])
        return False

    def _check_weights_are_stored(self) -> None:
        """Refuse graphs whose weights are graph inputs without a stored value (export_params=False)."""
        inputs = {i.name for i in self.index.inputs}
        slots = {"LSTM": ((lstm_node.W, "W"), (lstm_node.R, "R"), (lstm_node.B, "B"), (lstm_node.P, "P")),
                 "MatMul": ((1, "weight"),), "Gemm": ((1, "weight"), (2, "bias"))}
        for op_type in slots:  # LSTM nodes first: theirs is the error that explains the others
            for node in self.index.graph.node:
                if node.op_type != op_type:
                    continue
                for slot, label in slots[op_type]:
                    if slot < len(node.input) and node.input[slot] in inputs:
                        raise UnsupportedError(
                            f"{describe(node)}: its {label} is the graph input {node.input[slot]!r}, which has no "
                            "value in the file: the model was exported without its weights "
                            "(torch.onnx.export(..., export_params=False)?)"
                        )

    def _meta(self, prefix: Prefix, output: str) -> dict:
        data = next(i for i in self.index.inputs if i.name == prefix.input_name)
        meta = {
            "input_names": [prefix.input_name],
            "output_names": [output],
            "opset": self.index.opset,
            "input_type": onnx.helper.tensor_dtype_to_np_dtype(data.type.tensor_type.elem_type).name,
            "lstm_nodes": [record.node_name for record in prefix.layers],
        }
        if prefix.lengths is not None and prefix.lengths.source == "input":
            meta["lengths_input"] = prefix.lengths.input_name
        # Sizes the exporter fixed (no dynamic axes): the file runs only at these.
        dims = data.type.tensor_type.shape.dim
        for atom, key in ((prefix.batch_atom, "fixed_batch"), (prefix.time_atom, "fixed_steps")):
            dim = dims[INPUT_ATOMS.index(atom)]
            if dim.HasField("dim_value"):
                meta[key] = dim.dim_value
        return meta

    def _check_output_layout(self, flow: Flow, output: str) -> bool:
        time, batch = flow.prefix.time_atom, flow.prefix.batch_atom
        axes = tuple(tuple(a for a in axis if a != "1") or ("1",) for axis in flow.axes)
        batch_first = batch == INPUT_ATOMS[0]
        if flow.readout == "sequence":
            expect = ((batch,), (time,), ("F",)) if batch_first else ((time,), (batch,), ("F",))
        else:
            expect = ((batch,), ("F",))
        if axes != expect:
            raise UnsupportedError(
                f"the graph output {output!r} has axes {_axes_text(flow, axes)}; expected "
                f"{_axes_text(flow, expect)} (the same batch/time layout as the input)"
            )
        return batch_first

    def _check_inputs(self, prefix: Prefix) -> None:
        allowed = {prefix.input_name}
        if prefix.lengths is not None and prefix.lengths.source == "input":
            allowed.add(prefix.lengths.input_name)
            warnings.warn(
                f"the graph input {prefix.lengths.input_name!r} gives the sequence lengths; the model is read "
                "as masked: lengths are counted from the right padding (token id 0, or steps whose "
                "features all equal 0.0) and that input is dropped",
                stacklevel=4,
            )
        extra = [i.name for i in self.index.inputs if i.name not in allowed and i.name in self.index.consumers]
        if extra:
            raise UnsupportedError(f"graph input(s) {', '.join(map(repr, extra))} feed something other than the model's data path")

    # -- flows -----------------------------------------------------------------------------------
    def flow(self, name: str) -> Flow:
        """What the tensor ``name`` holds (memoised)."""
        if name in self._flows:
            return self._flows[name]
        if name in self._active:
            raise UnsupportedError(f"the graph has a cycle through {name!r}")
        self._active.add(name)
        try:
            result = self._compute(name)
        finally:
            self._active.discard(name)
        self._flows[name] = result
        return result

    def _compute(self, name: str) -> Flow:
        index = self.index
        for graph_input in index.inputs:
            if graph_input.name == name:
                return self._input_flow(graph_input)
        if name not in index.producer:
            if index.const(name) is not None:
                raise UnsupportedError(f"the model's data path reaches the constant {name!r}, not the graph input")
            raise UnsupportedError(f"nothing in the graph produces {name!r}")
        node, out_index = index.producer[name]
        if node.domain not in ("", "ai.onnx"):
            raise UnsupportedError(f"{describe(node)} (domain {node.domain!r}) cannot be placed in embedding -> LSTM -> dense")
        handler = getattr(self, f"_op_{node.op_type}", None)
        if handler is None:
            raise UnsupportedError(
                f"{describe(node)} cannot be placed: lstmconvert reads embedding -> LSTM stack -> dense head"
            )
        return handler(node, out_index)

    def _input_flow(self, graph_input: onnx.ValueInfoProto) -> Flow:
        tensor_type = graph_input.type.tensor_type
        dims = tensor_type.shape.dim
        elem = tensor_type.elem_type
        prefix_kind = "tokens" if elem in _INT_TYPES else "features"
        if prefix_kind == "tokens":
            if len(dims) != 2:
                raise UnsupportedError(f"the graph input {graph_input.name!r} holds token ids but has rank {len(dims)}, not 2")
            return Flow("ids", (("i0",), ("i1",)), None, np.dtype(np.int64), Prefix(graph_input.name, "tokens"))
        dtype = onnx.helper.tensor_dtype_to_np_dtype(elem)
        if len(dims) != 3:
            raise UnsupportedError(f"the graph input {graph_input.name!r} has rank {len(dims)}; features need (batch, time, features)")
        width = dims[2].dim_value if dims[2].HasField("dim_value") else None
        return Flow("features", (("i0",), ("i1",), ("F",)), width, dtype, Prefix(graph_input.name, "features"))

    def _data(self, node: onnx.NodeProto, slot: int = 0) -> Flow:
        if len(node.input) <= slot or not node.input[slot]:
            raise UnsupportedError(f"{describe(node)}: missing input {slot}")
        return self.flow(node.input[slot])

    def _dims_of(self, name: str) -> Optional[list]:
        try:
            return self.flow(name).dims()
        except UnsupportedError:
            return None

    # -- pass-through ops ------------------------------------------------------------------------
    def _op_Identity(self, node, out_index):
        return self._data(node)

    def _op_Dropout(self, node, out_index):
        if out_index != 0:
            raise UnsupportedError(f"{describe(node)}: its mask output is used")
        if len(node.input) > 2 and node.input[2]:
            training = self.index.const(node.input[2])
            if training is None or bool(training):
                raise UnsupportedError(f"{describe(node)}: training_mode is not a constant false")
        return self._data(node)

    def _op_Cast(self, node, out_index):
        flow = self._data(node)
        target = attribute(node, "to")
        if flow.kind == "ids" and target in _INT_TYPES:
            return flow
        if flow.kind != "ids" and onnx.helper.tensor_dtype_to_np_dtype(target) == flow.dtype:
            return flow
        hint = (" (onnxruntime's optimizer inserts such casts to run float16 ops in float32: read the file saved "
                "before optimization)") if node.name.startswith("InsertedPrecisionFreeCast") else ""
        raise UnsupportedError(f"{describe(node)}: casts the data path from {flow.dtype} to "
                               f"{onnx.helper.tensor_dtype_to_np_dtype(target)}, which changes the numbers{hint}")

    # -- layout ops ------------------------------------------------------------------------------
    def _op_Transpose(self, node, out_index):
        flow = self._data(node)
        perm = attribute(node, "perm", list(reversed(range(flow.rank))))
        if sorted(perm) != list(range(flow.rank)):
            raise UnsupportedError(f"{describe(node)}: perm {perm} does not fit rank {flow.rank}")
        return flow.evolve(axes=tuple(flow.axes[p] for p in perm))

    def _op_Squeeze(self, node, out_index):
        flow = self._data(node)
        args = [self.index.const(i) if i else None for i in node.input]
        if len(node.input) > 1 and node.input[1] and args[1] is None:
            raise UnsupportedError(f"{describe(node)}: its axes are computed at run time")
        axes = axes_argument(node, args, self.index.opset)
        if axes is None:
            axes = [k for k, axis in enumerate(flow.axes) if self._is_unit(flow, axis)]
        axes = sorted({a % flow.rank for a in axes})
        for a in axes:
            if not self._is_unit(flow, flow.axes[a]):
                raise UnsupportedError(f"{describe(node)}: squeezes axis {a} ({_axis_text(flow, flow.axes[a])}), which is not of size 1")
        return flow.evolve(axes=tuple(axis for k, axis in enumerate(flow.axes) if k not in axes))

    def _op_Unsqueeze(self, node, out_index):
        flow = self._data(node)
        args = [self.index.const(i) if i else None for i in node.input]
        axes = axes_argument(node, args, self.index.opset)
        if axes is None:
            raise UnsupportedError(f"{describe(node)}: its axes are computed at run time")
        rank = flow.rank + len(axes)
        result = list(flow.axes)
        for a in sorted(a % rank for a in axes):
            result.insert(a, ("1",))
        return flow.evolve(axes=tuple(result))

    def _op_Reshape(self, node, out_index):
        flow = self._data(node)
        if attribute(node, "allowzero", 0):
            constant = self.index.const(node.input[1])
            if constant is None or np.any(constant == 0):
                raise UnsupportedError(f"{describe(node)}: allowzero with a zero (or run-time) target dimension")
        target = self.index.shape_vector(node.input[1], self._dims_of)
        if target is None:
            raise UnsupportedError(f"{describe(node)}: cannot tell what its target shape is")
        axes = group_reshape(flow, target) if flow.dims() is not None else None
        if axes is None:
            raise UnsupportedError(
                f"{describe(node)}: reshaping {_axes_text(flow, flow.axes)} to [{', '.join(map(str, target))}] "
                "does not keep batch, time and features apart"
            )
        return self._normalise(flow.evolve(axes=axes), node)

    def _op_Flatten(self, node, out_index):
        flow = self._data(node)
        axis = attribute(node, "axis", 1) % max(flow.rank, 1)
        if flow.dims() is None:
            raise UnsupportedError(f"{describe(node)}: feature width unknown")
        left = tuple(a for axis_atoms in flow.axes[:axis] for a in axis_atoms) or ("1",)
        right = tuple(a for axis_atoms in flow.axes[axis:] for a in axis_atoms) or ("1",)
        return self._normalise(flow.evolve(axes=(left, right)), node)

    def _normalise(self, flow: Flow, node) -> Flow:
        """Drop unit atoms inside merged axes; a (D, F) axis becomes F with the directions as blocks."""
        axes = []
        for axis in flow.axes:
            atoms = tuple(a for a in axis if a != "1" and not (a == "D" and len(flow.entries) == 1 and len(axis) > 1))
            if "D" in atoms and len(atoms) > 1:
                if atoms != ("D", "F"):
                    raise UnsupportedError(f"{describe(node)}: mixes the LSTM directions into {_axis_text(flow, atoms)}")
                atoms = ("F",)
            axes.append(atoms or ("1",))
        return flow.evolve(axes=tuple(axes))

    @staticmethod
    def _is_unit(flow: Flow, axis: tuple) -> bool:
        return all(a == "1" or (a == "D" and len(flow.entries) == 1) for a in axis)

    # -- selecting directions and time steps -------------------------------------------------------
    def _op_Gather(self, node, out_index):
        index = self.index
        table = index.const(node.input[0])
        if table is not None:
            return self._embedding(node, table)
        flow = self._data(node)
        axis = attribute(node, "axis", 0) % flow.rank
        where = index.const(node.input[1])
        if where is None:
            from_end = self._index_from_end(node.input[1], flow, axis)
            if from_end is None:
                raise UnsupportedError(f"{describe(node)}: gathers with indices computed at run time")
            return self._select(node, flow, axis, *from_end)
        picks = [int(i) for i in np.asarray(where).reshape(-1)]
        return self._select(node, flow, axis, picks, keep_axis=np.asarray(where).ndim > 0)

    def _index_from_end(self, name: str, flow: Flow, axis: int) -> Optional[tuple]:
        """``size(axis) - k`` computed from the tensor's own shape (PyTorch ``y[:, y.shape[1] - 1]``):
        the picks ``[-k]`` and whether the index keeps the axis; None for anything else."""
        found = self.index.producer.get(name)
        if found is None or found[0].op_type != "Sub":
            return None
        sub = found[0]
        offset = self.index.const(sub.input[1])
        size = self.index.shape_vector(sub.input[0], self._dims_of)
        rank = self.index.static_dims(name)
        dims = flow.dims()
        if offset is None or offset.size != 1 or size is None or len(size) != 1 or rank is None or dims is None \
                or size[0] != dims[axis]:
            return None
        return [-int(offset.reshape(-1)[0])], len(rank) > 0

    def _op_Slice(self, node, out_index):
        flow = self._data(node)
        args = [self.index.const(i) if i else None for i in node.input]
        if any(a is None for i, a in zip(node.input[1:], args[1:]) if i):
            raise UnsupportedError(f"{describe(node)}: its bounds are computed at run time")
        for axis, start, end, step in slice_arguments(node, args, flow.rank):
            flow = self._slice_axis(node, flow, axis, start, end, step)
        return flow

    def _slice_axis(self, node, flow: Flow, axis: int, start: int, end: int, step: int) -> Flow:
        atoms = flow.axes[axis]
        if atoms == ("D",):
            picks = list(range(len(flow.entries)))[slice(start, _py_end(end), step)]
            return self._select(node, flow, axis, picks, keep_axis=True)
        if step == 1 and start == 0 and end >= _BIG:
            return flow  # the whole axis
        if atoms == ("F",) and flow.kind == "lstm" and flow.axis_of("D") is None and not flow.merge and step == 1:
            # Directions side by side in the features (PyTorch output[..., :H]): whole blocks only.
            width = flow.width
            low, high, _ = clamp_slice(start, end, step, width * len(flow.entries))
            if high > low and low % width == 0 and high % width == 0:
                return flow.evolve(entries=flow.entries[low // width: high // width])
        if len(atoms) == 1 and atoms[0] == flow.prefix.time_atom and flow.kind == "lstm":
            if step == 1 and start == -1 and end >= _BIG:
                return self._pick_time(node, flow, axis, "last", keep_axis=True)
            if step == 1 and start == 0 and end == 1:
                return self._pick_time(node, flow, axis, "first", keep_axis=True)
            if step == -1 and start == -1 and end <= -_BIG:
                return self._reverse_time(node, flow)
        raise UnsupportedError(f"{describe(node)}: slices {_axis_text(flow, atoms)} [{start}:{end}:{step}], "
                               "which is not a whole direction, the first or the last time step")

    def _select(self, node, flow: Flow, axis: int, picks: list, keep_axis: bool) -> Flow:
        atoms = flow.axes[axis]
        if atoms == ("D",):
            n = len(flow.entries)
            if any(not -n <= p < n for p in picks):
                raise UnsupportedError(f"{describe(node)}: direction index out of range")
            entries = tuple(flow.entries[p] for p in picks)
            axes = flow.axes if keep_axis else flow.axes[:axis] + flow.axes[axis + 1:]
            return flow.evolve(entries=entries, axes=axes)
        if len(atoms) == 1 and atoms[0] == flow.prefix.time_atom and flow.kind == "lstm" and len(picks) == 1:
            which = {-1: "last", 0: "first"}.get(picks[0])
            if which is not None:
                return self._pick_time(node, flow, axis, which, keep_axis)
        raise UnsupportedError(f"{describe(node)}: selects {picks} from {_axis_text(flow, atoms)}, "
                               "which is not an LSTM direction or the first/last time step")

    def _pick_time(self, node, flow: Flow, axis: int, which: str, keep_axis: bool) -> Flow:
        if any(e.what != "seq" for e in flow.entries):
            raise UnsupportedError(f"{describe(node)}: picks a time step of something that is not an LSTM's full output")
        entries = tuple(Entry(e.layer, e.direction, f"Y@{which}") for e in flow.entries)
        axes = list(flow.axes)
        if keep_axis:
            axes[axis] = ("1",)
        else:
            del axes[axis]
        return flow.evolve(entries=entries, axes=tuple(axes))

    def _op_ReverseSequence(self, node, out_index):
        """Full-length time reversal (tf2onnx's ReverseV2); per-sequence lengths are refused."""
        flow = self._data(node)
        time_axis = attribute(node, "time_axis", 0)
        if flow.rank != 3 or len(flow.axes[time_axis]) != 1 or flow.axes[time_axis][0] not in INPUT_ATOMS:
            raise UnsupportedError(f"{describe(node)}: reverses {_axes_text(flow, flow.axes)} along axis {time_axis}")
        atom = flow.axes[time_axis][0]
        if self._full_length(node.input[1]) != [Dim(1, (atom,))]:
            raise UnsupportedError(f"{describe(node)}: reverses sequences over lengths other than the full time axis")
        if flow.kind == "lstm":
            if atom != flow.prefix.time_atom:
                raise UnsupportedError(f"{describe(node)}: reverses an LSTM output along a non-time axis")
            return self._reverse_time(node, flow)
        if flow.kind != "features" or flow.head:
            raise UnsupportedError(f"{describe(node)}: reverses something other than a sequence of features")
        if flow.reversed_atom not in (None, atom):
            raise UnsupportedError(f"{describe(node)}: reverses a second axis")
        return flow.evolve(reversed_atom=None if flow.reversed_atom else atom)

    def _full_length(self, name: str) -> Optional[list]:
        """``name`` as [Dim] if it is one symbolic length broadcast over the batch (Expand of it)."""
        while name in self.index.producer and self.index.producer[name][0].op_type in ("Cast", "Identity"):
            name = self.index.producer[name][0].input[0]
        if name in self.index.producer and self.index.producer[name][0].op_type == "Expand":
            return self.index.shape_vector(self.index.producer[name][0].input[0], self._dims_of)
        return None

    def _reverse_time(self, node, flow: Flow) -> Flow:
        flips = {"seq": "rev", "rev": "seq"}
        if any(e.what not in flips for e in flow.entries):
            raise UnsupportedError(f"{describe(node)}: reverses something that is not an LSTM's full output")
        return flow.evolve(entries=tuple(Entry(e.layer, e.direction, flips[e.what]) for e in flow.entries))

    # -- merging directions ----------------------------------------------------------------------
    def _op_Concat(self, node, out_index):
        flows = [self.flow(i) for i in node.input if i]
        if len(flows) == 1:
            return flows[0]
        first = flows[0]
        axis = attribute(node, "axis") % first.rank
        if any(f.kind != "lstm" for f in flows):
            raise UnsupportedError(f"{describe(node)}: concatenates tensors that are not LSTM outputs")
        if len(flows) == 2 and self._separate_directions(flows):
            flows = self._join_directions(node, flows)
        prefix = self._joint_prefix(node, flows)
        for f in flows[1:]:
            same = f.rank == first.rank and all(a == b for k, (a, b) in enumerate(zip(f.axes, first.axes)) if k != axis)
            if not same or f.axes[axis] != first.axes[axis] or f.merge or first.merge:
                raise UnsupportedError(f"{describe(node)}: concatenates LSTM outputs of different layouts")
        atoms = first.axes[axis]
        if atoms == ("D",) or (atoms == ("F",) and first.axis_of("D") is None
                               and len({f.width for f in flows}) == 1):
            entries = tuple(e for f in flows for e in f.entries)
            return first.evolve(entries=entries, prefix=prefix)
        raise UnsupportedError(f"{describe(node)}: concatenates along {_axis_text(first, atoms)}, not directions")

    @staticmethod
    def _separate_directions(flows: list) -> bool:
        """Two single-direction outputs of two different LSTM nodes over the same input?"""
        a, b = (f.prefix for f in flows)
        return (len(a.layers) == len(b.layers) > 0 and a.key()[:2] == b.key()[:2]
                and a.key()[2][:-1] == b.key()[2][:-1] and a.layers[-1] is not b.layers[-1]
                and all(len(f.entries) == 1 and f.axis_of("D") is None for f in flows))

    def _join_directions(self, node, flows: list) -> list:
        """A forward node and a backward node over one input: one bidirectional layer (tf2onnx, unmerged)."""
        records = [f.prefix.layers[-1] for f in flows]
        forward, backward = (r.layer for r in records)
        if forward.reverse or not backward.reverse or forward.bidirectional or backward.bidirectional:
            raise UnsupportedError(f"{describe(node)}: joins two LSTM nodes that are not a forward and a backward one")
        if backward.reversed_output or (forward.clip, forward.input_forget) != (backward.clip, backward.input_forget):
            raise UnsupportedError(f"{describe(node)}: joins LSTM nodes with different clip/input_forget settings")
        if records[0].layout != records[1].layout or flows[0].prefix.lengths != flows[1].prefix.lengths:
            raise UnsupportedError(f"{describe(node)}: joins LSTM nodes with different layouts or lengths")
        key = (id(records[0]), id(records[1]))
        if key not in self._joined:
            layer = LSTMLayer(directions=[forward.directions[0], backward.directions[0]],
                              clip=forward.clip, input_forget=forward.input_forget)
            record = LayerRecord(f"{records[0].node_name}+{records[1].node_name}", layer, records[0].layout, False)
            base = flows[0].prefix
            self._joined[key] = Prefix(base.input_name, base.input_kind, time_atom=base.time_atom,
                                       embedding=base.embedding, embedding_node=base.embedding_node,
                                       layers=base.layers[:-1] + (record,), lengths=base.lengths)
        prefix = self._joined[key]
        position = len(prefix.layers) - 1
        # The backward node's output was reversed back to original order ("rev" twice is "seq").
        return [f.evolve(prefix=prefix, entries=(Entry(position, d, f.entries[0].what),)) for d, f in enumerate(flows)]

    def _joint_prefix(self, node, flows: list) -> Prefix:
        """Flows being joined must come from one model; the deepest prefix wins (h_n of all layers)."""
        longest = max((f.prefix for f in flows), key=lambda p: len(p.layers))
        key = longest.key()
        for f in flows:
            k = f.prefix.key()
            if k[:2] != key[:2] or key[2][:len(k[2])] != k[2]:
                raise UnsupportedError(f"{describe(node)}: combines tensors from different branches of the graph")
        return longest

    def _reduce_directions(self, node, merge: str) -> Flow:
        flow = self._data(node)
        args = [self.index.const(i) if i else None for i in node.input]
        axes = axes_argument(node, args, self.index.opset)
        keepdims = attribute(node, "keepdims", 1)
        if flow.kind != "lstm" or axes is None or len(axes) != 1 or flow.axes[axes[0] % flow.rank] != ("D",):
            what = "all axes" if axes is None else " and ".join(_axis_text(flow, flow.axes[a % flow.rank]) for a in axes)
            pooling = " (pooling over time: lstmconvert's models output every step or the final state)" \
                if axes is not None and any(flow.prefix.time_atom in flow.axes[a % flow.rank] for a in axes) else ""
            raise UnsupportedError(f"{describe(node)}: reduces {what}; only the LSTM direction axis can be "
                                   f"reduced{pooling}")
        axis = axes[0] % flow.rank
        if len(flow.entries) != 2 or flow.merge:
            raise UnsupportedError(f"{describe(node)}: merges {len(flow.entries)} direction(s); expected 2")
        axes_out = list(flow.axes)
        if keepdims:
            axes_out[axis] = ("1",)
        else:
            del axes_out[axis]
        return flow.evolve(axes=tuple(axes_out), merge=merge)

    def _op_ReduceSum(self, node, out_index):
        return self._reduce_directions(node, "sum")

    def _op_ReduceMean(self, node, out_index):
        return self._reduce_directions(node, "ave")

    def _elementwise_merge(self, node, merge: str) -> Flow:
        left, right = self.flow(node.input[0]), self.flow(node.input[1])
        if left.kind != "lstm" or right.kind != "lstm" or left.axes != right.axes or left.merge or right.merge \
                or len(left.entries) != 1 or len(right.entries) != 1 or left.axis_of("D") is not None:
            raise UnsupportedError(f"{describe(node)}: combines tensors that are not the two directions of one LSTM")
        prefix = self._joint_prefix(node, [left, right])
        return left.evolve(entries=left.entries + right.entries, merge=merge, prefix=prefix)

    # -- embedding, LSTM, head -------------------------------------------------------------------
    def _embedding(self, node, table: np.ndarray) -> Flow:
        try:
            ids = self._data(node, 1)
        except UnsupportedError:
            source = unwrapped_ids(self.index, node.input[1], table.shape[0]) if table.ndim == 2 else None
            if source is None:
                raise
            ids = self.flow(source)
        if ids.kind != "ids" or attribute(node, "axis", 0) != 0 or table.ndim != 2:
            raise UnsupportedError(f"{describe(node)}: a table lookup that is not an embedding of the input ids")
        prefix = ids.prefix
        embedding = Embedding(weight=np.ascontiguousarray(table))
        new_prefix = Prefix(prefix.input_name, "tokens", embedding=embedding, embedding_node=node.name or node.output[0])
        return Flow("features", ids.axes + (("F",),), table.shape[1], table.dtype, new_prefix)

    def _op_LSTM(self, node, out_index):
        record, prefix, time, batch = self._lstm_record(node)
        if out_index == 2:
            raise UnsupportedError(f"{describe(node)}: its cell state output Y_c is used; lstmconvert reads Y or Y_h")
        position = len(prefix.layers) - 1
        count = len(record.layer.directions)
        what = ("rev" if record.input_reversed else "seq") if out_index == 0 else "Y_h"
        entries = tuple(Entry(position, d, what) for d in range(count))
        if out_index == 0:
            axes = ((time,), ("D",), (batch,), ("F",)) if record.layout == 0 else ((batch,), (time,), ("D",), ("F",))
        else:
            axes = (("D",), (batch,), ("F",)) if record.layout == 0 else ((batch,), ("D",), ("F",))
        dtype = record.layer.directions[0].w_ih.dtype
        return Flow("lstm", axes, record.layer.hidden_size, dtype, prefix, entries=entries)

    def _lstm_record(self, node) -> tuple:
        key = id(node)
        if key in self._layers:
            return self._layers[key]
        where = describe(node)
        x = self._data(node, lstm_node.X)
        if x.kind == "lstm":
            x = self._settle(x, where)
        if x.kind != "features" or x.head or x.readout == "last":
            raise UnsupportedError(f"{where}: its input X is not a sequence of features (embedding, input or LSTM output)")
        decoded = lstm_node.decode(self.index, node)
        layer = decoded.layer
        axes = tuple(tuple(a for a in axis if a != "1") for axis in x.axes)
        if len(axes) != 3 or axes[2] != ("F",) or any(len(a) != 1 for a in axes[:2]):
            raise UnsupportedError(f"{where}: its input X has axes {_axes_text(x, x.axes)}, not (time, batch, features)")
        time, batch = (axes[0][0], axes[1][0]) if decoded.layout == 0 else (axes[1][0], axes[0][0])
        prefix = x.prefix
        if prefix.time_atom is not None and prefix.time_atom != time:
            raise UnsupportedError(f"{where}: runs over a different axis than the LSTM before it")
        if x.width is not None and x.width != layer.input_size:
            raise UnsupportedError(f"{where}: W expects {layer.input_size} input features but X has {x.width}")
        if x.dtype != layer.directions[0].w_ih.dtype:
            raise UnsupportedError(f"{where}: X is {x.dtype} but the weights are {layer.directions[0].w_ih.dtype}")
        input_reversed = x.reversed_atom is not None
        if input_reversed:
            # A forward LSTM over the time-reversed input is a reverse LSTM whose output comes out
            # reversed in time (Keras go_backwards).
            if x.reversed_atom != time or layer.bidirectional or layer.reverse or decoded.sequence_lens:
                raise UnsupportedError(f"{where}: runs over a time-reversed input in a way lstmconvert cannot express")
            layer.reverse = True
        lengths = match_lengths(self.index, decoded.sequence_lens, node) if decoded.sequence_lens else None
        if lengths is not None and lengths.source == "padding":
            if lengths.input_name != prefix.input_name or lengths.time_atom != time:
                raise UnsupportedError(f"{where}: its sequence_lens counts padding over a different input or axis")
            if prefix.input_kind == "tokens" and lengths.pad_value != 0:
                raise UnsupportedError(f"{where}: padding is token id {lengths.pad_value:g}; lstmconvert's masked models pad with 0")
        if prefix.layers and lengths != prefix.lengths:
            raise UnsupportedError(f"{where}: its sequence_lens differs from the LSTM before it")
        record = LayerRecord(node.name or node.output[0], layer, decoded.layout, input_reversed)
        new_prefix = Prefix(prefix.input_name, prefix.input_kind, time_atom=time, embedding=prefix.embedding,
                            embedding_node=prefix.embedding_node, layers=prefix.layers + (record,), lengths=lengths)
        self._layers[key] = (record, new_prefix, time, batch)
        return self._layers[key]

    def _settle(self, flow: Flow, consumer: str) -> Flow:
        """Turn an LSTM output into the layer's merged output, fixing the layer's merge and readout."""
        if flow.kind != "lstm":
            return flow
        if flow.axis_of("D") is not None:
            raise UnsupportedError(f"{consumer} receives an LSTM output whose directions are not merged")
        prefix = flow.prefix
        last = len(prefix.layers) - 1
        record = prefix.layers[last]
        layer = record.layer
        count = len(layer.directions)
        if any(e.layer != last for e in flow.entries):
            raise UnsupportedError(f"{consumer} receives the state of an LSTM layer other than the last one")
        if [e.direction for e in flow.entries] != list(range(count)):
            order = [e.direction for e in flow.entries]
            raise UnsupportedError(f"{consumer} receives LSTM directions {order}; expected all of them, forward first")
        readout, reversed_output = self._readout(flow, layer, consumer)
        if count == 1 and flow.merge:
            raise UnsupportedError(f"{consumer}: a merge of a single direction")
        settled = (flow.merge or "concat", reversed_output)
        if self._settled.setdefault(id(record), settled) != settled:
            raise UnsupportedError(f"{consumer}: the LSTM layer {record.node_name!r} is merged in two different ways")
        layer.merge, layer.reversed_output = settled
        width = layer.output_size
        return Flow("features", flow.axes, width, flow.dtype, prefix, readout=readout)

    def _readout(self, flow: Flow, layer, consumer: str) -> tuple:
        whats = [e.what for e in flow.entries]
        masked = flow.prefix.lengths is not None
        if all(w == "seq" for w in whats):
            return "sequence", False
        if whats == ["rev"] and layer.reverse:
            # Keras go_backwards: the output reversed over the full padded length (padding first).
            return "sequence", True
        finals = []
        for entry in flow.entries:
            runs_backward = layer.reverse or entry.direction == 1
            if entry.what == "Y_h":
                finals.append(True)
            elif entry.what in ("Y@last", "Y@first"):
                if entry.what == "Y@last" and runs_backward:
                    raise UnsupportedError(
                        f"{consumer} receives the last time step of a reverse direction's output Y, which is that "
                        "direction's first step, not its final state (PyTorch: use h_n rather than output[:, -1])"
                    )
                if masked:
                    raise UnsupportedError(f"{consumer}: reads one time step of Y of a masked LSTM; with sequence_lens "
                                           "that is not the final state (use Y_h)")
                finals.append(entry.what == ("Y@first" if runs_backward else "Y@last"))
            else:
                finals.append(False)
        if all(finals):
            return "last", False
        raise UnsupportedError(f"{consumer} receives a mix of LSTM outputs that is neither every step nor the final state")

    def _op_MatMul(self, node, out_index):
        weight = self.index.const(node.input[1])
        if weight is None or weight.ndim != 2:
            raise UnsupportedError(f"{describe(node)}: multiplies by something other than a constant matrix")
        flow = self._settle(self._data(node), describe(node))
        return self._dense(node, flow, np.ascontiguousarray(weight.T), None)

    def _op_Gemm(self, node, out_index):
        flow = self._settle(self._data(node), describe(node))
        weight = self.index.const(node.input[1])
        if weight is None or weight.ndim != 2:
            raise UnsupportedError(f"{describe(node)}: multiplies by something other than a constant matrix")
        if attribute(node, "transA", 0) or attribute(node, "alpha", 1.0) != 1.0 or attribute(node, "beta", 1.0) != 1.0:
            raise UnsupportedError(f"{describe(node)}: transA, alpha or beta other than the defaults")
        weight = weight if attribute(node, "transB", 0) else weight.T
        bias = None
        if len(node.input) > 2 and node.input[2]:
            bias = self._bias_vector(node, node.input[2], weight.shape[0])
        return self._dense(node, flow, np.ascontiguousarray(weight), bias)

    def _dense(self, node, flow: Flow, weight: np.ndarray, bias: Optional[np.ndarray]) -> Flow:
        if flow.kind != "features" or flow.readout is None or flow.reversed_atom:
            raise UnsupportedError(f"{describe(node)}: a dense layer before the LSTM stack cannot be placed")
        if tuple(a for a in flow.axes[-1] if a != "1") != ("F",) or flow.width != weight.shape[1]:
            raise UnsupportedError(f"{describe(node)}: multiplies axes {_axes_text(flow, flow.axes)} by a "
                                   f"{weight.shape[1]}x{weight.shape[0]} matrix")
        if weight.dtype != flow.dtype:
            raise UnsupportedError(f"{describe(node)}: weights are {weight.dtype} but its input is {flow.dtype}")
        dense = Dense(weight=weight, bias=bias)
        return flow.evolve(head=flow.head + (dense,), width=weight.shape[0])

    def _bias_vector(self, node, name: str, width: int) -> np.ndarray:
        value = self.index.const(name)
        if value is None or value.size != width or any(d != 1 for d in value.shape[:-1]) \
                or (value.ndim and value.shape[-1] != width):
            raise UnsupportedError(f"{describe(node)}: adds something other than a constant bias of width {width}")
        return np.ascontiguousarray(value.reshape(width))

    def _op_Add(self, node, out_index):
        constants = [self.index.const(i) for i in node.input]
        if all(c is None for c in constants):
            return self._elementwise_merge(node, "sum")
        data_slot = 0 if constants[0] is None else 1
        flow = self._data(node, data_slot)
        if flow.kind != "features" or not flow.head or flow.head[-1].bias is not None \
                or flow.head[-1].activation != "linear":
            raise UnsupportedError(f"{describe(node)}: adds a constant that is not the bias of a dense layer")
        bias = self._bias_vector(node, node.input[1 - data_slot], flow.width)
        if bias.dtype != flow.dtype:
            raise UnsupportedError(f"{describe(node)}: bias is {bias.dtype} but its input is {flow.dtype}")
        last = flow.head[-1]
        return flow.evolve(head=flow.head[:-1] + (Dense(weight=last.weight, bias=bias),))

    def _op_Mul(self, node, out_index):
        for k in (0, 1):
            if self._is_ones_like(node.input[k], node.input[1 - k]):
                # Keras LSTMs with dropout multiply their input by a mask of ones at inference.
                return self._data(node, 1 - k)
        if all(self.index.const(i) is None for i in node.input):
            return self._elementwise_merge(node, "mul")
        return self._halved_sum(node, 0.5)

    def _op_Div(self, node, out_index):
        return self._halved_sum(node, 2.0)

    def _halved_sum(self, node, factor: float) -> Flow:
        """``(forward + backward) * 0.5`` or ``/ 2``: a Keras ``merge_mode="ave"`` as tf2onnx writes it."""
        data_slot = 1 if node.op_type == "Mul" and self.index.const(node.input[0]) is not None else 0
        constant = self.index.const(node.input[1 - data_slot])
        flow = self._data(node, data_slot)
        if constant is None or constant.size != 1 or float(constant.reshape(-1)[0]) != factor \
                or flow.kind != "lstm" or flow.merge != "sum" or constant.ndim > flow.rank:
            raise UnsupportedError(f"{describe(node)}: scales something other than the sum of an LSTM's two "
                                   "directions by one half (Keras merge_mode='ave')")
        return flow.evolve(merge="ave")

    def _is_ones_like(self, name: str, other: str) -> bool:
        """Is ``name`` all ones, shaped so that multiplying ``other`` by it changes nothing?"""
        value = self.index.const(name)
        if value is not None:
            return value.size == 1 and float(value.reshape(-1)[0]) == 1.0 and value.ndim <= self.flow(other).rank
        found = self.index.producer.get(name)
        if found is None or found[0].op_type != "ConstantOfShape":
            return False
        fill = attribute(found[0], "value")
        if fill is None or numpy_helper.to_array(fill).reshape(-1)[0] != 1:
            return False
        shape = self.index.producer.get(found[0].input[0])
        return (shape is not None and shape[0].op_type == "Shape" and shape[0].input[0] == other
                and attribute(shape[0], "start", 0) == 0 and attribute(shape[0], "end") is None)

    def _activation(self, node, out_index):
        flow = self._data(node)
        name = _ACTIVATIONS[node.op_type]
        if node.op_type == "Softmax":
            axis = attribute(node, "axis", -1 if self.index.opset >= 13 else 1)
            if axis % flow.rank != flow.rank - 1:
                raise UnsupportedError(f"{describe(node)}: softmax over axis {axis}, not the features")
        if flow.kind != "features" or not flow.head or flow.head[-1].activation != "linear":
            raise UnsupportedError(f"{describe(node)}: an activation that does not follow a dense layer cannot be placed")
        last = flow.head[-1]
        return flow.evolve(head=flow.head[:-1] + (Dense(weight=last.weight, bias=last.bias, activation=name),))

    _op_Softmax = _op_Sigmoid = _op_Relu = _op_Tanh = _activation


def _py_end(end: int) -> Optional[int]:
    return None if end >= _BIG else end


def _axis_text(flow: Flow, atoms: tuple) -> str:
    names = {"D": "directions", "F": "features", "1": "1"}
    time = flow.prefix.time_atom
    parts = []
    for atom in atoms:
        if atom in INPUT_ATOMS:
            parts.append("time" if atom == time else "batch" if time else f"input axis {atom[1]}")
        else:
            parts.append(names.get(atom, atom))
    return "*".join(parts)


def _axes_text(flow: Flow, axes: tuple) -> str:
    return "(" + ", ".join(_axis_text(flow, axis) for axis in axes) + ")"


__all__ = ["GraphReader", "Dim"]
