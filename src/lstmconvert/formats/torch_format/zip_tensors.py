"""Tensor bytes of a ``torch.save`` zip archive, as numpy arrays over a memory map of the file.

``torch.save`` writes a zip archive ``<name>/data.pkl`` (the pickled object), ``<name>/byteorder``
and one member ``<name>/data/<key>`` per storage, stored uncompressed. A storage's bytes are taken
straight from the file: the file is mapped once, copy-on-write (``mmap.ACCESS_COPY``: the process
may write to its arrays, the file never changes), and each storage becomes a 1-D array at its
member's data offset, each tensor a strided view of its storage. Nothing is copied unless the
archive's byte order differs from the machine's.

Only what ``torch.save`` writes is accepted: a compressed or encrypted member, a member that runs past
the end of the file, or a view reaching outside its storage is refused (``ZipRefusal``); a dtype numpy
cannot hold is left to PyTorch (``NotCovered``).
"""

from __future__ import annotations

import mmap
import struct
import sys
import zipfile
from pathlib import Path

import numpy as np

# Storage class name (as pickled: torch.FloatStorage, ...) -> numpy dtype name. bfloat16 comes from
# ml_dtypes, imported only when a file has it.
STORAGE_DTYPES = {
    "DoubleStorage": "float64", "FloatStorage": "float32", "HalfStorage": "float16", "BFloat16Storage": "bfloat16",
    "LongStorage": "int64", "IntStorage": "int32", "ShortStorage": "int16", "CharStorage": "int8",
    "ByteStorage": "uint8", "BoolStorage": "bool", "ComplexFloatStorage": "complex64",
    "ComplexDoubleStorage": "complex128", "UntypedStorage": "uint8",
}
# torch dtype name (torch.float32 ...) -> numpy dtype name, for _rebuild_tensor_v3.
TORCH_DTYPES = {
    "float64": "float64", "double": "float64", "float32": "float32", "float": "float32", "float16": "float16",
    "half": "float16", "bfloat16": "bfloat16", "int64": "int64", "long": "int64", "int32": "int32", "int": "int32",
    "int16": "int16", "short": "int16", "int8": "int8", "uint8": "uint8", "bool": "bool",
    "complex64": "complex64", "complex128": "complex128", "uint16": "uint16", "uint32": "uint32", "uint64": "uint64",
}
_LOCAL_HEADER = struct.Struct("<4s22xHH")  # signature, (fixed fields), file name length, extra field length


class ZipRefusal(Exception):
    """The archive is not what torch.save writes, in a way that must not be read by anyone; one line."""


class NotCovered(Exception):
    """The archive holds something this reader leaves to PyTorch (a dtype or a tensor kind)."""


def numpy_dtype(name: str) -> np.dtype:
    if name == "bfloat16":
        import ml_dtypes  # ~0.1-1 s to import; only files with bfloat16 tensors pay it

        return np.dtype(ml_dtypes.bfloat16)
    return np.dtype(name)


class StorageFile:
    """The storages of one archive: ``storage(key, dtype_name, numel)`` -> 1-D array, zero copy."""

    def __init__(self, path: Path, archive: zipfile.ZipFile, prefix: str) -> None:
        self.prefix = prefix
        self.members = {info.filename: info for info in archive.infolist()}
        self.swap = _byte_order(archive, f"{prefix}/byteorder") != sys.byteorder
        with open(path, "rb") as handle:
            size = handle.seek(0, 2)
            self.map = mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_COPY) if size else b""
        self.cache: dict = {}

    def storage(self, key: str, dtype_name: str, numel: int) -> np.ndarray:
        """The storage ``key`` as ``numel`` elements of ``dtype_name`` (the same array for the same key)."""
        if key in self.cache:
            array = self.cache[key]
            if array.dtype != numpy_dtype(dtype_name) or array.size != numel:
                raise ZipRefusal(f"storage {key} is used with two different dtypes or sizes")
            return array
        name = f"{self.prefix}/data/{key}"
        info = self.members.get(name)
        if info is None:
            raise ZipRefusal(f"the pickle refers to storage {key}, but the archive has no member {name}")
        dtype = numpy_dtype(dtype_name)
        if not isinstance(numel, int) or numel < 0 or numel * dtype.itemsize > info.file_size:
            raise ZipRefusal(f"storage {key} claims {numel} elements of {dtype_name}, more than its {info.file_size} bytes")
        start = self._data_offset(info)
        array = np.frombuffer(self.map, dtype=dtype, count=numel, offset=start) if numel else np.empty(0, dtype)
        if self.swap:
            array = array.byteswap()  # the archive's byte order is not the machine's: one copy, native
        self.cache[key] = array
        return array

    def _data_offset(self, info: zipfile.ZipInfo) -> int:
        if info.compress_type != zipfile.ZIP_STORED:
            raise ZipRefusal(f"member {info.filename} is compressed; torch.save stores tensor data uncompressed")
        if info.flag_bits & 0x1:
            raise ZipRefusal(f"member {info.filename} is encrypted")
        header = bytes(self.map[info.header_offset:info.header_offset + _LOCAL_HEADER.size])
        if len(header) < _LOCAL_HEADER.size:
            raise ZipRefusal(f"member {info.filename} lies beyond the end of the file")
        signature, name_length, extra_length = _LOCAL_HEADER.unpack(header)
        if signature != b"PK\x03\x04":
            raise ZipRefusal(f"member {info.filename} has no local header where the table of contents says")
        start = info.header_offset + _LOCAL_HEADER.size + name_length + extra_length
        if start + info.file_size > len(self.map):
            raise ZipRefusal(f"member {info.filename} runs past the end of the file (truncated?)")
        return start


def strided_view(storage: np.ndarray, offset: int, size: tuple, stride: tuple) -> np.ndarray:
    """The tensor ``storage[offset:]`` with ``size`` and ``stride`` (in elements), checked to stay
    inside the storage (``as_strided`` itself checks nothing)."""
    if not (isinstance(offset, int) and all(isinstance(n, int) for n in size + stride) and len(size) == len(stride)):
        raise ZipRefusal("a tensor's offset, size or stride is not a list of integers")
    if offset < 0 or any(n < 0 for n in size) or any(s < 0 for s in stride):
        raise ZipRefusal("a tensor has a negative offset, size or stride")
    itemsize = storage.dtype.itemsize
    if 0 in size:  # no element to reach: any stride is safe
        return np.lib.stride_tricks.as_strided(np.empty(0, storage.dtype), shape=size,
                                               strides=tuple(s * itemsize for s in stride))
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
        raise ZipRefusal(f"a tensor reaches element {last} of a storage of {storage.size} elements")
    return np.lib.stride_tricks.as_strided(storage[offset:], shape=size, strides=tuple(s * itemsize for s in stride),
                                           writeable=storage.flags.writeable)


def _byte_order(archive: zipfile.ZipFile, name: str) -> str:
    """The archive's ``byteorder`` record; PyTorch reads archives without one as little-endian."""
    try:
        value = archive.read(name).decode("ascii", "replace")
    except KeyError:
        return "little"
    if value not in ("little", "big"):
        raise ZipRefusal(f"unknown byte order {value!r} in {name}")
    return value
