"""Robustness experiment on the skills world: does training on perturbations make the model robust?

For every seed, one baseline SFT model (the default recipe, modeling.recipes) is trained, and five
arms fine-tune it with the same number of extra steps on the same clean data mix:

    clean        the compute-matched baseline: the extra steps on clean data only
    augment      + online random augmentation (modeling.augment "mixed" recipe: typos, word edits,
                 distractors, case/whitespace noise) of user turns with probability --aug-prob
    adversarial  + attack-mined adversarial rounds: attack the current model on skills *train*
                 dialogues (modeling.attack, validity oracle on), keep the valid samples that fool
                 it, add them with their correct answers to the SFT data (earlier rounds' samples
                 stay), fine-tune from the current model; --rounds rounds
    unverified   the verification ablation: the same rounds with the attack's validity check off
                 (no oracle, slot words editable), subsampled to the same number of samples as the
                 verified arm mined in that round
    adv+aug      the whole loop: the adversarial rounds, each round's fine-tune also augmenting user
                 turns online as the augment arm does (the attack then mines what augmentation
                 alone leaves)

Every arm is evaluated on the same skills test dialogues: clean accuracy, OOD accuracy, typo PDR at
word rate 0.2, accuracy on families never used in training (OCR confusions, split/merged words),
adaptive ASR (the attack rerun against the arm) and replayed ASR (samples mined against the clean
arm on the test dialogues, replayed). Targets (issue 7), each judged against the compute-matched
``clean`` arm: clean accuracy >= clean's - 1 point; typo PDR <= half of clean's; adaptive ASR >= 20
points lower; held-out families no worse than clean's.

    .venv/bin/python bench/bench_robustness.py            # 3 seeds, 5 arms, ~30 min on 2 cores
    .venv/bin/python bench/bench_robustness.py --quick    # a small smoke run, a few minutes

Every stage caches its model / result under --out, so a rerun resumes. Prints a table and a final
JSON line.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from modeling import augment, skills  # noqa: E402
from modeling.attack import attack_dialogues  # noqa: E402
from modeling.chat import ChatFormat  # noqa: E402
from modeling.checkpoint import load_model  # noqa: E402
from modeling.evaluate import evaluate  # noqa: E402
from modeling.recipes import DefaultRecipe, build_default_model, choose_num_threads  # noqa: E402
from modeling.robustness import evaluate_robustness, replay  # noqa: E402
from modeling.train import TrainConfig, train  # noqa: E402

ARMS = ("clean", "augment", "adversarial", "unverified", "adv+aug")
HELDOUT = ("ocr", "split_merge")


@dataclass
class Sizes:
    # the default recipe's stages (modeling.recipes.DefaultRecipe), shortened to fit the CPU budget
    pretrain_steps: int = 200
    base_steps: int = 600
    train_dialogues: int = 0  # 0 -> skills default (4000)
    text_docs: int = 2000
    ft_steps: int = 160  # extra steps of every arm (adversarial arms: split over the rounds)
    ft_lr: float = 1e-3
    rounds: int = 2
    mine_n: int = 900  # train dialogues attacked per round (the first run used 300)
    adv_share: float = 0.25  # adversarial share of the conversations in a round's SFT data
    aug_prob: float = 0.5
    aug_rate: float = 0.2
    eval_n: int = 300
    attack_n: int = 100
    budget: int = 200


QUICK = Sizes(
    pretrain_steps=100,
    base_steps=300,
    train_dialogues=1000,
    text_docs=500,
    ft_steps=60,
    mine_n=60,
    eval_n=100,
    attack_n=20,
    budget=100,
)


def _train_perturb(text: str, rng: random.Random) -> str:
    """The augment arm's perturb_fn: one valid "mixed" variant (set up by main via _AUG)."""
    return _AUG[0](text, rng)


_AUG: list[augment.Augmenter] = []


def _load(model_dir: Path):
    model, tokenizer, _ = load_model(model_dir)
    return model.eval(), ChatFormat.for_model(tokenizer, model_dir)


def _finetune(base: Path, out: Path, data: list[str], steps: int, sz: Sizes, seed: int, **kw):
    done = out / "model" / "meta.json"
    if done.is_file():
        return out / "model"
    cfg = TrainConfig(
        kind="sft",
        base_model=str(base),
        out_dir=str(out),
        data=data,
        skills_n=sz.train_dialogues,
        skills_seed=seed,
        skills_text_n=sz.text_docs,
        seq_len=128,
        batch_size=16,
        pack_sft=True,
        max_steps=steps,
        lr=sz.ft_lr,
        min_lr=sz.ft_lr / 10,
        warmup_steps=min(20, steps // 5),
        seed=seed,
        **kw,
    )
    return train(cfg)


def _mine(model_dir: Path, n: int, seed: int, sz: Sizes, verified: bool) -> list[dict]:
    """Fooling samples against a model on skills train dialogues, as attack-result dicts."""
    model, fmt = _load(model_dir)
    dialogues = skills.generate_dialogues("train", n, seed=seed)
    kwargs = {} if verified else {"constraints": [], "protect_slots": False}
    results = attack_dialogues(model, fmt, dialogues, budget=sz.budget, seed=seed, **kwargs)
    return [r.to_dict() for r in results if r.status == "successful"]


def _write_jsonl(path: Path, samples: list[dict], repeat: int) -> None:
    lines = []
    for s in samples:
        messages = s["context"] + [
            {"role": "user", "content": s["perturbed"]},
            {"role": "assistant", "content": s["target"]},
        ]
        lines.append(json.dumps({"messages": messages}))
    path.write_text("\n".join(lines * repeat) + "\n")


def _cached(path: Path, compute):
    if path.is_file():
        return json.loads(path.read_text())
    value = compute()
    path.write_text(json.dumps(value))
    return value


def _adversarial_rounds(
    base: Path, root: Path, sz: Sizes, seed: int, verified: bool, counts, **ft_kwargs
):
    """Run the rounds of one adversarial arm; returns (final model, per-round sample counts).
    `ft_kwargs` go to every round's fine-tune (the adv+aug arm's online augmentation)."""
    current = base
    pool: list[dict] = []
    n_conv = sz.train_dialogues or skills.DEFAULT_SIZES["train"]
    per_round = []
    for r in range(1, sz.rounds + 1):
        rdir = root / f"round{r}"
        rdir.mkdir(parents=True, exist_ok=True)
        mine_seed = 10_000 * (seed + 1) + r
        mined = _cached(
            rdir / "mined.json",
            lambda model=current, s=mine_seed: _mine(model, sz.mine_n, s, sz, verified),
        )
        if not verified and counts is not None:
            # the ablation: as many samples as the verified arm kept in this round
            mined = random.Random(mine_seed).sample(mined, min(len(mined), counts[r - 1]))  # noqa: S311 (seeded sampling of the mined set, reproducible by design)
        pool += mined
        per_round.append(len(mined))
        data = ["skills:train", "skills-text"]
        if pool:
            repeat = max(1, round(sz.adv_share * n_conv / (len(pool) * (1 - sz.adv_share))))
            _write_jsonl(rdir / "adversarial.jsonl", pool, repeat)
            data.append(str(rdir / "adversarial.jsonl"))
        steps = max(1, sz.ft_steps // sz.rounds)
        current = _finetune(current, rdir / "ft", data, steps, sz, seed, **ft_kwargs)
    return current, per_round


def _evaluate_arm(model_dir: Path, test, ood, sz: Sizes, seed: int, replay_samples) -> dict:
    model, fmt = _load(model_dir)
    families = {"typo": [0.2]} | {f: [0.2] for f in HELDOUT}
    rob = evaluate_robustness(
        model,
        fmt,
        test,
        families,
        seed=seed,
        attack_n=sz.attack_n,
        attack_budget=sz.budget,
    )
    out = {
        "clean_acc": rob["clean"]["accuracy"],
        "ood_acc": evaluate(model, fmt, ood)["accuracy"],
        "typo_acc": rob["perturbed"]["typo@0.2"]["accuracy"],
        "typo_pdr": rob["perturbed"]["typo@0.2"]["pdr"],
        "typo_consistency": rob["perturbed"]["typo@0.2"]["consistency"],
        "ocr_acc": rob["perturbed"]["ocr@0.2"]["accuracy"],
        "split_merge_acc": rob["perturbed"]["split_merge@0.2"]["accuracy"],
        "adaptive_asr": rob["adaptive"]["attack_success_rate"],
        "accuracy_under_attack": rob["adaptive"]["accuracy_under_attack"],
        "avg_queries": rob["adaptive"]["avg_queries"],
        "examples": rob["adaptive"]["examples"],
    }
    out["heldout_acc"] = (out["ocr_acc"] + out["split_merge_acc"]) / 2
    if replay_samples is not None:
        out["replayed_asr"] = replay(model, fmt, replay_samples)["asr"]
    return out


def run_seed(seed: int, root: Path, sz: Sizes, log, arms=ARMS) -> dict:
    if "unverified" in arms and "adversarial" not in arms:
        raise ValueError("the unverified arm is matched to the adversarial arm: run both")
    sdir = root / f"seed{seed}"
    sdir.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    recipe = DefaultRecipe(
        pretrain_steps=sz.pretrain_steps,
        sft_steps=sz.base_steps,
        train_dialogues=sz.train_dialogues,
        text_docs=sz.text_docs,
        eval_n=0,
        num_threads=torch.get_num_threads(),
    )
    base = build_default_model(sdir / "base", seed=seed, recipe=recipe)
    log(f"seed {seed}: baseline SFT ready ({time.perf_counter() - t0:.0f}s)")
    clean_data = ["skills:train", "skills-text"]
    augmented = dict(perturb_prob=sz.aug_prob, perturb_fn=_train_perturb)
    models = {"clean": _finetune(base, sdir / "clean", clean_data, sz.ft_steps, sz, seed)}
    if "augment" in arms:
        models["augment"] = _finetune(
            base, sdir / "augment", clean_data, sz.ft_steps, sz, seed, **augmented
        )
    log(f"seed {seed}: clean and augment arms ready ({time.perf_counter() - t0:.0f}s)")
    counts: dict[str, list[int]] = {}
    if "adversarial" in arms:
        models["adversarial"], counts["adversarial"] = _adversarial_rounds(
            base, sdir / "adversarial", sz, seed, verified=True, counts=None
        )
    if "unverified" in arms:  # as many samples per round as the verified arm kept
        models["unverified"], counts["unverified"] = _adversarial_rounds(
            base, sdir / "unverified", sz, seed, verified=False, counts=counts["adversarial"]
        )
    if "adv+aug" in arms:
        models["adv+aug"], counts["adv+aug"] = _adversarial_rounds(
            base, sdir / "adv+aug", sz, seed, verified=True, counts=None, **augmented
        )
    log(
        f"seed {seed}: adversarial arms ready, samples per round {counts} "
        f"({time.perf_counter() - t0:.0f}s)"
    )
    test = skills.generate_dialogues("test", sz.eval_n, seed=seed)
    ood = skills.generate_dialogues("ood", sz.eval_n, seed=seed)
    results = {}
    clean = _cached(
        sdir / "eval_clean.json",
        lambda: _evaluate_arm(models["clean"], test, ood, sz, seed, None),
    )
    replay_samples = clean["examples"]
    for arm in arms:
        res = _cached(
            sdir / f"eval_{arm}.json",
            lambda arm=arm: _evaluate_arm(models[arm], test, ood, sz, seed, replay_samples),
        )
        res.pop("examples", None)
        res["samples_per_round"] = counts.get(arm)
        results[arm] = res
        log(
            f"seed {seed} {arm:<12} clean {res['clean_acc']:.3f} typo PDR {res['typo_pdr']:.3f} "
            f"ASR {res['adaptive_asr']:.3f} heldout {res['heldout_acc']:.3f}"
        )
    results["seconds"] = round(time.perf_counter() - t0, 1)
    return results


METRICS = [
    ("clean_acc", "clean acc"),
    ("ood_acc", "OOD acc"),
    ("typo_acc", "typo@0.2 acc"),
    ("typo_pdr", "typo@0.2 PDR"),
    ("adaptive_asr", "adaptive ASR"),
    ("replayed_asr", "replayed ASR"),
    ("ocr_acc", "OCR acc"),
    ("split_merge_acc", "split/merge acc"),
]


def _stats(values: list[float]) -> dict:
    values = [v for v in values if v is not None]
    if not values:
        return {"mean": None, "sd": None}
    sd = statistics.stdev(values) if len(values) > 1 else 0.0
    return {"mean": statistics.fmean(values), "sd": sd, "values": values}


def _arms_of(per_seed: dict[int, dict]) -> list[str]:
    first = next(iter(per_seed.values()))
    return [a for a in ARMS if a in first]


def summarize(per_seed: dict[int, dict]) -> dict:
    table = {}
    for arm in _arms_of(per_seed):
        table[arm] = {k: _stats([per_seed[s][arm].get(k) for s in per_seed]) for k, _ in METRICS}
        table[arm]["heldout_acc"] = _stats([per_seed[s][arm]["heldout_acc"] for s in per_seed])
    base = table["clean"]
    targets = {}
    for arm in [a for a in ("augment", "adversarial", "adv+aug") if a in table]:
        t = table[arm]
        targets[arm] = {
            "clean_acc_within_1pt": t["clean_acc"]["mean"] >= base["clean_acc"]["mean"] - 0.01,
            "typo_pdr_at_most_half": t["typo_pdr"]["mean"] <= base["typo_pdr"]["mean"] / 2,
            "adaptive_asr_20pt_lower": t["adaptive_asr"]["mean"]
            <= base["adaptive_asr"]["mean"] - 0.20,
            "heldout_no_worse": t["heldout_acc"]["mean"] >= base["heldout_acc"]["mean"],
        }
    return {"table": table, "targets": targets}


def format_table(summary: dict) -> str:
    arms = list(summary["table"])
    head = f"{'metric':<18}" + "".join(f"{a:>18}" for a in arms)
    lines = [head, "-" * len(head)]
    for key, label in METRICS + [("heldout_acc", "held-out fam acc")]:
        cells = []
        for arm in arms:
            s = summary["table"][arm][key]
            cells.append(
                f"{'-':>18}"
                if s["mean"] is None
                else f"{100 * s['mean']:9.1f} ± {100 * s['sd']:4.1f}".rjust(18)
            )
        lines.append(f"{label:<18}" + "".join(cells))
    lines.append("")
    for arm, checks in summary["targets"].items():
        marks = ", ".join(f"{k}: {'met' if ok else 'MISSED'}" for k, ok in checks.items())
        lines.append(f"targets for {arm}: {marks}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--quick", action="store_true", help="small sizes: a smoke run of the pipeline")
    p.add_argument(
        "--out", default=None, help="work directory (default var/bench/robustness[-quick])"
    )
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: measure 1 vs all)")
    p.add_argument(
        "--arms", nargs="+", choices=ARMS, default=list(ARMS), help="arms to run (clean always)"
    )
    p.add_argument("--rounds", type=int, help="adversarial rounds (default 2)")
    p.add_argument("--mine-n", type=int, help="train dialogues attacked per round (default 900)")
    p.add_argument(
        "--adv-share", type=float, help="adversarial share of a round's conversations (0.25)"
    )
    args = p.parse_args(argv)
    sz = QUICK if args.quick else Sizes()
    overrides = {"rounds": args.rounds, "mine_n": args.mine_n, "adv_share": args.adv_share}
    sz = dataclasses.replace(sz, **{k: v for k, v in overrides.items() if v is not None})
    root = Path(args.out or f"var/bench/robustness{'-quick' if args.quick else ''}")
    root.mkdir(parents=True, exist_ok=True)
    # The caches are keyed by path only: a work directory serves one set of sizes.
    sizes_file = root / "sizes.json"
    if sizes_file.is_file() and json.loads(sizes_file.read_text()) != sz.__dict__:
        p.error(
            f"{root} holds results for other sizes ({sizes_file}); pass another --out "
            "(or delete the directory to start over)"
        )
    sizes_file.write_text(json.dumps(sz.__dict__, indent=1))
    torch.set_num_threads(args.threads or choose_num_threads())
    _AUG.append(augment.recipe("mixed", rate=sz.aug_rate, strict=False))
    t0 = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - t0:7.0f}s] {msg}", flush=True)

    log(f"sizes {sz}, threads {torch.get_num_threads()}")
    arms = [a for a in ARMS if a == "clean" or a in args.arms]
    per_seed = {s: run_seed(s, root, sz, log, arms) for s in args.seeds}
    summary = summarize(per_seed)
    print()
    print(format_table(summary))
    record = {
        "bench": "robustness",
        "quick": args.quick,
        "seeds": args.seeds,
        "sizes": sz.__dict__,
        "seconds": round(time.perf_counter() - t0, 1),
        "summary": summary,
        "per_seed": per_seed,
    }
    (root / "result.json").write_text(json.dumps(record, indent=1))
    print(json.dumps(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
