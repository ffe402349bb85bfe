"""Reading an ONNX graph as ``[embedding] -> LSTM stack -> [dense head]``.

The reader starts at the graph output and asks, recursively, what each tensor on the data path is
(a ``Flow``). Every op it meets must fit the model's shape: Gather of the input ids (embedding),
LSTM nodes, the Transposes/Squeezes/Reshapes/Slices/Concats that exporters put around them,
MatMul/Gemm + Add (dense layers) and their activations. Side computations (shapes, zero initial
states, sequence lengths) are evaluated where they are used, not walked. Anything else is refused
with the op type and node name, so a graph that is more than this never converts approximately.

This module holds the checks on the graph as a whole (its outputs, inputs, stored weights and the
output's layout); the walk itself is ``graph_walk`` (with ``op_handlers``, ``layout`` and
``lstm_stack``), and ``model_builder`` assembles the neutral model from what the walk found.
"""

from __future__ import annotations

import warnings

from ...errors import OutsideNeutralShapeError, UnsupportedError
from ...model import SequenceModel
from ...options import ReadHints
from . import lstm_node
from .flow import INPUT_ATOMS, Flow, Prefix
from .graph_index import GraphIndex
from .graph_walk import GraphWalk
from .layout import axes_text
from .lstm_stack import settle
from .model_builder import build_model, fixed_sizes, onnx_meta
from .node_arguments import describe
from .symbolic import Dim


class GraphReader:
    """Turns one graph into a SequenceModel; ``read()`` is the entry point."""

    def __init__(self, index: GraphIndex) -> None:
        self.index = index
        self.walk = GraphWalk(index)

    def flow(self, name: str) -> Flow:
        """What the tensor ``name`` holds (the walk's memoised answer)."""
        return self.walk.flow(name)

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
        walk = self.walk
        flow = settle(walk, walk.flow(output), f"the graph output {output!r}")
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
        meta = {"onnx": onnx_meta(index, prefix, output)}
        fixed = fixed_sizes(index, prefix)
        if fixed:
            meta["fixed_sizes"] = fixed
        return build_model(flow, walk.findings.settlements, batch_first, meta)

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
                raise OutsideNeutralShapeError(
                    f"the graph has {len(outputs)} outputs ({names}); lstmconvert models have one, and of the "
                    f"others only LSTM states can be left out, but {extra.name!r} is not an LSTM state",
                    layer=self.walk.describe_producer(extra.name),
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
                f"the graph output {output!r} has axes {axes_text(flow, axes)}; expected "
                f"{axes_text(flow, expect)} (the same batch/time layout as the input)"
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
            first_reader = describe(self.index.consumers[extra[0]][0])
            raise OutsideNeutralShapeError(f"graph input(s) {', '.join(map(repr, extra))} feed something other than "
                                           "the model's data path", layer=first_reader)


__all__ = ["GraphReader", "Dim"]
