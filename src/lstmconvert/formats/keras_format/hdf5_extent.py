"""Refuse an HDF5 file whose size differs from the end-of-file address its superblock records.

libhdf5 trusts the addresses inside a file. Bytes inserted into a file (a damaged copy or transfer, or a
hostile file) shift every structure after them, and reading a variable-length string attribute through a
shifted global heap can loop forever inside libhdf5, where no signal or timeout in Python reaches it. HDF5
records the file's end (``end of file address``) in its superblock and truncates the file to it on close,
and h5py already refuses a file shorter than that; a longer one is refused here, before libhdf5 reads it.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import BinaryIO

from ...errors import ReadError

SIGNATURE = b"\x89HDF\r\n\x1a\n"


def recorded_end(head: bytes):
    """The end-of-file address a superblock at offset 0 records (plus its base address), or None."""
    if len(head) < 48 or not head.startswith(SIGNATURE):
        return None
    version = head[8]
    if version in (0, 1):
        offsets = head[13]
        start = 24 + (4 if version == 1 else 0)  # base, free-space, end-of-file, driver addresses follow
    elif version in (2, 3):
        offsets = head[9]
        start = 12  # base, superblock extension, end-of-file, root object header addresses follow
    else:
        return None
    code = {4: "<I", 8: "<Q"}.get(offsets)
    if code is None or len(head) < start + 3 * offsets:
        return None
    base, end = (struct.unpack_from(code, head, start + i * offsets)[0] for i in (0, 2))  # base and end addresses
    return base + end


def check_extent(handle: BinaryIO, size: int, path: Path, where: str = "") -> None:
    """Raise ReadError when the HDF5 data in ``handle`` (``size`` bytes) is longer than its superblock says."""
    end = recorded_end(handle.read(64))
    if end is not None and size > end:
        raise ReadError(path, f"{where}HDF5 records {end} bytes but holds {size}: bytes were inserted or appended "
                        "after it was written (a damaged copy?)")
