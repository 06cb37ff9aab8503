"""Reads for the registry: the active version, disk use, evaluation results, the side-by-side
metrics table, the outcome of a model import and whether a name is free for one (the gates'
verdict is webchat.registry.gates)."""

import hashlib
import json
import logging
import re
from pathlib import Path

from webchat.registry.models import (
    TEST_ADAPTIVE,
    TEST_CLEAN,
    TEST_OOD,
    TEST_PERTURBED,
    TEST_REPLAYED,
    Evaluation,
    ModelVersion,
    PromotionPolicy,
)

log = logging.getLogger(__name__)


def model_version_active() -> ModelVersion | None:
    """The version new chat requests use by default, or None before the first model exists."""
    return ModelVersion.objects.filter(status=ModelVersion.Status.ACTIVE).first()


def directory_size(path: str | Path) -> int:
    """Bytes used by the files of a model directory (0 when it is gone)."""
    p = Path(path)
    if not p.is_dir():
        return 0
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file())


def model_import_outcome(task_id: str) -> dict | None:
    """What became of an import task, without waiting for it.

    Returns:
        None while it is queued or running (or its result has expired); else the task's result,
        {"ok": True, "version_id", "kind"} or {"ok": False, "error"}.
    """
    from worker.app import app

    result = app.AsyncResult(task_id)
    if not result.ready():
        return None
    if result.failed():
        return {"ok": False, "error": f"the import task did not finish: {result.result!r}"}
    return result.result


# ---- evaluations and the promotion gates -----------------------------------------------------


def eval_config_key(config: dict) -> str:
    """A short stable hash of evaluation settings (Evaluation.config_key)."""
    return hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:16]


def evaluation_current_key() -> str:
    """The evaluation settings key of the current promotion policy."""
    return eval_config_key(PromotionPolicy.load().eval_config())


def evaluation_results(version: ModelVersion, config_key: str | None = None) -> dict:
    """{test_set: metrics} of a version under `config_key` (default: the current policy's)."""
    key = config_key or evaluation_current_key()
    rows = Evaluation.objects.filter(model_version=version, config_key=key).order_by("created_at")
    return {row.test_set: row.metrics for row in rows}


# ---- the side-by-side metrics table ----------------------------------------------------------


def _pct(x) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def metrics_table(versions: list[ModelVersion], config_key: str | None = None) -> dict:
    """Rows of evaluation numbers, one column per version (same evaluation settings only).

    Args:
        versions: the versions to compare, in column order.
        config_key: evaluation settings key (default: the current promotion policy's).

    Returns:
        {"columns": [version names], "rows": [(label, [cell text per version])],
         "config_key": key}; a cell is "—" where that version lacks the number.
    """
    key = config_key or evaluation_current_key()
    results = [evaluation_results(v, key) for v in versions]
    rows: list[tuple[str, list[str]]] = []

    def row(label, getter, fmt=_pct):
        cells = []
        for r in results:
            try:
                value = getter(r)
            except (KeyError, TypeError):
                value = None
            cells.append(fmt(value) if value is not None else "—")
        rows.append((label, cells))

    row("clean accuracy (skills test)", lambda r: r[TEST_CLEAN]["accuracy"])
    row("OOD accuracy", lambda r: r[TEST_OOD]["accuracy"])
    perturbations = sorted({p for r in results for p in (r.get(TEST_PERTURBED) or {})})
    for name in perturbations:
        row(f"accuracy under {name}", lambda r, n=name: r[TEST_PERTURBED][n]["accuracy"])
        row(
            f"PDR {name}",
            lambda r, n=name: r[TEST_PERTURBED][n]["pdr"],
            fmt=lambda x: f"{x:+.3f}",
        )
    row("replayed ASR (mined against the parent)", lambda r: r[TEST_REPLAYED]["asr"])
    row("adaptive ASR (attack rerun)", lambda r: r[TEST_ADAPTIVE]["asr"])
    row("accuracy under attack", lambda r: r[TEST_ADAPTIVE]["accuracy_under_attack"])
    row(
        "attack: average queries",
        lambda r: r[TEST_ADAPTIVE]["avg_queries"],
        fmt=lambda x: f"{x:.1f}",
    )
    families = sorted({f for r in results for f in (r.get(TEST_CLEAN) or {}).get("per_family", {})})
    for family in families:
        row(f"clean: {family}", lambda r, f=family: r[TEST_CLEAN]["per_family"][f]["accuracy"])
    return {"columns": [v.name for v in versions], "rows": rows, "config_key": key}


def comparison_versions(version: ModelVersion) -> list[ModelVersion]:
    """The version, its parent and the active version (each once), for its detail page."""
    out = [version]
    for other in (version.parent, model_version_active()):
        if other is not None and other.pk not in {v.pk for v in out}:
            out.append(other)
    return out


# ---- reads for the worker (worker/ reads registry rows only through these) -------------------


def model_version_get(*, version_id: int) -> ModelVersion:
    """The version with this id (ModelVersion.DoesNotExist when it is gone)."""
    return ModelVersion.objects.get(pk=version_id)


def model_version_by_name(*, name: str) -> ModelVersion | None:
    """The version with this (unique) name, or None."""
    return ModelVersion.objects.filter(name=name).first()


# The names training runs give their models (worker.training.register): nothing else may take
# them, so a run never finds its name (or its directory) taken.
RUN_MODEL_NAME = re.compile(r"(default|pretrain|sft)-run\d+")
VERSION_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


def model_version_name_refusal(*, name: str) -> str | None:
    """Why `name` cannot be the name of a new imported version, or None when it can."""
    if not VERSION_NAME.fullmatch(name or ""):
        return "name: use letters, digits, '.', '_' and '-' (max 100)"
    if RUN_MODEL_NAME.fullmatch(name):
        return f"name: names like {name!r} are kept for the models of training runs"
    if model_version_by_name(name=name) is not None:
        return f"a model version named {name!r} already exists"
    return None


def training_run_cancel_requested(*, run_id: int) -> bool:
    """Whether someone asked the run to stop (the worker checks between steps)."""
    from webchat.registry.models import TrainingRun

    return TrainingRun.objects.filter(pk=run_id, cancel_requested=True).exists()


def model_version_sampling(version: ModelVersion) -> dict:
    """The decoding settings a version recommends (its generation_config.json), as sampling
    parameter names; empty when it recommends none or the file cannot be read (logged)."""
    from modeling.generation_config import recommended_sampling

    try:
        return recommended_sampling(version.path)
    except (OSError, ValueError) as exc:
        log.warning("%s: %s", version.name, exc)
        return {}


def promotion_verdict(version: ModelVersion) -> dict:
    """The gate report for a version: the one recorded when it was last promoted or refused,
    else the gates now (against the active version)."""
    from webchat.registry.gates import promotion_gates
    from webchat.registry.models import PromotionRecord

    record = (
        PromotionRecord.objects.filter(
            version=version,
            action__in=[PromotionRecord.Action.PROMOTE, PromotionRecord.Action.REFUSED],
        )
        .exclude(gates={})
        .first()
    )
    return record.gates if record is not None else promotion_gates(candidate=version)
