"""The table and the issue's targets of bench/bench_loop.py (rows as run_seed returns them)."""

from __future__ import annotations

import statistics

TRAINED = ("typo", "word", "distractor", "noise")
HELDOUT = ("ocr", "split_merge")


def _mean(rows: list[dict], key: str):
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.mean(vals) if vals else None


COLUMNS = [
    ("clean", "clean"),
    ("ood", "OOD"),
    *((f"{f}@0.2", f) for f in TRAINED),
    ("heldout@0.2", "held-out"),
    ("entity_typo@0.2", "entity typo"),
    ("adaptive_asr", "adaptive ASR"),
    ("replayed_asr", "replayed ASR"),
    ("repair_rate", "repair"),
]


def print_table(rows: list[dict]) -> list[dict]:
    """Per lineage and round: the mean over seeds (percent), the gate and wall time."""

    def pct(x):
        return "-" if x is None else f"{100 * x:.1f}"

    head = ["arm", "round", *(label for _, label in COLUMNS), "gate passed", "wall s"]
    print(" | ".join(head))
    means = []
    for verified in (True, False):
        for r in sorted({row["round"] for row in rows}):
            group = [x for x in rows if x["round"] == r and x["verified"] == verified]
            if not group:
                continue
            m = {k: _mean(group, k) for k, _ in COLUMNS}
            gates = [x["gate"]["passed"] for x in group if "gate" in x]
            m.update(
                round=r,
                verified=verified,
                seeds=len(group),
                gate_passed=sum(gates),
                wall_s=_mean(group, "wall_s"),
            )
            means.append(m)
            gate = f"{sum(gates)}/{len(gates)}" if gates else "-"
            cells = ["verified" if verified else "unverified", str(r)]
            cells += [pct(m[k]) for k, _ in COLUMNS] + [gate, f"{m['wall_s']:.0f}"]
            print(" | ".join(cells))
    for x in rows:
        if "gate" in x:
            g = x["gate"]
            arm = "verified" if x["verified"] else "unverified"
            print(
                f"seed {x['seed']} round {x['round']} ({arm}):"
                f" gate {'passed' if g['passed'] else 'refused'}, clean diff interval "
                f"[{pct(g['clean_low'])}, {pct(g['clean_high'])}] points"
                + ("" if g["passed"] else f"; {'; '.join(g['failed'])}")
            )
    return means


def targets(means: list[dict], rows: list[dict]) -> list[dict]:
    """The issue's targets on the verified lineage's means (None: not measured in this run)."""
    by = {m["round"]: m for m in means if m["verified"]}
    base, r1, r3 = by.get(0), by.get(1), by.get(3)
    out = []

    def check(name, ok):
        out.append({"target": name, "met": ok})

    def gain(m, key, points, near=0.95):
        if m is None or base is None or m[key] is None or base[key] is None:
            return None
        return m[key] >= min(base[key] + points / 100, max(near, base[key]))

    if r1:
        seeds = [x for x in rows if x["round"] == 1 and x["verified"]]
        check("round 1: clean >= parent - 1 point", r1["clean"] >= base["clean"] - 0.01)
        check(
            "round 1: gate passes in >= 2 of 3 seeds",
            sum(x["gate"]["passed"] for x in seeds) >= min(2, len(seeds)),
        )
        asr = r1["adaptive_asr"] is not None and base["adaptive_asr"] is not None
        check(
            "round 1: adaptive ASR >= 15 points lower",
            asr and r1["adaptive_asr"] <= base["adaptive_asr"] - 0.15,
        )
        check("round 1: held-out families >= +3 points (or >= 95%)", gain(r1, "heldout@0.2", 3))
        check("round 1: entity typos >= +15 points (or >= 95%)", gain(r1, "entity_typo@0.2", 15))
        check(
            "round 1: no trained family lower",
            all(r1[f"{f}@0.2"] >= base[f"{f}@0.2"] for f in TRAINED if r1[f"{f}@0.2"] is not None),
        )
    if r3:
        check(
            "round 3: adaptive ASR <= half the default's",
            r3["adaptive_asr"] <= base["adaptive_asr"] / 2,
        )
        check("round 3: clean >= default - 1 point", r3["clean"] >= base["clean"] - 0.01)
        check(
            "round 3: repair rate >= 80%",
            None if r3["repair_rate"] is None else r3["repair_rate"] >= 0.8,
        )
    return out
