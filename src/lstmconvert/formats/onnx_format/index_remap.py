"""Index arithmetic in front of an embedding that changes nothing ONNX's ``Gather`` would not.

Keras 3's ``Embedding`` wraps negative ids (``where(ids < 0, ids + vocab, ids)``), which tf2onnx
writes as a dozen elementwise ops between the input and the ``Gather``. ``Gather`` itself already
counts negative indices from the end, so the whole expression is an identity for every index
``Gather`` accepts. Rather than match one exporter's spelling, the ops are run (onnx's reference
evaluator) on every index in ``[-vocab, vocab)``: elementwise ops with scalar constants cannot act
differently on a larger tensor, so that run proves the equivalence.
"""

from __future__ import annotations

from typing import Optional

import numpy as np
import onnx
from onnx import helper

from .graph_index import GraphIndex

_ELEMENTWISE = {"Add", "Sub", "Mul", "Cast", "Less", "Greater", "LessOrEqual", "GreaterOrEqual", "Equal", "Not",
                "And", "Or", "Where", "Mod", "Abs", "Neg", "Identity", "Max", "Min"}
_MAX_NODES = 64


def unwrapped_ids(index: GraphIndex, name: str, vocab: int) -> Optional[str]:
    """The graph input ``name`` is computed from if the computation is an identity for Gather, else None."""
    nodes, source = _elementwise_cone(index, name)
    if not nodes or source is None:
        return None
    graph_input = next(i for i in index.inputs if i.name == source)
    elem = graph_input.type.tensor_type.elem_type
    probe = np.arange(-vocab, vocab).reshape(1, -1).astype(helper.tensor_dtype_to_np_dtype(elem))
    constants = {i for n in nodes for i in n.input if i and i != source and i not in {o for m in nodes for o in m.output}}
    initializers = [onnx.numpy_helper.from_array(np.asarray(index.const(c)), c) for c in sorted(constants)]
    graph = helper.make_graph(
        list(reversed(nodes)), "ids", [helper.make_tensor_value_info(source, elem, [1, probe.shape[1]])],
        [helper.make_tensor_value_info(name, onnx.TensorProto.UNDEFINED, None)], initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", index.opset)])
    try:
        from onnx.reference import ReferenceEvaluator

        (result,) = ReferenceEvaluator(model).run(None, {source: probe})
    except Exception:  # the expression is not one the reference evaluator runs: not ours to accept
        return None
    result = np.asarray(result)
    if result.shape != probe.shape or result.dtype.kind not in "iu" or result.min() < -vocab or result.max() >= vocab:
        return None
    return source if np.array_equal(np.mod(result.astype(np.int64), vocab), np.mod(probe.astype(np.int64), vocab)) \
        else None


def _elementwise_cone(index: GraphIndex, name: str) -> tuple:
    """Nodes computing ``name`` from one graph input and scalar constants only; (nodes, input) or ([], None)."""
    inputs = {i.name for i in index.inputs}
    nodes, sources, pending, seen = [], set(), [name], set()
    while pending:
        value = pending.pop()
        if value in seen:
            continue
        seen.add(value)
        if value in inputs:
            sources.add(value)
            continue
        constant = index.const(value)
        if constant is not None:
            if np.asarray(constant).size != 1:
                return [], None
            continue
        found = index.producer.get(value)
        if found is None or found[0].op_type not in _ELEMENTWISE or found[0].domain not in ("", "ai.onnx"):
            return [], None
        nodes.append(found[0])
        if len(nodes) > _MAX_NODES:
            return [], None
        pending.extend(i for i in found[0].input if i)
    if len(sources) != 1:
        return [], None
    # Topological order for the evaluator: producers before consumers (reversed by the caller).
    order = {id(n): k for k, n in enumerate(index.graph.node)}
    unique = {id(n): n for n in nodes}
    return sorted(unique.values(), key=lambda n: -order[id(n)]), sources.pop()
