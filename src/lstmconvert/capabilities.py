"""What each format's files can carry, in one record per format, and the one check that refuses the rest.

A writer asks ``check_carries(model, "keras")`` before it encodes anything; ``convert`` asks which
initialiser style a source format's fresh weights follow; ``roundtrip`` asks how many biases a format
keeps. The facts live here, next to ``registry.FormatInfo``, so that no consumer names a format to
decide; how a format *encodes* what it can carry (gate orders, bias folding, activation names, file
containers) stays in its package. Imports no framework.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional

from typing import TYPE_CHECKING

from .errors import UnsupportedError

if TYPE_CHECKING:  # the registry imports this module; numpy and the model load only when a check runs
    from .model import SequenceModel


@dataclass(frozen=True)
class Capabilities:
    """What an LSTM in one format can hold exactly."""

    lstm: str  # how refusals name the format's LSTM, e.g. "PyTorch's LSTM"
    holder: str  # how refusals name the whole written model, e.g. "a PyTorch module"
    biases: int  # 2: b_ih and b_hh kept apart; 1: one bias per gate, written (and read back) as b_ih + b_hh
    proj_size: bool  # a projection of the hidden state (PyTorch's proj_size)
    peepholes: bool
    clip: bool  # a cell clip
    input_forget: bool  # a coupled input-forget gate
    activations: str  # "fixed": sigmoid/tanh/tanh only; "shared-cell": one for the cell input and output; "any"
    masking: bool  # padded steps skipped (a mask, packed sequences, sequence lengths)
    time_major: bool  # takes (time, batch, ...) input as it is; False: written batch-major, with a warning
    dtypes: tuple  # weight dtypes written
    one_dtype: bool  # every array of the model shares one dtype
    initialiser: str  # "torch" or "keras": how the framework draws fresh weights (``widening.Initialiser``)
    notes: Mapping[str, str] = field(default_factory=dict)  # why a refusal holds, per feature, when not obvious


CAPABILITIES = {
    "torch": Capabilities(
        lstm="PyTorch's LSTM", holder="a PyTorch module", biases=2, proj_size=True, peepholes=False, clip=False,
        input_forget=False, activations="fixed", masking=True, time_major=True,
        dtypes=("float16", "bfloat16", "float32", "float64"), one_dtype=True, initialiser="torch",
    ),
    "keras": Capabilities(
        lstm="Keras LSTM", holder="a Keras model", biases=1, proj_size=False, peepholes=False, clip=False,
        input_forget=False, activations="shared-cell", masking=True, time_major=False,
        dtypes=("float16", "bfloat16", "float32", "float64"), one_dtype=False, initialiser="keras",
    ),
    "onnx": Capabilities(
        lstm="the ONNX LSTM operator", holder="an ONNX graph", biases=2, proj_size=False, peepholes=True, clip=True,
        input_forget=True, activations="any", masking=True, time_major=True,
        # float64 and bfloat16 are valid ONNX, but onnxruntime (1.32, CPU) has no LSTM kernel for them,
        # and a written file must run there.
        dtypes=("float16", "float32"), one_dtype=True, initialiser="torch",
        notes={
            "proj_size": "the projection feeds back into the recurrence, so it cannot be added around the node",
            "dtype": "onnxruntime has no {dtype} LSTM kernel, so the file would not run; convert with --dtype "
                     "float32 (or float16) to cast explicitly",
        },
    ),
}


def capabilities(format_name: str) -> Capabilities:
    return CAPABILITIES[format_name]


def initialiser_style(format_name: Optional[str]) -> str:
    """The initialiser style of models read from ``format_name`` (PyTorch's when unknown)."""
    caps = CAPABILITIES.get(format_name) if format_name else None
    return caps.initialiser if caps is not None else "torch"


def check_carries(model: "SequenceModel", format_name: str) -> None:
    """Raise UnsupportedError naming every part of ``model`` the format cannot carry exactly."""
    problem = carry_problem(model, format_name)
    if problem is not None:
        raise UnsupportedError(problem)


def carry_problem(model: "SequenceModel", format_name: str) -> Optional[str]:
    """Why ``format_name`` cannot carry ``model`` exactly (every reason, in model order), or None."""
    problems = carry_problems(model, format_name)
    return "; ".join(problems) if problems else None


def carry_problems(model: "SequenceModel", format_name: str) -> list:
    """One sentence per part of ``model`` the format cannot carry: layer by layer, then dtypes."""
    from .model import DEFAULT_ACTIVATIONS

    caps = CAPABILITIES[format_name]
    problems = []

    def refuse(feature: str, text: str, **values) -> None:
        note = caps.notes.get(feature)
        problems.append(f"{text}; {note.format(**values)}" if note else text)

    for k, layer in enumerate(model.layers):
        where = f"layer {k}"
        if layer.proj_size and not caps.proj_size:
            refuse("proj_size", f"{where} has a projection (proj_size={layer.proj_size}); {caps.lstm} has none")
        for d, direction in enumerate(layer.directions):
            side = f"{where} ({'reverse' if d else 'forward'} direction)"
            if direction.peephole is not None and not caps.peepholes:
                refuse("peepholes", f"{side} has peephole connections; {caps.lstm} has none")
            acts = direction.activations
            if caps.activations == "fixed" and tuple(acts) != DEFAULT_ACTIVATIONS:
                names = "/".join(str(a) for a in acts)
                refuse("activations", f"{side} uses activations {names}; {caps.lstm} is fixed to sigmoid/tanh/tanh")
            if caps.activations == "shared-cell" and acts[1] != acts[2]:
                refuse("activations", f"{side} has cell input activation {acts[1]} and cell output activation "
                                      f"{acts[2]}; {caps.lstm} uses one activation for both")
        if layer.clip is not None and not caps.clip:
            refuse("clip", f"{where} clips its gate inputs at {layer.clip:g}; {caps.lstm} has no clip")
        if layer.input_forget and not caps.input_forget:
            refuse("input_forget", f"{where} couples the input and forget gates (input_forget); {caps.lstm} has "
                                   "no coupled input-forget gate")
    dtypes = sorted({a.dtype.name for a in model.arrays().values()})
    if caps.one_dtype and len(dtypes) > 1:
        refuse("one_dtype", f"the model mixes dtypes {dtypes}; {caps.holder} has one")
    for dtype in dtypes:
        if dtype not in caps.dtypes:
            refuse("dtype", f"the weights are {dtype}; {caps.lstm} carries {'/'.join(caps.dtypes)} weights", dtype=dtype)
    return problems
