"""``python -m modeling.skills``: print sample dialogues as JSONL, or pretraining text."""

from __future__ import annotations

import argparse
import json

from modeling.skills.corpus import generate_dialogues, pretraining_text
from modeling.skills.world import SPLITS


def main(argv: list[str] | None = None) -> None:
    """Print sample dialogues as JSONL, or pretraining text (--split pretrain)."""
    p = argparse.ArgumentParser(description=main.__doc__)
    p.add_argument("--split", default="train", choices=SPLITS + ("pretrain",))
    p.add_argument("-n", type=int, default=8)
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    if args.split == "pretrain":
        for doc in pretraining_text(args.n, args.seed):
            print(doc)
        return
    for d in generate_dialogues(args.split, args.n, args.seed):
        print(json.dumps(d.to_json()))


if __name__ == "__main__":
    main()
