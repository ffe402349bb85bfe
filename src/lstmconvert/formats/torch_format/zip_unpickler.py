"""Read a ``torch.save`` zip archive without PyTorch: a restricted unpickler over numpy arrays.

Accepts what ``torch.load(weights_only=True)`` accepts for weights, plus the inert stand-ins that
``stand_ins`` uses for other objects in training checkpoints, and refuses everything else:

1. A static scan of ``data.pkl`` (``pickletools``, which runs nothing) refuses any opcode outside
   PyTorch's restricted unpickler's set (so INST, OBJ, STACK_GLOBAL, EXT... never reach an
   unpickler), pickle protocols above 3, and globals from the modules PyTorch blocks (``os``,
   ``sys``...).
2. The unpickler (``pickle.Unpickler`` with ``find_class`` and ``persistent_load`` overridden) only
   ever calls callables it defines itself: the tensor rebuild functions (a strided numpy view of a
   storage, see ``zip_tensors``), ``OrderedDict``/``Counter``/``set``/``bytearray``/``complex``, and
   ``StandIn`` classes for every other name, which record what the file hands them and nothing
   else. No class or function named by the file is imported or called.

Arrays come back writeable when they are the whole of a storage no other tensor uses (a private,
copy-on-write view of the file), and read-only when they share their storage (tied weights, views):
the caller copies those before handing them out.

Archives this reader leaves to PyTorch (``NotCovered``): PyTorch names it does not implement
(quantized, sparse, nested, meta tensors, dtypes numpy has no twin for).
"""

from __future__ import annotations

import _compat_pickle
import collections
import io
import pickle
import pickletools
import zipfile
from pathlib import Path

import numpy as np

from .stand_ins import StandIn, UnloadableObject
from .zip_tensors import STORAGE_DTYPES, TORCH_DTYPES, NotCovered, StorageFile, ZipRefusal, numpy_dtype, strided_view

# The opcodes PyTorch's weights_only unpickler executes (torch/_weights_only_unpickler.py); others are refused.
ALLOWED_OPCODES = frozenset({
    "GLOBAL", "NEWOBJ", "REDUCE", "BUILD", "APPEND", "APPENDS", "SETITEM", "SETITEMS", "MARK", "TUPLE",
    "TUPLE1", "TUPLE2", "TUPLE3", "NONE", "NEWFALSE", "NEWTRUE", "EMPTY_TUPLE", "EMPTY_LIST", "EMPTY_DICT",
    "EMPTY_SET", "BININT", "BININT1", "BININT2", "BINFLOAT", "BINUNICODE", "SHORT_BINSTRING", "BINPERSID",
    "BINGET", "LONG_BINGET", "BINPUT", "LONG_BINPUT", "LONG1", "PROTO", "STOP",
})
# Modules PyTorch's restricted loader refuses outright, stand-in or not.
BLOCKED_MODULES = frozenset({"sys", "os", "posix", "nt"})
# Names under torch that PyTorch's loader implements and this reader does not: left to PyTorch.
_TORCH_INTERNALS = ("torch._utils.", "torch._tensor.", "torch.serialization.", "torch.storage.", "torch.nested.",
                    "torch.distributed.", "torch.cuda.")


class PickleRefusal(ZipRefusal):
    """The pickle asks for something no restricted loader does (an opcode, a blocked module)."""


class _Marker:
    """A PyTorch name the file uses as data, never called: a storage type, a dtype, torch.Tensor.

    Slots, so a pickle cannot BUILD new attributes (say, another dtype) onto it.
    """

    __slots__ = ("name", "value")

    def __init__(self, name: str, value: str = "") -> None:
        self.name = name
        self.value = value

    def __repr__(self) -> str:
        return self.name


class _Recorded(StandIn):
    """A stand-in that also records the items or elements a dict or list subclass pickles."""

    def __setitem__(self, key, value) -> None:
        self.__dict__.setdefault("items", {})[key] = value

    def append(self, value) -> None:
        self.__dict__.setdefault("elements", []).append(value)

    def extend(self, values) -> None:
        self.__dict__.setdefault("elements", []).extend(values)


def load_zip(path: Path) -> tuple:
    """``(object, names stood in for)`` from a torch.save zip archive; see the module docstring.

    Raises ``PickleRefusal``/``ZipRefusal`` (refused: do not try elsewhere), ``NotCovered`` (leave
    it to PyTorch), ``UnloadableObject`` (a dict/list subclass with attributes).
    """
    with zipfile.ZipFile(path) as archive:
        records = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        if len(records) != 1:
            raise NotCovered("no single <name>/data.pkl record")
        info = archive.getinfo(records[0])
        if info.compress_type != zipfile.ZIP_STORED:
            raise ZipRefusal(f"member {info.filename} is compressed; torch.save stores it uncompressed")
        payload = archive.read(info)
        check_pickle(payload)
        storages = StorageFile(path, archive, records[0].split("/")[0])
    unpickler = _Unpickler(io.BytesIO(payload), storages)
    try:
        obj = unpickler.load()
    except (ZipRefusal, NotCovered, UnloadableObject):
        raise
    except Exception as exc:  # a malformed pickle: the C unpickler raises many types
        raise ZipRefusal(f"damaged pickle ({type(exc).__name__}: {exc})") from exc
    unpickler.settle_sharing()
    return _plain_containers(obj, {}), sorted(unpickler.used)


def check_pickle(payload: bytes) -> None:
    """The static scan (step 1 of the module docstring); raises PickleRefusal."""
    try:
        for opcode, arg, _ in pickletools.genops(payload):
            if opcode.name == "PROTO" and arg > 3:
                raise PickleRefusal(f"was pickled with protocol {arg} (torch.save(..., pickle_protocol={arg})), "
                                    "which torch.load(weights_only=True), the only way lstmconvert opens PyTorch "
                                    "files, cannot read; save it again with torch.save's default protocol")
            if opcode.name not in ALLOWED_OPCODES:
                raise PickleRefusal(f"holds pickled data PyTorch's restricted loader refuses (opcode {opcode.name}); "
                                    "nothing from it was executed")
            if opcode.name == "GLOBAL":
                module, name = python3_name(*arg.split(" ", 1))
                if module.split(".")[0] in BLOCKED_MODULES:
                    raise PickleRefusal(f"refers to {module}.{name}, from the module {module}, which no checkpoint "
                                        "needs and PyTorch's restricted loader never touches; refused, nothing from "
                                        "it was executed")
    except ValueError as exc:  # pickletools: truncated or unknown opcode
        raise ZipRefusal(f"damaged pickle ({exc})") from exc


def python3_name(module: str, name: str) -> tuple:
    """Protocol-2 pickles spell some Python 3 names the Python 2 way; map them as pickle does."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        return _compat_pickle.NAME_MAPPING[(module, name)]
    return _compat_pickle.IMPORT_MAPPING.get(module, module), name


class _Unpickler(pickle.Unpickler):
    def __init__(self, stream, storages: StorageFile) -> None:
        super().__init__(stream, encoding="utf-8")
        self.storages = storages
        self.views: list = []  # (array, id of its storage, whole storage?) of every tensor built
        self.used: set = set()  # names whose stand-in was instantiated
        self.stand_ins: dict = {}

    # -- names ---------------------------------------------------------------------------------
    def find_class(self, module: str, name: str):
        module, name = python3_name(module, name)
        full = f"{module}.{name}"
        if module.split(".")[0] in BLOCKED_MODULES:  # the scan refused these already; never reached
            raise PickleRefusal(f"refers to {full}, from a module PyTorch's restricted loader blocks")
        known = self._known(module, name, full)
        if known is not None:
            return known
        if full.startswith(_TORCH_INTERNALS) or (module == "torch" and not name.startswith("_") and name[:1].islower()) \
                or (module == "torch" and name.endswith(("Storage", "Tensor"))):
            raise NotCovered(f"uses {full}")
        return self._stand_in(full)

    def _known(self, module: str, name: str, full: str):
        simple = {
            "collections.OrderedDict": collections.OrderedDict, "collections.Counter": collections.Counter,
            "builtins.set": set, "builtins.bytearray": bytearray, "builtins.complex": complex,
            "_codecs.encode": _latin1_encode, "torch.Size": tuple, "torch.device": _device,
            "torch._utils._rebuild_tensor": self._rebuild_tensor, "torch._utils._rebuild_tensor_v2": self._rebuild_tensor,
            "torch._utils._rebuild_tensor_v3": self._rebuild_tensor_v3,
            "torch._utils._rebuild_parameter": _rebuild_parameter,
            "torch._utils._rebuild_parameter_with_state": _rebuild_parameter,
            "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
            "torch.nn.parameter.Parameter": _Parameter, "torch.Tensor": _Marker("torch.Tensor"),
        }
        if full in simple:
            return simple[full]
        if module in ("torch", "torch.storage") and name in STORAGE_DTYPES:
            return _Marker(full, STORAGE_DTYPES[name])
        if module == "torch" and name in TORCH_DTYPES:
            return _Marker(full, TORCH_DTYPES[name])
        return None

    def _stand_in(self, full: str) -> type:
        if full not in self.stand_ins:
            used = self.used

            def __new__(cls, *args, **kwargs):
                used.add(full)
                return StandIn.__new__(cls, *args)

            self.stand_ins[full] = type(f"StandIn[{full}]", (_Recorded,), {"name": full, "__new__": __new__})
        return self.stand_ins[full]

    # -- storages and tensors ------------------------------------------------------------------
    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] in ("storage", b"storage")):
            raise PickleRefusal(f"holds a persistent id {type(pid).__name__} that is not a tensor storage")
        _, storage_type, key, location, numel = pid
        if not isinstance(storage_type, _Marker) or not storage_type.name.endswith("Storage"):
            raise PickleRefusal("a storage's type is not a PyTorch storage class")
        if str(location).startswith("meta"):
            raise NotCovered("a storage on the meta device")
        return self.storages.storage(str(key), storage_type.value, numel)

    def _rebuild_tensor(self, storage, offset, size, stride, *rest):
        return self._view(storage, storage, offset, size, stride)

    def _rebuild_tensor_v3(self, storage, offset, size, stride, requires_grad, hooks, dtype, *rest):
        """A tensor over an untyped (byte) storage, with its dtype given separately."""
        if not isinstance(dtype, _Marker) or not dtype.value:
            raise NotCovered("a tensor dtype numpy has no twin for")
        if not isinstance(storage, np.ndarray) or storage.dtype != np.uint8:
            raise PickleRefusal("a tensor is rebuilt from something that is not a byte storage")
        typed = storage.view(numpy_dtype(dtype.value)) if storage.size else np.empty(0, numpy_dtype(dtype.value))
        return self._view(typed, storage, offset, size, stride)

    def _view(self, storage, owner, offset, size, stride):
        if not isinstance(storage, np.ndarray):
            raise PickleRefusal("a tensor is rebuilt from something that is not a storage")
        if not isinstance(size, tuple) or not isinstance(stride, tuple):
            raise PickleRefusal("a tensor's size or stride is not a tuple")
        view = strided_view(storage, offset, size, stride)
        self.views.append((view, id(owner), offset == 0 and view.size == storage.size))
        return view

    def settle_sharing(self) -> None:
        """Read-only for every tensor that shares its storage or is not the whole of it contiguously."""
        users = collections.Counter(storage for _, storage, _ in self.views)
        for view, storage, whole in self.views:
            if users[storage] > 1 or not whole or not view.flags.c_contiguous:
                view.flags.writeable = False


def _latin1_encode(text, encoding="latin1"):
    """``_codecs.encode(str, "latin1")``: how protocol-2 pickles spell bytes; no other codec."""
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise PickleRefusal("holds a _codecs.encode call that is not the latin1 spelling of bytes")
    return text.encode("latin1")


def _device(*args):
    return _Marker("torch.device", str(args[0]) if args else "")


def _rebuild_parameter(data, *rest):
    return data


class _Parameter:
    """``torch.nn.Parameter(data, requires_grad)`` via NEWOBJ: the data itself."""

    def __new__(cls, data=None, *rest):
        return data


def _rebuild_from_type_v2(func, new_type, args, state):
    """A tensor with Python attributes: rebuilt as a plain tensor (the attributes carry no values)."""
    if not (isinstance(new_type, _Marker) and new_type.name == "torch.Tensor") and new_type is not _Parameter:
        raise NotCovered("a tensor subclass")
    if not callable(func) or isinstance(func, type):
        raise PickleRefusal("a tensor is rebuilt by something that is not a rebuild function")
    return func(*args)


def _plain_containers(obj, done: dict):
    """Stand-ins for dict/list subclasses that recorded only items become plain dicts/lists, as PyTorch's
    restricted unpickler would fill them; one that also pickled attributes cannot be stood in for."""
    key = id(obj)
    if key in done:
        return done[key]
    if isinstance(obj, _Recorded) and ("items" in obj.__dict__ or "elements" in obj.__dict__):
        if obj.state is not None:
            kind = "dict" if "items" in obj.__dict__ else "list"
            raise UnloadableObject(obj.name, f"a {kind} subclass that also pickles attributes; the restricted "
                                             "loader cannot stand in for it without running its code")
        plain = dict(obj.__dict__["items"]) if "items" in obj.__dict__ else list(obj.__dict__["elements"])
        done[key] = plain
        return _plain_containers(plain, done) if isinstance(plain, (dict, list)) else plain
    done[key] = obj
    if isinstance(obj, dict):
        for k, v in obj.items():
            obj[k] = _plain_containers(v, done)
        metadata = getattr(obj, "_metadata", None)
        if metadata is not None:
            obj._metadata = _plain_containers(metadata, done)
    elif isinstance(obj, list):
        obj[:] = [_plain_containers(v, done) for v in obj]
    elif isinstance(obj, tuple):
        items = tuple(_plain_containers(v, done) for v in obj)
        if any(a is not b for a, b in zip(items, obj)):
            done[key] = items
            return items
    elif isinstance(obj, StandIn):
        obj.args = tuple(_plain_containers(v, done) for v in obj.args)
        obj.state = _plain_containers(obj.state, done)
    return obj
