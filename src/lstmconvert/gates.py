"""Gate-order facts, in one place (see the layouts fact sheet in the README's references).

lstmconvert's canonical order along the gate axis is i, f, g, o: PyTorch's ``nn.LSTM`` and Keras's
``LSTM`` use it too (Keras calls g "c"). ONNX's ``LSTM`` operator uses i, o, f, c:

    canonical [i, f, g, o] --TO_ONNX [0, 3, 1, 2]--> ONNX [i, o, f, g]
    ONNX [i, o, f, g]      --FROM_ONNX [0, 2, 3, 1]--> canonical [i, f, g, o]

ONNX peepholes ``P`` are three blocks in order i, o, f; lstmconvert keeps them as i, f, o.
"""

from __future__ import annotations

import numpy as np

TO_ONNX = (0, 3, 1, 2)
FROM_ONNX = (0, 2, 3, 1)
PEEPHOLE_TO_ONNX = (0, 2, 1)  # canonical (i, f, o) -> ONNX (i, o, f)
PEEPHOLE_FROM_ONNX = (0, 2, 1)  # ONNX (i, o, f) -> canonical (i, f, o)


def permute_blocks(array: np.ndarray, order: tuple, axis: int = 0) -> np.ndarray:
    """Reorder the equal-sized gate blocks of ``array`` along ``axis`` (no arithmetic: bit-exact)."""
    blocks = np.split(array, len(order), axis=axis)
    return np.concatenate([blocks[i] for i in order], axis=axis)
