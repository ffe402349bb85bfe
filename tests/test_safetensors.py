""".safetensors read and written with the safetensors numpy API.

Outputs are PyTorch's: the user's module with the file loaded by ``safetensors.torch.load_file``,
against the source module; conversions from a .safetensors file run in onnxruntime.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

import lstmconvert  # noqa: E402
from lstmconvert import ReadError  # noqa: E402
from factories import same_bits  # noqa: E402
from torch_helpers import FIXTURES, Tagger, assert_close, load_user, numpy_out, tokens  # noqa: E402

TAGGER = FIXTURES / "tagger.pt"


@pytest.mark.parametrize("name", ["tagger.pt", "tagger_fp16.pt", "tagger_bf16.pt", "tagger_proj.pt"])
def test_round_trip_is_bit_exact(tmp_path, name):
    source = torch.load(FIXTURES / name, weights_only=True)
    path = tmp_path / "same.safetensors"
    lstmconvert.save(lstmconvert.load(FIXTURES / name), path)
    written = safetensors_torch.load_file(path)  # the keys and tensors a .pt of it holds
    assert set(written) == set(source)
    for key, tensor in source.items():
        assert same_bits(written[key], tensor), key
    again = lstmconvert.load(path)
    assert again.meta["torch"]["written_by_lstmconvert"]
    for key, array in lstmconvert.load(FIXTURES / name).arrays().items():
        assert array.dtype == again.arrays()[key].dtype and array.tobytes() == again.arrays()[key].tobytes(), key


def test_widened_file_strict_loads_into_the_users_module(tmp_path):
    path = tmp_path / "bi.safetensors"
    lstmconvert.save(lstmconvert.to_bidirectional(lstmconvert.load(TAGGER)), path)
    user = Tagger(bidirectional=True).eval()
    user.load_state_dict(safetensors_torch.load_file(path), strict=True)
    source = load_user(Tagger, TAGGER)
    x = tokens(3, 7, 4)
    assert_close(numpy_out(user, x), numpy_out(source, x))
    from lstmconvert.formats.torch_format import SequenceLSTM

    rebuilt = SequenceLSTM.from_checkpoint(path).eval()
    assert_close(numpy_out(rebuilt, x), numpy_out(source, x))


def test_users_safetensors_converts_to_onnx_and_pt(tmp_path):
    pytest.importorskip("onnxruntime")
    source = load_user(Tagger, TAGGER)
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file(source.state_dict(), path)  # sorted keys, no lstmconvert metadata
    x = tokens(5, 6, 3)
    expected = numpy_out(source, x)
    assert_close(lstmconvert.run(path, x.T.numpy()).transpose(1, 0, 2), expected)
    for target in ("bi.onnx", "bi.pt"):
        lstmconvert.save(lstmconvert.to_bidirectional(lstmconvert.load(path)), tmp_path / target)
        assert_close(lstmconvert.run(tmp_path / target, x.T.numpy()).transpose(1, 0, 2), expected)
    report = lstmconvert.verify(path, tmp_path / "bi.onnx")
    assert report.passed, report.render_text()


def test_roundtrip_through_safetensors():
    report = lstmconvert.roundtrip(TAGGER, via="safetensors")
    assert report.passed, report.render_text()


def test_reading_safetensors_imports_no_torch(tmp_path):
    path = tmp_path / "model.safetensors"
    safetensors_torch.save_file(load_user(Tagger, TAGGER).state_dict(), path)
    code = "import sys, lstmconvert; lstmconvert.load(sys.argv[1]); print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("content", [
    b"\xff" * 8 + b"{}",  # a header length far beyond the file
    np.uint64(12).tobytes() + b"{not json!!}",
    np.uint64(60).tobytes() + b'{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0, 64]}}',  # past the end
])
def test_corrupt_header_is_refused_in_one_line(tmp_path, content):
    path = tmp_path / "bad.safetensors"
    path.write_bytes(content)
    with pytest.raises(ReadError, match="not a readable .safetensors file") as info:
        lstmconvert.load(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)
