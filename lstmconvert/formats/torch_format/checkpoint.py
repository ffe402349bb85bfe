"""Open a PyTorch file without running code from it, and find the state_dict inside.

* ``torch.save`` files (.pt/.pth, zip or legacy): ``torch.load(weights_only=True)``, which rebuilds
  tensors and plain containers only. A file that needs anything else (a whole pickled ``nn.Module``,
  custom classes) is refused: unpickling it would import and call code named by the file.
* TorchScript archives: ``torch.jit.load(...).state_dict()``. TorchScript code is compiled by the
  TorchScript compiler, which cannot reach arbitrary Python, and its pickles are read by the
  TorchScript unpickler, which builds tensors and TorchScript objects only. Nothing is called here.
* ``torch.export`` programs (.pt2): ``torch.export.load``, but only after every pickled payload in
  the archive has passed ``torch.load(weights_only=True)``, because ``torch.export.load`` itself
  unpickles them with ``weights_only=False``.

Checkpoints often wrap the state_dict (``{"epoch": ..., "model_state_dict": ..., "optimizer_state_dict":
...}``) and prefix its keys (``module.`` from DataParallel, ``_orig_mod.`` from torch.compile): the
state_dict holding LSTM weights is picked out and the prefixes are stripped.
"""

from __future__ import annotations

import io
import json
import re
import warnings
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import torch

from ...errors import ReadError
from .config import EXTRA_FILE, METADATA_KEY

# Keys of an nn.LSTM parameter: <module prefix>.<param>_l<layer>[_reverse]
LSTM_KEY = re.compile(r"^(?:(?P<module>.+)\.)?(?P<param>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(?P<layer>\d+)(?P<reverse>_reverse)?$")
# Where training scripts usually keep the model's state_dict, in order of preference.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
# Prefixes added to every key by wrappers: DataParallel/DistributedDataParallel, torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


@dataclass
class Checkpoint:
    """A file's state_dict, unwrapped, plus what lstmconvert may have stored with it."""

    tensors: dict  # key -> torch.Tensor, in file order, wrapper prefixes removed
    kind: str  # "state_dict", "torchscript" or "export"
    blob: Optional[str] = None  # lstmconvert's metadata JSON, if lstmconvert wrote the file
    container: Optional[str] = None  # where in the file the state_dict sat, e.g. "model_state_dict"
    stripped: str = ""  # the prefix removed from every key
    versions: dict = field(default_factory=dict)  # the state_dict's _metadata table (module versions)
    other: list = field(default_factory=list)  # keys of the state_dict whose values are not tensors


def load_checkpoint(path: Path) -> Checkpoint:
    """Read ``path`` safely and return its (unwrapped) state_dict; ReadError on anything else."""
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(n.endswith("/archive_format") for n in names) and any("/models/" in n for n in names):
            return _load_export(path)
        if any("/code/" in n or n.endswith("/constants.pkl") for n in names):
            return _load_torchscript(path)
    elif _starts_with(path, b"PK\x03\x04"):
        raise ReadError(path, "damaged or truncated zip archive (torch.save writes a zip archive; this one has no "
                              "readable table of contents)")
    return _load_state_dict_file(path)


def _starts_with(path: Path, magic: bytes) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(magic)) == magic


def _load_state_dict_file(path: Path) -> Checkpoint:
    if path.stat().st_size == 0:
        raise ReadError(path, "empty file")
    if not zipfile.is_zipfile(path) and not _starts_with(path, b"\x80"):
        raise ReadError(path, "not a PyTorch checkpoint (neither a torch.save zip archive nor a legacy torch.save file)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged input
        text = str(exc)
        refused = re.search(r"Unsupported global: GLOBAL (\S+)", text)
        if refused:
            raise ReadError(
                path,
                f"holds pickled Python objects ({refused.group(1)}), e.g. a whole module saved with "
                "torch.save(model); lstmconvert reads only state_dicts (torch.save(model.state_dict(), path)) "
                "and loads them with weights_only=True, because unpickling objects runs code named by the "
                "file. Nothing from it was executed",
            ) from exc
        raise ReadError(path, f"not a PyTorch checkpoint (torch.load: {_reason(exc)})") from exc
    return _unwrap(path, obj, "state_dict")


def _reason(exc: Exception) -> str:
    """The informative part of a torch.load error, on one short line."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:  # skip torch's paragraph about the weights_only default
        text = text.split("WeightsUnpickler error:", 1)[1].strip().split("\n")[0]
    words = text.split()
    return f"{type(exc).__name__}: {' '.join(words[:14])}" if words else type(exc).__name__


def _load_torchscript(path: Path) -> Checkpoint:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ReadError(path, f"damaged TorchScript archive ({_reason(exc)})") from exc
    return _unwrap(path, module.state_dict(), "torchscript")


def _load_export(path: Path) -> Checkpoint:
    check_export_archive(path)
    extra = {EXTRA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(path, extra_files=extra)
    except Exception as exc:
        raise ReadError(path, f"damaged torch.export archive ({_reason(exc)})") from exc
    checkpoint = _unwrap(path, dict(program.state_dict), "export")
    checkpoint.blob = extra.get(EXTRA_FILE) or None
    return checkpoint


def check_export_archive(path: Path) -> None:
    """Refuse a .pt2 whose pickled payloads need more than weights_only=True (see module docstring)."""
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.endswith((".pkl", "_pickle")) or "/custom_obj" in name:
                raise ReadError(path, f"torch.export archive holds a pickled object ({name}); not read, to run no code from it")
            if name.endswith("_config.json") and "/data/" in name:
                entries = json.loads(archive.read(name)).get("config", {})
                for fqn, entry in entries.items():
                    if entry.get("use_pickle"):
                        member = name.rsplit("/", 1)[0] + "/" + entry["path_name"]
                        _check_weights_only(path, archive.read(member), f"{fqn} ({member})")
            elif name.endswith(".pt"):
                _check_weights_only(path, archive.read(name), name)


def _check_weights_only(path: Path, payload: bytes, what: str) -> None:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ReadError(path, f"torch.export archive entry {what} is not plain tensor data; not read, to run no code from it") from exc


# -- unwrapping --------------------------------------------------------------------------------
def has_lstm_keys(mapping: Mapping) -> bool:
    return any(isinstance(k, str) and LSTM_KEY.match(k) and isinstance(v, torch.Tensor) for k, v in mapping.items())


def _unwrap(path: Path, obj: object, kind: str) -> Checkpoint:
    if not isinstance(obj, Mapping):
        raise ReadError(path, f"holds a {type(obj).__name__}, not a state_dict (a mapping of parameter names to tensors)")
    state, container = _find_state_dict(path, obj)
    metadata = getattr(state, "_metadata", None) or {}
    blob = None
    entry = metadata.get(METADATA_KEY) if isinstance(metadata, Mapping) else None
    if isinstance(entry, Mapping) and isinstance(entry.get("config"), str):
        blob = entry["config"]
    versions = {k: dict(v) for k, v in metadata.items() if k != METADATA_KEY and isinstance(v, Mapping)}
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    other = [str(k) for k, v in state.items() if not isinstance(v, torch.Tensor)]
    tensors, stripped = _strip_prefixes(tensors)
    if not tensors:
        raise ReadError(path, "holds no tensors")
    return Checkpoint(tensors, kind, blob, container, stripped, versions, other)


def _find_state_dict(path: Path, obj: Mapping) -> tuple:
    if has_lstm_keys(obj):
        return obj, None
    for key in WRAPPER_KEYS:
        value = obj.get(key)
        if isinstance(value, Mapping) and has_lstm_keys(value):
            return value, key
    found = list(_nested_lstm_dicts(obj, ""))
    if len(found) == 1:
        return found[0][1], found[0][0]
    if len(found) > 1:
        where = ", ".join(repr(p) for p, _ in found)
        raise ReadError(path, f"holds several state_dicts with LSTM weights ({where}); save the one to convert on its own")
    tensors = sum(isinstance(v, torch.Tensor) for v in obj.values())
    raise ReadError(
        path,
        f"no LSTM in it: none of its {tensors} top-level tensors (nor any nested state_dict) is named like "
        "an nn.LSTM parameter (weight_ih_l0, weight_hh_l0, ...)",
    )


def _nested_lstm_dicts(obj: Mapping, where: str, depth: int = 0):
    """(path, mapping) for every nested mapping with LSTM keys, outermost first, 4 levels deep."""
    if depth >= 4:
        return
    for key, value in obj.items():
        if isinstance(value, Mapping):
            here = f"{where}.{key}" if where else str(key)
            if has_lstm_keys(value):
                yield here, value
            else:
                yield from _nested_lstm_dicts(value, here, depth + 1)


def _strip_prefixes(tensors: dict) -> tuple:
    """Remove ``module.`` / ``_orig_mod.`` while every key carries it; returns (tensors, removed)."""
    removed = ""
    while True:
        for prefix in WRAPPER_PREFIXES:
            if all(k.startswith(prefix) for k in tensors):
                tensors = {k[len(prefix):]: v for k, v in tensors.items()}
                removed += prefix
                break
        else:
            return tensors, removed
