"""The torch-free reader of torch.save zip archives against ``torch.load(weights_only=True)``.

Every value the reader builds is compared with what PyTorch's own restricted loader builds from the
same file: same structure, keys, dtypes, shapes and bytes. Hostile pickles carry payloads that create
a marker file when unpickled normally (shown by unpickling them so), and must be refused, or stood in
for, without the marker ever appearing.
"""

from __future__ import annotations

import collections
import mmap
import os
import pickle
import struct
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import lstmconvert  # noqa: E402
from lstmconvert import ReadError  # noqa: E402
from lstmconvert.formats.torch_format import checkpoint  # noqa: E402
from lstmconvert.formats.torch_format.stand_ins import StandIn  # noqa: E402
from lstmconvert.formats.torch_format.zip_tensors import NotCovered  # noqa: E402
from lstmconvert.formats.torch_format.zip_unpickler import load_zip  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
TAGGER = ROOT / "fixtures" / "torch" / "tagger.pt"


def torch_save_archives() -> list:
    """Every PyTorch fixture that is a plain torch.save zip archive (not TorchScript, not .pt2)."""
    found = []
    for path in sorted((ROOT / "fixtures").rglob("*")):
        if path.suffix in (".pt", ".pth", ".ckpt", ".bin") and zipfile.is_zipfile(path):
            names = zipfile.ZipFile(path).namelist()
            if not any("/code/" in n or n.endswith("/constants.pkl") for n in names):
                found.append(path)
    return found


def assert_same(ours, theirs, where: str = "") -> None:
    """``ours`` (the zip reader's) equals ``theirs`` (torch.load's), tensors bit for bit."""
    if isinstance(theirs, torch.Tensor):
        assert isinstance(ours, np.ndarray), where
        assert ours.dtype.name == str(theirs.dtype).replace("torch.", ""), where
        assert ours.shape == tuple(theirs.shape), where
        assert ours.strides == tuple(s * theirs.element_size() for s in theirs.stride()), where
        expected = theirs.contiguous()
        if expected.dtype == torch.bfloat16:
            expected = expected.view(torch.int16)
        assert np.ascontiguousarray(ours).tobytes() == expected.numpy().tobytes(), where
    elif isinstance(theirs, dict):
        assert type(ours) is type(theirs) and list(ours) == list(theirs), where
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{where}.{key}")
        assert_same(getattr(ours, "_metadata", None), getattr(theirs, "_metadata", None), f"{where}._metadata")
    elif isinstance(theirs, (list, tuple)):
        assert type(ours) is type(theirs) and len(ours) == len(theirs), where
        for k, (a, b) in enumerate(zip(ours, theirs)):
            assert_same(a, b, f"{where}[{k}]")
    else:
        assert ours == theirs and type(ours) is type(theirs), where


def memory_root(array: np.ndarray):
    while getattr(array, "base", None) is not None:  # views, as_strided's holder, the buffer
        array = array.base
    return array.obj if isinstance(array, memoryview) else array


@pytest.mark.parametrize("path", torch_save_archives(), ids=lambda p: p.name)
def test_every_fixture_reads_as_torch_load_reads_it(path):
    try:
        theirs = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError:  # e.g. a pickled module: refused by both, see the hostile tests
        with pytest.raises(ReadError):
            lstmconvert.load(path)
        return
    ours, stood_in = load_zip(path)
    assert stood_in == []
    assert_same(ours, theirs)


def test_views_strides_offsets_and_shared_storages(tmp_path):
    torch.manual_seed(0)
    flat = torch.randn(64)
    base = torch.randn(6, 5)
    state = collections.OrderedDict([
        ("view", flat[10:30].view(4, 5)),  # a storage offset
        ("other_view", flat[:8]),  # the same storage
        ("transposed", base.t()),  # strides (1, 5)
        ("column", base[:, 2]),  # stride 5, offset 2
        ("expanded", torch.randn(3, 1).expand(3, 4)),  # stride 0
        ("tied", base),
        ("tied_again", base),  # the same tensor object twice
        ("half", torch.randn(3, 4).half()[:, 1:]),
        ("bf16", torch.randn(4, 4).bfloat16().t()),
        ("double", torch.randn(2, 3, dtype=torch.float64)),
        ("whole", torch.randn(5, 3)),
        ("steps", torch.tensor(7)),
        ("mask", torch.tensor([True, False])),
        ("empty", torch.zeros(0, 3)),
    ])
    state._metadata = collections.OrderedDict([("", {"version": 1})])
    path = tmp_path / "views.pt"
    torch.save(state, path)
    theirs = torch.load(path, weights_only=True)
    ours, _ = load_zip(path)
    assert_same(ours, theirs)
    assert ours["tied"] is ours["tied_again"]
    assert isinstance(memory_root(ours["whole"]), mmap.mmap)  # zero copy: the file's own bytes
    assert ours["whole"].flags.writeable  # the whole of a storage nobody else uses: handed over
    for key in ("view", "other_view", "transposed", "column", "tied", "half", "bf16"):
        assert not ours[key].flags.writeable, key  # shares or is part of a storage: to be copied
    ours["whole"][0, 0] += 1  # a private copy-on-write mapping: the file does not change
    assert torch.load(path, weights_only=True)["whole"][0, 0] == theirs["whole"][0, 0]


def test_checkpoint_with_objects_reads_without_torch_and_stands_in(tmp_path):
    """A training checkpoint with a Namespace, numpy values, an optimizer state: read torch-free."""
    import argparse

    lstm = nn.LSTM(4, 3)
    optimizer = torch.optim.Adam(lstm.parameters())
    lstm(torch.randn(2, 1, 4))[0].sum().backward()
    optimizer.step()
    path = tmp_path / "checkpoint.pth"
    torch.save({"epoch": 2, "model": lstm.state_dict(), "optimizer": optimizer.state_dict(),
                "args": argparse.Namespace(lr=0.1), "best": np.float64(0.5)}, path)
    ours, stood_in = load_zip(path)
    assert "argparse.Namespace" in stood_in and isinstance(ours["args"], StandIn)
    theirs = torch.load(path, weights_only=False)
    assert_same(ours["model"], theirs["model"])
    assert_same(ours["optimizer"], theirs["optimizer"])
    code = ("import sys, lstmconvert; m = lstmconvert.load(sys.argv[1]); "
            "assert 'torch' not in sys.modules, 'torch imported'; print(m.meta['torch']['not_loaded'])")
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert "argparse.Namespace" in out.stdout


def test_conversions_from_pt_do_not_import_torch(tmp_path):
    pytest.importorskip("onnx")
    code = ("import sys, lstmconvert; lstmconvert.save(lstmconvert.to_bidirectional(lstmconvert.load(sys.argv[1])), "
            "sys.argv[2]); "
            "print(sorted(m for m in ('torch', 'tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code, str(TAGGER), str(tmp_path / "t.onnx")],
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# -- hostile files -------------------------------------------------------------------------------
def _archive_with_pickle(tmp_path: Path, payload: bytes, name: str = "hostile.pt", archive: Path = TAGGER) -> Path:
    """``archive`` with its data.pkl replaced by ``payload``, laid out as torch.save lays it out."""
    path = tmp_path / name
    with zipfile.ZipFile(archive) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as target:
        for info in source.infolist():
            target.writestr(info.filename, payload if info.filename.endswith("/data.pkl") else source.read(info))
    return path


class SystemCall:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class ExecPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (exec, (f"open({str(self.marker)!r}, 'w').close()",))


class TouchOnLoad:
    """A custom class whose unpickling creates ``marker``."""

    def __init__(self, marker: Path) -> None:
        self.marker = str(marker)

    def __setstate__(self, state) -> None:
        Path(state["marker"]).touch()


def _exec_source(marker: Path) -> bytes:
    return f"open({str(marker)!r}, 'w').close()".encode()


def _text(marker: Path) -> bytes:  # BINUNICODE, an opcode the restricted loader allows
    return b"X" + struct.pack("<I", len(_exec_source(marker))) + _exec_source(marker)


def _inst(marker: Path) -> bytes:  # MARK, the argument, INST builtins exec
    return b"\x80\x02(" + _text(marker) + b"ibuiltins\nexec\n."


def _obj(marker: Path) -> bytes:  # MARK, the class (builtins exec), the argument, OBJ
    return b"\x80\x02(cbuiltins\nexec\n" + _text(marker) + b"o."


def _stack_global(marker: Path) -> bytes:  # protocol 4 spelling of a global
    return pickle.dumps(ExecPayload(marker), protocol=4)


@pytest.mark.parametrize("make, match", [
    (lambda tmp, m: torch.save({"model": {}, "x": SystemCall(m)}, tmp / "h.pt"),
     r"refers to (posix|nt)\.system, from the module (posix|nt).*nothing from it was executed"),
    (lambda tmp, m: torch.save(ExecPayload(m), tmp / "h.pt"), r"holds a pickled builtins\.exec object \(not loaded\)"),
    (lambda tmp, m: torch.save(TouchOnLoad(m), tmp / "h.pt"), r"holds a pickled .*TouchOnLoad object \(not loaded\)"),
    (lambda tmp, m: _archive_with_pickle(tmp, _inst(m), "h.pt"), r"refuses \(opcode INST\); nothing from it was executed"),
    (lambda tmp, m: _archive_with_pickle(tmp, _obj(m), "h.pt"), r"refuses \(opcode OBJ\); nothing from it was executed"),
    (lambda tmp, m: _archive_with_pickle(tmp, _stack_global(m), "h.pt"), r"pickled with protocol 4"),
])
def test_hostile_pickles_are_refused_without_running_anything(tmp_path, make, match):
    marker = tmp_path / "marker"
    make(tmp_path, marker)
    path = tmp_path / "h.pt"
    with pytest.raises(ReadError, match=match) as info:
        lstmconvert.load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
    assert not marker.exists()
    with zipfile.ZipFile(path) as archive:  # the payload is live: a normal unpickling runs it
        payload = archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))
    try:
        pickle.loads(payload)
    except Exception:
        pass  # the payload ran before unpickling stopped at something else
    assert marker.exists()


def test_hostile_objects_beside_a_state_dict_are_stood_in_never_run(tmp_path):
    marker = tmp_path / "marker"
    torch.manual_seed(0)
    state = {f"lstm.{k}": v for k, v in nn.LSTM(4, 3).state_dict().items()}
    path = tmp_path / "c.pt"
    torch.save({"state_dict": state, "a": ExecPayload(marker), "b": TouchOnLoad(marker)}, path)
    model = lstmconvert.load(path)
    assert not marker.exists()
    assert "builtins.exec" in model.meta["torch"]["not_loaded"]
    assert model.layers[0].directions[0].w_ih.tobytes() == state["lstm.weight_ih_l0"].numpy().tobytes()


def test_refusals_are_the_ones_the_torch_path_gives(tmp_path, monkeypatch):
    """Files both paths refuse get the same one-line message from either."""
    marker = tmp_path / "marker"
    files = []
    for k, obj in enumerate([{"model": {}, "x": SystemCall(marker)}, TouchOnLoad(marker), {}, [1, 2]]):
        files.append(tmp_path / f"{k}.pt")
        torch.save(obj, files[-1])
    torch.save({"a": nn.LSTM(2, 2)}, tmp_path / "module.pt")
    files.append(tmp_path / "module.pt")
    ours = []
    for path in files:
        with pytest.raises(ReadError) as info:
            lstmconvert.load(path)
        ours.append(str(info.value))

    def not_covered(path):
        raise NotCovered("forced")

    monkeypatch.setattr(checkpoint, "load_zip", not_covered)
    for path, message in zip(files, ours):
        with pytest.raises(ReadError) as info:
            lstmconvert.load(path)
        assert str(info.value) == message
    assert not marker.exists()


@pytest.mark.parametrize("damage, match", [
    ("compress", r"data\.pkl is compressed"),
    ("truncate_storage", r"storage .* claims .* elements"),
    ("strides", r"reaches element"),
])
def test_damaged_archives_are_refused_in_one_line(tmp_path, damage, match):
    path = tmp_path / "d.pt"
    if damage == "compress":
        with zipfile.ZipFile(TAGGER) as source, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as target:
            for info in source.infolist():
                target.writestr(info.filename, source.read(info))
    else:
        state = {"lstm.weight_ih_l0": torch.randn(8, 2), "lstm.weight_hh_l0": torch.randn(8, 2)}
        torch.save(state, path)
        with zipfile.ZipFile(path) as archive:
            payload = archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))
        if damage == "truncate_storage":  # numel 16 -> 255 (BININT1), beyond the member's 64 bytes
            payload = payload.replace(b"K\x10tq", b"K\xfftq", 1)
        else:  # stride (2, 1) -> (9, 1): the view would read past the storage
            payload = payload.replace(b"K\x02K\x01\x86", b"K\x09K\x01\x86", 1)
        path = _archive_with_pickle(tmp_path, payload, "d2.pt", archive=path)
    with pytest.raises(ReadError, match=match) as info:
        lstmconvert.load(path)
    assert "\n" not in str(info.value)
