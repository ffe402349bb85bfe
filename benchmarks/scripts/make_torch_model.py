"""Write a randomly initialised unidirectional ``Tagger`` state_dict of the given sizes.

    python make_torch_model.py OUT.pt --vocab 50000 --embed 512 --hidden 2048 --layers 4 --tags 50 [--conv]

``--conv`` writes a ``ConvTagger`` instead (a Conv1d between the embedding and the LSTM).
"""

from __future__ import annotations

import argparse

import torch

from user_model import ConvTagger, Tagger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out")
    for name in ("vocab", "embed", "hidden", "layers", "tags"):
        parser.add_argument(f"--{name}", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--conv", action="store_true", help="a ConvTagger (Conv1d front end)")
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    with torch.no_grad():
        model = (ConvTagger if args.conv else Tagger)(args.vocab, args.embed, args.hidden, args.layers, args.tags)
    torch.save(model.state_dict(), args.out)


if __name__ == "__main__":
    main()
