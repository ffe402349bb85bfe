"""Format-aware mutations: ONNX protobuf fields, HDF5 datasets and attributes, and hostile payloads.

Hostile payloads are files that would create ``canary`` if anything in them were executed: a pickle
whose ``__reduce__`` calls ``os.system``/``Path.touch``/``exec``, and a Keras ``Lambda`` layer whose
marshalled bytecode creates the file. The fuzzer checks after every mutant that ``canary`` does not exist.
"""

from __future__ import annotations

import base64
import io
import json
import marshal
import os
import pickle
import random
import tempfile
from pathlib import Path

from .mutate import INTERESTING_INTS, mutate_bytes, mutate_json, write_zip


# --- ONNX ----------------------------------------------------------------------------------------


def mutate_onnx(rng: random.Random, data: bytes):
    """Edit one field of the ModelProto: dims, data types, raw data, attributes, nodes, external data."""
    import onnx

    try:
        model = onnx.ModelProto.FromString(data)
    except Exception:
        return mutate_bytes(rng, data)
    graph = model.graph
    edits = []
    if graph.initializer:
        edits += [_onnx_dims, _onnx_dtype, _onnx_raw_data, _onnx_external]
    if any(node.attribute for node in graph.node):
        edits.append(_onnx_attribute)
    if graph.node:
        edits += [_onnx_node]
    edits += [_onnx_opset, _onnx_io]
    what = rng.choice(edits)(rng, model)
    return model.SerializeToString(), what


def _onnx_dims(rng, model) -> str:
    tensor = rng.choice(model.graph.initializer)
    if tensor.dims and rng.random() < 0.7:
        i = rng.randrange(len(tensor.dims))
        tensor.dims[i] = rng.choice(INTERESTING_INTS[:-1] + [tensor.dims[i] * 2, tensor.dims[i] + 1])
    else:
        del tensor.dims[:]
        tensor.dims.extend(rng.choice([[2**20, 2**20], [2**40], [], [0], [1, 1, 1, 1]]))
    return f"initializer {tensor.name} dims set to {list(tensor.dims)}"


def _onnx_dtype(rng, model) -> str:
    tensor = rng.choice(model.graph.initializer)
    tensor.data_type = rng.choice([0, 1, 2, 6, 7, 8, 10, 11, 16, 99])
    return f"initializer {tensor.name} data_type set to {tensor.data_type}"


def _onnx_raw_data(rng, model) -> str:
    tensor = rng.choice(model.graph.initializer)
    raw = tensor.raw_data
    tensor.raw_data = raw[: rng.randrange(len(raw) + 1)] if raw and rng.random() < 0.6 else raw + b"\x00" * rng.choice([1, 4, 64])
    return f"initializer {tensor.name} raw_data {len(raw)} -> {len(tensor.raw_data)} bytes"


def _onnx_external(rng, model) -> str:
    from onnx import TensorProto

    tensor = rng.choice(model.graph.initializer)
    tensor.data_location = TensorProto.EXTERNAL
    del tensor.external_data[:]
    location = rng.choice(["w.bin", "../w.bin", "/etc/passwd", "", "w.bin\x00x"])
    entries = {"location": location, "offset": str(rng.choice([0, 4, 2**40, -1])),
               "length": str(rng.choice([len(tensor.raw_data), 2**40, 0, -5]))}
    for key in rng.sample(sorted(entries), rng.randrange(1, 4)):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, entries[key]
    tensor.raw_data = b""
    return f"initializer {tensor.name} moved to external data {entries}"


def _onnx_attribute(rng, model) -> str:
    node = rng.choice([n for n in model.graph.node if n.attribute])
    attribute = rng.choice(node.attribute)
    if attribute.type == attribute.INT:
        attribute.i = rng.choice(INTERESTING_INTS[:-1] + [attribute.i * 2])
        return f"{node.op_type} attribute {attribute.name} set to {attribute.i}"
    if attribute.type == attribute.STRING:
        attribute.s = rng.choice([b"", b"reverse", b"bidirectional", b"Relu", b"x" * 64])
        return f"{node.op_type} attribute {attribute.name} set to {attribute.s!r}"
    if attribute.type in (attribute.FLOATS, attribute.INTS, attribute.STRINGS):
        field = {attribute.FLOATS: attribute.floats, attribute.INTS: attribute.ints, attribute.STRINGS: attribute.strings}[attribute.type]
        if len(field):
            del field[-1]
        return f"{node.op_type} attribute {attribute.name} lost its last item"
    node.attribute.remove(attribute)
    return f"{node.op_type} attribute {attribute.name} removed"


def _onnx_node(rng, model) -> str:
    nodes = model.graph.node
    node = rng.choice(nodes)
    action = rng.randrange(4)
    if action == 0:
        nodes.remove(node)
        return f"node {node.name or node.op_type} removed"
    if action == 1:
        old, node.op_type = node.op_type, rng.choice(["GRU", "Relu", "Identity", "Loop", "LSTM", "Custom"])
        return f"node {node.name or old} op_type {old} -> {node.op_type}"
    if action == 2 and node.input:
        i = rng.randrange(len(node.input))
        node.input[i] = rng.choice(["", "missing", node.output[0] if node.output else "x"])
        return f"node {node.name or node.op_type} input {i} set to {node.input[i]!r}"
    node.domain = rng.choice(["com.microsoft", "ai.onnx.ml", "evil"])
    return f"node {node.name or node.op_type} domain set to {node.domain}"


def _onnx_opset(rng, model) -> str:
    if model.opset_import:
        model.opset_import[0].version = rng.choice([0, 1, 7, 13, 99, 2**40])
        return f"opset set to {model.opset_import[0].version}"
    return "no opset"


def _onnx_io(rng, model) -> str:
    values = list(model.graph.input) + list(model.graph.output)
    if not values:
        return "no inputs"
    value = rng.choice(values)
    shape = value.type.tensor_type.shape
    if shape.dim and rng.random() < 0.6:
        dim = rng.choice(shape.dim)
        dim.dim_value = rng.choice([0, 1, 2**40])
        return f"{value.name} dim set to {dim.dim_value}"
    value.type.tensor_type.elem_type = rng.choice([0, 7, 10, 11])
    return f"{value.name} elem_type set to {value.type.tensor_type.elem_type}"


# --- HDF5 ----------------------------------------------------------------------------------------


def mutate_hdf5(rng: random.Random, data: bytes):
    """Edit a dataset (shape, dtype, a huge declared shape, removal) or an attribute (JSON configs) with h5py."""
    import h5py
    import numpy as np

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.h5"
        path.write_bytes(data)
        try:
            with h5py.File(path, "r+") as f:
                datasets, attributed = [], []
                f.visititems(lambda name, obj: datasets.append(name) if isinstance(obj, h5py.Dataset) else None)
                f.visititems(lambda name, obj: attributed.append(obj) if len(obj.attrs) else None)
                if len(f.attrs):
                    attributed.append(f)
                what = _hdf5_edit(rng, f, datasets, attributed, h5py, np)
        except Exception:
            return mutate_bytes(rng, data)
        return path.read_bytes(), what


def _hdf5_edit(rng, f, datasets, attributed, h5py, np) -> str:
    action = rng.random()
    if datasets and action < 0.55:
        name = rng.choice(datasets)
        old = f[name]
        array = old[()]
        del f[name]
        kind = rng.randrange(5)
        if kind == 0:
            f.create_dataset(name, shape=(2**20, 2**20), dtype="float32", chunks=(1, 16))
            return f"dataset {name} declared (2**20, 2**20) with no data"
        if kind == 1 and getattr(array, "ndim", 0):
            f.create_dataset(name, data=array[:-1] if len(array) > 1 else array.T)
            return f"dataset {name} lost a row"
        if kind == 2 and getattr(array, "ndim", 0) == 2:
            f.create_dataset(name, data=array.T)
            return f"dataset {name} transposed"
        if kind == 3:
            f.create_dataset(name, data=np.asarray(array).astype(rng.choice(["int64", "float16", "uint8", "S4"])))
            return f"dataset {name} dtype changed"
        return f"dataset {name} removed"
    if attributed:
        obj = rng.choice(attributed)
        key = rng.choice(list(obj.attrs.keys()))
        value = obj.attrs[key]
        text = value.decode() if isinstance(value, bytes) else value
        if isinstance(text, str) and text[:1] in "{[":
            new, detail = mutate_json(rng, text.encode())
            obj.attrs[key] = new.decode()
            return f"attribute {obj.name}:{key}: {detail}"
        if rng.random() < 0.3:
            del obj.attrs[key]
            return f"attribute {obj.name}:{key} removed"
        obj.attrs[key] = rng.choice(["", "x", "2.99.0", "1.0", "tensorflow"])
        return f"attribute {obj.name}:{key} set to {obj.attrs[key]!r}"
    return "nothing to edit"


def mutate_keras_member(rng: random.Random, name: str, content: bytes):
    """Format-aware edits inside a .keras archive: HDF5 weights, JSON config."""
    if name.endswith(".h5"):
        return mutate_hdf5(rng, content)
    if name.endswith(".json"):
        return mutate_json(rng, content)
    return mutate_bytes(rng, content)


# --- hostile payloads ----------------------------------------------------------------------------


class _Reduce:
    def __init__(self, function, args):
        self.function, self.args = function, args

    def __reduce__(self):
        return self.function, self.args


def hostile_pickle(rng: random.Random, canary: Path) -> bytes:
    import builtins

    payload = rng.choice([
        _Reduce(os.system, (f"touch {canary}",)),
        _Reduce(Path.touch, (canary,)),
        _Reduce(builtins.exec, (f"open({str(canary)!r}, 'w').close()",)),
        {"lstm.weight_ih_l0": _Reduce(builtins.eval, (f"open({str(canary)!r}, 'w').close()",))},
    ])
    return pickle.dumps(payload, protocol=rng.choice([2, 2, 4]))


def hostile_torch(rng: random.Random, data: bytes, canary: Path):
    """A PyTorch file whose pickle runs code: in the zip's data.pkl, or as the whole (legacy) file."""
    import zipfile

    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [(info, archive.read(info)) for info in archive.infolist()]
    except Exception:
        return hostile_pickle(rng, canary), "whole file replaced by a code-running pickle"
    members = [(info, hostile_pickle(rng, canary) if info.filename.endswith("data.pkl") else content)
               for info, content in members]
    return write_zip(members), "data.pkl replaced by a code-running pickle"


def lambda_layer(canary: Path) -> dict:
    """A Keras 3 ``Lambda`` layer config whose function, if deserialised and called, creates ``canary``."""
    function = eval(f"lambda x: (open({str(canary)!r}, 'w').close(), x)[1]")  # noqa: S307 - builds the payload
    code = base64.b64encode(marshal.dumps(function.__code__)).decode("ascii")
    return {"module": "keras.layers", "class_name": "Lambda", "registered_name": None,
            "config": {"name": "payload", "trainable": True, "dtype": "float32",
                       "function": {"class_name": "__lambda__", "config": {"code": code, "defaults": None, "closure": None}},
                       "output_shape": None, "arguments": {}}}


def insert_lambda(config_text: str, canary: Path) -> str:
    """``config_text`` (a Keras model config) with a code-running Lambda layer inserted after the first layer."""
    config = json.loads(config_text)
    layers = config.get("config", {}).get("layers") if isinstance(config, dict) else None
    if isinstance(layers, list):
        layers.insert(min(1, len(layers)), lambda_layer(canary))
    return json.dumps(config)


def hostile_keras(rng: random.Random, data: bytes, canary: Path, suffix: str):
    """A Keras file (zip or HDF5) with a Lambda layer carrying bytecode that creates ``canary``."""
    if suffix == ".keras":
        import zipfile

        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [(info, insert_lambda(archive.read(info).decode(), canary).encode()
                    if info.filename == "config.json" else archive.read(info)) for info in archive.infolist()]
        return write_zip(members), "config.json: Lambda layer with code inserted"
    import h5py

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.h5"
        path.write_bytes(data)
        with h5py.File(path, "r+") as f:
            text = f.attrs["model_config"]
            f.attrs["model_config"] = insert_lambda(text.decode() if isinstance(text, bytes) else text, canary)
        return path.read_bytes(), "model_config: Lambda layer with code inserted"
