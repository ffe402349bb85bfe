"""Assembling the neutral ``SequenceModel`` from what the walk found, after the walk is over.

The walk leaves the graph output's ``Flow`` (its prefix holds the input, embedding table and LSTM
layer records; its head the dense layer records) and the settlement of each LSTM layer. Building
the neutral objects only here keeps the walk free of half-made layers: a layer's merge is known
only when its consumer is reached, and nothing has to be patched in afterwards.
"""

from __future__ import annotations

from typing import Optional

import onnx

from ...model import Dense, Embedding, LSTMLayer, SequenceModel
from .flow import INPUT_ATOMS, Flow, LayerRecord, Prefix
from .graph_index import GraphIndex
from .lstm_stack import Settlement


def build_model(flow: Flow, settlements: dict, batch_first: bool, meta: dict) -> SequenceModel:
    """The model whose output is ``flow`` (already settled: features with a readout)."""
    prefix = flow.prefix
    masked = prefix.lengths is not None
    mask_value = 0.0  # token padding is id 0; lengths given as an input assume 0.0 padding too
    if masked and prefix.input_kind == "features" and prefix.lengths.pad_value is not None:
        mask_value = prefix.lengths.pad_value
    embedding = Embedding(weight=prefix.embedding_table) if prefix.embedding_table is not None else None
    return SequenceModel(
        layers=[lstm_layer(record, settlements.get(record)) for record in prefix.layers],
        embedding=embedding,
        head=[Dense(weight=d.weight, bias=d.bias, activation=d.activation) for d in flow.head],
        input_kind=prefix.input_kind,
        batch_first=batch_first,
        readout=flow.readout,
        masked=masked,
        mask_value=mask_value,
        meta=meta,
    )


def lstm_layer(record: LayerRecord, settlement: Optional[Settlement]) -> LSTMLayer:
    """A neutral layer from a record and how its consumer reads it."""
    settlement = settlement or Settlement()
    return LSTMLayer(directions=list(record.directions), merge=settlement.merge, reverse=record.reverse,
                     reversed_output=settlement.reversed_output, clip=record.clip,
                     input_forget=record.input_forget)


def onnx_meta(index: GraphIndex, prefix: Prefix, output: str) -> dict:
    """What the writer and runtime need to know about the file: names, opset, fixed sizes, lengths input."""
    data = next(i for i in index.inputs if i.name == prefix.input_name)
    meta = {
        "input_names": [prefix.input_name],
        "output_names": [output],
        "opset": index.opset,
        "input_type": onnx.helper.tensor_dtype_to_np_dtype(data.type.tensor_type.elem_type).name,
        "lstm_nodes": [record.node_name for record in prefix.layers],
    }
    if prefix.lengths is not None and prefix.lengths.source == "input":
        meta["lengths_input"] = prefix.lengths.input_name
    return meta


def fixed_sizes(index: GraphIndex, prefix: Prefix) -> dict:
    """Sizes the exporter fixed (no dynamic axes), as ``SequenceModel.meta["fixed_sizes"]``: the file
    runs only at these."""
    data = next(i for i in index.inputs if i.name == prefix.input_name)
    dims = data.type.tensor_type.shape.dim
    fixed = {}
    for atom, key in ((prefix.batch_atom, "batch"), (prefix.time_atom, "steps")):
        dim = dims[INPUT_ATOMS.index(atom)]
        if dim.HasField("dim_value"):
            fixed[key] = dim.dim_value
    return fixed
