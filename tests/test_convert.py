"""The uni->bi converter's structural promises, on in-memory models (no framework needed).

Numeric function preservation is checked in the real runtimes by the format tests; here: which weights
are reused bit-for-bit, which are zero, what the converter refuses, and what it says it preserves.
"""

import warnings

import numpy as np
import pytest

from lstmconvert import LstmConvertError, ModelError, PreservationWarning, preservation, to_bidirectional

from factories import same_bits, tagger


@pytest.mark.parametrize("backward", ["copy", "random", "zeros"])
def test_forward_weights_are_reused_bit_for_bit(backward):
    src = tagger()
    bi = to_bidirectional(src, backward=backward)
    for old, new in zip(src.layers, bi.layers):
        fwd = new.directions[0]
        assert same_bits(fwd.w_hh, old.directions[0].w_hh)
        assert same_bits(fwd.b_ih, old.directions[0].b_ih) and same_bits(fwd.b_hh, old.directions[0].b_hh)
        width = old.input_size
        assert same_bits(np.ascontiguousarray(fwd.w_ih[:, :width]), old.directions[0].w_ih)
    assert same_bits(bi.embedding.weight, src.embedding.weight)
    assert same_bits(np.ascontiguousarray(bi.head[0].weight[:, :5]), src.head[0].weight)


def test_concat_consumers_get_zero_columns_for_the_backward_half():
    bi = to_bidirectional(tagger(), backward="random")
    assert bi.layers[1].directions[0].w_ih.shape == (20, 10)
    assert not bi.layers[1].directions[0].w_ih[:, 5:].any()
    assert bi.head[0].weight.shape == (3, 10) and not bi.head[0].weight[:, 5:].any()
    assert bi.meta["preservation"].status == "exact"


def test_backward_initialisations():
    src = tagger(layers=1)
    copy = to_bidirectional(src, backward="copy").layers[0].directions
    for name, array in copy[0].arrays().items():
        assert same_bits(array, getattr(copy[1], name))
    zeros = to_bidirectional(src, backward="zeros").layers[0].directions[1]
    assert all(not a.any() for a in zeros.arrays().values())
    r1 = to_bidirectional(src, backward="random", seed=1).layers[0].directions[1]
    r1_again = to_bidirectional(src, backward="random", seed=1).layers[0].directions[1]
    r2 = to_bidirectional(src, backward="random", seed=2).layers[0].directions[1]
    assert same_bits(r1.w_ih, r1_again.w_ih)
    assert not np.array_equal(r1.w_ih, r2.w_ih)
    bound = 1 / np.sqrt(src.layers[0].hidden_size)  # PyTorch's U(-1/sqrt(H), 1/sqrt(H))
    assert np.abs(r1.w_ih).max() <= bound and r1.w_ih.dtype == np.float32


def test_ave_doubles_consumers_exactly_and_sum_keeps_widths():
    src = tagger()
    ave = to_bidirectional(src, backward="zeros", merge="ave")
    assert same_bits(ave.head[0].weight, src.head[0].weight * np.float32(2))
    assert ave.layers[0].output_size == 5
    assert ave.meta["preservation"].status == "exact"
    summed = to_bidirectional(src, backward="zeros", merge="sum")
    assert same_bits(summed.head[0].weight, src.head[0].weight)


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
    src = tagger(head=head)
    assert preservation(src, merge=merge, backward=backward).status == status
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bi = to_bidirectional(src, merge=merge, backward=backward)
    assert bi.meta["preservation"].status == status
    assert any(issubclass(w.category, PreservationWarning) for w in caught) == (status != "exact")


def test_no_preserve_fills_consumers_with_random_weights():
    bi = to_bidirectional(tagger(), preserve=False)
    assert bi.head[0].weight[:, 5:].any()
    assert bi.meta["preservation"].status == "none"


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_dtype_is_kept(dtype):
    bi = to_bidirectional(tagger(dtype=dtype), backward="random")
    assert {a.dtype for a in bi.arrays().values()} == {np.dtype(dtype)}


def test_bias_free_layers_stay_bias_free():
    bi = to_bidirectional(tagger(bias=False), backward="random")
    assert all(not d.has_bias for layer in bi.layers for d in layer.directions)


def test_source_is_not_modified():
    src = tagger()
    before = {k: v.copy() for k, v in src.arrays().items()}
    to_bidirectional(src, backward="zeros", merge="ave")
    assert all(same_bits(before[k], v) for k, v in src.arrays().items())


def test_refuses_already_bidirectional_and_reverse_only_layers():
    bi = to_bidirectional(tagger())
    with pytest.raises(LstmConvertError, match="already bidirectional"):
        to_bidirectional(bi)
    rev = tagger(layers=1)
    rev.layers[0].reverse = True
    with pytest.raises(LstmConvertError, match="backward only"):
        to_bidirectional(rev)


def test_bad_options_and_bad_models_name_the_problem():
    with pytest.raises(LstmConvertError, match="merge must be one of"):
        to_bidirectional(tagger(), merge="max")
    broken = tagger()
    broken.layers[1].directions[0].w_ih = broken.layers[1].directions[0].w_ih[:, :4]
    with pytest.raises(ModelError, match=r"layers\[1\] expects input width 4 but receives 5"):
        broken.validate()


def test_concat_with_zero_backward_warns_that_it_cannot_train():
    from lstmconvert import UntrainableWarning

    with pytest.warns(UntrainableWarning, match="never trains"):
        to_bidirectional(tagger(), backward="zeros", merge="concat")
    with warnings.catch_warnings():
        warnings.simplefilter("error", UntrainableWarning)
        to_bidirectional(tagger(), backward="zeros", merge="sum")
        to_bidirectional(tagger(), backward="copy", merge="concat")
