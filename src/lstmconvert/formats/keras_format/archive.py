"""The ``.keras`` zip container, written around a weights file that HDF5 writes in place.

A ``.keras`` archive stores its members uncompressed. Building ``model.weights.h5`` as a file of its own
and copying it into the archive writes every weight twice; instead the HDF5 file is created *as the
archive*, with a 512-byte HDF5 user block in front of its superblock. HDF5 leaves the user block alone,
and the archive puts the weights member's local header there, so the HDF5 bytes are the member's data
as they are. (HDF5 finds a superblock at offset 0, 512, 1024, ... and addresses everything from where it
finds it, so the extracted member, or the member read through ``zipfile``, opens as a plain HDF5 file.)
After HDF5 closes the file, the header is filled in (CRC-32, computed while the weights were
written, and size), the small members follow, then the central directory, with ZIP64 records where a
size or offset needs them.
"""

from __future__ import annotations

import struct
import time
import zlib
from pathlib import Path

USER_BLOCK = 512  # bytes before the HDF5 superblock: the weights member's local header, padded
ZIP64_LIMIT = 0xFFFFFFFF  # a size or offset at least this large goes into a ZIP64 extra field
ZIP64_MARK = 0xFFFFFFFF  # what the 32-bit field then holds

_LOCAL = struct.Struct("<4s2B4HL2L2H")
_CENTRAL = struct.Struct("<4s4B4HL2L5H2L")
_END = struct.Struct("<4s4H2LH")
_END64 = struct.Struct("<4sQ2H2L4Q")
_LOCATOR64 = struct.Struct("<4sLQL")
_VERSION = 45  # "version needed to extract": 4.5, ZIP64
_PADDING_ID = 0xD935  # an extra field that only pads the header to the user block (as zipalign does)


class InPlaceArchive:
    """A stored zip archive whose first member is written in place by HDF5 (see the module docstring).

    ``path`` is first an HDF5 file made with ``userblock_size=USER_BLOCK`` (``first`` is its member
    name); ``close`` turns it into the archive.
    """

    def __init__(self, path: Path, first: str) -> None:
        self.path = path
        self.first = first.encode("utf8")
        self._stamp = _dos_time()

    def close(self, crc: int, members: dict) -> None:
        """Fill in the weights member's header (``crc``: CRC-32 of the HDF5 bytes), append ``members``
        ({name: bytes}) and the central directory."""
        entries = []
        with open(self.path, "r+b") as out:
            size = out.seek(0, 2) - USER_BLOCK
            out.seek(0)
            out.write(self._weights_header(crc, size))
            entries.append((self.first, crc, size, 0))
            out.seek(0, 2)
            for name, data in members.items():
                name_bytes, offset, crc = name.encode("utf8"), out.tell(), zlib.crc32(data)
                extra = _zip64_extra(len(data), len(data)) if len(data) >= ZIP64_LIMIT else b""
                small = _field(len(data))
                out.write(_LOCAL.pack(b"PK\x03\x04", _VERSION, 0, 0, 0, *self._stamp, crc, small, small,
                                      len(name_bytes), len(extra)) + name_bytes + extra)
                out.write(data)
                entries.append((name_bytes, crc, len(data), offset))
            self._central_directory(out, entries)

    def _weights_header(self, crc: int, size: int) -> bytes:
        """The first member's local header, padded to exactly the user block (always ZIP64, as Keras)."""
        zip64 = _zip64_extra(size, size)
        fixed = _LOCAL.size + len(self.first) + len(zip64) + 4
        padding = struct.pack("<2H", _PADDING_ID, USER_BLOCK - fixed) + bytes(USER_BLOCK - fixed)
        header = _LOCAL.pack(b"PK\x03\x04", _VERSION, 0, 0, 0, *self._stamp, crc, ZIP64_MARK, ZIP64_MARK,
                             len(self.first), len(zip64) + len(padding)) + self.first + zip64 + padding
        assert len(header) == USER_BLOCK
        return header

    def _central_directory(self, out, entries: list) -> None:
        start = out.tell()
        for name, crc, size, offset in entries:
            large = [value for value in (size, size) if value >= ZIP64_LIMIT]
            if offset >= ZIP64_LIMIT:
                large.append(offset)
            extra = struct.pack(f"<2H{len(large)}Q", 1, 8 * len(large), *large) if large else b""
            out.write(_CENTRAL.pack(b"PK\x01\x02", _VERSION, 3, _VERSION, 0, 0, 0, *self._stamp, crc,
                                    _field(size), _field(size), len(name), len(extra), 0, 0, 0, 0o100644 << 16,
                                    _field(offset)) + name + extra)
        end = out.tell()
        count, length = len(entries), end - start
        if start >= ZIP64_LIMIT or length >= ZIP64_LIMIT:
            out.write(_END64.pack(b"PK\x06\x06", _END64.size - 12, _VERSION, _VERSION, 0, 0, count, count,
                                  length, start))
            out.write(_LOCATOR64.pack(b"PK\x06\x07", 0, end, 1))
        out.write(_END.pack(b"PK\x05\x06", 0, 0, count, count, _field(length), _field(start), 0))


def _field(value: int) -> int:
    """A size or offset as its 32-bit field holds it (the mark when a ZIP64 record carries it)."""
    return ZIP64_MARK if value >= ZIP64_LIMIT else value


def _zip64_extra(file_size: int, compressed_size: int) -> bytes:
    return struct.pack("<2H2Q", 1, 16, file_size, compressed_size)


def _dos_time() -> tuple:
    """(time, date) in MS-DOS format, as zip headers store them."""
    t = time.localtime()
    return ((t.tm_hour << 11) | (t.tm_min << 5) | (t.tm_sec // 2),
            ((max(t.tm_year, 1980) - 1980) << 9) | (t.tm_mon << 5) | t.tm_mday)
