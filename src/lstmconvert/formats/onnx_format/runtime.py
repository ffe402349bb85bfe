"""``run``: execute an ONNX file in onnxruntime (CPU) on batch-major inputs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx

from ...errors import LstmConvertError
from ...model import SequenceModel
from .external_data import load_model

_PROTOBUF_LIMIT = 2**31 - 1
# onnxruntime's NchwcTransformer (blocked Conv/Pool layouts, active on AVX-512 x86 CPUs) dereferences
# a null pointer on float16 Transpose -> MatMul chains and kills the process while the session is
# created (microsoft/onnxruntime#28392; PyTorch's float16 exports all have that chain). It rewrites
# only convolution-style ops, none of which an LSTM graph contains, so turning it off changes no number.
_DISABLED_OPTIMIZERS = ["NchwcTransformer"]


def run(path: Path, model: SequenceModel, inputs: np.ndarray) -> np.ndarray:
    """Run ``path`` on ``inputs`` ((N, T) ids or (N, T, F) features, batch-major); batch-major result.

    ``model`` is what the reader read from ``path``: it tells the layout and, for files that take
    the sequence lengths as a second input, that those lengths are to be counted from the padding.
    """
    import onnxruntime

    inference = _inference(onnxruntime, path)
    meta = model.meta.get("onnx", {})
    declared = {i.name: i for i in inference.get_inputs()}
    data_name = (meta.get("input_names") or [inference.get_inputs()[0].name])[0]
    output_name = (meta.get("output_names") or [inference.get_outputs()[0].name])[0]
    inputs = np.asarray(inputs)
    feed = {data_name: _to_layout(inputs, model.batch_first).astype(_numpy_type(declared[data_name].type))}
    _check_fixed_axes(declared[data_name], feed[data_name].shape, model.batch_first)
    lengths_input = meta.get("lengths_input")
    if lengths_input:
        feed[lengths_input] = _count_real_steps(inputs, model).astype(_numpy_type(declared[lengths_input].type))
    try:
        (output,) = inference.run([output_name], feed)
    except Exception as exc:
        raise LstmConvertError(f"onnxruntime failed to run it: {_first_line(exc)}") from exc
    if model.readout == "sequence" and not model.batch_first:
        output = np.swapaxes(output, 0, 1)
    return output


def _inference(onnxruntime, path: Path):
    # The file is loaded through the same checked external-data loader the reader uses, so the
    # runtime never follows a data path of the file's choosing.
    proto = load_model(path)
    try:
        if proto.ByteSize() < _PROTOBUF_LIMIT:
            return onnxruntime.InferenceSession(proto.SerializeToString(), providers=["CPUExecutionProvider"],
                                                disabled_optimizers=_DISABLED_OPTIMIZERS)
        return onnxruntime.InferenceSession(str(path), providers=["CPUExecutionProvider"],
                                            disabled_optimizers=_DISABLED_OPTIMIZERS)
    except Exception as exc:
        raise LstmConvertError(f"onnxruntime cannot load it: {_first_line(exc)}") from exc


def _check_fixed_axes(declared, shape: tuple, batch_first: bool) -> None:
    """Exporters given no dynamic axes fix the example's batch size and length; say so plainly."""
    names = ("batch", "time") if batch_first else ("time", "batch")
    for axis, (name, size) in enumerate(zip(names, shape)):
        fixed = declared.shape[axis] if axis < len(declared.shape) else None
        if isinstance(fixed, int) and fixed != size:
            option = "--batch" if name == "batch" else "--steps"
            raise LstmConvertError(
                f"its input {declared.name!r} has a fixed {name} axis of size {fixed} (exported without dynamic "
                f"axes), so it cannot run on size {size}; lstmconvert verify {option} {fixed} tests it at that size"
            )


def _to_layout(batch_major: np.ndarray, batch_first: bool) -> np.ndarray:
    return batch_major if batch_first else np.swapaxes(batch_major, 0, 1)


def _count_real_steps(inputs: np.ndarray, model: SequenceModel) -> np.ndarray:
    """Lengths of right-padded sequences: steps that are not padding (id 0 / all features = mask_value)."""
    if model.input_kind == "tokens":
        real = inputs != 0
    else:
        real = np.any(inputs != model.mask_value, axis=-1)
    return real.sum(axis=1)


def _numpy_type(ort_type: str) -> np.dtype:
    """onnxruntime's "tensor(float)" -> numpy float32."""
    name = ort_type.removeprefix("tensor(").removesuffix(")")
    elem = {"float": onnx.TensorProto.FLOAT, "double": onnx.TensorProto.DOUBLE, "float16": onnx.TensorProto.FLOAT16,
            "bfloat16": onnx.TensorProto.BFLOAT16, "int64": onnx.TensorProto.INT64, "int32": onnx.TensorProto.INT32}
    if name not in elem:
        raise LstmConvertError(f"cannot feed an input of type {ort_type}")
    return onnx.helper.tensor_dtype_to_np_dtype(elem[name])


def _first_line(exc: BaseException) -> str:
    """onnxruntime's message on one line (its details, such as the offending indices, follow the first)."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    return " ".join(lines[:4]) if lines else type(exc).__name__
