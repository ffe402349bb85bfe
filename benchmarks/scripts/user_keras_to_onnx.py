"""What a Keras user writes today to widen a trained tagger and export it to ONNX (or save it).

    python user_keras_to_onnx.py tagger.keras tagger_bi.onnx     # model.export(format="onnx")
    python user_keras_to_onnx.py tagger.keras tagger_bi.keras    # model.save

Load the trained Sequential ``Embedding -> LSTM ... -> Dense``, rebuild it with every LSTM wrapped
in ``Bidirectional``, copy the weights (the backward layer starts as a copy of the forward one, the
new input rows of the next layer and of the head are zero, so the widened model computes what the
trained one did), call it once (export needs a built graph), then export or save it.
"""

from __future__ import annotations

import argparse
import os
import warnings

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def widened(kernel: np.ndarray) -> np.ndarray:
    """A kernel (in, out) taking an input twice as wide, the new rows zero."""
    return np.concatenate([kernel, np.zeros_like(kernel)], axis=0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("src")
    parser.add_argument("dst")
    args = parser.parse_args()

    import keras
    from keras import layers

    trained = keras.saving.load_model(args.src, compile=False)
    rebuilt, weights = [keras.Input(shape=(None,), dtype="int64")], []
    previous_lstm = False
    for layer in trained.layers:
        config = layer.get_config()
        config.pop("name", None)
        values = layer.get_weights()
        if isinstance(layer, layers.LSTM):
            if previous_lstm:
                values[0] = widened(values[0])
            rebuilt.append(layers.Bidirectional(layers.LSTM.from_config(config), merge_mode="concat"))
            weights.append(values + [v.copy() for v in values])
            previous_lstm = True
        elif isinstance(layer, layers.Dense) and previous_lstm:
            rebuilt.append(layers.Dense.from_config(config))
            weights.append([widened(values[0])] + values[1:])
            previous_lstm = False
        else:
            rebuilt.append(type(layer).from_config(config))
            weights.append(values)
    model = keras.Sequential(rebuilt)
    for layer, values in zip(model.layers, weights):
        layer.set_weights(values)
    model(np.ones((1, 4), dtype="int64"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if args.dst.endswith(".onnx"):
            model.export(args.dst, format="onnx", verbose=False)
        else:
            model.save(args.dst)


if __name__ == "__main__":
    main()
