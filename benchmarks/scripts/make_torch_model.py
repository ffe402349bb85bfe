"""Write a randomly initialised unidirectional ``Tagger`` state_dict of the given sizes.

    python make_torch_model.py OUT.pt --vocab 50000 --embed 512 --hidden 2048 --layers 4 --tags 50
"""

from __future__ import annotations

import argparse

import torch

from user_model import Tagger


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("out")
    for name in ("vocab", "embed", "hidden", "layers", "tags"):
        parser.add_argument(f"--{name}", type=int, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    with torch.no_grad():
        model = Tagger(args.vocab, args.embed, args.hidden, args.layers, args.tags)
    torch.save(model.state_dict(), args.out)


if __name__ == "__main__":
    main()
