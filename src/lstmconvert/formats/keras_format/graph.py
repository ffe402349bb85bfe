"""A Keras model config reduced to a linear chain of layers, from the input to the output.

Sequential models are chains already. A Functional model must be one path from a single Input to a
single output; the only nodes allowed beside that path are the mask computations Keras 3 records
for ``Masking`` (``Any(NotEqual(x, mask_value), axis=-1)``) and for ``Embedding(mask_zero=True)``
(``NotEqual(ids, 0)``). They are checked, not trusted: a mask computed any other way is refused.

A model used as a layer (a Sequential encoder inside a Functional model, say) is flattened into the
chain when it is itself a chain; its layers keep the weight locations Keras gave them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Optional

from ...errors import OutsideNeutralShapeError, ReadError, UnsupportedError

# Keras 3 operations (not layers) that may appear as Functional nodes; they own no weights and are
# not in ``model.layers``, so they take no part in weight-group naming.
OPERATION_CLASSES = ("NotEqual", "Any", "Flip")
_MODEL_CLASSES = ("Sequential", "Functional", "Model")


@dataclass
class LayerSpec:
    """One layer on the chain. ``store_path`` is its weights group in a .keras archive."""

    name: str
    class_name: str
    config: dict
    store_path: Optional[str] = None
    mask_kwarg: Optional[str] = None  # Functional (Keras 3): "embedding"/"masking" mask it receives
    explicit_mask: bool = False  # mask_kwarg is what the layer receives (Keras 3 Functional calls)
    args: list = field(default_factory=list)  # constant positional arguments of an operation
    h5_group: Optional[str] = None  # HDF5: the top-level model_weights group of a nested model's layer
    nested_in: Optional[str] = None  # name of the model used as a layer that holds this one

    def where(self) -> str:
        inside = f" in model '{self.nested_in}'" if self.nested_in else ""
        return f"layer '{self.name}' ({self.class_name}){inside}"


@dataclass
class LayerChain:
    """The model as a chain, with what the config says about masks."""

    model_name: str
    layers: list


@dataclass
class _Node:
    """One Functional layer: its single call's tensor inputs, constants and keyword arguments."""

    name: str
    class_name: str
    config: dict
    module: str
    calls: list  # each: (tensors [(layer, node, index)], constants, kwargs)


def to_snake_case(name: str) -> str:
    """Keras's naming.to_snake_case, which names weight groups after layer classes."""
    name = re.sub(r"\W+", "", name)
    name = re.sub("(.)([A-Z][a-z]+)", r"\1_\2", name)
    return re.sub("([a-z])([A-Z])", r"\1_\2", name).lower()


def layer_chain(model_config: dict) -> LayerChain:
    """Reduce a serialized model (``{"class_name", "config"}``) to a LayerChain."""
    if not isinstance(model_config, dict) or "class_name" not in model_config:
        raise ReadError("the model config has no class_name; not a Keras model config")
    cls = model_config["class_name"]
    config = model_config.get("config")
    if cls == "Sequential":
        chain = _sequential(config)
    elif cls in ("Functional", "Model") and isinstance(config, dict) and "input_layers" in config:
        chain = _functional(config)
    else:
        raise UnsupportedError(
            f"model class {cls!r} is not supported; lstmconvert reads Sequential models and "
            "Functional models that are a single chain of layers"
        )
    chain.layers = _flatten_nested(chain.layers)
    return chain


def _entries(config: object) -> list:
    layers = config.get("layers") if isinstance(config, dict) else config  # Keras 2.2 stored a bare list
    if not isinstance(layers, list) or not all(isinstance(e, dict) and "class_name" in e for e in layers):
        raise ReadError("the model config has no readable list of layers")
    return layers


def _name(entry: dict) -> str:
    config = entry.get("config") if isinstance(entry.get("config"), dict) else {}
    return str(entry.get("name") or config.get("name") or entry["class_name"])


def _sequential(config: object) -> LayerChain:
    entries = _entries(config)
    specs = [LayerSpec(_name(e), e["class_name"], e.get("config") or {}) for e in entries]
    # Sequential.layers leaves out a leading InputLayer, and weight groups follow model.layers.
    named = specs[1:] if specs and specs[0].class_name == "InputLayer" else specs
    _assign_store_paths(named)
    model_name = config.get("name", "sequential") if isinstance(config, dict) else "sequential"
    return LayerChain(model_name, specs)


def _functional(config: dict) -> LayerChain:
    nodes = {}
    order = []
    explicit = False
    for entry in _entries(config):
        name = _name(entry)
        calls, style = _calls(entry.get("inbound_nodes", []), name)
        explicit = explicit or style == "keras3"
        if name in nodes:
            raise ReadError(f"two layers are named {name!r}")
        nodes[name] = _Node(name, entry["class_name"], entry.get("config") or {}, str(entry.get("module") or ""), calls)
        order.append(name)
    source = _single_endpoint(config.get("input_layers"), "input")
    sink = _single_endpoint(config.get("output_layers"), "output")
    for name in (source, sink):
        if name not in nodes:
            raise ReadError(f"the config names {name!r} as an endpoint but has no such layer")

    # Walk back from the output along each node's single tensor input.
    chain = []
    seen = set()
    current = sink
    while True:
        node = nodes[current]
        if current in seen:
            raise ReadError(f"the layer graph has a cycle through {current!r}")
        seen.add(current)
        chain.append(node)
        if node.class_name == "InputLayer":
            break
        if len(node.calls) != 1:
            raise OutsideNeutralShapeError(
                f"layer '{node.name}' ({node.class_name}) is called {len(node.calls)} times; "
                "shared layers are not supported", f"{node.class_name} '{node.name}'"
            )
        tensors, _, _ = node.calls[0]
        if len(tensors) != 1:
            raise OutsideNeutralShapeError(
                f"layer '{node.name}' ({node.class_name}) takes {len(tensors)} inputs; only a "
                "single chain of layers is supported (no branches or merges)", f"{node.class_name} '{node.name}'"
            )
        current = tensors[0][0]
        if current not in nodes:
            raise ReadError(f"layer '{node.name}' reads from unknown layer {current!r}")
    chain.reverse()
    if chain[0].name != source:
        raise OutsideNeutralShapeError(f"the output does not depend on the model input {source!r} alone",
                                       f"input '{source}' and others")

    on_chain = {n.name for n in chain}
    masks = _mask_sources(nodes, chain, on_chain)
    specs = []
    for node in chain:
        constants, kwargs = (node.calls[0][1], node.calls[0][2]) if node.calls else ([], {})
        spec = LayerSpec(node.name, node.class_name, node.config, args=constants, explicit_mask=explicit)
        spec.mask_kwarg = _call_kwargs(node, kwargs, masks)
        specs.append(spec)
    # Weight groups follow model.layers: every Layer of the config in order (operations excluded).
    by_name = {s.name: s for s in specs}
    _assign_store_paths([
        by_name.get(n) or LayerSpec(n, nodes[n].class_name, nodes[n].config)
        for n in order
        if not _is_operation(nodes[n])
    ])
    return LayerChain(str(config.get("name", "functional")), specs)


def _calls(inbound: object, name: str) -> tuple:
    """Normalize ``inbound_nodes`` of both the Keras 3 and the tf.keras / Keras 2 config styles."""
    if not isinstance(inbound, list):
        raise ReadError(f"layer {name!r} has unreadable inbound_nodes")
    calls = []
    style = None
    for node in inbound:
        if isinstance(node, dict):  # Keras 3: {"args": [...], "kwargs": {...}}
            style = "keras3"
            tensors, constants = [], []
            for arg in node.get("args", []):
                ref = _tensor_ref(arg)
                if ref is not None:
                    tensors.append(ref)
                elif isinstance(arg, list) and any(_tensor_ref(a) is not None for a in arg):
                    tensors.extend(r for r in map(_tensor_ref, arg) if r is not None)
                else:
                    constants.append(arg)
            calls.append((tensors, constants, dict(node.get("kwargs") or {})))
        elif isinstance(node, list):  # tf.keras / Keras 2: [[layer, node, index, kwargs], ...]
            style = "keras2"
            tensors, kwargs = [], {}
            for ref in node:
                if not isinstance(ref, list) or len(ref) < 3:
                    raise ReadError(f"layer {name!r} has an unreadable inbound node {ref!r}")
                tensors.append((str(ref[0]), ref[1], ref[2]))
                if len(ref) > 3 and isinstance(ref[3], dict):
                    kwargs.update(ref[3])
            calls.append((tensors, [], kwargs))
        else:
            raise ReadError(f"layer {name!r} has an unreadable inbound node")
    return calls, style


def _tensor_ref(value: object) -> Optional[tuple]:
    if isinstance(value, dict) and value.get("class_name") == "__keras_tensor__":
        history = (value.get("config") or {}).get("keras_history")
        if isinstance(history, list) and len(history) == 3:
            return (str(history[0]), history[1], history[2])
    return None


def _single_endpoint(value: object, what: str) -> str:
    """``input_layers`` / ``output_layers``: ``[name, 0, 0]`` or ``[[name, 0, 0]]``; exactly one."""
    if isinstance(value, list) and value and isinstance(value[0], str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ReadError(f"the model config names no {what}")
    if len(value) != 1:
        raise OutsideNeutralShapeError(f"the model has {len(value)} {what}s; only one is supported",
                                       f"{len(value)} {what}s")
    return str(value[0][0])


def _is_operation(node: _Node) -> bool:
    return node.class_name in OPERATION_CLASSES or ".ops." in f".{node.module}."


def _mask_sources(nodes: dict, chain: list, on_chain: set) -> dict:
    """Check every node off the chain is a recognised mask computation; map it to its source.

    Returns {node name: "embedding" | "masking"}.
    """
    chain_input = {node.name: node.calls[0][0][0][0] for node in chain if node.calls}
    embedding = next((n for n in chain if n.class_name == "Embedding"), None)
    masking = next((n for n in chain if n.class_name == "Masking"), None)
    sources = {}
    for name, node in nodes.items():
        if name in on_chain:
            continue
        kind = None
        if node.class_name == "NotEqual" and len(node.calls) == 1:
            tensors, constants, _ = node.calls[0]
            if len(tensors) == 1 and len(constants) == 1:
                (src, _, _), value = tensors[0], constants[0]
                if embedding is not None and embedding.config.get("mask_zero") and src == chain_input[embedding.name] and value == 0:
                    kind = "embedding"
                elif masking is not None and src == chain_input[masking.name] and value == masking.config.get("mask_value", 0.0):
                    kind = "not-equal"
        sources[name] = kind
    for name, node in nodes.items():
        if name in on_chain or sources[name] is not None:
            continue
        if node.class_name == "Any" and len(node.calls) == 1:
            tensors, constants, kwargs = node.calls[0]
            cfg = {**node.config, **kwargs}
            if (len(tensors) == 1 and not constants and sources.get(tensors[0][0]) == "not-equal"
                    and cfg.get("axis") == -1 and not cfg.get("keepdims", False)):
                sources[name] = "masking"
    for name, kind in sources.items():
        if kind is None:
            node = nodes[name]
            raise OutsideNeutralShapeError(
                f"layer '{name}' ({node.class_name}) is off the single path from input to output; "
                "branches are not supported", f"{node.class_name} '{name}'"
            )
    return {name: kind for name, kind in sources.items() if kind in ("embedding", "masking")}


def _call_kwargs(node: _Node, kwargs: dict, masks: dict) -> Optional[str]:
    """Allow only ``training`` (False/None) and a recognised ``mask`` as call arguments."""
    where = f"layer '{node.name}' ({node.class_name})"
    mask = None
    for key, value in kwargs.items():
        if key == "training":
            if value:
                raise UnsupportedError(f"{where} is called with training=True, so its dropout would stay active at inference")
        elif key == "mask":
            ref = _tensor_ref(value)
            if value is None:
                continue
            if ref is None or ref[0] not in masks:
                raise UnsupportedError(f"{where} receives a mask that is not computed by its Embedding or Masking")
            mask = masks[ref[0]]
        else:
            raise UnsupportedError(f"{where} is called with {key}=...; only plain calls are supported")
    return mask


def store_paths(class_names: list) -> list:
    """``layers/<snake_case class>[_k]``: Keras 3's names for the weight groups of a model's layers (in
    ``.keras`` weights files), deduplicated in order."""
    used: dict = {}
    paths = []
    for name in class_names:
        base = to_snake_case(name)
        used[base] = used.get(base, -1) + 1
        paths.append(f"layers/{base}_{used[base]}" if used[base] else f"layers/{base}")
    return paths


def _assign_store_paths(specs: list) -> None:
    for spec, path in zip(specs, store_paths([spec.class_name for spec in specs])):
        spec.store_path = path


def _flatten_nested(specs: list) -> list:
    """Replace each model used as a layer by its own chain of layers (recursively).

    Weights stay where Keras put them: in a .keras archive under the nested model's group
    (``layers/sequential/layers/lstm/...``); in HDF5 all of them in the top-level group named after
    the nested model (``h5_group``). Inside a nested Sequential, masks flow from layer to layer as
    Keras propagates them: the mask the nested model receives, then the one its own Embedding or
    Masking computes.
    """
    out = []
    for spec in specs:
        if spec.class_name not in _MODEL_CLASSES:
            out.append(spec)
            continue
        try:
            inner = layer_chain({"class_name": spec.class_name, "config": spec.config})
        except (ReadError, UnsupportedError) as exc:
            problem = (f"{spec.where()} is a model used as a layer and cannot be flattened into the chain: "
                       f"{exc.problem}")
            if isinstance(exc, OutsideNeutralShapeError):
                raise OutsideNeutralShapeError(problem, exc.layer) from exc
            raise UnsupportedError(problem) from exc
        received = spec.mask_kwarg
        for child in inner.layers:
            if child.class_name == "InputLayer":
                continue
            if child.explicit_mask:
                if received is not None:
                    raise UnsupportedError(
                        f"{spec.where()} is a Functional model given a mask, and Keras does not pass "
                        "it on to its layers (they run over the padding); only a nested Sequential model does"
                    )
            else:  # Sequential: the mask flows through, replaced by the child's own if it makes one
                if child.class_name == "Embedding" and child.config.get("mask_zero"):
                    received = "embedding"
                elif child.class_name == "Masking":
                    received = "masking"
                child.mask_kwarg = received
                child.explicit_mask = spec.explicit_mask
            child.store_path = f"{spec.store_path}/{child.store_path}"
            child.h5_group = spec.h5_group or spec.name
            child.nested_in = child.nested_in or spec.name
            out.append(child)
    return out
