"""The command line of modeling.train: ``python -m modeling.train --config run.json`` (or flags).

Flags override values from ``--config``; ``--recipe default`` builds the default model instead
(modeling.recipes). On rank 0 a tqdm bar shows the progress; Ctrl-C stops at the next step with
the training state saved, and the same command resumes.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from modeling.progress import ProgressBar
from modeling.train import Cancelled, TrainConfig, train

_FIELD_TYPES = {"int": int, "float": float}


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m modeling.train",
        description="Pretrain or fine-tune a model. Flags override values from --config.",
    )
    p.add_argument("--config", help="JSON file with TrainConfig fields")
    p.add_argument("--recipe", choices=["default"], help="run a named recipe (ignores other flags)")
    p.add_argument("--out", dest="out_dir", help="run directory (out_dir)")
    p.add_argument("--kind", choices=["pretrain", "sft"])
    p.add_argument("--base", dest="base_model", help="start from this model directory")
    p.add_argument("--model", help="ModelConfig fields as JSON, for a fresh model")
    p.add_argument("--tokenizer", help="tokenizer.json for a fresh model (default: train one)")
    p.add_argument("--data", nargs="+", help="sources: skills:train, skills-text, *.jsonl, *.txt")
    p.add_argument("--dev-data", nargs="+")
    p.add_argument("--on-bad-line", choices=["fail", "skip"])
    numbers = "seq_len batch_size grad_accum max_steps lr min_lr warmup_steps weight_decay"
    _add_number_flags(p, numbers + " grad_clip eval_interval checkpoint_interval seed")
    p.add_argument("--device")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"])
    p.add_argument("--compile", action="store_true", default=None)
    _add_number_flags(p, "num_threads perturb_prob neftune_alpha")
    p.add_argument("--no-resume", dest="resume", action="store_false", default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def _add_number_flags(parser: argparse.ArgumentParser, names: str) -> None:
    """One --flag per numeric TrainConfig field, typed like the field."""
    types = {
        f.name: _FIELD_TYPES[f.type]
        for f in dataclasses.fields(TrainConfig)
        if f.type in _FIELD_TYPES
    }
    for name in names.split():
        parser.add_argument("--" + name.replace("_", "-"), type=types[name])


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python -m modeling.train --config run.json`` (or flags).

    Args:
        argv: arguments (default sys.argv[1:]).

    Returns:
        Process exit status (0 ok, 130 cancelled by Ctrl-C).
    """
    args = _parse_args(argv)
    is_main = int(os.environ.get("RANK", "0")) == 0
    bar = ProgressBar() if is_main and not args.quiet else None
    interrupted = {"flag": False}
    try:
        if args.recipe == "default":
            from modeling.recipes import build_default_model

            path = build_default_model(args.out_dir or "var/models/default", progress=bar)
        else:
            path = train(
                TrainConfig.from_dict(_config_values(args)),
                progress=bar,
                should_cancel=lambda: interrupted["flag"],
            )
    except KeyboardInterrupt:
        interrupted["flag"] = True
        if bar:
            bar.close()
        print("interrupted", file=sys.stderr)
        return 130
    except Cancelled as e:
        if bar:
            bar.close()
        print(f"cancelled at step {e.step}; state saved to {e.checkpoint}", file=sys.stderr)
        return 130
    if bar:
        bar.close()
    if is_main:
        print(path)
    return 0


def _config_values(args: argparse.Namespace) -> dict:
    """TrainConfig fields from --config, overridden by the flags given."""
    values: dict = {}
    if args.config:
        values.update(json.loads(Path(args.config).read_text(encoding="utf-8")))
    skip = {"config", "recipe", "quiet", "model"}
    for k, v in vars(args).items():
        if k not in skip and v is not None:
            values[k] = v
    if args.model:
        values["model"] = json.loads(args.model)
    return values
