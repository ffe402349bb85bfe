"""What a PyTorch user writes today to widen a trained tagger and export it to ONNX.

    python user_torch_to_onnx.py tagger.pt tagger_bi.onnx [--no-dynamo]

Build the same module with ``bidirectional=True``, copy every trained weight, let the reverse
direction start as a copy of the forward one, give the new input columns of the next layer and of
the head zero weights (so the widened model computes what the trained one did), then
``torch.onnx.export`` with dynamic time and batch axes: the dynamo exporter (torch's default) or
the TorchScript one (``--no-dynamo``).
"""

from __future__ import annotations

import argparse
import re
import warnings

import torch

from user_model import Tagger, sizes_of


def widen(state: dict) -> dict:
    """The uni state_dict as the bidirectional Tagger's: reverse = forward, zeros on new inputs."""
    wide = {}
    for key, value in state.items():
        match = re.fullmatch(r"lstm\.(weight_ih|weight_hh|bias_ih|bias_hh)_l(\d+)", key)
        if match and match.group(1) == "weight_ih" and int(match.group(2)) > 0:
            value = torch.cat([value, torch.zeros_like(value)], dim=1)
        if key == "fc.weight":
            value = torch.cat([value, torch.zeros_like(value)], dim=1)
        wide[key] = value
        if match:
            wide[key + "_reverse"] = value.clone()
    return wide


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("src")
    parser.add_argument("dst")
    parser.add_argument("--no-dynamo", dest="dynamo", action="store_false")
    parser.add_argument("--example-steps", type=int, default=3, help="time steps of the tracing example")
    args = parser.parse_args()

    state = torch.load(args.src, weights_only=True)
    model = Tagger(**sizes_of(state), bidirectional=True)
    model.load_state_dict(widen(state))
    model.eval()
    example = (torch.ones((args.example_steps, 2), dtype=torch.int64),)
    names = {"input_names": ["tokens"], "output_names": ["logits"]}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if args.dynamo:
            dims = {0: torch.export.Dim("time"), 1: torch.export.Dim("batch")}
            torch.onnx.export(model, example, args.dst, dynamo=True, dynamic_shapes=(dims,), **names)
        else:
            axes = {"tokens": {0: "time", 1: "batch"}, "logits": {0: "time", 1: "batch"}}
            torch.onnx.export(model, example, args.dst, dynamo=False, dynamic_axes=axes, **names)


if __name__ == "__main__":
    main()
