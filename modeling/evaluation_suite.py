"""The one evaluation stack: every number a model version is judged by, under fixed settings.

``evaluate_suite`` is what the registry's evaluation task (worker/evaluation.py) stores and what
bench/bench_loop.py prints, with the same keys, so the admin's model page, the gates and
docs/robustness.md read the same numbers. The test sets (their keys are the registry's
``Evaluation.test_set`` names):

- ``skills:test`` / ``skills:ood``: exact-match accuracy of the greedy reply, overall and per
  dialogue family, with ``correct``, one 0/1 per dialogue in dialogue order (the gates pair a
  candidate with its parent on the same dialogues) and ``n_correct``;
- ``perturbed``: per ``<family>@<rate>``, the last user turn of each test dialogue replaced by one
  valid variant of that augmentation recipe (modeling.robustness.perturb_prompts: the validity
  oracle keeps the reference answer right): accuracy, the clean accuracy on the same dialogues,
  PDR = 1 - acc_perturbed / acc_clean, consistency (share of unchanged answers, CheckList INV),
  the share of turns actually perturbed, per-family accuracy and ``correct``;
- ``attack:adaptive``: the greedy attack rerun against this model (TextAttack's numbers, ``asr``
  = successful / (successful + failed)), ``statuses`` per attacked dialogue in order, ``correct``
  (right under attack) and ``examples``, the successful adversarial inputs, for replay;
- ``attack:replayed``: another model's successful adversarial inputs replayed on this one
  (transfer; a sample counts only when this model answers its clean original right);
- ``repair``: the repair rate (after the model's own wrong answer and a complaint, the share of
  second replies that are right) and the kept-right rate, from modeling.dialogue_metrics.

Everything is seeded by ``EvalSettings.seed``: the same model and settings give the same numbers.
"""

from __future__ import annotations

import importlib.util
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, fields
from typing import Any

import torch

from modeling import attack as attack_mod
from modeling import skills
from modeling.evaluate import predict, split_dialogue
from modeling.robustness import changed_share, pdr, perturb_prompts, replay

TEST_CLEAN = "skills:test"
TEST_OOD = "skills:ood"
TEST_PERTURBED = "perturbed"
TEST_ADAPTIVE = "attack:adaptive"
TEST_REPLAYED = "attack:replayed"
TEST_REPAIR = "repair"

# Measured when the settings name no families: the training recipes but "mixed" (a blend of the
# others), entity typos, and the two families nothing in training may use.
EVAL_FAMILIES = ("typo", "word", "distractor", "noise", "entity_typo", "ocr", "split_merge")
HELDOUT_FAMILIES = ("ocr", "split_merge")


@dataclass(frozen=True)
class EvalSettings:
    """What an evaluation depends on (the registry's PromotionPolicy.eval_config()).

    Attributes:
        eval_n: test and OOD dialogues for clean accuracy.
        perturb_n: test dialogues evaluated under each perturbation.
        perturb_families: augmentation recipes; empty -> EVAL_FAMILIES.
        perturb_rates: word rates; empty -> [0.1, 0.2].
        attack_n: test dialogues attacked (adaptive ASR).
        attack_budget: model queries per attacked dialogue.
        seed: seeds the dialogues, the perturbations and the attack.
    """

    eval_n: int = 800
    perturb_n: int = 200
    perturb_families: tuple[str, ...] = ()
    perturb_rates: tuple[float, ...] = ()
    attack_n: int = 50
    attack_budget: int = 200
    seed: int = 0
    extra: dict = field(default_factory=dict, compare=False)

    @classmethod
    def from_dict(cls, d: dict) -> EvalSettings:
        """Settings from a dict; keys this version does not know are kept under ``extra``.

        Args:
            d: e.g. PromotionPolicy.eval_config().
        Returns:
            The settings.
        """
        names = {f.name for f in fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        for k in ("perturb_families", "perturb_rates"):
            known[k] = tuple(known.get(k) or ())
        return cls(**known, extra={k: v for k, v in d.items() if k not in names})

    @property
    def families(self) -> tuple[str, ...]:
        """The perturbation families measured."""
        return self.perturb_families or EVAL_FAMILIES

    @property
    def rates(self) -> tuple[float, ...]:
        """The word rates measured."""
        return self.perturb_rates or (0.1, 0.2)


def accuracy_metrics(
    outputs: Sequence[str], references: Sequence[str], families: Sequence[str]
) -> dict:
    """Exact-match numbers of replies against references, overall and per family.

    Args:
        outputs: the model's replies.
        references: the correct replies, same order.
        families: each dialogue's family.
    Returns:
        {"accuracy", "n", "n_correct", "correct": [0/1 per dialogue], "per_family": {family:
        {"accuracy", "n", "n_correct"}}}.
    """
    correct = [int(skills.is_correct(o, r)) for o, r in zip(outputs, references)]
    per: dict[str, list[int]] = defaultdict(list)
    for ok, fam in zip(correct, families):
        per[fam].append(ok)
    n = len(correct)
    return {
        "accuracy": sum(correct) / n if n else 0.0,
        "n": n,
        "n_correct": sum(correct),
        "correct": correct,
        "per_family": {
            f: {"accuracy": sum(v) / len(v), "n": len(v), "n_correct": sum(v)}
            for f, v in sorted(per.items())
        },
    }


@dataclass
class _Split:
    prompts: list[list[dict]]
    references: list[str]
    families: list[str]

    @classmethod
    def of(cls, dialogues: Sequence[Any]) -> _Split:
        parts = [split_dialogue(d) for d in dialogues]
        return cls([p for p, _, _ in parts], [r for _, r, _ in parts], [f for _, _, f in parts])

    def caps(self, chat_format: Any) -> list[int]:
        # a reply longer than the reference + 4 tokens cannot match, so decoding stops there
        return [len(chat_format.tokenizer.encode(r)) + 4 for r in self.references]


def evaluate_suite(
    model: torch.nn.Module,
    chat_format: Any,
    settings: EvalSettings | dict,
    *,
    replay_examples: Sequence[dict] | None = None,
    batch_size: int = 64,
    log: Callable[[str], None] | None = None,
) -> dict[str, dict]:
    """Every evaluation of one model under the given settings.

    Args:
        model: a modeling.model.Transformer.
        chat_format: its ChatFormat.
        settings: EvalSettings or its dict (PromotionPolicy.eval_config()).
        replay_examples: the parent's ``attack:adaptive`` examples (None: no replayed ASR).
        batch_size: rows decoded together (results do not depend on it).
        log: called with a line after each test set.
    Returns:
        {test set: metrics} as described in the module docstring.
    """
    s = settings if isinstance(settings, EvalSettings) else EvalSettings.from_dict(settings)
    note = log or (lambda line: None)
    n, m = max(1, s.eval_n), max(1, s.perturb_n)
    test_dialogues = skills.generate_dialogues("test", max(n, m, s.attack_n), s.seed)
    test = _Split.of(test_dialogues)
    k = max(n, m)
    clean_out = predict(
        model, chat_format, test.prompts[:k], batch_size=batch_size,
        max_new_tokens=test.caps(chat_format)[:k],
    )  # fmt: skip
    out: dict[str, dict] = {
        TEST_CLEAN: accuracy_metrics(clean_out[:n], test.references[:n], test.families[:n])
    }
    ood = _Split.of(skills.generate_dialogues("ood", n, s.seed))
    ood_out = predict(
        model, chat_format, ood.prompts, batch_size=batch_size,
        max_new_tokens=ood.caps(chat_format),
    )  # fmt: skip
    out[TEST_OOD] = accuracy_metrics(ood_out, ood.references, ood.families)
    note(f"clean {out[TEST_CLEAN]['accuracy']:.3f}, OOD {out[TEST_OOD]['accuracy']:.3f}")
    out[TEST_PERTURBED] = perturbed_metrics(
        model, chat_format, test, clean_out[:m], s, batch_size=batch_size
    )
    note(f"{len(out[TEST_PERTURBED])} perturbations")
    out[TEST_ADAPTIVE] = adaptive_metrics(
        model, chat_format, test_dialogues[: s.attack_n], s, batch_size=batch_size
    )
    note(f"adaptive ASR {out[TEST_ADAPTIVE]['asr']}")
    if replay_examples is not None:
        out[TEST_REPLAYED] = replay(model, chat_format, replay_examples, batch_size=batch_size)
    repair = repair_metrics(model, chat_format, test_dialogues[:n], s)
    if repair is not None:
        out[TEST_REPAIR] = repair
    return out


def perturbed_metrics(
    model: torch.nn.Module,
    chat_format: Any,
    test: _Split,
    clean_out: Sequence[str],
    s: EvalSettings,
    *,
    batch_size: int = 64,
) -> dict[str, dict]:
    """Accuracy, PDR and consistency under each family at each rate, on the first perturb_n
    test dialogues (whose clean replies are ``clean_out``)."""
    m = len(clean_out)
    prompts, refs, fams = test.prompts[:m], test.references[:m], test.families[:m]
    caps = test.caps(chat_format)[:m]
    acc_clean = sum(skills.is_correct(o, r) for o, r in zip(clean_out, refs)) / max(1, m)
    out = {}
    for family in s.families:
        for rate in s.rates:
            pert, n_pert = perturb_prompts(prompts, family, float(rate), s.seed)
            outs = predict(model, chat_format, pert, batch_size=batch_size, max_new_tokens=caps)
            numbers = accuracy_metrics(outs, refs, fams)
            changed = changed_share(clean_out, outs)
            out[f"{family}@{float(rate):g}"] = {
                **numbers,
                "acc_clean": acc_clean,
                "pdr": pdr(acc_clean, numbers["accuracy"]),
                "consistency": 1.0 - changed,
                "inv_failure_rate": changed,
                "perturbed_share": n_pert / max(1, m),
            }
    return out


def adaptive_metrics(
    model: torch.nn.Module,
    chat_format: Any,
    dialogues: Sequence[Any],
    s: EvalSettings,
    *,
    batch_size: int = 64,
) -> dict:
    """The attack rerun against this model on the given test dialogues (see module docstring)."""
    results = attack_mod.attack_dialogues(
        model, chat_format, list(dialogues), budget=s.attack_budget, seed=s.seed,
        batch_size=batch_size,
    )  # fmt: skip
    summary = attack_mod.attack_summary(results)
    examples = [
        {
            "context": r.context,
            "original": r.original,
            "perturbed": r.perturbed,
            "reference": r.target,
            "family": split_dialogue(d)[2],
        }
        for r, d in zip(results, dialogues)
        if r.status == "successful"
    ]
    return {
        **summary,
        "asr": summary["attack_success_rate"],
        "budget": s.attack_budget,
        "statuses": [r.status for r in results],
        "correct": [int(r.status == "failed") for r in results],
        "examples": examples,
    }


def repair_metrics(
    model: torch.nn.Module, chat_format: Any, dialogues: Sequence[Any], s: EvalSettings
) -> dict | None:
    """Repair and kept-right rates (modeling.dialogue_metrics.repair_rates) on the clean test
    dialogues, or None where this installation has no modeling.dialogue_metrics."""
    if importlib.util.find_spec("modeling.dialogue_metrics") is None:
        return None
    from modeling.dialogue_metrics import repair_rates

    try:
        return repair_rates(model, chat_format, dialogues, seed=s.seed)
    except ValueError:  # no plain question among the dialogues
        return None
