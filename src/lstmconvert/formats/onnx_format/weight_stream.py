"""Write large initializers straight from numpy memory, without building them in protobuf.

A protobuf ``TensorProto`` holding 1.5 GB costs several copies of it (the bytes, the message, each
``CopyFrom``/``extend``, the serialized string). The builder keeps big weights as *pending* tensors
(numpy arrays or lists of contiguous pieces) and this module writes them:

* inline, for a single-file model: the small ModelProto is serialized first, then every pending
  tensor as one more ``graph { initializer { ... } }`` record. Protobuf parsers merge repeated
  occurrences of a singular message field, so readers see one graph whose initializer list ends
  with these tensors: the same model, written with no copy of its weights;
* or into ``<model>.data`` as external data, each tensor at a page-aligned offset.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto

from ...progress import advance

_MODEL_GRAPH = (7 << 3) | 2  # ModelProto.graph, length-delimited
_GRAPH_INITIALIZER = (5 << 3) | 2  # GraphProto.initializer
_TENSOR_RAW_DATA = (9 << 3) | 2  # TensorProto.raw_data
_ALIGN = 4096


@dataclass
class PendingTensor:
    """An initializer whose bytes are the concatenation of ``parts`` (C-contiguous, little-endian)."""

    name: str
    shape: tuple
    data_type: int
    parts: list

    @property
    def nbytes(self) -> int:
        return sum(p.nbytes for p in self.parts)

    def header(self) -> TensorProto:
        tensor = TensorProto(name=self.name, data_type=self.data_type)
        tensor.dims.extend(self.shape)
        return tensor

    def write_bytes(self, handle) -> None:
        for part in self.parts:
            handle.write(np.ascontiguousarray(part).reshape(-1).view(np.uint8).data)
            advance(part.nbytes)  # the progress bar, when a command shows one


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        out.append(low | (0x80 if value else 0))
        if not value:
            return bytes(out)


def write_inline(proto: onnx.ModelProto, pending: list, path: Path) -> None:
    """``proto`` with ``pending`` appended to its initializers, as one protobuf file."""
    if sys.byteorder != "little":  # raw_data is little-endian by definition
        raise NotImplementedError("writing ONNX weights on a big-endian machine")
    with open(path, "wb") as handle:
        handle.write(proto.SerializeToString())
        for tensor in pending:
            header = tensor.header().SerializeToString()
            nbytes = tensor.nbytes
            tensor_length = len(header) + 1 + len(_varint(nbytes)) + nbytes
            initializer = bytes([_GRAPH_INITIALIZER]) + _varint(tensor_length)
            handle.write(bytes([_MODEL_GRAPH]) + _varint(len(initializer) + tensor_length) + initializer)
            handle.write(header + bytes([_TENSOR_RAW_DATA]) + _varint(nbytes))
            tensor.write_bytes(handle)


def write_external(proto: onnx.ModelProto, pending: list, path: Path) -> None:
    """``proto`` with ``pending`` as external data in ``path.name + '.data'``, page-aligned."""
    location = path.name + ".data"
    with open(path.parent / location, "wb") as handle:
        for tensor in pending:
            offset = (handle.tell() + _ALIGN - 1) // _ALIGN * _ALIGN
            handle.seek(offset)
            tensor.write_bytes(handle)
            entry = tensor.header()
            entry.data_location = TensorProto.EXTERNAL
            for key, value in (("location", location), ("offset", str(offset)), ("length", str(tensor.nbytes))):
                item = entry.external_data.add()
                item.key, item.value = key, value
            proto.graph.initializer.append(entry)
    onnx.save_model(proto, str(path))


def checkable(proto: onnx.ModelProto, pending: list) -> onnx.ModelProto:
    """A copy of ``proto`` the ONNX checker can verify without the weights' bytes.

    Pending tensors become graph inputs of their type and shape, so node arity, types and shape
    inference are checked as they would be with the initializers present.
    """
    copy = onnx.ModelProto()
    copy.CopyFrom(proto)
    for tensor in pending:
        copy.graph.input.append(onnx.helper.make_tensor_value_info(tensor.name, tensor.data_type, list(tensor.shape)))
    return copy
