"""The promotion gates: is a candidate no worse than the version it would replace?

Both versions are evaluated with the same settings (the same config key, so the same dialogues in
the same order), which makes the comparison *paired*: per dialogue, both were right, both wrong,
or only one was right. The verdict is decided on a confidence interval of the difference
(modeling.stats), not on the point estimate, so a candidate that is worse by more than the
tolerance cannot slip through on a lucky sample:

- clean accuracy (skills test): the lower bound of the paired bootstrap interval of
  accuracy(candidate) - accuracy(active) must be at least -tolerance;
- per family: no family's accuracy may drop by more than the per-family tolerance (the point
  estimate: a family has about a tenth of the dialogues, its interval is too wide to gate on; the
  interval is shown);
- adaptive ASR (the attack rerun against each model on the same dialogues), when required: the
  candidate's must be lower, and the upper bound of the paired interval of ASR(candidate) -
  ASR(active) must be at most the ASR tolerance.

Evaluations from before the per-dialogue vectors existed (``metrics["correct"]`` a count, no
attack ``statuses``) are compared on their point estimates, and the check says so.
"""

from modeling.stats import mcnemar_exact, paired_bootstrap, paired_bootstrap_rate
from webchat.registry.models import TEST_ADAPTIVE, TEST_CLEAN, ModelVersion, PromotionPolicy
from webchat.registry.selectors import eval_config_key, evaluation_results, model_version_active


def _points(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}"


def _signed(x) -> str:
    return "—" if x is None else f"{100 * x:+.1f}"


def _interval(stat: dict) -> dict:
    """The JSON-safe, points-rounded view of an interval kept in the report."""
    return {k: (round(v, 5) if isinstance(v, float) else v) for k, v in stat.items()}


def _vector(metrics: dict | None) -> list | None:
    correct = (metrics or {}).get("correct")
    return correct if isinstance(correct, list) else None


def clean_check(cand: dict | None, act: dict | None, policy, names: tuple[str, str]) -> dict:
    """The clean-accuracy gate on the paired interval (point estimate on old evaluations)."""
    candidate, active = names
    if not cand or not act or cand.get("accuracy") is None or act.get("accuracy") is None:
        missing = candidate if not cand or cand.get("accuracy") is None else active
        return {"name": "clean accuracy", "passed": False, "detail": f"{missing} is not evaluated"}
    tolerance = policy.clean_tolerance_points / 100.0
    c_vec, a_vec = _vector(cand), _vector(act)
    head = f"{_points(cand['accuracy'])} vs active {_points(act['accuracy'])}"
    if c_vec is None or a_vec is None or len(c_vec) != len(a_vec):
        passed = cand["accuracy"] >= act["accuracy"] - tolerance - 1e-9
        detail = (
            f"{head} (tolerance {policy.clean_tolerance_points:g} points; unpaired point "
            "estimate: these evaluations have no per-dialogue results)"
        )
        return {"name": "clean accuracy", "passed": passed, "detail": detail}
    stat = paired_bootstrap(c_vec, a_vec, confidence=policy.gate_confidence, seed=policy.seed)
    test = mcnemar_exact(c_vec, a_vec)
    passed = stat["low"] >= -tolerance - 1e-9
    detail = (
        f"{head} on the same {stat['n']} dialogues: difference {_signed(stat['diff'])} points, "
        f"{100 * policy.gate_confidence:g}% interval [{_signed(stat['low'])}, "
        f"{_signed(stat['high'])}]; the lower bound must be at least "
        f"-{policy.clean_tolerance_points:g} (only the candidate right: {test['b']}, only the "
        f"active: {test['c']}, McNemar p = {test['p_value']:.3g})"
    )
    return {
        "name": "clean accuracy",
        "passed": passed,
        "detail": detail,
        "interval": _interval(stat),
        "mcnemar": _interval(test),
    }


def family_check(cand: dict, act: dict, policy) -> dict:
    """No family's clean accuracy may drop by more than the per-family tolerance."""
    tolerance = policy.family_tolerance_points / 100.0
    c_fam, a_fam = cand.get("per_family") or {}, act.get("per_family") or {}
    drops = {}
    for family in sorted(set(c_fam) & set(a_fam)):
        drops[family] = c_fam[family]["accuracy"] - a_fam[family]["accuracy"]
    worst = sorted((d, f) for f, d in drops.items() if d < -tolerance - 1e-9)
    if not drops:
        detail = "no per-family numbers to compare"
    elif worst:
        detail = ", ".join(f"{f} {_signed(d)}" for d, f in worst) + (
            f" points (each family may drop by at most {policy.family_tolerance_points:g})"
        )
    else:
        d, f = min((d, f) for f, d in drops.items())
        detail = (
            f"largest drop {f} {_signed(d)} points (tolerance "
            f"{policy.family_tolerance_points:g} points per family)"
        )
    families = {f: round(d, 5) for f, d in drops.items()}
    return {
        "name": "every family",
        "passed": bool(drops) and not worst,
        "detail": detail,
        "families": families,
    }


def _attack_vectors(metrics: dict) -> tuple[list, list] | None:
    statuses = metrics.get("statuses")
    if not isinstance(statuses, list):
        return None
    return [s == "successful" for s in statuses], [s != "skipped" for s in statuses]


def asr_check(cand: dict | None, act: dict | None, policy, names: tuple[str, str]) -> dict:
    """The adaptive ASR gate: lower than the active's, decided on the paired interval."""
    if cand is None or act is None:
        missing = names[0] if cand is None else names[1]
        return {"name": "adaptive ASR", "passed": False, "detail": f"{missing} is not attacked"}
    # ASR is undefined (None) when the model answered no attacked dialogue correctly: nothing
    # could be attacked, counted as 0 here (the clean-accuracy gate judges such a model).
    c_asr, a_asr = cand.get("asr") or 0.0, act.get("asr") or 0.0
    head = f"{_points(c_asr)}% vs active {_points(a_asr)}%"
    both_zero = c_asr == 0 and a_asr == 0
    c_vec, a_vec = _attack_vectors(cand), _attack_vectors(act)
    if c_vec is None or a_vec is None or len(c_vec[0]) != len(a_vec[0]):
        passed = c_asr < a_asr or both_zero
        detail = f"{head} (must be lower; unpaired point estimate)"
        return {"name": "adaptive ASR", "passed": passed, "detail": detail}
    stat = paired_bootstrap_rate(
        *c_vec, *a_vec, confidence=policy.gate_confidence, seed=policy.seed
    )
    tolerance = policy.asr_tolerance_points / 100.0
    if stat["high"] is None:
        passed = both_zero or c_asr < a_asr
        detail = f"{head} (must be lower; too few attacked dialogues for an interval)"
    else:
        passed = both_zero or (c_asr < a_asr and stat["high"] <= tolerance + 1e-9)
        detail = (
            f"{head} on the same {stat['n']} dialogues: difference {_signed(stat['diff'])} "
            f"points, {100 * policy.gate_confidence:g}% interval [{_signed(stat['low'])}, "
            f"{_signed(stat['high'])}]; must be lower with the upper bound at most "
            f"{policy.asr_tolerance_points:+g}"
        )
    return {"name": "adaptive ASR", "passed": passed, "detail": detail, "interval": stat}


def promotion_gates(
    *, candidate: ModelVersion, active: ModelVersion | None = ..., policy=None
) -> dict:
    """Check a candidate against the active version with the policy's gates.

    Args:
        candidate: the version to promote.
        active: the version it would replace (default: the active one; None: nothing active).
        policy: the PromotionPolicy (default: the stored one).

    Returns:
        {"passed": bool, "checks": [{"name", "passed", "detail", "interval"?}], "candidate",
         "active", "config_key"}.
    """
    policy = policy or PromotionPolicy.load()
    if active is ...:
        active = model_version_active()
    key = eval_config_key(policy.eval_config())
    report = {
        "candidate": candidate.name,
        "active": active.name if active else None,
        "config_key": key,
        "checks": [],
    }
    if active is None or active.pk == candidate.pk:
        report["checks"].append(
            {"name": "active model", "passed": True, "detail": "no other active version"}
        )
        report["passed"] = True
        return report
    cand, act = evaluation_results(candidate, key), evaluation_results(active, key)
    names = (candidate.name, active.name)
    clean = clean_check(cand.get(TEST_CLEAN), act.get(TEST_CLEAN), policy, names)
    report["checks"].append(clean)
    c_clean, a_clean = cand.get(TEST_CLEAN) or {}, act.get(TEST_CLEAN) or {}
    if c_clean.get("per_family") and a_clean.get("per_family"):
        report["checks"].append(family_check(c_clean, a_clean, policy))
    if policy.require_lower_adaptive_asr:
        report["checks"].append(
            asr_check(cand.get(TEST_ADAPTIVE), act.get(TEST_ADAPTIVE), policy, names)
        )
    report["passed"] = all(check["passed"] for check in report["checks"])
    return report
