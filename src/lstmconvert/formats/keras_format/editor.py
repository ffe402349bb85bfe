"""In-place widening of a Keras model of any shape: ``edit`` and ``describe_edit``.

The source file's own config is edited (``edit_config``) after ``edit_graph`` has found the LSTMs and
the layers reading them; Keras 3 rebuilds the edited config (in safe mode: no lambdas), every layer
gets its source weights back (the LSTMs bit for bit as the forward layers of their Bidirectional, the
consumers with backward rows inserted by ``widening.widen_consumer``), and Keras's own saver writes
``.keras`` or ``.h5``. Layers widening does not touch keep their config and weights.

Source weights: for files Keras 3 wrote, Keras 3's own ``load_weights`` into the source config
rebuilt in safe mode; for a tf.keras / Keras 2 ``.h5`` (which Keras 3 cannot load: its LSTM configs
carry ``time_major``), read with h5py from each layer's ``model_weights`` group in the order Keras's
HDF5 loader assigns them (trainable, then non-trainable variables). The output is a Keras 3 file.
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from pathlib import Path

import numpy as np

from ...convert import Preservation, PreservationWarning, UntrainableWarning, consumer_problem, exact_reason
from ...errors import LstmConvertError, UnsupportedError
from ...model import LSTMDirection
from ...options import EditRequest, EditResult
from ...widening import Initialiser, backward_direction, widen_consumer
from .container import WEIGHTS, open_keras_file
from .edit_config import (edited_config, for_keras3, recurrent_initializers, refuse_code,
                          without_recurrent_initializers)
from .edit_graph import RECURRENT_CONSUMERS, Plan, graph_nodes, plan_edit
from .frameworks import import_keras

_MASKS = ("Masking",)


def edit(src: Path, dst: Path, request: EditRequest) -> EditResult:
    """Write ``dst`` (``.keras`` or ``.h5``): ``src`` with its LSTMs bidirectional and their readers widened."""
    if dst.suffix.lower() not in (".keras", ".h5", ".hdf5"):
        raise LstmConvertError(f"{dst.name}: a Keras file name must end in .keras, .h5 or .hdf5")
    if request.consumers:
        raise UnsupportedError("--consumer names the readers of a PyTorch state_dict; a Keras file's graph "
                               "tells its consumers itself")
    source = _Source(src)
    plan = plan_edit(source.config, source, request)
    verdict = _preservation(plan, request)
    if verdict.status != "exact":
        warnings.warn(f"the widened model is not function-preserving: {verdict.reason}", PreservationWarning,
                      stacklevel=2)
    if request.backward == "zeros" and request.merge == "concat" and request.preserve:
        warnings.warn("--backward zeros with --merge concat gives a backward direction that never trains (its output "
                      "and the weights reading it are all zero)", UntrainableWarning, stacklevel=2)
    keras = import_keras()
    new_config = edited_config(source.config, plan, request.merge)
    new_arrays = _new_weights(plan, source, request)
    with _keras_quiet(), _safe_mode(keras):
        model = _from_config(keras, without_recurrent_initializers(new_config))
        for layer in model.layers:
            arrays = new_arrays.get(layer.name)
            _assign(layer, arrays if arrays is not None else source.arrays(layer.name))
        _restore_recurrent_initializers(keras, model, recurrent_initializers(new_config))
        model.save(str(dst))
    return EditResult(widened=list(plan.lstms), consumers=list(plan.consumers), preservation=verdict,
                      notes=_notes(plan, source, request))


def describe_edit(path: Path, request: EditRequest) -> list:
    """One dict per top-level layer: name, type, role (lstm/consumer/through/other), what widening changes.

    A widening the plan refuses is shown on the layer that stops it (``change`` starts with "refused:").
    """
    source = _Source(path, weights=False)
    holder, refusal = [], None
    try:
        plan = plan_edit(source.config, source, request, holder)
    except UnsupportedError as exc:
        if not holder or holder[0].refused_at is None:
            raise
        plan, refusal = holder[0], (holder[0].refused_at, f"refused: {exc}")
    double = request.merge == "concat"
    rows = []
    for name in plan.order:
        node = plan.nodes[name]
        role, change = "other", ""
        if refusal is not None and name == refusal[0]:
            rows.append({"name": name, "type": node.class_name, "role": role, "change": refusal[1]})
            continue
        if name in plan.lstms:
            role = "lstm"
            change = f"wrapped in Bidirectional(merge_mode={request.merge!r}), backward={request.backward}"
        elif name in plan.decoders:
            change = "stays unidirectional: starts from the states it is given (a decoder)"
        if name in plan.consumers:
            blocks = plan.consumers[name].blocks
            widened = "input features doubled" if double else "input width unchanged"
            change = "; ".join(filter(None, [change, f"{widened} ({len(blocks)} block(s) of LSTM features)"]))
            role = "lstm" if role == "lstm" else "consumer"
        elif name in plan.through:
            role, change = "through", ("passes the wider features on" if double else "")
        rows.append({"name": name, "type": node.class_name, "role": role, "change": change})
    return rows


class _Source:
    """The source model rebuilt in Keras 3 (for shapes) and its weights per top-level layer."""

    def __init__(self, path: Path, weights: bool = True) -> None:
        self.path = path
        with open_keras_file(path) as handle:
            self.kind, self.major = handle.kind, handle.keras_major
            raw = handle.config
            refuse_code(raw)
            self.legacy = self.major is None or self.major < 3
            if self.legacy and self.kind == "keras":
                raise UnsupportedError("a .keras archive written by tf.keras; Keras 3 cannot load its "
                                       "weights. Save the model as .h5 with tf.keras and widen that")
            self.config = for_keras3(raw) if self.legacy else raw
            if self.legacy:
                _refuse_states_as_inputs(self.config)
            self._h5 = {}
            if self.legacy and weights:
                self._h5 = {name: [handle.weight(name, wn, name) for wn in handle.weight_names(name, name)]
                            for name in _layer_names(self.config) if name in handle._weights}
        keras = import_keras()
        with _keras_quiet(), _safe_mode(keras):
            self.model = _from_config(keras, without_recurrent_initializers(self.config))
            if not self.legacy and weights:
                # Keras 3's own loader, .keras or .h5; a zipped=False folder's weights file is a .weights.h5
                self.model.load_weights(str(path / WEIGHTS if path.is_dir() else path))

    def arrays(self, name: str) -> list:
        if self.legacy:
            return self._h5.get(name, [])
        layer = self.model.get_layer(name)
        return [np.asarray(v.numpy()) for v in _variables(layer)]

    # shapes for edit_graph
    def inputs(self, name: str) -> list:
        tensors = self.model.get_layer(name).input
        tensors = tensors if isinstance(tensors, (list, tuple)) else [tensors]
        return [tuple(t.shape) for t in tensors]


def _refuse_states_as_inputs(config: dict) -> None:
    """tf.keras / Keras 2 record ``rnn(x, initial_state=[h, c])`` as a call on [x, h, c], which Keras 3
    rebuilds as three inputs to a one-input layer: say so, instead of Keras 3's error."""
    nodes, _, _ = graph_nodes(config)
    for node in nodes.values():
        recurrent = node.class_name in RECURRENT_CONSUMERS or node.class_name == "Bidirectional"
        if recurrent and node.calls and len(node.calls[0][0]) > 1:
            raise UnsupportedError(
                f"{node.label()} is called with its initial states as extra inputs (a tf.keras / Keras 2 "
                "encoder-decoder), which Keras 3 cannot rebuild; export it to ONNX (tf2onnx) and widen that, "
                "where encoder-decoder graphs are handled")


def _layer_names(config: dict) -> list:
    return [(e.get("config") or {}).get("name") or e.get("name") for e in config["config"]["layers"]]


def _from_config(keras, model_config: dict):
    cls = keras.Sequential if model_config["class_name"] == "Sequential" else keras.Model
    model = cls.from_config(copy.deepcopy(model_config["config"]))  # a copy: Keras pops keys from it
    if not model.built and isinstance(model_config.get("build_config"), dict):
        model.build_from_config(model_config["build_config"])  # a Sequential built by model.build(shape)
    return model


@contextlib.contextmanager
def _keras_quiet():
    """Keras's advice on how to write a model (``input_shape=`` and such) concerns the source's author, not
    the user widening it; only Keras's own UserWarnings, only here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module=r"keras\.")
        yield


def _restore_recurrent_initializers(keras, model, configured: dict) -> None:
    """Give the recurrent layers their configured initializers back, so the saved config is the source's."""
    for name, initializers in configured.items():
        layer = model.get_layer(name)
        if hasattr(layer, "forward_layer"):
            pairs = [(layer.forward_layer, initializers.get("layer")),
                     (layer.backward_layer, initializers.get("backward_layer", initializers.get("layer")))]
        else:
            pairs = [(layer, initializers.get("layer"))]
        for rnn, initializer in pairs:
            if initializer is not None:
                rnn.cell.recurrent_initializer = keras.initializers.get(initializer)


def _safe_mode(keras):
    """Keras 3's deserialization scope that refuses lambdas (``from_config`` alone does not enforce it)."""
    from keras.src.saving.serialization_lib import SafeModeScope

    return SafeModeScope(True)


def _variables(layer) -> list:
    """A layer's variables in the order Keras's HDF5 loader assigns them: trainable, then the rest."""
    return list(layer.trainable_weights) + list(layer.non_trainable_weights)


def _assign(layer, arrays: list) -> None:
    variables = _variables(layer)
    if len(variables) != len(arrays):
        raise LstmConvertError(f"layer '{layer.name}' has {len(variables)} variables in the rebuilt model "
                               f"but {len(arrays)} in the file")
    for variable, array in zip(variables, arrays):
        if tuple(variable.shape) != tuple(array.shape):
            raise LstmConvertError(f"layer '{layer.name}' variable {variable.path} is {tuple(variable.shape)} "
                                   f"in the rebuilt model but {array.shape} in the file")
        variable.assign(array)


def _new_weights(plan: Plan, source: _Source, request: EditRequest) -> dict:
    """The arrays of every layer widening changes, by name, in ``_variables`` order."""
    init = Initialiser(request.seed, style="keras")
    merge, preserve = request.merge, request.preserve
    out = {}
    for name, consumer in plan.consumers.items():
        arrays = list(source.arrays(name))
        blocks = consumer.blocks

        def widen(k: int, axis: int, rows: bool = False) -> None:
            arrays[k] = widen_consumer(arrays[k], merge=merge, preserve=preserve, init=init, axis=axis,
                                       blocks=blocks, fan_in_rows=rows)

        if consumer.kind == "dense":
            widen(0, 0)
        elif consumer.kind == "conv1d":
            widen(0, 1)
        elif consumer.kind == "recurrent":
            widen(0, 0, rows=True)
        elif consumer.kind == "bidirectional":
            widen(0, 0, rows=True)
            widen(len(arrays) // 2, 0, rows=True)
        elif consumer.kind == "normalization" and merge == "concat":
            arrays = _widen_normalization(consumer.node, arrays, blocks)
        out[name] = arrays
    for name in plan.lstms:
        forward = out.get(name) or list(source.arrays(name))
        direction = LSTMDirection(w_ih=forward[0].T, w_hh=forward[1].T, b_ih=forward[2] if len(forward) > 2 else None)
        backward = backward_direction(direction, request.backward, init)
        out[name] = forward + [np.ascontiguousarray(backward.w_ih.T), np.ascontiguousarray(backward.w_hh.T)] + (
            [backward.b_ih] if backward.b_ih is not None else [])
    return out


def _widen_normalization(node, arrays: list, blocks: list) -> list:
    """LayerNormalization / BatchNormalization parameters for the new features: the identity's (--no-preserve)."""
    cfg = node.config
    if node.class_name == "LayerNormalization":
        fills = ([1.0] if cfg.get("scale", True) else []) + ([0.0] if cfg.get("center", True) else [])
    else:
        fills = ([1.0] if cfg.get("scale", True) else []) + ([0.0] if cfg.get("center", True) else []) + [0.0, 1.0]
    out = []
    for array, fill in zip(arrays, fills):
        pieces, cursor = [], 0
        for block in sorted(blocks, key=lambda b: b.start):
            end = block.start + block.width
            pieces += [array[cursor:end], np.full(block.width, fill, array.dtype)]
            cursor = end
        out.append(np.concatenate(pieces + [array[cursor:]]))
    return out


def _preservation(plan: Plan, request: EditRequest) -> Preservation:
    merge, backward, preserve = request.merge, request.backward, request.preserve
    if plan.mixing:
        return Preservation("none", f"--no-preserve widens {', '.join(plan.mixing)}, which mix(es) the features "
                                    "non-linearly")
    if plan.scores and backward != "zeros":
        return Preservation("none", f"Attention {', '.join(map(repr, plan.scores))} compares the LSTM's features "
                                    "across steps, and a non-zero backward direction changes its scores "
                                    "(--backward zeros keeps them)")
    if plan.consumers:
        problem = consumer_problem(merge, backward, preserve)
        if problem:
            return Preservation("none", f"{', '.join(plan.consumers)}: {problem}")
        if merge == "ave" and plan.not_homogeneous:
            return Preservation("none", f"merge 'ave' halves the LSTM output before {', '.join(plan.not_homogeneous)}, "
                                        "which does not commute with halving")
    if plan.outputs:
        outs = ", ".join(dict.fromkeys(plan.outputs))
        if merge == "concat":
            return Preservation("forward-half", f"the output of {outs} reaches a model output unread, so that output "
                                                "doubles in width; its forward half equals the source's output")
        if not (merge == "sum" and backward == "zeros"):
            return Preservation("none", f"the output of {outs} reaches a model output unread, and only --merge sum "
                                        "--backward zeros keeps it")
    return Preservation("exact", exact_reason(merge))


def _notes(plan: Plan, source: _Source, request: EditRequest) -> list:
    notes = []
    for name in plan.decoders:
        notes.append(f"LSTM '{name}' starts from the states it is given (a decoder) and stays unidirectional")
    for name in plan.lstms:
        if plan.nodes[name].config.get("return_state"):
            notes.append(f"LSTM '{name}' returns its states: their readers get the forward direction's, as "
                         "before (a Bidirectional returns the forward states first)")
    if source.legacy:
        notes.append("the source was written by tf.keras / Keras 2; the output is a Keras 3 file "
                     "(load it with keras.saving.load_model)")
    if any(node.class_name in _MASKS or node.config.get("mask_zero") for node in plan.nodes.values()):
        notes.append("masked steps of a widened sequence output are zeros (Bidirectional sets "
                     "zero_output_for_mask); real steps are unchanged")
    notes.append("the output is not compiled: compile it again before training")
    return notes
