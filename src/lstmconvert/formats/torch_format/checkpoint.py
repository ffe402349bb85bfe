"""Open a PyTorch file without running code from it, and find the state_dict inside.

* ``torch.save`` zip archives (.pt/.pth/.ckpt/.bin): read without PyTorch by ``zip_unpickler``, a
  restricted unpickler over memory-mapped numpy arrays that accepts what the next point accepts.
  Archives it leaves to PyTorch (quantized, sparse or meta tensors...) take the next path; a file
  it refuses is refused, never retried.
* Other ``torch.save`` files (legacy, and the above): ``torch.load(weights_only=True)``, which
  rebuilds tensors and plain containers only. A file that also pickles other objects (an
  ``argparse.Namespace``, numpy scalars) is loaded the same restricted way with inert stand-ins in
  place of those objects (see ``stand_ins``): their classes are never imported or called, and the
  state_dict beside them is read. A whole pickled ``nn.Module`` (``torch.save(model)``) is refused:
  the model itself is then an object that only arbitrary unpickling, which runs code the file names,
  would build.
* TorchScript archives: ``torch.jit.load(...).state_dict()``. TorchScript code is compiled by the
  TorchScript compiler, which cannot reach arbitrary Python, and its pickles are read by the
  TorchScript unpickler, which builds tensors and TorchScript objects only. Nothing is called here.
* ``torch.export`` programs (.pt2): ``torch.export.load``, but only after every pickled payload in
  the archive has passed ``torch.load(weights_only=True)``, because ``torch.export.load`` itself
  unpickles them with ``weights_only=False``.

Checkpoints often wrap the state_dict (``{"epoch": ..., "model_state_dict": ..., "optimizer_state_dict":
...}``, Lightning's ``{"state_dict": ..., "callbacks": ...}``) and prefix its keys (``module.`` from DataParallel, ``_orig_mod.`` from torch.compile): the
state_dict holding LSTM weights is picked out and the prefixes are stripped.
"""

from __future__ import annotations

import io
import json
import re
import warnings
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

from ...errors import ReadError, require
from .config import EXTRA_FILE, METADATA_KEY
from .module_tree import pickled_module, script_tree, strip_tree
from .safetensors_io import SUFFIX as SAFETENSORS_SUFFIX
from .safetensors_io import load_safetensors
from .stand_ins import StandIn, UnloadableObject, load_with_stand_ins, pickled_head
from .tensors import is_tensor
from .zip_tensors import NotCovered, ZipRefusal
from .zip_unpickler import PickleRefusal, load_zip

# Keys of an nn.LSTM parameter: <module prefix>.<param>_l<layer>[_reverse]
LSTM_KEY = re.compile(r"^(?:(?P<module>.+)\.)?(?P<param>weight_ih|weight_hh|bias_ih|bias_hh|weight_hr)_l(?P<layer>\d+)(?P<reverse>_reverse)?$")
# Where training scripts usually keep the model's state_dict, in order of preference.
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "module")
# Prefixes added to every key by wrappers: DataParallel/DistributedDataParallel, torch.compile.
WRAPPER_PREFIXES = ("module.", "_orig_mod.")
GZIP_MAGIC = b"\x1f\x8b"


@dataclass
class Checkpoint:
    """A file's state_dict, unwrapped, plus what lstmconvert may have stored with it."""

    tensors: dict  # key -> numpy array or torch.Tensor (see tensors.is_tensor), in file order, prefixes removed
    kind: str  # "state_dict", "torchscript" or "export"
    blob: Optional[str] = None  # lstmconvert's metadata JSON, if lstmconvert wrote the file
    container: Optional[str] = None  # where in the file the state_dict sat, e.g. "model_state_dict"
    stripped: str = ""  # the prefix removed from every key
    versions: dict = field(default_factory=dict)  # the state_dict's _metadata table (module versions)
    other: list = field(default_factory=list)  # "key (type)" of the state_dict's entries that are not tensors
    stood_in: list = field(default_factory=list)  # names of pickled objects replaced by stand-ins (not loaded)
    tree: Optional[dict] = None  # module classes and settings, when the file holds modules (see module_tree)
    ordered: bool = True  # the keys are in the state_dict's order (not so in a .safetensors file)


def load_checkpoint(path: Path) -> Checkpoint:
    """Read ``path`` safely and return its (unwrapped) state_dict; ReadError on anything else."""
    if path.suffix.lower() == SAFETENSORS_SUFFIX:
        tensors, blob = load_safetensors(path)
        checkpoint = _unwrap(tensors, "safetensors")
        checkpoint.blob, checkpoint.ordered = blob, False
        return checkpoint
    if zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as archive:
            names = archive.namelist()
        if any(n.endswith("/archive_format") for n in names) and any("/models/" in n for n in names):
            return _load_export(path)
        if any("/code/" in n or n.endswith("/constants.pkl") for n in names):
            return _load_torchscript(path)
    elif _starts_with(path, b"PK\x03\x04"):
        raise ReadError("damaged or truncated zip archive (torch.save writes a zip archive; this one has no "
                              "readable table of contents)")
    return _load_state_dict_file(path)


def _starts_with(path: Path, magic: bytes) -> bool:
    with open(path, "rb") as handle:
        return handle.read(len(magic)) == magic


def _load_state_dict_file(path: Path) -> Checkpoint:
    if path.stat().st_size == 0:
        raise ReadError("empty file")
    if _starts_with(path, GZIP_MAGIC):
        raise ReadError("is gzip-compressed; torch.load reads uncompressed files only: decompress it first "
                              "(gunzip, or gzip.open + torch.save to a new file)")
    if not zipfile.is_zipfile(path) and not _starts_with(path, b"\x80"):
        raise ReadError("not a PyTorch checkpoint (neither a torch.save zip archive nor a legacy torch.save file)")
    if zipfile.is_zipfile(path):
        try:
            obj, stood_in = load_zip(path)
            return _unwrap(obj, "state_dict", stood_in)
        except NotCovered:
            pass  # an archive of a kind PyTorch's own loader reads: below
        except PickleRefusal as exc:
            raise ReadError(str(exc)) from exc
        except ZipRefusal as exc:
            raise ReadError(f"is not a torch.save archive lstmconvert reads safely: {exc}; refused, nothing "
                            "from it was executed") from exc
        except UnloadableObject as exc:
            raise _unloadable_error(exc) from exc
    torch = require("torch", "torch", f"reading {path.name} (not a plain torch.save zip archive)")
    stood_in: list = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for damaged input
        if "Unsupported global" not in str(exc):
            raise _load_error(path, exc) from exc
        obj, stood_in = _load_with_stand_ins(path)
    return _unwrap(obj, "state_dict", stood_in)


def _load_with_stand_ins(path: Path) -> tuple:
    """The second attempt, for files that pickle objects besides tensors (see ``stand_ins``)."""
    try:
        return load_with_stand_ins(path)
    except UnloadableObject as exc:
        raise _unloadable_error(exc) from exc
    except Exception as exc:
        raise _load_error(path, exc) from exc


def _unloadable_error(exc: UnloadableObject) -> ReadError:
    return ReadError(
        f"holds a pickled {exc.name}, {exc.reason}. Nothing from it was executed. If you trust the file, "
        "save the weights on their own: torch.save(model.state_dict(), path)",
    )


def _load_error(path: Path, exc: Exception) -> ReadError:
    """The ReadError for a failed restricted torch.load, naming what the file asked for."""
    text = str(exc)
    blocked = re.search(r"GLOBAL (\S+) whose module (\S+) is blocked", text)
    if blocked:
        return ReadError(f"refers to {blocked.group(1)}, from the module {blocked.group(2)}, which no "
                               "checkpoint needs and PyTorch's restricted loader never touches; refused, nothing "
                               "from it was executed")
    protocol = _pickle_protocol(path)
    if "Unsupported operand" in text and protocol is not None and protocol > 3:
        return ReadError(f"was pickled with protocol {protocol} (torch.save(..., pickle_protocol={protocol})), "
                               "which torch.load(weights_only=True), the only way lstmconvert opens PyTorch files, "
                               "cannot read; save it again with torch.save's default protocol")
    if "Unsupported global" in text or "Unsupported operand" in text or "unrecognized function" in text:
        return ReadError(f"holds pickled data PyTorch's restricted loader refuses ({_reason(exc)}); nothing "
                               "from it was executed")
    return ReadError(f"not a PyTorch checkpoint (torch.load: {_reason(exc)})")


def _pickle_protocol(path: Path) -> Optional[int]:
    """The pickle protocol of the saved object (from its PROTO opcode), or None if unknown."""
    try:
        head = pickled_head(path, 2)
    except (OSError, zipfile.BadZipFile, KeyError):
        return None
    return head[1] if len(head) == 2 and head[0] == 0x80 else None


def _reason(exc: Exception) -> str:
    """The informative part of a torch.load error, on one short line."""
    text = str(exc)
    if "WeightsUnpickler error:" in text:  # skip torch's paragraph about the weights_only default
        text = text.split("WeightsUnpickler error:", 1)[1].strip().split("\n")[0]
    words = text.split()
    return f"{type(exc).__name__}: {' '.join(words[:14])}" if words else type(exc).__name__


def _load_torchscript(path: Path) -> Checkpoint:
    torch = require("torch", "torch", "reading TorchScript archives")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # torch.jit is deprecated in favour of torch.export
            module = torch.jit.load(str(path), map_location="cpu")
    except Exception as exc:
        raise ReadError(f"damaged TorchScript archive ({_reason(exc)})") from exc
    return _unwrap(module.state_dict(), "torchscript", tree=script_tree(module))


def _load_export(path: Path) -> Checkpoint:
    torch = require("torch", "torch", "reading torch.export programs (.pt2)")
    check_export_archive(path)
    extra = {EXTRA_FILE: ""}
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            program = torch.export.load(path, extra_files=extra)
    except Exception as exc:
        raise ReadError(f"damaged torch.export archive ({_reason(exc)})") from exc
    checkpoint = _unwrap(dict(program.state_dict), "export")
    checkpoint.blob = extra.get(EXTRA_FILE) or None
    return checkpoint


def check_export_archive(path: Path) -> None:
    """Refuse a .pt2 whose pickled payloads need more than weights_only=True (see module docstring)."""
    with zipfile.ZipFile(path) as archive:
        for name in archive.namelist():
            if name.endswith((".pkl", "_pickle")) or "/custom_obj" in name:
                raise ReadError(f"torch.export archive holds a pickled object ({name}); not read, to run no code from it")
            if name.endswith("_config.json") and "/data/" in name:
                entries = json.loads(archive.read(name)).get("config", {})
                for fqn, entry in entries.items():
                    if entry.get("use_pickle"):
                        member = name.rsplit("/", 1)[0] + "/" + entry["path_name"]
                        _check_weights_only(archive.read(member), f"{fqn} ({member})")
            elif name.endswith(".pt"):
                _check_weights_only(archive.read(name), name)


def _check_weights_only(payload: bytes, what: str) -> None:
    import torch

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ReadError(f"torch.export archive entry {what} is not plain tensor data; not read, to run no code from it") from exc


# -- unwrapping --------------------------------------------------------------------------------
def has_lstm_keys(mapping: Mapping) -> bool:
    return any(isinstance(k, str) and LSTM_KEY.match(k) and is_tensor(v) for k, v in mapping.items())


def _unwrap(obj: object, kind: str, stood_in: Sequence = (), tree: Optional[dict] = None) -> Checkpoint:
    if pickled_module(obj) is not None:
        raise _pickled_module_error(obj)
    if isinstance(obj, StandIn):
        raise ReadError(f"holds a pickled {obj.kind} object (not loaded), not a state_dict or a module")
    elif not isinstance(obj, Mapping):
        kind = "Tensor" if is_tensor(obj) else type(obj).__name__
        raise ReadError(f"holds a {kind}, not a state_dict (a mapping of parameter names to tensors)")
    elif not obj:
        raise ReadError("holds an empty dict, not a state_dict with LSTM weights")
    state, container, found_tree = _find_state_dict(obj)
    tree = found_tree if found_tree is not None else tree
    metadata = getattr(state, "_metadata", None) or {}
    blob = None
    entry = metadata.get(METADATA_KEY) if isinstance(metadata, Mapping) else None
    if isinstance(entry, Mapping) and isinstance(entry.get("config"), str):
        blob = entry["config"]
    versions = {k: dict(v) for k, v in metadata.items() if k != METADATA_KEY and isinstance(v, Mapping)}
    tensors = {k: v for k, v in state.items() if is_tensor(v)}
    other = [f"{k} ({_type_name(v)})" for k, v in state.items() if not is_tensor(v)]
    tensors, stripped = _strip_prefixes(tensors)
    if not tensors:
        raise ReadError("holds no tensors")
    if tree is not None:
        tree = strip_tree(tree, stripped)
    return Checkpoint(tensors, kind, blob, container, stripped, versions, other, list(stood_in), tree)


def _type_name(value: object) -> str:
    return value.kind if isinstance(value, StandIn) else type(value).__name__


def _pickled_module_error(obj: object, where: str = "") -> ReadError:
    module = pickled_module(obj)
    inside = f" under {where!r}" if where else ""
    return ReadError(
        f"holds a whole pickled module ({module.kind}{inside}, as torch.save(model) writes), not a state_dict. "
        "lstmconvert reads state_dicts only: building a pickled module means unpickling classes the file names, "
        "which runs code. Nothing from it was executed. If you trust the file, save the weights on their own: "
        "torch.save(torch.load(path, weights_only=False).state_dict(), new_path)",
    )


def _as_state_dict(value: object) -> Optional[tuple]:
    """(mapping, None) if ``value`` can hold a state_dict (a mapping); None otherwise."""
    if isinstance(value, Mapping):
        return value, None
    return None


def _find_state_dict(obj: object) -> tuple:
    """(state_dict, where it sat or None, module tree or None) of the one LSTM model in ``obj``."""
    top = _as_state_dict(obj)
    if has_lstm_keys(top[0]):
        return top[0], None, top[1]
    for key, value in obj.items():
        if pickled_module(value) is not None:
            raise _pickled_module_error(value, str(key))
    for key in WRAPPER_KEYS:
        found = _as_state_dict(obj.get(key))
        if found is not None and has_lstm_keys(found[0]):
            return found[0], key, found[1]
    found = list(_nested_lstm_dicts(obj, ""))
    if len(found) == 1:
        where, (state, tree) = found[0]
        return state, where, tree
    if len(found) > 1:
        where = ", ".join(repr(p) for p, _ in found)
        raise ReadError(f"holds several state_dicts with LSTM weights ({where}); save the one to convert on its own")
    raise ReadError(_no_lstm_problem(top[0]))


def _no_lstm_problem(state: Mapping) -> str:
    """Why a mapping without nn.LSTM tensors was refused, as precisely as its keys allow."""
    keys = [k for k in state if isinstance(k, str)]
    named = [k for k in keys if LSTM_KEY.match(k)]
    if named:
        kinds = sorted({_type_name(state[k]) for k in named})
        return (f"its LSTM entries ({', '.join(named[:3])}{', ...' if len(named) > 3 else ''}) hold {', '.join(kinds)} "
                "objects, not torch tensors; save tensors (torch.from_numpy) instead")
    if any("_packed_params" in k or "_all_weight_values" in k for k in keys):
        return ("holds a quantized model (packed int8 weights); lstmconvert converts float weights exactly: convert "
                "the model before quantizing it")
    cells = [k for k in keys if re.search(r"(^|\.)weight_ih$", k)]
    if cells:
        return (f"holds nn.LSTMCell weights ({', '.join(cells[:3])}): a cell is stepped through time by your own "
                "code, which the file does not record; lstmconvert reads nn.LSTM layers (weight_ih_l0, ...)")
    tensors = sum(is_tensor(v) for v in state.values())
    return (f"no LSTM in it: none of its {tensors} top-level tensors (nor any nested state_dict) is named like "
            "an nn.LSTM parameter (weight_ih_l0, weight_hh_l0, ...)")


def _nested_lstm_dicts(obj: object, where: str, depth: int = 0):
    """(path, (mapping, None)) for every mapping nested in ``obj``
    that has LSTM keys, outermost first, 4 levels deep."""
    if depth >= 4 or not isinstance(obj, Mapping):
        return
    for key, value in obj.items():
        found = _as_state_dict(value)
        if found is None:
            continue
        here = f"{where}.{key}" if where else str(key)
        if has_lstm_keys(found[0]):
            yield here, found
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
