"""The default model's report card: every number issue 15 asks of it, from one model directory.

    splits        exact match on test and ood, per family; ood also per held-out kind
                  (template only, entity only, both)
    conversation  hallucination rate on out-of-scope test dialogues, repair and kept-right rates
                  after "That is not right." on question test dialogues (modeling.dialogue_metrics;
                  n / 11 and 8n / 11 of them, at least 20 and 160, so they exist for a small n)
    robustness    accuracy on the test split with the last user turn perturbed: typo@0.2 and
                  distractor (modeling.augment recipes, as the admin's evaluation uses them) and
                  entity typos (modeling.recipe_noise.entity_typo: a typo in the entity name that
                  the oracle still reads as the same question)

The build records it in meta.json (``default_eval``); the CLI prints it::

    python -m modeling.recipe_eval var/models/default/sft/model --n 800
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from collections.abc import Sequence

import torch


def _by_heldout(predictions: list[dict], dialogues) -> dict:
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for p, d in zip(predictions, dialogues):
        kind = "+".join(d.heldout) or "none"
        counts[kind][0] += int(p["correct"])
        counts[kind][1] += 1
    return {k: {"accuracy": c / n, "correct": c, "n": n} for k, (c, n) in sorted(counts.items())}


def _perturbed_accuracy(model, fmt, dialogues, perturb, seed: int) -> dict:
    from modeling.evaluate import evaluate

    result = evaluate(model, fmt, dialogues, perturb=perturb, seed=seed)
    return {"accuracy": result["accuracy"], "correct": result["correct"], "n": result["n"]}


def evaluate_default(model_dir: str | os.PathLike, n: int = 0, seed: int = 0) -> dict:
    """Accuracy, conversation metrics and robustness of a model directory on the skills world.

    Args:
        model_dir: the model.
        n: dialogues per split (0 = the split's default size, 800).
        seed: skills generator seed (and perturbation seed).
    Returns:
        {"test", "ood" (evaluate() results without predictions, ood with "per_heldout"),
        "hallucination", "repair" (dialogue_metrics results), "robustness": {"typo@0.2",
        "distractor", "entity_typo": {"accuracy", "correct", "n"}}}.
    """
    from modeling import augment, skills
    from modeling.chat import ChatFormat
    from modeling.checkpoint import load_model
    from modeling.dialogue_metrics import QUESTION_FAMILIES, hallucination_rate, repair_rates
    from modeling.evaluate import evaluate
    from modeling.recipe_noise import entity_typo

    model, tokenizer, _ = load_model(model_dir)
    model.eval()
    fmt = ChatFormat.for_model(tokenizer, model_dir)
    test = skills.dialogues("test", n=n or None, seed=seed)
    ood = skills.dialogues("ood", n=n or None, seed=seed)
    out: dict = {}
    with torch.no_grad():
        for name, ds in (("test", test), ("ood", ood)):
            result = evaluate(model, fmt, ds, batch_size=100, return_predictions=True)
            if name == "ood":
                result["per_heldout"] = _by_heldout(result["predictions"], ds)
            out[name] = {k: v for k, v in result.items() if k != "predictions"}
        # enough dialogues of the families these measure even when n is small
        k = max(20, len(test) // len(skills.FAMILIES))
        oos = skills.generate_dialogues("test", k, seed, families=["out_of_scope"])
        questions = skills.generate_dialogues("test", 8 * k, seed, families=QUESTION_FAMILIES)
        out["hallucination"] = hallucination_rate(model, fmt, oos)
        out["repair"] = repair_rates(model, fmt, questions, seed=seed)
        # the perturbations are of single questions: a turn is perturbed without its context
        typo = augment.recipe("typo", rate=0.2, strict=False)
        dis = augment.recipe("distractor", strict=False)
        robustness = {
            "typo@0.2": _perturbed_accuracy(model, fmt, test, typo, seed),
            "distractor": _perturbed_accuracy(model, fmt, test, dis, seed),
            "entity_typo": _perturbed_accuracy(
                model, fmt, test, lambda t, rng: entity_typo(t, rng, tries=6), seed
            ),
        }
        out["robustness"] = robustness
    return out


def format_report(report: dict) -> str:
    """The report as a short text table (what the CLI prints).

    Args:
        report: an evaluate_default() result.
    Returns:
        the text.
    """
    from modeling.evaluate import format_table

    lines = [format_table({"test": report["test"], "ood": report["ood"]}), ""]

    def row(name: str, value, part: int, whole: int) -> str:
        shown = "   n/a" if value is None else f"{100 * value:6.1f}%"
        return f"{name:<30} {shown} ({part}/{whole})"

    for kind, r in report["ood"].get("per_heldout", {}).items():
        lines.append(row(f"ood held-out {kind}", r["accuracy"], r["correct"], r["n"]))
    h, rep = report["hallucination"], report["repair"]
    lines.append(row("hallucination rate", h["rate"], h["hallucinated"], h["n"]))
    lines.append(row("repair rate", rep["repair_rate"], rep["repaired"], rep["wrong"]))
    lines.append(row("kept-right rate", rep["kept_right_rate"], rep["kept"], rep["right"]))
    for name, r in report["robustness"].items():
        lines.append(row(name, r["accuracy"], r["correct"], r["n"]))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Print the default model's report card for a model directory.

    Args:
        argv: command-line arguments (default sys.argv[1:]); see --help.
    Returns:
        Process exit status.
    """
    parser = argparse.ArgumentParser(
        prog="python -m modeling.recipe_eval", description=main.__doc__
    )
    parser.add_argument("model_dir")
    parser.add_argument("--n", type=int, default=0, help="dialogues per split (0 = 800)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    parser.add_argument("--json", action="store_true", help="also print the report as JSON")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    report = evaluate_default(args.model_dir, n=args.n, seed=args.seed)
    print(format_report(report))
    if args.json:
        print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
