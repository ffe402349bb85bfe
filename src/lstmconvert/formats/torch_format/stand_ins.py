"""``torch.load(weights_only=True)`` for checkpoints that also pickle objects of other classes.

Training scripts save more than tensors: ``argparse.Namespace`` arguments, numpy scalars
(``best_acc``), dataclass configs, ``pathlib`` paths. PyTorch's
restricted unpickler (``weights_only=True``) refuses every class outside its allowlist, which is
right, since unpickling a class imports and calls code the file names, but it refuses such a file as
a whole even when the weights in it are plain tensors.

Here every class or function the file names is stood in for, during one restricted ``torch.load``,
by an inert ``StandIn`` subclass registered under that name: where the file says "call
argparse.Namespace" the restricted unpickler creates a StandIn that only records the arguments and
the state the file hands it. Nothing named by the file is imported or called; tensors are rebuilt by
PyTorch's own allowlisted functions, exactly as in any ``weights_only=True`` load, and names PyTorch
allows by default keep their real meaning (its allowlist is consulted first). Modules PyTorch blocks
outright (``os``, ``sys``...) stay blocked. A whole pickled ``nn.Module`` comes out as a stand-in too,
which ``checkpoint`` recognises and refuses: the weights of a file are read only from a state_dict.

The names are found by a static scan of the pickle (``pickletools``, which executes nothing). The
stand-ins are registered in PyTorch's process-wide allowlist only while that one load runs. The
restricted unpickler only fills real ``dict``/``list`` objects, so a dict or list subclass (a
``defaultdict``, an ``AttrDict`` config) is retried as a plain dict or list; one that also carries
attributes cannot be stood in for and is refused.
"""

from __future__ import annotations

import _compat_pickle
import io
import pickle
import pickletools
import re
import warnings
import zipfile
from pathlib import Path

# A legacy (non-zip) torch.save file is a sequence of pickles: magic number, protocol version,
# system info, then the saved object. The storage data after them is not pickled Python.
LEGACY_PICKLES = 4
# How the restricted unpickler names a stand-in in its errors: "<class '...StandIn[argparse.Namespace]'>".
_NAMED_IN_ERROR = re.compile(r"StandIn\[([^\]]+)\]")


class StandIn:
    """An object the file describes but that was not built: what it was called with, and its state.

    ``name`` (on each subclass) is the full name the file gave, e.g. ``argparse.Namespace``.
    """

    name = "?"

    def __new__(cls, *args, **kwargs):
        self = object.__new__(cls)
        self.args = args
        self.state = None
        return self

    def __init__(self, *args, **kwargs) -> None:
        pass  # everything was recorded by __new__

    def __setstate__(self, state) -> None:
        self.state = state

    @property
    def kind(self) -> str:
        """What the object was meant to be: the class a reconstructor was given (numpy's
        ``_reconstruct(numpy.ndarray, ...)`` is a numpy.ndarray), else the name called."""
        first = self.args[0] if self.args else None
        if isinstance(first, type) and issubclass(first, StandIn):
            return first.name
        return self.name

    def __repr__(self) -> str:
        return f"<{self.kind}, not loaded>"


class UnloadableObject(Exception):
    """The file holds an object no stand-in can take the place of (``name``); see ``reason``."""

    def __init__(self, name: str, reason: str) -> None:
        super().__init__(f"{name}: {reason}")
        self.name = name
        self.reason = reason


def load_with_stand_ins(path: Path) -> tuple:
    """``(object, names stood in for)`` from a torch.save file, running no code named by the file.

    Raises UnloadableObject for a dict/list subclass with attributes, and whatever ``torch.load``
    raises for a damaged file or a blocked module.
    """
    import torch

    names = [n for n in pickled_globals(path) if n not in _user_allowed_names()]
    if not _can_stand_in():
        raise UnloadableObject(names[0] if names else "object",
                               f"which PyTorch {torch.__version__} cannot stand in for (PyTorch 2.6 or newer can)")
    roles = {name: "object" for name in names}
    retried = None  # the name whose role the last retry changed
    while True:
        used: set = set()
        entries = [(_stand_in_class(name, role, used), name) for name, role in roles.items()]
        try:
            with warnings.catch_warnings(), torch.serialization.safe_globals(entries):
                warnings.simplefilter("ignore")
                obj = torch.load(path, map_location="cpu", weights_only=True)
            return obj, sorted(used)
        except pickle.UnpicklingError as exc:
            name, role = _next_role(str(exc), roles, retried)
            if name is None:
                raise
            roles[name], retried = role, name


def _can_stand_in() -> bool:
    """Whether this PyTorch lets a restricted load allowlist an object under another name, which
    ``torch.serialization.safe_globals([(obj, "module.name")])`` does since PyTorch 2.6."""
    import torch

    version = tuple(int(part) for part in re.findall(r"\d+", torch.__version__)[:2])
    return version >= (2, 6) and hasattr(torch.serialization, "safe_globals")


def _next_role(text: str, roles: dict, retried) -> tuple:
    """After a failed load: (name, role to retry it with), or (None, None) if retrying cannot help.

    Raises UnloadableObject when the object last retried as a plain dict/list turns out to carry
    attributes too (the unpickler then refuses to set them on a plain container).
    """
    match = _NAMED_IN_ERROR.search(text)
    name = match.group(1) if match else None
    if name in roles and roles[name] == "object":
        if "SETITEM" in text:
            return name, "dict"
        if "append to lists" in text or "extend lists" in text:
            return name, "list"
    if retried is not None and ("but got <class 'dict'>" in text or "but got <class 'list'>" in text):
        raise UnloadableObject(retried, f"a {roles[retried]} subclass that also pickles attributes; the restricted "
                                        "loader cannot stand in for it without running its code")
    return None, None


def _stand_in_class(name: str, role: str, used: set) -> type:
    """A class the unpickler may 'call' for ``name``: a StandIn, or a plain dict/list maker."""
    if role == "object":
        return type(f"StandIn[{name}]", (StandIn,), {"name": name, "__new__": _recording_new(name, used)})
    container = dict if role == "dict" else list

    def make(cls, *args, **kwargs):  # a dict or list subclass's items arrive after creation
        used.add(name)
        return container()

    return type(f"StandIn[{name}]", (), {"__new__": make, "name": name})


def _recording_new(name: str, used: set):
    def __new__(cls, *args, **kwargs):
        used.add(name)
        return StandIn.__new__(cls, *args)

    return __new__


def _user_allowed_names() -> set:
    """Names the user's own code allowlisted (torch.serialization.add_safe_globals); they keep their meaning."""
    import torch

    names = set()
    for entry in torch.serialization.get_safe_globals():
        if isinstance(entry, tuple):
            names.add(entry[1])
        else:
            names.add(f"{getattr(entry, '__module__', '')}.{getattr(entry, '__qualname__', '')}")
    return names


# -- the static scan ---------------------------------------------------------------------------
def pickled_globals(path: Path) -> list:
    """Every global (``module.name``) the saved object's pickle refers to, in first-use order."""
    if zipfile.is_zipfile(path):
        return _globals_in(io.BytesIO(_zip_pickle(path)), 1)
    with open(path, "rb") as handle:
        return _globals_in(handle, LEGACY_PICKLES)


def pickled_head(path: Path, size: int) -> bytes:
    """The first ``size`` bytes of the pickled object (zip archive: its data.pkl; legacy: the file)."""
    if zipfile.is_zipfile(path):
        return _zip_pickle(path)[:size]
    with open(path, "rb") as handle:
        return handle.read(size)


def _zip_pickle(path: Path) -> bytes:
    """The ``<archive>/data.pkl`` record of a torch.save zip archive (empty if there is none)."""
    with zipfile.ZipFile(path) as archive:
        records = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
        return archive.read(records[0]) if records else b""


def _globals_in(stream, pickles: int) -> list:
    found: dict = {}
    for _ in range(pickles):
        for opcode, arg, _pos in pickletools.genops(stream):
            if opcode.name == "GLOBAL":
                module, name = arg.split(" ", 1)
                found.setdefault(_python3_name(module, name), None)
    return list(found)


def _python3_name(module: str, name: str) -> str:
    """The name PyTorch's unpickler looks up: protocol-2 pickles spell some Python 3 names the
    Python 2 way (``__builtin__.set``), and the unpickler maps them back, as pickle does."""
    if (module, name) in _compat_pickle.NAME_MAPPING:
        module, name = _compat_pickle.NAME_MAPPING[(module, name)]
    elif module in _compat_pickle.IMPORT_MAPPING:
        module = _compat_pickle.IMPORT_MAPPING[module]
    return f"{module}.{name}"
