"""Robustness of a chat model on dialogues with one checkable answer: the numbers, and how.

Definitions (as the field uses them, see docs/robustness.md):

- clean accuracy: exact match of the greedy reply (modeling.skills.is_correct).
- accuracy under a perturbation family at a rate: the last user turn of every dialogue replaced by
  one valid variant of an augmentation recipe (modeling.augment; meaning-preserving by the validity
  oracle, so the reference answer still holds). A turn the recipe cannot perturb validly stays as
  it is; ``perturbed_share`` says how many were perturbed.
- PDR (PromptBench): 1 - acc_perturbed / acc_clean (negative when the perturbation helps).
- consistency / INV failure rate (CheckList INV): the share of items whose answer does not change /
  does change under the perturbation (``evaluate.compare`` calls the first "consistency").
- replayed ASR: adversarial samples mined against another model, replayed: among the samples this
  model answers correctly on the original turn, the share it gets wrong on the perturbed one.
  Measures transfer only.
- adaptive ASR: the attack rerun against this model (TextAttack's successful / (successful +
  failed)). Only this measures the model's own robustness.

Decoding is batched greedy (modeling.evaluate.predict: right-padded prefill, KV cache).
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from modeling import attack as attack_mod
from modeling import augment, skills
from modeling.evaluate import predict, split_dialogue


def pdr(acc_clean: float, acc_perturbed: float) -> float | None:
    """Performance drop rate 1 - acc_perturbed / acc_clean (None when acc_clean is 0).

    Args:
        acc_clean: accuracy on the clean inputs.
        acc_perturbed: accuracy on the perturbed inputs.
    Returns:
        the PDR.
    """
    return 1.0 - acc_perturbed / acc_clean if acc_clean > 0 else None


def changed_share(clean_outputs: Sequence[str], perturbed_outputs: Sequence[str]) -> float:
    """CheckList INV failure rate: share of items whose answer changed (after normalisation).

    Args:
        clean_outputs: replies to the clean inputs.
        perturbed_outputs: replies to the perturbed inputs, same order.
    Returns:
        the share in [0, 1] (0 for no items).
    """
    if len(clean_outputs) != len(perturbed_outputs):
        raise ValueError("clean and perturbed outputs differ in length")
    pairs = list(zip(clean_outputs, perturbed_outputs))
    changed = sum(skills.normalize_answer(a) != skills.normalize_answer(b) for a, b in pairs)
    return changed / len(pairs) if pairs else 0.0


def _caps(chat_format: Any, refs: Sequence[str]) -> list[int]:
    return [len(chat_format.tokenizer.encode(r)) + 4 for r in refs]


def perturb_prompts(
    prompts: Sequence[list[dict]], family: str, rate: float, seed: int = 0
) -> tuple[list[list[dict]], int]:
    """Replace the last user turn of every prompt by one valid variant of a recipe.

    Args:
        prompts: conversations ending with a user turn.
        family: an augmentation recipe name (modeling.augment.RECIPES).
        rate: its word rate.
        seed: prompt i uses random.Random(f"robustness:{seed}:{family}:{rate}:{i}").
    Returns:
        (new prompts, how many were actually perturbed).
    """
    aug = augment.recipe(family, rate=rate)
    out, perturbed = [], 0
    for i, messages in enumerate(prompts):
        context, text = list(messages[:-1]), messages[-1]["content"]
        rng = random.Random(f"robustness:{seed}:{family}:{rate}:{i}")  # noqa: S311 (seeded: a perturbation must be reproducible)
        variants = aug.augment(text, rng, n=1, context=context)
        perturbed += bool(variants)
        out.append(context + [{"role": "user", "content": variants[0] if variants else text}])
    return out, perturbed


def replay(
    model: torch.nn.Module,
    chat_format: Any,
    samples: Sequence[Any],
    *,
    batch_size: int = 64,
) -> dict:
    """Replayed attack success rate of adversarial samples mined against another model.

    Args:
        model: the model to test.
        chat_format: its ChatFormat.
        samples: AttackResults, or dicts with "original", "perturbed", the correct reply as
            "reference" (or "target") and optionally "context" (the messages before the turn).
            Only valid fooling samples should be given (e.g. the successful AttackResults of the
            other model).
        batch_size: rows decoded together.
    Returns:
        {"n", "successful" (right on the original, wrong on the perturbed turn), "failed" (right
        on both), "skipped" (wrong on the original), "asr" (successful / (successful + failed),
        None when 0), "statuses" (per sample, in order), "clean_correct", "fooled"}.
    """
    rows = [s.to_dict() if hasattr(s, "to_dict") else dict(s) for s in samples]
    context = [list(r.get("context") or []) for r in rows]
    originals = [c + [{"role": "user", "content": r["original"]}] for c, r in zip(context, rows)]
    perturbed = [c + [{"role": "user", "content": r["perturbed"]}] for c, r in zip(context, rows)]
    refs = [r.get("reference", r.get("target")) for r in rows]
    caps = _caps(chat_format, refs)
    outs = predict(
        model, chat_format, originals + perturbed, batch_size=batch_size, max_new_tokens=caps + caps
    )
    clean, pert = outs[: len(rows)], outs[len(rows) :]
    statuses = [
        "skipped"
        if not skills.is_correct(c, r)
        else "failed"
        if skills.is_correct(p, r)
        else "successful"
        for c, p, r in zip(clean, pert, refs)
    ]
    succ, fail = statuses.count("successful"), statuses.count("failed")
    return {
        "n": len(rows),
        "successful": succ,
        "failed": fail,
        "skipped": statuses.count("skipped"),
        "asr": succ / (succ + fail) if succ + fail else None,
        "statuses": statuses,
        "clean_correct": succ + fail,
        "fooled": succ,
    }


def evaluate_robustness(
    model: torch.nn.Module,
    chat_format: Any,
    dialogues: Sequence[Any],
    perturbations: Mapping[str, Sequence[float]] | None = None,
    *,
    seed: int = 0,
    adversarial: Sequence[Any] | None = None,
    attack_n: int = 0,
    attack_budget: int = 200,
    attack_kwargs: Mapping[str, Any] | None = None,
    batch_size: int = 64,
) -> dict:
    """Clean accuracy, accuracy/PDR/consistency per perturbation, replayed and adaptive ASR.

    Args:
        model: a modeling.model.Transformer.
        chat_format: its ChatFormat.
        dialogues: dialogues ending with the reference reply (skills.Dialogue or dicts).
        perturbations: {recipe name: [word rates]}; default {"typo": [0.1, 0.2]}.
        seed: seeds the perturbations and the attack.
        adversarial: samples mined against another model, for the replayed ASR (see replay).
        attack_n: attack the first attack_n dialogues for the adaptive ASR (0: no attack).
        attack_budget: queries per attacked dialogue.
        attack_kwargs: more arguments for modeling.attack.attack.
        batch_size: rows decoded together.
    Returns:
        {"n", "clean": {"accuracy", "correct"}, "perturbed": {"<family>@<rate>": {"accuracy",
        "pdr", "consistency", "inv_failure_rate", "perturbed_share", "n"}}, "replayed": replay()
        (when adversarial is given), "adaptive": attack_summary() plus "examples" (the successful
        AttackResults as dicts, ready to be replayed on another model) when attack_n > 0}.
    """
    perturbations = {"typo": [0.1, 0.2]} if perturbations is None else perturbations
    parts = [split_dialogue(d) for d in dialogues]
    prompts = [p for p, _, _ in parts]
    refs = [r for _, r, _ in parts]
    caps = _caps(chat_format, refs)
    n = len(parts)
    clean_out = predict(model, chat_format, prompts, batch_size=batch_size, max_new_tokens=caps)
    clean_ok = [skills.is_correct(o, r) for o, r in zip(clean_out, refs)]
    acc_clean = sum(clean_ok) / n if n else 0.0
    result: dict[str, Any] = {
        "n": n,
        "clean": {"accuracy": acc_clean, "correct": sum(clean_ok)},
        "perturbed": {},
    }
    for family, rates in perturbations.items():
        for rate in rates:
            pert_prompts, n_pert = perturb_prompts(prompts, family, rate, seed)
            outs = predict(
                model, chat_format, pert_prompts, batch_size=batch_size, max_new_tokens=caps
            )
            acc = sum(skills.is_correct(o, r) for o, r in zip(outs, refs)) / n if n else 0.0
            changed = changed_share(clean_out, outs)
            result["perturbed"][f"{family}@{rate:g}"] = {
                "accuracy": acc,
                "pdr": pdr(acc_clean, acc),
                "consistency": 1.0 - changed,
                "inv_failure_rate": changed,
                "perturbed_share": n_pert / n if n else 0.0,
                "n": n,
            }
    if adversarial is not None:
        result["replayed"] = replay(model, chat_format, adversarial, batch_size=batch_size)
    if attack_n:
        results = attack_mod.attack_dialogues(
            model,
            chat_format,
            list(dialogues)[:attack_n],
            budget=attack_budget,
            seed=seed,
            batch_size=batch_size,
            **dict(attack_kwargs or {}),
        )
        summary = attack_mod.attack_summary(results)
        summary["examples"] = [r.to_dict() for r in results if r.status == "successful"]
        result["adaptive"] = summary
    return result
