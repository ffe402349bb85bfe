"""The uni->bi converter's structural promises, on in-memory models (no framework needed).

Numeric function preservation is checked in the real runtimes by the format tests; here: which weights
are reused bit-for-bit, which are zero, what the converter refuses, and what it says it preserves.
"""

import warnings

import numpy as np
import pytest

from lstmconvert import (
    Dense, Embedding, LSTMDirection, LSTMLayer, LstmConvertError, ModelError, PreservationWarning,
    SequenceModel, preservation, to_bidirectional,
)

RNG = np.random.default_rng(7)


def _direction(inputs, hidden, dtype=np.float32, bias=True):
    def w(*shape):  # values with infinite decimal expansions, so any rounding shows
        return (RNG.standard_normal(shape) / 3).astype(dtype)

    return LSTMDirection(w(4 * hidden, inputs), w(4 * hidden, hidden),
                         w(4 * hidden) if bias else None, w(4 * hidden) if bias else None)


def _model(layers=2, hidden=5, head=True, dtype=np.float32, bias=True):
    dirs = [_direction(6 if k == 0 else hidden, hidden, dtype, bias) for k in range(layers)]
    return SequenceModel(
        layers=[LSTMLayer([d]) for d in dirs],
        embedding=Embedding((RNG.standard_normal((11, 6))).astype(dtype)),
        head=[Dense(RNG.standard_normal((3, hidden)).astype(dtype), RNG.standard_normal(3).astype(dtype), "softmax")]
        if head else [],
        input_kind="tokens",
    ).validate()


def _same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


@pytest.mark.parametrize("backward", ["copy", "random", "zeros"])
def test_forward_weights_are_reused_bit_for_bit(backward):
    src = _model()
    bi = to_bidirectional(src, backward=backward)
    for old, new in zip(src.layers, bi.layers):
        fwd = new.directions[0]
        assert _same_bits(fwd.w_hh, old.directions[0].w_hh)
        assert _same_bits(fwd.b_ih, old.directions[0].b_ih) and _same_bits(fwd.b_hh, old.directions[0].b_hh)
        width = old.input_size
        assert _same_bits(np.ascontiguousarray(fwd.w_ih[:, :width]), old.directions[0].w_ih)
    assert _same_bits(bi.embedding.weight, src.embedding.weight)
    assert _same_bits(np.ascontiguousarray(bi.head[0].weight[:, :5]), src.head[0].weight)


def test_concat_consumers_get_zero_columns_for_the_backward_half():
    bi = to_bidirectional(_model(), backward="random")
    assert bi.layers[1].directions[0].w_ih.shape == (20, 10)
    assert not bi.layers[1].directions[0].w_ih[:, 5:].any()
    assert bi.head[0].weight.shape == (3, 10) and not bi.head[0].weight[:, 5:].any()
    assert bi.meta["preservation"].status == "exact"


def test_backward_initialisations():
    src = _model(layers=1)
    copy = to_bidirectional(src, backward="copy").layers[0].directions
    for name, array in copy[0].arrays().items():
        assert _same_bits(array, getattr(copy[1], name))
    zeros = to_bidirectional(src, backward="zeros").layers[0].directions[1]
    assert all(not a.any() for a in zeros.arrays().values())
    r1 = to_bidirectional(src, backward="random", seed=1).layers[0].directions[1]
    r1_again = to_bidirectional(src, backward="random", seed=1).layers[0].directions[1]
    r2 = to_bidirectional(src, backward="random", seed=2).layers[0].directions[1]
    assert _same_bits(r1.w_ih, r1_again.w_ih)
    assert not np.array_equal(r1.w_ih, r2.w_ih)
    bound = 1 / np.sqrt(src.layers[0].hidden_size)  # PyTorch's U(-1/sqrt(H), 1/sqrt(H))
    assert np.abs(r1.w_ih).max() <= bound and r1.w_ih.dtype == np.float32


def test_ave_doubles_consumers_exactly_and_sum_keeps_widths():
    src = _model()
    ave = to_bidirectional(src, backward="zeros", merge="ave")
    assert _same_bits(ave.head[0].weight, src.head[0].weight * np.float32(2))
    assert ave.layers[0].output_size == 5
    assert ave.meta["preservation"].status == "exact"
    summed = to_bidirectional(src, backward="zeros", merge="sum")
    assert _same_bits(summed.head[0].weight, src.head[0].weight)


@pytest.mark.parametrize("merge,backward,head,status", [
    ("concat", "copy", True, "exact"),
    ("concat", "copy", False, "forward-half"),
    ("sum", "zeros", False, "exact"),
    ("sum", "copy", True, "none"),
    ("ave", "zeros", True, "exact"),
    ("ave", "zeros", False, "none"),
    ("mul", "zeros", True, "none"),
])
def test_preservation_verdicts(merge, backward, head, status):
    src = _model(head=head)
    assert preservation(src, merge=merge, backward=backward).status == status
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bi = to_bidirectional(src, merge=merge, backward=backward)
    assert bi.meta["preservation"].status == status
    assert any(issubclass(w.category, PreservationWarning) for w in caught) == (status != "exact")


def test_no_preserve_fills_consumers_with_random_weights():
    bi = to_bidirectional(_model(), preserve=False)
    assert bi.head[0].weight[:, 5:].any()
    assert bi.meta["preservation"].status == "none"


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_dtype_is_kept(dtype):
    bi = to_bidirectional(_model(dtype=dtype), backward="random")
    assert {a.dtype for a in bi.arrays().values()} == {np.dtype(dtype)}


def test_bias_free_layers_stay_bias_free():
    bi = to_bidirectional(_model(bias=False), backward="random")
    assert all(not d.has_bias for layer in bi.layers for d in layer.directions)


def test_source_is_not_modified():
    src = _model()
    before = {k: v.copy() for k, v in src.arrays().items()}
    to_bidirectional(src, backward="zeros", merge="ave")
    assert all(_same_bits(before[k], v) for k, v in src.arrays().items())


def test_refuses_already_bidirectional_and_reverse_only_layers():
    bi = to_bidirectional(_model())
    with pytest.raises(LstmConvertError, match="already bidirectional"):
        to_bidirectional(bi)
    rev = _model(layers=1)
    rev.layers[0].reverse = True
    with pytest.raises(LstmConvertError, match="backward only"):
        to_bidirectional(rev)


def test_bad_options_and_bad_models_name_the_problem():
    with pytest.raises(LstmConvertError, match="merge must be one of"):
        to_bidirectional(_model(), merge="max")
    broken = _model()
    broken.layers[1].directions[0].w_ih = broken.layers[1].directions[0].w_ih[:, :4]
    with pytest.raises(ModelError, match=r"layers\[1\] expects input width 4 but receives 5"):
        broken.validate()


def test_concat_with_zero_backward_warns_that_it_cannot_train():
    from lstmconvert import UntrainableWarning

    with pytest.warns(UntrainableWarning, match="never trains"):
        to_bidirectional(_model(), backward="zeros", merge="concat")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainableWarning)
        to_bidirectional(_model(), backward="zeros", merge="sum")
        to_bidirectional(_model(), backward="copy", merge="concat")
