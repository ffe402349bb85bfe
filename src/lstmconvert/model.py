"""The neutral model: what every reader produces and every writer consumes.

A sequence model is ``[Embedding] -> LSTM layer(s) -> [Dense head]``, framework-free (numpy only).
Conventions, fixed here once so no format module has to guess:

* Gate order is **i, f, g, o** (PyTorch's and Keras's order; ONNX's i, o, f, g is mapped in ``gates``).
* Matrices are stored PyTorch-style, output rows first: ``w_ih (4H, I)``, ``w_hh (4H, H_out)``,
  Dense ``weight (out, in)``. Keras kernels are the transposes.
* Both biases are kept (PyTorch ``b_ih``/``b_hh``, ONNX ``Wb``/``Rb``) so fp32 round trips stay
  bit-exact; ``None`` means "absent", i.e. zero. A format with one bias (Keras) stores it in ``b_ih``.
* Arrays keep the dtype the file had (float16, bfloat16 via ml_dtypes, float32, float64).
* Direction 0 is forward, direction 1 (if present) runs backward in time; both directions' outputs are
  in original time order and merged by ``LSTMLayer.merge``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from .errors import ModelError

# Activation functions an LSTM may use, with the parameters each takes. Names are lstmconvert's own;
# each format maps them (Keras "hard_sigmoid" is version-dependent, see formats' readers).
ACTIVATION_PARAMS = {
    "sigmoid": (),
    "tanh": (),
    "relu": (),
    "linear": (),
    "softsign": (),
    "softplus": (),
    "hard_sigmoid": ("alpha", "beta"),  # clip(alpha*x + beta, 0, 1)
    "elu": ("alpha",),
}

HEAD_ACTIVATIONS = ("linear", "softmax", "sigmoid", "relu", "tanh")
MERGE_MODES = ("concat", "sum", "ave", "mul")
READOUTS = ("sequence", "last")
INPUT_KINDS = ("tokens", "features")


@dataclass(frozen=True)
class Activation:
    """An activation function with its parameters (``alpha``/``beta`` only where it takes them)."""

    name: str
    alpha: Optional[float] = None
    beta: Optional[float] = None

    def __post_init__(self) -> None:
        if self.name not in ACTIVATION_PARAMS:
            raise ModelError(
                f"unknown activation {self.name!r}; known: {', '.join(ACTIVATION_PARAMS)}"
            )
        takes = ACTIVATION_PARAMS[self.name]
        for param in ("alpha", "beta"):
            if getattr(self, param) is not None and param not in takes:
                raise ModelError(f"activation {self.name!r} takes no {param}")
        if self.name == "hard_sigmoid" and (self.alpha is None or self.beta is None):
            raise ModelError("hard_sigmoid needs explicit alpha and beta (they differ by Keras version)")

    def __str__(self) -> str:
        params = [f"{p}={getattr(self, p):g}" for p in ("alpha", "beta") if getattr(self, p) is not None]
        return f"{self.name}({', '.join(params)})" if params else self.name


SIGMOID = Activation("sigmoid")
TANH = Activation("tanh")
DEFAULT_ACTIVATIONS = (SIGMOID, TANH, TANH)


@dataclass
class LSTMDirection:
    """The weights of one direction of one LSTM layer (gate order i, f, g, o).

    ``activations`` are (gate, cell input, cell output): ONNX's f, g, h; Keras's recurrent_activation,
    activation, activation; PyTorch's fixed sigmoid, tanh, tanh.
    """

    w_ih: np.ndarray  # (4H, I)
    w_hh: np.ndarray  # (4H, H_out)
    b_ih: Optional[np.ndarray] = None  # (4H,)
    b_hh: Optional[np.ndarray] = None  # (4H,)
    w_hr: Optional[np.ndarray] = None  # (proj_size, H): PyTorch projection
    peephole: Optional[np.ndarray] = None  # (3H,) in order i, f, o: ONNX P (reordered)
    activations: tuple = DEFAULT_ACTIVATIONS

    @property
    def hidden_size(self) -> int:
        return self.w_ih.shape[0] // 4

    @property
    def output_size(self) -> int:
        return self.w_hr.shape[0] if self.w_hr is not None else self.hidden_size

    @property
    def input_size(self) -> int:
        return self.w_ih.shape[1]

    @property
    def has_bias(self) -> bool:
        return self.b_ih is not None or self.b_hh is not None

    def arrays(self) -> dict:
        """The arrays present, by field name."""
        names = ("w_ih", "w_hh", "b_ih", "b_hh", "w_hr", "peephole")
        return {n: getattr(self, n) for n in names if getattr(self, n) is not None}

    def bias_sum(self) -> Optional[np.ndarray]:
        """b_ih + b_hh, the single bias of formats that have one (Keras); None if neither is set."""
        if self.b_ih is None and self.b_hh is None:
            return None
        if self.b_hh is None:
            return self.b_ih
        if self.b_ih is None:
            return self.b_hh
        return self.b_ih + self.b_hh

    def validate(self, where: str) -> None:
        _check_matrix(self.w_ih, f"{where}.w_ih")
        hidden = self.w_ih.shape[0] // 4
        if self.w_ih.shape[0] != 4 * hidden or hidden == 0:
            raise ModelError(f"{where}.w_ih has {self.w_ih.shape[0]} rows, not a positive multiple of 4")
        if self.w_hr is not None:
            _check_matrix(self.w_hr, f"{where}.w_hr")
            if self.w_hr.shape[1] != hidden:
                raise ModelError(f"{where}.w_hr is {self.w_hr.shape}, expected (proj_size, {hidden})")
        expect = (4 * hidden, self.output_size)
        _check_matrix(self.w_hh, f"{where}.w_hh")
        if self.w_hh.shape != expect:
            raise ModelError(f"{where}.w_hh is {self.w_hh.shape}, expected {expect}")
        for name in ("b_ih", "b_hh"):
            bias = getattr(self, name)
            if bias is not None and bias.shape != (4 * hidden,):
                raise ModelError(f"{where}.{name} is {bias.shape}, expected ({4 * hidden},)")
        if self.peephole is not None and self.peephole.shape != (3 * hidden,):
            raise ModelError(f"{where}.peephole is {self.peephole.shape}, expected ({3 * hidden},)")
        if len(self.activations) != 3 or not all(isinstance(a, Activation) for a in self.activations):
            raise ModelError(f"{where}.activations must be three Activation values (gate, cell, output)")
        dtypes = {a.dtype for a in self.arrays().values()}
        if len(dtypes) != 1:
            raise ModelError(f"{where} mixes dtypes {sorted(map(str, dtypes))}")


@dataclass
class LSTMLayer:
    """One LSTM layer with one or two directions.

    ``reverse`` marks a one-direction layer that runs backward in time (Keras ``go_backwards``,
    ONNX ``direction="reverse"``). ``reversed_output`` is Keras's quirk that such a layer returns its
    sequence in reversed time order. ``clip`` and ``input_forget`` are ONNX-only cell options.
    """

    directions: list
    merge: str = "concat"
    reverse: bool = False
    reversed_output: bool = False
    clip: Optional[float] = None
    input_forget: bool = False

    @property
    def bidirectional(self) -> bool:
        return len(self.directions) == 2

    @property
    def hidden_size(self) -> int:
        return self.directions[0].hidden_size

    @property
    def input_size(self) -> int:
        return self.directions[0].input_size

    @property
    def direction_output_size(self) -> int:
        return self.directions[0].output_size

    @property
    def output_size(self) -> int:
        """Width of the layer's (merged) output."""
        width = self.direction_output_size
        return 2 * width if self.bidirectional and self.merge == "concat" else width

    @property
    def proj_size(self) -> int:
        return self.directions[0].w_hr.shape[0] if self.directions[0].w_hr is not None else 0

    def validate(self, where: str) -> None:
        if len(self.directions) not in (1, 2):
            raise ModelError(f"{where} has {len(self.directions)} directions; expected 1 or 2")
        if self.merge not in MERGE_MODES:
            raise ModelError(f"{where}.merge is {self.merge!r}; expected one of {MERGE_MODES}")
        if self.bidirectional and self.reverse:
            raise ModelError(f"{where} is bidirectional and cannot also be reverse-only")
        if self.reversed_output and not self.reverse:
            raise ModelError(f"{where}.reversed_output only applies to a reverse-only layer")
        for d, direction in enumerate(self.directions):
            direction.validate(f"{where}.directions[{d}]")
        if self.bidirectional:
            fwd, bwd = self.directions
            for attr in ("hidden_size", "output_size", "input_size"):
                if getattr(fwd, attr) != getattr(bwd, attr):
                    raise ModelError(
                        f"{where}: directions differ in {attr} ({getattr(fwd, attr)} vs {getattr(bwd, attr)})"
                    )
            if fwd.w_ih.dtype != bwd.w_ih.dtype:
                raise ModelError(f"{where}: directions differ in dtype")
        if self.clip is not None and not self.clip > 0:
            raise ModelError(f"{where}.clip must be positive, got {self.clip}")


@dataclass
class Embedding:
    """Token embedding: ``weight (vocab, dim)``. ``padding_idx`` is PyTorch's (gradient-only) marker."""

    weight: np.ndarray
    padding_idx: Optional[int] = None

    @property
    def vocab_size(self) -> int:
        return self.weight.shape[0]

    @property
    def dim(self) -> int:
        return self.weight.shape[1]


@dataclass
class Dense:
    """A fully connected layer: ``y = activation(x @ weight.T + bias)``, ``weight (out, in)``."""

    weight: np.ndarray
    bias: Optional[np.ndarray] = None
    activation: str = "linear"

    @property
    def in_features(self) -> int:
        return self.weight.shape[1]

    @property
    def out_features(self) -> int:
        return self.weight.shape[0]


@dataclass
class SequenceModel:
    """``[embedding] -> layers -> [head...]`` plus what running it needs.

    * ``input_kind``: "tokens" (integer ids into the embedding) or "features" (float vectors).
    * ``batch_first``: input and output are (N, T, ...) if True, (T, N, ...) if False.
    * ``readout``: "sequence" (every time step) or "last" (final state of the last layer; for a
      bidirectional layer the forward state after the last step and the backward state after t=0,
      like Keras ``return_sequences=False`` and PyTorch ``h_n``).
    * ``masked``: padding steps are skipped (Keras ``mask_zero``/``Masking``, PyTorch packed
      sequences, ONNX ``sequence_lens``). Padding is token id 0, or a time step whose features all
      equal ``mask_value``; only right padding is meaningful across formats. Outputs at padding
      steps are unspecified (frameworks disagree: Keras repeats the last output or writes 0, ONNX
      Runtime and PyTorch packed sequences write 0), so comparisons look at real steps only.
    * ``meta``: what a format wants to remember about the source (names, versions); never required.
      One entry is shared by all formats: ``meta["fixed_sizes"]`` ({"batch": n, "steps": t}, either
      optional), the input sizes the file was saved with and is the only one to run at (an exporter
      given no dynamic axes); ``verify`` tests such a file at those sizes.
    """

    layers: list
    embedding: Optional[Embedding] = None
    head: list = field(default_factory=list)
    input_kind: str = "features"
    batch_first: bool = False
    readout: str = "sequence"
    masked: bool = False
    mask_value: float = 0.0
    meta: dict = field(default_factory=dict)

    # -- derived facts -------------------------------------------------------------------------
    @property
    def input_size(self) -> int:
        """Feature width of the first LSTM layer's input."""
        return self.layers[0].input_size

    @property
    def dtype(self) -> np.dtype:
        return self.layers[0].directions[0].w_ih.dtype

    @property
    def bidirectional(self) -> bool:
        return any(layer.bidirectional for layer in self.layers)

    @property
    def output_size(self) -> int:
        return self.head[-1].out_features if self.head else self.layers[-1].output_size

    def parameter_count(self) -> int:
        return sum(a.size for a in self.arrays().values())

    def arrays(self) -> dict:
        """Every weight array by a stable dotted name (used by inspect and exactness checks)."""
        out: dict = {}
        if self.embedding is not None:
            out["embedding.weight"] = self.embedding.weight
        for k, layer in enumerate(self.layers):
            for d, direction in enumerate(layer.directions):
                for name, array in direction.arrays().items():
                    out[f"layers.{k}.{'reverse' if d else 'forward'}.{name}"] = array
        for j, dense in enumerate(self.head):
            out[f"head.{j}.weight"] = dense.weight
            if dense.bias is not None:
                out[f"head.{j}.bias"] = dense.bias
        return out

    def replace(self, **changes: Any) -> "SequenceModel":
        return dataclasses.replace(self, **changes)

    def astype(self, dtype: Any) -> "SequenceModel":
        """A copy with every weight cast to ``dtype`` (an explicit, user-requested precision change)."""
        dtype = np.dtype(dtype)

        def cast(array: Optional[np.ndarray]) -> Optional[np.ndarray]:
            return None if array is None else array.astype(dtype)

        layers = [
            dataclasses.replace(layer, directions=[
                dataclasses.replace(d, **{name: cast(a) for name, a in d.arrays().items()})
                for d in layer.directions
            ])
            for layer in self.layers
        ]
        embedding = None if self.embedding is None else dataclasses.replace(self.embedding, weight=cast(self.embedding.weight))
        head = [dataclasses.replace(d, weight=cast(d.weight), bias=cast(d.bias)) for d in self.head]
        return self.replace(layers=layers, embedding=embedding, head=head, meta=dict(self.meta))

    # -- invariants ----------------------------------------------------------------------------
    def validate(self) -> "SequenceModel":
        """Check that shapes chain from layer to layer; raise ModelError naming the bad field."""
        if not self.layers:
            raise ModelError("model has no LSTM layer")
        if self.input_kind not in INPUT_KINDS:
            raise ModelError(f"input_kind is {self.input_kind!r}; expected one of {INPUT_KINDS}")
        if self.readout not in READOUTS:
            raise ModelError(f"readout is {self.readout!r}; expected one of {READOUTS}")
        if (self.input_kind == "tokens") != (self.embedding is not None):
            raise ModelError("input_kind 'tokens' needs an embedding, and an embedding needs 'tokens'")
        width = None
        if self.embedding is not None:
            _check_matrix(self.embedding.weight, "embedding.weight")
            width = self.embedding.dim
        for k, layer in enumerate(self.layers):
            layer.validate(f"layers[{k}]")
            if width is not None and layer.input_size != width:
                raise ModelError(
                    f"layers[{k}] expects input width {layer.input_size} but receives {width}"
                )
            width = layer.output_size
        for j, dense in enumerate(self.head):
            _check_matrix(dense.weight, f"head[{j}].weight")
            if dense.in_features != width:
                raise ModelError(f"head[{j}].weight expects input width {dense.in_features} but receives {width}")
            if dense.bias is not None and dense.bias.shape != (dense.out_features,):
                raise ModelError(f"head[{j}].bias is {dense.bias.shape}, expected ({dense.out_features},)")
            if dense.activation not in HEAD_ACTIVATIONS:
                raise ModelError(f"head[{j}].activation {dense.activation!r} is not one of {HEAD_ACTIVATIONS}")
            width = dense.out_features
        return self


def _check_matrix(array: object, where: str) -> None:
    if not isinstance(array, np.ndarray) or array.ndim != 2:
        shape = getattr(array, "shape", type(array).__name__)
        raise ModelError(f"{where} must be a 2-D array, got {shape}")
