"""The format capability records and the one check every writer asks (numpy only, no framework).

The writers' refusals themselves are tested in each format's test module, in the real frameworks; here,
that the records say what the formats are documented to carry and that the shared check reads them.
"""

from __future__ import annotations

import numpy as np
import pytest

from lstmconvert import UnsupportedError
from lstmconvert.capabilities import CAPABILITIES, carry_problem, check_carries, initialiser_style
from lstmconvert.registry import FORMATS

from factories import tagger


def _with(change):
    model = tagger()
    change(model)
    return model


def _clip(m):
    m.layers[0].clip = 3.0


def _float64(m):
    m.embedding.weight = m.embedding.weight.astype(np.float64)  # one array off: mixed dtypes


def test_every_registered_format_has_a_record():
    assert set(CAPABILITIES) == set(FORMATS)
    for info in FORMATS.values():
        assert info.capabilities is CAPABILITIES[info.name]
        assert info.capabilities.initialiser in ("torch", "keras") and info.capabilities.biases in (1, 2)


@pytest.mark.parametrize("fmt", sorted(CAPABILITIES))
def test_a_plain_float32_tagger_fits_every_format(fmt):
    assert carry_problem(tagger(), fmt) is None


@pytest.mark.parametrize("fmt, refused", [("torch", True), ("keras", True), ("onnx", False)])
def test_clip_is_refused_where_the_record_says(fmt, refused):
    problem = carry_problem(_with(_clip), fmt)
    assert (problem is not None) == refused
    if refused:
        assert problem.startswith("layer 0 clips its gate inputs at 3; ") and CAPABILITIES[fmt].lstm in problem
        with pytest.raises(UnsupportedError, match="clip"):
            check_carries(_with(_clip), fmt)


def test_dtypes_onnxruntime_cannot_run_are_refused_with_the_reason():
    model = tagger().astype(np.float64)
    assert carry_problem(model, "torch") is None and carry_problem(model, "keras") is None
    problem = carry_problem(model, "onnx")
    assert "onnxruntime has no float64 LSTM kernel" in problem and "--dtype float32" in problem


def test_mixed_dtypes_are_refused_by_formats_holding_one():
    model = _with(_float64)
    assert "mixes dtypes ['float32', 'float64']" in carry_problem(model, "torch")
    assert "mixes dtypes" in carry_problem(model, "onnx")


def test_initialiser_style_follows_the_source_formats_record():
    assert initialiser_style("keras") == "keras"
    assert initialiser_style("torch") == initialiser_style("onnx") == initialiser_style(None) == "torch"
