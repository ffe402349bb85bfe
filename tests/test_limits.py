"""Absurd declarations are refused before anything of that size is allocated.

Each file below declares terabytes behind a few bytes, made with the real libraries (h5py, torch.save,
onnx.helper). The run must end with exit 2 and one line, and Python-side allocations stay small
(numpy reports its allocations to tracemalloc).
"""

from __future__ import annotations

import resource
import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from lstmconvert.cli import main
from lstmconvert.limits import declared_bytes

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
SMALL = 64 << 20  # bytes: far below every declared size, far above every fixture


def run_refused(capsys, path: Path, tmp_path: Path, what: str) -> None:
    out = tmp_path / "out"
    out.mkdir()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    tracemalloc.start()
    try:
        code = main(["convert", str(path), "-o", str(out / "x.onnx"), "--keep-direction"])
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    grown = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) * 1024
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if not line.startswith("lstmconvert: warning:")]
    assert code == 2 and len(lines) == 1, err
    assert str(path) in lines[0] and what in lines[0], err
    assert peak < SMALL and grown < SMALL, (peak, grown)
    assert list(out.iterdir()) == []


def test_declared_bytes_does_not_overflow():
    assert declared_bytes([2**40, 2**40], 4) == 2**82
    assert declared_bytes([3, -1], 4) == -1


def test_hdf5_dataset_of_2_to_the_40_elements(tmp_path, capsys):
    h5py = pytest.importorskip("h5py")
    path = tmp_path / "tagger.h5"
    shutil.copyfile(FIXTURES / "keras" / "tagger.h5", path)
    with h5py.File(path, "r+") as f:
        kernels = []
        f["model_weights"].visititems(lambda name, obj: kernels.append(obj.name) if name.endswith("/kernel:0")
                                      or name.endswith("/kernel") else None)
        name = kernels[0]
        del f[name]
        f.create_dataset(name, shape=(2**20, 2**20), dtype="float32", chunks=(1, 16))  # declared, never written
    assert path.stat().st_size < 1 << 20
    run_refused(capsys, path, tmp_path, "declares shape (1048576, 1048576)")


def test_torch_tensor_expanded_over_a_tiny_storage(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    hidden = 2**18  # an LSTM of 4 * 2**18 gates: 1 TiB of weights declared over 4-byte storages
    state = {"lstm.weight_ih_l0": torch.zeros(1).expand(4 * hidden, 8),
             "lstm.weight_hh_l0": torch.zeros(1).expand(4 * hidden, hidden),
             "lstm.bias_ih_l0": torch.zeros(1).expand(4 * hidden), "lstm.bias_hh_l0": torch.zeros(1).expand(4 * hidden)}
    path = tmp_path / "expanded.pt"
    torch.save(state, path)
    run_refused(capsys, path, tmp_path, "declares shape (1048576, ")


def test_onnx_constant_of_shape_of_2_to_the_32_elements(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    model = onnx.load(FIXTURES / "onnx" / "bad" / "nonzero_initial_h.onnx")
    graph = model.graph
    kept = [t for t in graph.initializer if t.name != "h0"]
    del graph.initializer[:]
    graph.initializer.extend(kept + [numpy_helper.from_array(np.array([1, 2**16, 2**16], np.int64), "h0_shape")])
    graph.node.insert(0, helper.make_node("ConstantOfShape", ["h0_shape"], ["h0"], name="huge_zeros"))
    path = tmp_path / "huge_state.onnx"
    onnx.save(model, path)
    run_refused(capsys, path, tmp_path, "declares shape (1, 65536, 65536)")


def test_onnx_initializer_dims_of_2_to_the_40(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    model = onnx.load(FIXTURES / "onnx" / "bad" / "nonzero_initial_h.onnx")
    weight = next(t for t in model.graph.initializer if t.name == "W")
    del weight.dims[:]
    weight.dims.extend([1, 2**20, 2**20])
    path = tmp_path / "huge_dims.onnx"
    path.write_bytes(model.SerializeToString())
    run_refused(capsys, path, tmp_path, "")


def test_onnx_external_data_longer_than_its_file(tmp_path, capsys):
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto

    model = onnx.load(FIXTURES / "onnx" / "bad" / "nonzero_initial_h.onnx")
    weight = next(t for t in model.graph.initializer if t.name == "W")
    (tmp_path / "w.bin").write_bytes(weight.raw_data)
    del weight.dims[:]
    weight.dims.extend([1, 2**20, 2**18])  # 1 TiB declared, and asked of a file of a few hundred bytes
    weight.ClearField("raw_data")
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "w.bin"), ("offset", "0"), ("length", str(2**40))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    path = tmp_path / "external.onnx"
    path.write_bytes(model.SerializeToString())
    run_refused(capsys, path, tmp_path, f"asks for bytes 0..{2**40} of 'w.bin'")


def _refused_in_a_subprocess(path: Path, tmp_path: Path, what: str) -> None:
    """Run where a hang inside native code can be stopped: the fuzzer found these two files hanging forever."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": str(FIXTURES.parent / "src") + os.pathsep + os.environ.get("PYTHONPATH", "")}
    done = subprocess.run([sys.executable, "-m", "lstmconvert", "convert", str(path), "-o", str(tmp_path / "x.onnx")],
                          env=env, capture_output=True, text=True, timeout=120)
    lines = [line for line in done.stderr.splitlines() if not line.startswith("lstmconvert: warning:")]
    assert done.returncode == 2 and len(lines) == 1 and what in lines[0], done.stderr
    assert not (tmp_path / "x.onnx").exists()


def test_hdf5_with_inserted_bytes_is_refused_before_libhdf5_reads_it(tmp_path):
    pytest.importorskip("h5py")
    data = (FIXTURES / "keras" / "cudnn_tf_keras.h5").read_bytes()
    path = tmp_path / "inserted.h5"
    path.write_bytes(data[:820] + data[820:4267] * 2 + data[4267:])  # libhdf5 looped reading its attributes
    _refused_in_a_subprocess(path, tmp_path, "HDF5 records 21456 bytes but holds 24903")


def test_onnx_weight_declaring_more_than_it_holds_does_not_hang_shape_inference(tmp_path):
    onnx = pytest.importorskip("onnx")
    model = onnx.load(FIXTURES / "onnx" / "quirk_dynamo_unoptimized_states.onnx")
    bias = next(t for t in model.graph.initializer if t.name == "lstm.bias_ih_l0")
    del bias.dims[:]
    bias.dims.append(2**31 - 1)
    bias.raw_data = bias.raw_data[:8]
    path = tmp_path / "huge_bias.onnx"
    path.write_bytes(model.SerializeToString())
    _refused_in_a_subprocess(path, tmp_path, str(path))


def test_hdf5_that_crashes_libhdf5_is_refused_in_one_line(tmp_path):
    """The fuzzer found these bit flips in a tf.keras file make libhdf5 die with SIGSEGV reading the root
    attributes: a forked child reads the structure first, and the file is refused as damaged."""
    pytest.importorskip("h5py")
    data = bytearray((FIXTURES / "keras" / "cudnn_tf_keras.h5").read_bytes())
    for offset, mask in ((24, 64), (975, 128), (1009, 2), (3573, 8), (3598, 32), (7158, 128), (7357, 128),
                         (8110, 8), (9279, 1), (10947, 4), (11321, 64), (13031, 16), (14378, 32), (14987, 8),
                         (16338, 2), (20925, 8)):
        data[offset] ^= mask
    path = tmp_path / "flipped.h5"
    path.write_bytes(bytes(data))
    _refused_in_a_subprocess(path, tmp_path, "the file is damaged")


def test_hdf5_that_makes_libhdf5_loop_is_refused_in_one_line(tmp_path):
    """The fuzzer found these bit flips in a tf.keras file make libhdf5 loop forever reading a weight_names
    attribute: the forked child that walks the structure first is stopped after 30 s."""
    pytest.importorskip("h5py")
    data = bytearray((FIXTURES / "keras" / "tagger_tf_keras.h5").read_bytes())
    for offset, mask in ((1920, 128), (2617, 64), (6256, 32), (9487, 128), (11544, 2), (13745, 8), (14851, 1),
                         (15391, 2), (28824, 1), (29781, 64), (31135, 128), (44787, 2), (66250, 64), (66725, 1),
                         (68506, 1), (73096, 4)):
        data[offset] ^= mask
    path = tmp_path / "looping.h5"
    path.write_bytes(bytes(data))
    _refused_in_a_subprocess(path, tmp_path, "the file is damaged")


def test_onnx_node_reading_its_own_output_does_not_hang(tmp_path):
    """The fuzzer set a Cast's input to its own output: following casts back from sequence_lens looped."""
    onnx = pytest.importorskip("onnx")
    model = onnx.load(FIXTURES / "onnx" / "torch_packed_ts.onnx")
    cast = next(n for n in model.graph.node if n.op_type == "Cast")
    cast.input[0] = cast.output[0]
    path = tmp_path / "cycle.onnx"
    path.write_bytes(model.SerializeToString())
    _refused_in_a_subprocess(path, tmp_path, str(path))
