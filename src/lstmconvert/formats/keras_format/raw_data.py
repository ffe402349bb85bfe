"""Dataset bytes copied into an HDF5 file after HDF5 has written everything else.

Each dataset's storage is allocated when it is created (contiguous, never filled), so HDF5 knows where
it lies; once the file is closed, ``RawData.copy_into`` writes each array there straight from its
source (often a memory-mapped ``.pt``): a C-ordered array as it is, a transposed one (a Keras kernel is
the transpose of PyTorch's matrix) through two slab buffers filled tile by tile. A worker thread
writes one slab while the next is being filled, and keeps the CRC-32 of the file from a given offset
on (the ``.keras`` archive needs it for the weights member), reading back only HDF5's own bytes
between the datasets. bfloat16 arrays, which Keras stores as tagged opaque values, are written by
HDF5 itself, as Keras writes them.
"""

from __future__ import annotations

import os
import zlib
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np

from ...errors import require
from ...progress import advance

SLAB_BYTES = 32 << 20  # a transposed matrix is written this many bytes at a time
TILE = 256  # side of the square tiles it is copied in


class RawData:
    """The datasets of one HDF5 file whose bytes are written after it is closed."""

    def __init__(self) -> None:
        self._pending = []  # [(file offset, array)]

    def add(self, group, name: str, array: np.ndarray, *, tag_bfloat16: bool) -> None:
        """Create dataset ``name`` in ``group`` for ``array``; its bytes follow in ``copy_into``."""
        h5py = require("h5py", "keras", "writing Keras files")
        if str(array.dtype) == "bfloat16":
            # HDF5 has no bfloat16: Keras stores the 2-byte values opaque and tags them.
            dataset = group.create_dataset(name, data=np.ascontiguousarray(array))
            if tag_bfloat16:
                dataset.attrs["dtype"] = "bfloat16"
            return
        native = array.dtype.newbyteorder("=")
        if array.size == 0:
            group.create_dataset(name, shape=array.shape, dtype=native)
            return
        h5d, h5p, h5s = h5py.h5d, h5py.h5p, h5py.h5s
        creation = h5p.create(h5p.DATASET_CREATE)
        creation.set_alloc_time(h5d.ALLOC_TIME_EARLY)
        creation.set_fill_time(h5d.FILL_TIME_NEVER)
        link = h5p.create(h5p.LINK_CREATE)
        link.set_create_intermediate_group(True)  # legacy .h5 names are paths: <model>/<layer>/kernel
        space = h5s.create_simple(array.shape) if array.ndim else h5s.create(h5s.SCALAR)
        dataset = h5d.create(group.id, name.encode("utf8"), h5py.h5t.py_create(native), space, dcpl=creation,
                             lcpl=link)
        self._pending.append((dataset.get_offset(), array))

    def copy_into(self, path: Path, checksum_from: Optional[int] = None) -> Optional[int]:
        """Write every array into the closed file at ``path``; with ``checksum_from``, return the CRC-32
        of the file's bytes from that offset to its end."""
        with open(path, "r+b") as handle, _Writer(handle.fileno(), checksum_from) as writer:
            slabs = _Slabs()
            for offset, array in sorted(self._pending, key=lambda item: item[0]):
                if array.ndim == 2 and array.strides[0] < array.strides[1]:
                    _write_transposed(writer, offset, array, slabs)
                else:
                    writer.put(offset, np.ascontiguousarray(array, array.dtype.newbyteorder("=")))
            return writer.finish(os.fstat(handle.fileno()).st_size)


class _Writer:
    """Writes blocks at increasing offsets in one worker thread, in order, keeping a running CRC-32."""

    def __init__(self, fd: int, checksum_from: Optional[int]) -> None:
        self._fd, self._checksum = fd, checksum_from is not None
        self._position, self._crc = checksum_from or 0, 0
        self._worker = ThreadPoolExecutor(max_workers=1)
        self._last: Optional[Future] = None
        self._error: Optional[BaseException] = None  # the first failed write; later ones are skipped

    def put(self, offset: int, block: np.ndarray) -> Future:
        """Queue ``block`` for ``offset``; the caller keeps ``block`` unchanged until the future is done."""
        self._last = self._worker.submit(self._write, offset, block)
        return self._last

    def _write(self, offset: int, block: np.ndarray) -> None:
        if self._error is not None:
            return
        try:
            self._write_block(offset, block)
        except BaseException as exc:
            self._error = exc
            raise

    def _write_block(self, offset: int, block: np.ndarray) -> None:
        if self._checksum:
            self._crc = zlib.crc32(_read(self._fd, self._position, offset), self._crc)
            self._crc = zlib.crc32(block, self._crc)
        data, done = memoryview(block).cast("B"), 0
        while done < len(data):  # one call writes at most ~2 GiB on Linux
            written = os.pwrite(self._fd, data[done:], offset + done)
            if written <= 0:
                raise OSError(f"wrote {done} of {len(data)} bytes")
            done += written
        self._position = offset + block.nbytes
        advance(block.nbytes)  # the progress bar, when a command shows one

    def finish(self, end: int) -> Optional[int]:
        """Wait for the writes; raise the first that failed; the CRC-32 up to ``end`` (with a checksum)."""
        if self._last is not None:
            self._last.exception()
        if self._error is not None:
            raise self._error
        if not self._checksum:
            return None
        return zlib.crc32(_read(self._fd, self._position, end), self._crc)

    def __enter__(self) -> "_Writer":
        return self

    def __exit__(self, *exc) -> None:
        self._worker.shutdown(wait=True)


class _Slabs:
    """Two buffers transposed matrices are copied into, taken in turn, and the write still reading each:
    a buffer is refilled only once its previous write is done, so filling and writing overlap, also from
    one matrix to the next."""

    def __init__(self) -> None:
        self._buffers: list = [None, None]
        self._writes: list = [None, None]
        self._turn = 0

    def fill(self, block: np.ndarray) -> np.ndarray:
        """The next buffer, holding ``block`` in C order (copied tile by tile)."""
        which = self._turn
        if self._writes[which] is not None:
            self._writes[which].result()
        native = block.dtype.newbyteorder("=")
        buffer = self._buffers[which]
        if buffer is None or buffer.size < block.size or buffer.dtype != native:
            buffer = self._buffers[which] = np.empty(max(block.size, SLAB_BYTES // native.itemsize), native)
        out = buffer[:block.size].reshape(block.shape)
        _copy_in_tiles(block, out)
        return out

    def written_by(self, write: Future) -> None:
        """The write that reads the buffer ``fill`` just returned."""
        self._writes[self._turn] = write
        self._turn ^= 1


def _write_transposed(writer: _Writer, offset: int, array: np.ndarray, slabs: _Slabs) -> None:
    """A column-major ``array`` in C order, a slab of rows at a time."""
    rows = max(1, SLAB_BYTES // max(1, array[0].nbytes))
    for start in range(0, array.shape[0], rows):
        slabs.written_by(writer.put(offset + start * array[0].nbytes, slabs.fill(array[start:start + rows])))


def _copy_in_tiles(source: np.ndarray, out: np.ndarray) -> None:
    """``out[...] = source`` square tile by square tile: a column-major source is then read, and the
    output written, in runs of memory, where a plain copy strides across the source (~3x slower)."""
    for i in range(0, source.shape[0], TILE):
        for j in range(0, source.shape[1], TILE):
            out[i:i + TILE, j:j + TILE] = source[i:i + TILE, j:j + TILE]


def _read(fd: int, start: int, end: int) -> bytes:
    data = os.pread(fd, end - start, start) if end > start else b""
    if len(data) != max(0, end - start):
        raise OSError("the file is shorter than HDF5 reported")
    return data
