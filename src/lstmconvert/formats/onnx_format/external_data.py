"""Loading an ONNX file without trusting its external-data references.

``onnx.load`` would open whatever path a tensor's ``location`` names. Here the file is parsed with
``load_external_data=False``, every reference is checked first (relative, inside the model's folder
after resolving symlinks, an existing regular file, offset and length within it, the byte count the
tensor needs), and only then is any data file opened.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import Iterator

import onnx
from onnx import TensorProto

from ...errors import ReadError


@dataclass(frozen=True)
class _Reference:
    tensor: TensorProto
    file: Path
    offset: int
    length: int
    checksum: str


def load_model(path: Path) -> onnx.ModelProto:
    """Parse ``path`` and fill in its external data after validating every reference."""
    try:
        model = onnx.load_model(str(path), load_external_data=False)
    except Exception as exc:  # protobuf raises DecodeError and friends
        raise ReadError(f"not an ONNX model (protobuf parse failed: {_first_line(exc)})") from exc
    references = [_validate(path, tensor) for tensor in _external_tensors(model)]
    for ref in references:
        _load(ref)
    return model


def _external_tensors(model: onnx.ModelProto) -> Iterator[TensorProto]:
    for tensor in _all_tensors(model):
        if tensor.HasField("data_location") and tensor.data_location == TensorProto.EXTERNAL:
            yield tensor


def _all_tensors(model: onnx.ModelProto) -> Iterator[TensorProto]:
    yield from _graph_tensors(model.graph)
    for function in model.functions:
        for node in function.node:
            yield from _attribute_tensors(node)


def _graph_tensors(graph: onnx.GraphProto) -> Iterator[TensorProto]:
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        yield from _attribute_tensors(node)


def _attribute_tensors(node: onnx.NodeProto) -> Iterator[TensorProto]:
    for attr in node.attribute:
        if attr.HasField("t"):
            yield attr.t
        yield from attr.tensors
        if attr.HasField("sparse_tensor"):
            yield attr.sparse_tensor.values
            yield attr.sparse_tensor.indices
        if attr.HasField("g"):
            yield from _graph_tensors(attr.g)
        for sub in attr.graphs:
            yield from _graph_tensors(sub)


def _validate(path: Path, tensor: TensorProto) -> _Reference:
    what = f"tensor {tensor.name!r}: external data"
    entries = {e.key: e.value for e in tensor.external_data}
    location = entries.get("location", "")
    if not location:
        raise ReadError(f"{what} names no location")
    file = _safe_location(path, location, what)
    size = file.stat().st_size
    try:
        offset = int(entries.get("offset", "0"))
        length = int(entries["length"]) if "length" in entries else size - offset
    except ValueError as exc:
        raise ReadError(f"{what} has a non-integer offset or length") from exc
    if offset < 0 or length < 0 or offset + length > size:
        raise ReadError(
            f"{what} asks for bytes {offset}..{offset + length} of {location!r}, which has {size} bytes"
        )
    needed = _byte_count(tensor)
    if needed is not None and length != needed:
        raise ReadError(f"{what} holds {length} bytes but a tensor of shape {list(tensor.dims)} needs {needed}")
    return _Reference(tensor, file, offset, length, entries.get("checksum", ""))


def _safe_location(path: Path, location: str, what: str) -> Path:
    """The data file ``location`` names, refused unless it lies inside the model's folder."""
    if "\x00" in location:
        raise ReadError(f"{what} location contains a NUL byte")
    if PurePosixPath(location).is_absolute() or PureWindowsPath(location).is_absolute() \
            or PureWindowsPath(location).drive or location.startswith(("/", "\\")):
        raise ReadError(f"{what} location {location!r} is an absolute path; only paths relative to the model are read")
    if ".." in re.split(r"[\\/]", location):
        raise ReadError(f"{what} location {location!r} leaves the model's folder")
    folder = path.parent.resolve()
    target = (folder / location).resolve()
    if not target.is_relative_to(folder):
        raise ReadError(f"{what} location {location!r} resolves outside the model's folder (symlink?)")
    if not target.is_file():
        raise ReadError(f"{what} file {location!r} is missing" if not target.exists()
                        else f"{what} location {location!r} is not a regular file")
    return target


def _byte_count(tensor: TensorProto) -> int | None:
    """Bytes a raw tensor of this type and shape occupies; None for types without a fixed size."""
    try:
        itemsize = onnx.helper.tensor_dtype_to_np_dtype(tensor.data_type).itemsize
    except Exception:
        return None
    if tensor.data_type in (TensorProto.STRING,):
        return None
    count = 1
    for dim in tensor.dims:
        count *= dim
    # Sub-byte types (int4, float4) pack two values per byte.
    if tensor.data_type in _PACKED_TYPES:
        return (count + 1) // 2
    return count * itemsize


_PACKED_TYPES = {getattr(TensorProto, n) for n in ("INT4", "UINT4", "FLOAT4E2M1") if hasattr(TensorProto, n)}


def _load(ref: _Reference) -> None:
    with open(ref.file, "rb") as handle:
        handle.seek(ref.offset)
        data = handle.read(ref.length)
    if len(data) != ref.length:
        raise ReadError(f"tensor {ref.tensor.name!r}: external data file ended early")
    if ref.checksum and hashlib.sha1(data).hexdigest() != ref.checksum:
        raise ReadError(f"tensor {ref.tensor.name!r}: external data does not match its checksum")
    ref.tensor.raw_data = data
    del ref.tensor.external_data[:]
    ref.tensor.data_location = TensorProto.DEFAULT


def _first_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0]}" if lines else type(exc).__name__
