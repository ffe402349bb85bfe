"""Mutations of a model file's bytes: raw bytes, zip members, JSON documents and pickles.

Every mutator takes a ``random.Random`` and bytes and returns ``(new_bytes, description)``; the
description says what was changed, so a failing mutant can be understood from the report alone.
Format-aware mutations of ONNX protobufs and HDF5 files live in ``fuzz.structured``.
"""

from __future__ import annotations

import io
import json
import pickletools
import random
import struct
import zipfile

INTERESTING_INTS = [0, 1, -1, 2, 3, 7, 255, 256, 65535, 2**31 - 1, -(2**31), 2**32, 2**40, 2**62]
INTERESTING_VALUES = [None, 0, -1, 1, 2**40, -(2**40), 1e308, "", "x", "../x", [], {}, True, "lambda"]


# --- raw bytes -----------------------------------------------------------------------------------


def truncate(rng: random.Random, data: bytes):
    cut = rng.randrange(0, max(1, len(data)))
    return data[:cut], f"truncated to {cut} of {len(data)} bytes"


def flip_bits(rng: random.Random, data: bytes):
    if not data:
        return data, "empty"
    out = bytearray(data)
    spots = [rng.randrange(len(out)) for _ in range(rng.choice([1, 1, 2, 4, 16]))]
    for spot in spots:
        out[spot] ^= 1 << rng.randrange(8)
    return bytes(out), f"{len(spots)} bit flips at {sorted(spots)[:4]}"


def overwrite_bytes(rng: random.Random, data: bytes):
    if not data:
        return data, "empty"
    out = bytearray(data)
    at = rng.randrange(len(out))
    value = rng.choice([b"\x00" * 8, b"\xff" * 8, b"\x7f\xff\xff\xff", b"\x00\x00\x00\x80", struct.pack("<q", 2**40)])
    out[at:at + len(value)] = value
    return bytes(out[: len(data)]), f"bytes at {at} set to {value.hex()}"


def splice(rng: random.Random, data: bytes):
    """Delete or duplicate a chunk (shifts every offset after it)."""
    if len(data) < 2:
        return data + data, "doubled"
    start = rng.randrange(len(data))
    length = rng.randrange(1, min(4096, len(data) - start) + 1)
    if rng.random() < 0.5:
        return data[:start] + data[start + length:], f"deleted {length} bytes at {start}"
    return data[:start] + data[start:start + length] * 2 + data[start + length:], f"duplicated {length} bytes at {start}"


BYTE_MUTATORS = [truncate, flip_bits, overwrite_bytes, splice]


def mutate_bytes(rng: random.Random, data: bytes):
    return rng.choice(BYTE_MUTATORS)(rng, data)


# --- JSON ----------------------------------------------------------------------------------------


def mutate_json(rng: random.Random, data: bytes):
    """Change one value, key or list somewhere in a JSON document (falls back to bytes if it is not JSON)."""
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        return mutate_bytes(rng, data)
    containers = []
    _collect(doc, "$", containers)
    if not containers:
        return json.dumps(rng.choice(INTERESTING_VALUES)).encode(), "document replaced"
    where, node = rng.choice(containers)
    keys = list(node.keys()) if isinstance(node, dict) else list(range(len(node)))
    if not keys:
        return mutate_bytes(rng, data)
    key = rng.choice(keys)
    action = rng.choice(["set", "set", "set", "delete", "duplicate", "numeric"])
    if action == "delete":
        del node[key]
        what = f"deleted {where}[{key!r}]"
    elif action == "duplicate" and isinstance(node, list):
        node.insert(key, json.loads(json.dumps(node[key])))
        what = f"duplicated {where}[{key}]"
    elif action == "numeric" and isinstance(node[key], (int, float)) and not isinstance(node[key], bool):
        node[key] = rng.choice([node[key] * 2, node[key] + 1, -node[key], 0, 2**40])
        what = f"{where}[{key!r}] set to {node[key]!r}"
    else:
        node[key] = rng.choice(INTERESTING_VALUES)
        what = f"{where}[{key!r}] set to {node[key]!r}"
    return json.dumps(doc).encode(), what


def _collect(node, where: str, out: list) -> None:
    if isinstance(node, dict):
        out.append((where, node))
        for key, value in node.items():
            _collect(value, f"{where}.{key}", out)
    elif isinstance(node, list):
        out.append((where, node))
        for i, value in enumerate(node):
            _collect(value, f"{where}[{i}]", out)


# --- pickles -------------------------------------------------------------------------------------


def mutate_pickle_ints(rng: random.Random, data: bytes):
    """Overwrite an integer in a pickle in place (storage sizes, shapes, strides, offsets)."""
    try:
        spots = [(op.name, pos) for op, arg, pos in pickletools.genops(data) if op.name in ("BININT", "BININT1", "BININT2")]
    except Exception:
        return mutate_bytes(rng, data)
    if not spots:
        return mutate_bytes(rng, data)
    name, pos = rng.choice(spots)
    out = bytearray(data)
    if name == "BININT":
        value = rng.choice([2**31 - 1, -(2**31), -1, 0, 2**30])
        out[pos + 1:pos + 5] = struct.pack("<i", value)
    elif name == "BININT2":
        value = rng.choice([0, 65535])
        out[pos + 1:pos + 3] = struct.pack("<H", value)
    else:
        value = rng.choice([0, 255])
        out[pos + 1] = value
    return bytes(out), f"pickle {name} at {pos} set to {value}"


# --- zip archives --------------------------------------------------------------------------------


def mutate_zip(rng: random.Random, data: bytes, member_mutator=None):
    """Edit one member of a zip archive (or its member list) and write the archive again.

    ``member_mutator(rng, name, content)`` can supply format-aware edits for a member; otherwise JSON
    members get JSON edits, pickles integer edits, and everything else byte edits.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        members = [(info, archive.read(info)) for info in archive.infolist()]
    except Exception:
        return mutate_bytes(rng, data)
    if not members:
        return mutate_bytes(rng, data)
    index = rng.randrange(len(members))
    info, content = members[index]
    action = rng.random()
    if action < 0.1:
        del members[index]
        what = f"zip member {info.filename} removed"
    elif action < 0.15:
        members[index] = (_renamed(info, info.filename + ".x"), content)
        what = f"zip member {info.filename} renamed"
    elif action < 0.2 and len(members) > 1:
        other = rng.randrange(len(members))
        members[index], members[other] = (info, members[other][1]), (members[other][0], content)
        what = f"zip members {info.filename} and {members[other][0].filename} swap contents"
    else:
        if member_mutator is not None:
            new, detail = member_mutator(rng, info.filename, content)
        elif info.filename.endswith(".json"):
            new, detail = mutate_json(rng, content)
        elif info.filename.endswith(".pkl"):
            new, detail = mutate_pickle_ints(rng, content)
        else:
            new, detail = mutate_bytes(rng, content)
        members[index] = (info, new)
        what = f"zip member {info.filename}: {detail}"
    return write_zip(members), what


def write_zip(members: list) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for info, content in members:
            archive.writestr(_renamed(info, info.filename), content)
    return buffer.getvalue()


def _renamed(info: zipfile.ZipInfo, name: str) -> zipfile.ZipInfo:
    new = zipfile.ZipInfo(name, date_time=info.date_time)
    new.compress_type = info.compress_type
    return new
