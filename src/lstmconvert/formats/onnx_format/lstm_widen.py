"""One forward ``LSTM`` node made bidirectional in place, its outputs rewired for its old readers.

The node keeps its name and inputs; W, R, B and P gain the backward direction (``widening.
backward_direction``, in neutral gate order and back, so the forward bytes are reused as they are),
its ``activations`` are repeated for the backward direction, and ``initial_h``/``initial_c`` gain a
backward entry (a copy of an all-zero state, else zeros). Its outputs get new names, and small
adapters recreate the old names with the old rank:

* ``merge="concat"``: Y ``(T, 1, N, H)`` becomes ``(T, 1, N, 2H)`` = ``[forward ‖ backward]``
  (Transpose + Reshape), Y_h/Y_c ``(1, N, H)`` become ``(1, N, 2H)``; layout 1 likewise
  (``(N, T, 1, 2H)``, ``(N, 1, 2H)``). Readers then see twice the features on the last axis, which
  the consumer walk follows.
* sum/ave/mul: ReduceSum/ReduceMean/ReduceProd over the direction axis, so no shape changes.
"""

from __future__ import annotations

import numpy as np
import onnx

from ...errors import UnsupportedError
from ...gates import FROM_ONNX, PEEPHOLE_FROM_ONNX, PEEPHOLE_TO_ONNX, TO_ONNX, permute_blocks
from ...model import LSTMDirection
from ...widening import Block, backward_direction
from .edit_context import EditContext, Stacked, node_key
from .graph_index import attribute, describe
from .lstm_node import INITIAL_C, INITIAL_H, B, P, R, W, computed_state
from .wide_values import Wide

_REDUCE = {"sum": "ReduceSum", "ave": "ReduceMean", "mul": "ReduceProd"}


def select_lstms(ctx: EditContext) -> list:
    """The LSTM nodes to widen: every forward one, or those named in the request (refused if unfit)."""
    lstms = [n for n in ctx.graph.node if n.op_type == "LSTM" and n.domain in ("", "ai.onnx")]
    if not ctx.request.lstms:
        forward = [n for n in lstms if attribute(n, "direction", "forward") == "forward"]
        chosen = [n for n in forward if not _given_states(ctx, n)]
        for node in forward:
            if node not in chosen:
                ctx.mark(node, "other", "stays unidirectional: starts from states computed in the graph (a decoder)")
                ctx.notes.append(f"{describe(node)} starts from states computed in the graph (a decoder) and stays "
                                 "unidirectional; a widened LSTM's state reaches it as the forward direction's, "
                                 "as before")
        if not chosen:
            decoders = f"; {', '.join(describe(n) for n in forward)} start(s) from states computed in the graph " \
                       "(a decoder) and stays unidirectional" if forward else ""
            raise UnsupportedError(f"the graph has no forward (unidirectional) LSTM node to widen{decoders}")
        return chosen
    by_name = {n.name: n for n in lstms if n.name}
    chosen = []
    for name in dict.fromkeys(ctx.request.lstms):  # a name given twice is widened once
        if name not in by_name:
            known = ", ".join(repr(n) for n in by_name) or "none has a name"
            raise UnsupportedError(f"--lstm {name!r}: no LSTM node of that name (the graph's LSTM nodes: {known})")
        direction = attribute(by_name[name], "direction", "forward")
        if direction != "forward":
            raise UnsupportedError(f"--lstm {name!r}: the node is {direction}; only forward LSTMs can be widened")
        if _given_states(ctx, by_name[name]):
            raise UnsupportedError(f"--lstm {name!r}: the node starts from states computed in the graph (a "
                                   "decoder fed an encoder's state), which a bidirectional decoder would need for "
                                   "both directions; widen the encoder")
        chosen.append(by_name[name])
    return chosen


def _given_states(ctx: EditContext, node: onnx.NodeProto) -> bool:
    """Whether the node starts from states computed in the graph (a decoder fed an encoder's state).

    States the caller passes in (graph inputs) or constants do not count: the node is widened, its
    backward direction starting from zeros (``_widen_state``).
    """
    return any(len(node.input) > slot and computed_state(ctx.index, node.input[slot]) for slot in (INITIAL_H, INITIAL_C))


def rewire_outputs(ctx: EditContext, node: onnx.NodeProto) -> dict:
    """Rename the node's outputs and recreate the old names in the new layout; returns {old name: Wide}."""
    layout = attribute(node, "layout", 0)
    if layout not in (0, 1):
        raise UnsupportedError(f"{describe(node)}: unknown layout {layout}")
    hidden = _hidden_size(ctx, node)
    merge = ctx.request.merge
    seeds = {}
    for slot, old in enumerate(node.output):
        if not old or old not in ctx.index.consumers and old not in {o.name for o in ctx.graph.output}:
            continue
        new = ctx.fresh(f"{old}_bidirectional")
        ctx.renamed_outputs[(node_key(node), slot)] = new
        is_sequence = slot == 0
        # Y: (T, D, N, H) or (N, T, D, H); Y_h/Y_c: (D, N, H) or (N, D, H).
        rank = 4 if is_sequence else 3
        direction_axis = (1 if is_sequence else 0) if layout == 0 else (2 if is_sequence else 1)
        if merge == "concat":
            moved = new
            if layout == 0:  # bring the direction axis next to the features
                perm = [0, 2, 1, 3] if is_sequence else [1, 0, 2]
                moved = ctx.insert_after(node, "Transpose", [new], ctx.fresh(f"{new}_moved"), "bidirectional_transpose",
                                         perm=perm)
            shape = ([0, 1, -1, 2 * hidden] if is_sequence else [1, -1, 2 * hidden]) if layout == 0 \
                else ([0, 0, 1, 2 * hidden] if is_sequence else [0, 1, 2 * hidden])
            ctx.insert_after(node, "Reshape", [moved, ctx.constant("bidirectional_shape", np.array(shape, np.int64))],
                             old, "bidirectional_concat")
            seeds[old] = Wide(rank, rank - 1, (Block(0, hidden),), hidden)
        else:
            op = _REDUCE[merge]
            if op == "ReduceSum" and ctx.opset >= 13 or ctx.opset >= 18:
                ctx.insert_after(node, op, [new, ctx.constant("direction_axis", np.array([direction_axis], np.int64))],
                                 old, f"bidirectional_{merge}", keepdims=1)
            else:
                ctx.insert_after(node, op, [new], old, f"bidirectional_{merge}", axes=[direction_axis], keepdims=1)
            seeds[old] = Wide(rank, rank - 1, (Block(0, hidden),), hidden)
        if not is_sequence:
            state = "Y_h" if slot == 1 else "Y_c"
            ctx.notes.append(
                f"{describe(node)}: its final state {state} is read; its readers now get the forward and backward "
                f"states {'side by side, [forward ‖ backward], the forward half being the old state' if merge == 'concat' else f'merged by {merge}'}"
            )
    ctx.mark(node, "lstm", f"direction forward -> bidirectional (hidden {hidden}, merge {merge})")
    ctx.widened.append(node.name or node.output[0])
    return seeds


def stack_directions(ctx: EditContext, node: onnx.NodeProto) -> None:
    """Record the node's bidirectional weights, states and attributes (after the walk widened its W)."""
    where = describe(node)
    w, r = ctx.value(node, W), ctx.value(node, R)
    if w is None or r is None:
        raise UnsupportedError(f"{where}: its W or R is computed at run time, not a constant")
    b = ctx.value(node, B) if len(node.input) > B and node.input[B] else None
    p = ctx.value(node, P) if len(node.input) > P and node.input[P] else None
    hidden = r.shape[-1]
    if ctx.request.backward == "copy":  # the forward arrays themselves, already in ONNX's gate order
        backward = {W: w[0], R: r[0], B: b[0] if b is not None else None, P: p[0] if p is not None else None}
    else:
        forward = LSTMDirection(
            w_ih=permute_blocks(w[0], FROM_ONNX), w_hh=permute_blocks(r[0], FROM_ONNX),
            b_ih=permute_blocks(b[0, :4 * hidden], FROM_ONNX) if b is not None else None,
            b_hh=permute_blocks(b[0, 4 * hidden:], FROM_ONNX) if b is not None else None,
            peephole=permute_blocks(p[0], PEEPHOLE_FROM_ONNX) if p is not None else None,
        )
        back = backward_direction(forward, ctx.request.backward, ctx.init)
        # A single-bias initialiser (Keras style) leaves the recurrent bias zero.
        halves = [permute_blocks(h, TO_ONNX) if h is not None else np.zeros(4 * hidden, w.dtype)
                  for h in (back.b_ih, back.b_hh)]
        peephole = back.peephole if back.peephole is not None else np.zeros(3 * hidden, w.dtype)
        backward = {W: permute_blocks(back.w_ih, TO_ONNX), R: permute_blocks(back.w_hh, TO_ONNX),
                    B: np.concatenate(halves), P: permute_blocks(peephole, PEEPHOLE_TO_ONNX)}
    for slot, value in ((W, w), (R, r), (B, b), (P, p)):
        if value is not None:
            ctx.set_weight(node, slot, Stacked([np.ascontiguousarray(value[0]), np.ascontiguousarray(backward[slot])]))
    layout = attribute(node, "layout", 0)
    for slot in (INITIAL_H, INITIAL_C):
        if len(node.input) > slot and node.input[slot]:
            _widen_state(ctx, node, slot, direction_axis=0 if layout == 0 else 1, dtype=w.dtype)


def widened_attributes(node: onnx.NodeProto) -> list:
    """The node's attributes for two directions: direction set, activation lists repeated."""
    out = []
    for attr in node.attribute:
        if attr.name == "direction":
            continue
        if attr.name == "activations":
            out.append(onnx.helper.make_attribute("activations", attribute(node, "activations") * 2))
        elif attr.name in ("activation_alpha", "activation_beta"):
            out.append(onnx.helper.make_attribute(attr.name, list(attribute(node, attr.name)) * 2))
        else:
            out.append(attr)
    out.append(onnx.helper.make_attribute("direction", "bidirectional"))
    return out


def _widen_state(ctx: EditContext, node: onnx.NodeProto, slot: int, direction_axis: int, dtype: np.dtype) -> None:
    """initial_h/initial_c gain the backward direction's entry: zeros (a copy of a zero state)."""
    name = node.input[slot]
    if ctx.index.is_zero(name):
        backward = name
    else:  # the backward direction starts from zeros whatever the forward one starts from
        zero = np.zeros((), dtype=dtype)
        backward = ctx.fresh(f"{name}_backward")
        ctx.inserted.setdefault(("before",) + node_key(node), []).append(
            onnx.helper.make_node("Mul", [name, ctx.constant("zero", zero)], [backward], name=ctx.fresh("backward_state")))
    both = ctx.fresh(f"{name}_bidirectional")
    ctx.inserted.setdefault(("before",) + node_key(node), []).append(
        onnx.helper.make_node("Concat", [name, backward], [both], name=ctx.fresh("bidirectional_state"),
                              axis=direction_axis))
    ctx.renamed_inputs[(node_key(node), slot)] = both


def _hidden_size(ctx: EditContext, node: onnx.NodeProto) -> int:
    r = ctx.index.const(node.input[R]) if len(node.input) > R else None
    if r is None:
        raise UnsupportedError(f"{describe(node)}: its R is computed at run time, not a constant")
    return int(r.shape[-1])
