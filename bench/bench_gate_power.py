"""How often the shipped promotion gates pass a candidate that is exactly as good as its parent.

Simulated paired evaluations (800 test dialogues, 11 families in equal shares; the attack on
`attack_n` dialogues) go through the statistics the gates use (modeling.stats, the promotion
policy's defaults: 90% intervals, clean tolerance 2 points, family tolerance 6 points, the ASR
interval's upper bound at most 0). It shows why a weak model's rounds are refused: it flips many
answers each way, so an equal candidate's paired interval is wider than the tolerance.

    .venv/bin/python bench/bench_gate_power.py [--trials 200]

Prints a table and a final JSON line.
"""

import argparse
import json

import numpy as np

from modeling.stats import paired_bootstrap, paired_bootstrap_rate

N, FAMILIES = 800, 11
CLEAN_TOL, FAMILY_TOL, CONFIDENCE = 0.02, 0.06, 0.9
MODELS = (("weak", 0.23, 0.12), ("weak", 0.23, 0.06), ("good", 0.93, 0.025), ("good", 0.93, 0.04))
ATTACKS = ((16, 0.5, 0.3), (60, 0.5, 0.4), (60, 0.5, 0.3), (60, 0.5, 0.2), (200, 0.5, 0.4))


def clean_and_family(rng, acc: float, flip: float, trials: int) -> dict:
    """Pass rates of the clean gate, the family gate and both, for an equal candidate that
    flips `flip` of the items each way."""
    clean = family = both = 0
    fams = np.arange(N) % FAMILIES
    for t in range(trials):
        parent = rng.random(N) < acc
        cand = parent.copy()
        cand[parent & (rng.random(N) < flip / acc)] = False
        cand[~parent & (rng.random(N) < flip / (1 - acc))] = True
        low = paired_bootstrap(cand, parent, confidence=CONFIDENCE, seed=t, n_resamples=1000)["low"]
        worst = min(cand[fams == f].mean() - parent[fams == f].mean() for f in range(FAMILIES))
        clean += low >= -CLEAN_TOL
        family += worst >= -FAMILY_TOL
        both += low >= -CLEAN_TOL and worst >= -FAMILY_TOL
    return {"clean": clean / trials, "family": family / trials, "both": both / trials}


def asr_pass(rng, n: int, p: float, q: float, trials: int) -> float:
    """Pass rate of the ASR gate when the parent's attack succeeds with probability p and the
    candidate's with q, independently per dialogue."""
    ok = 0
    counted = np.ones(n, bool)
    for t in range(trials):
        ph, ch = rng.random(n) < p, rng.random(n) < q
        s = paired_bootstrap_rate(
            ch, counted, ph, counted, confidence=CONFIDENCE, seed=t, n_resamples=1000
        )
        ok += s["candidate"] < s["parent"] and s["high"] is not None and s["high"] <= 0
    return ok / trials


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=200)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    out = {"clean_family": [], "asr": []}
    print("| model | accuracy | flips each way | clean passes | family passes | both |")
    print("|---|---|---|---|---|---|")
    for name, acc, flip in MODELS:
        r = clean_and_family(rng, acc, flip, args.trials)
        out["clean_family"].append({"model": name, "accuracy": acc, "flip": flip, **r})
        print(f"| {name} | {acc:.0%} | {flip:.1%} | {r['clean']:.2f} | {r['family']:.2f} | "
              f"{r['both']:.2f} |")  # fmt: skip
    print("\n| attacked dialogues | parent ASR | candidate ASR | ASR gate passes |")
    print("|---|---|---|---|")
    for n, p, q in ATTACKS:
        rate = asr_pass(rng, n, p, q, args.trials)
        out["asr"].append({"n": n, "parent": p, "candidate": q, "passes": rate})
        print(f"| {n} | {p:.0%} | {q:.0%} | {rate:.2f} |")
    print(json.dumps(out))


if __name__ == "__main__":
    main()
