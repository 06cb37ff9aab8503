"""The `train` queue: training runs recorded as `TrainingRun` rows.

A run's progress, loss curve and log tail are written to its row as it goes (the admin shows
them); cancel is a flag on the row checked between steps. The run trains into
`MODELS_DIR/runs/run-<id>/`; a redelivered task (worker killed, visibility timeout) resumes from
the run's last training checkpoint instead of starting over. A finished run registers its model
as a new candidate `ModelVersion`; nothing else changes unless the run says to activate it (the
default model on first start) or a promotion does it later.
"""

import logging
import time
from pathlib import Path

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from worker.app import app
from worker.finetune import finetune_hyperparameters, replay_lineage, train_config_kwargs
from worker.jobs import PROGRESS_INTERVAL_S, Recorder

log = logging.getLogger(__name__)

LOSS_CURVE_POINTS = 2000  # the newest points kept on the row (the admin plots them)


def run_dir(run_id: int) -> Path:
    return Path(settings.MODELS_DIR) / "runs" / f"run-{run_id}"


class RunRecorder(Recorder):
    """Turns training progress callbacks into throttled writes on the TrainingRun row."""

    def __init__(self, run_id: int):
        super().__init__()
        self.run_id = run_id
        self.last_cancel_check = 0.0
        self.cancelled = False
        self.curve: list[list[float]] = []
        self.dev_curve: list[list] = []
        self.phase_offset = 0.0  # multi-phase recipes report progress per phase
        self.phase_weight = 1.0
        self.last_step: int | None = None

    def progress(self, info: dict) -> None:
        step, total = info.get("step", 0), max(1, info.get("total", 1))
        phase = info.get("phase", "train")
        loss = info.get("loss")
        if phase == "train":
            self.last_step = step  # counted over the whole run (a recipe's stages add up)
            if loss is not None:
                self.curve.append([len(self.curve) + 1, round(float(loss), 5)])
        if phase == "eval":
            self._log_eval(step, info)
            return
        if not self.due(force=step >= total):
            return
        fraction = self.phase_offset + self.phase_weight * min(1.0, step / total)
        eta = info.get("eta_s")
        line = f"step {step}/{total}"
        if loss is not None:
            line += f" loss {loss:.4f}"
        if info.get("tokens_per_s"):
            line += f" {info['tokens_per_s']:.0f} tok/s"
        if eta is not None and step < total:
            line += f" eta {eta:.0f}s"
        self.log(line)
        self.flush(progress=round(fraction, 4))

    def _log_eval(self, step: int, info: dict) -> None:
        parts = [f"eval at step {step}:"]
        clean = info.get("dev_clean", info.get("dev_accuracy"))
        if clean is not None:
            robust = info.get("dev_robust")
            self.dev_curve.append([step, round(float(clean), 5), robust and round(robust, 5)])
            if robust is not None:
                parts.append(f"robust dev accuracy {robust:.1%}")
            if info.get("best_step") is not None:
                parts.append(f"best step so far {info['best_step']}")
        dev_loss = info.get("dev_loss")
        if dev_loss is not None and dev_loss == dev_loss:  # not NaN
            parts.append(f"dev loss {dev_loss:.4f}")
        if info.get("dev_accuracy") is not None:
            parts.append(f"dev accuracy {info['dev_accuracy']:.1%}")
        if len(parts) > 1:
            self.log(" ".join(parts))
            self.flush()

    def should_cancel(self) -> bool:
        from webchat.registry.selectors import training_run_cancel_requested
        from worker import embedded

        self.check_deadline()  # the train pool (solo) never raises Celery's soft limit itself
        if embedded.shutting_down.is_set():
            return True  # the web process is exiting: stop at this step, resume next start
        now = time.monotonic()
        if now - self.last_cancel_check >= PROGRESS_INTERVAL_S:
            self.last_cancel_check = now
            self.cancelled = training_run_cancel_requested(run_id=self.run_id)
        return self.cancelled

    def snapshot(self) -> dict:
        return {
            "loss_curve": self.curve[-LOSS_CURVE_POINTS:],
            "dev_curve": self.dev_curve,
            **super().snapshot(),
        }

    def save(self, **fields) -> None:
        from webchat.registry.services import training_run_update

        training_run_update(run_id=self.run_id, **fields)


@app.task(
    name="worker.training.run_training",
    acks_late=True,  # idempotent: finished runs are skipped, interrupted ones resume
    soft_time_limit=12 * 3600,
    time_limit=12 * 3600 + 120,
)
def run_training(run_id: int) -> dict:
    """Execute a TrainingRun and register its model as a new candidate version.

    Args:
        run_id: the TrainingRun (status queued, or running when redelivered).

    Returns:
        {"run_id", "status", "model_version_id"}.
    """
    from webchat.registry.models import TrainingRun
    from webchat.registry.services import training_run_claim

    run = training_run_claim(run_id=run_id)
    if run is None:
        return {"run_id": run_id, "status": "skipped", "model_version_id": None}
    recorder = RunRecorder(run_id)
    recorder.curve = list(run.loss_curve or [])
    recorder.dev_curve = list(run.dev_curve or [])
    recorder.lines = (run.log_tail or "").splitlines()
    recorder.log(f"started ({run.get_kind_display()})")
    recorder.flush()
    try:
        model_dir = execute(run, recorder)
        version = register(run, model_dir)
    except Exception as exc:  # noqa: BLE001 - every failure is recorded on the run for the admin
        status = record_stop(run_id, recorder, exc)
        return {"run_id": run_id, "status": status, "model_version_id": None}
    recorder.log(f"done: model version {version.name}")
    recorder.flush(
        status=TrainingRun.Status.DONE,
        progress=1.0,
        output_model=version,
        finished_at=timezone.now(),
    )
    after_training(run, version)
    return {"run_id": run_id, "status": "done", "model_version_id": version.pk}


def record_stop(run_id: int, recorder: RunRecorder, exc: Exception) -> str:
    """Record why a run stopped before its end on its row; returns the task's status word.

    A stop for the web process's shutdown queues the run again (it resumes from its checkpoint
    on the next start); a cancel request, the time limit and any error close it.
    """
    from modeling.train import Cancelled
    from webchat.registry.models import TrainingRun
    from worker import embedded

    if isinstance(exc, Cancelled):
        step = recorder.last_step if recorder.last_step is not None else exc.step
        if embedded.shutting_down.is_set():
            recorder.log(
                f"stopped after step {step}: the server is shutting down; the run resumes "
                "from its last checkpoint when the site starts again"
            )
            recorder.flush(status=TrainingRun.Status.QUEUED)
            return "interrupted"
        recorder.log(f"cancelled after step {step}")
        recorder.flush(status=TrainingRun.Status.CANCELLED, finished_at=timezone.now())
        return "cancelled"
    if isinstance(exc, SoftTimeLimitExceeded):
        reason = "the run exceeded its time limit"
    else:
        reason = failure_reason(exc)
        log.exception("training run %s failed", run_id)
    recorder.log(f"failed: {reason}")
    recorder.flush(status=TrainingRun.Status.FAILED, error=reason, finished_at=timezone.now())
    return "failed"


def failure_reason(exc: Exception) -> str:
    """What the admin is told about a failed run. A file error names no path (the worker's log
    has it), so a run's error text never says which files exist on the server."""
    if isinstance(exc, OSError):
        return f"{exc.__class__.__name__}: {exc.strerror or 'a file could not be read or written'}"
    return f"{exc.__class__.__name__}: {exc}"


def execute(run, recorder: RunRecorder) -> Path:
    """Train according to the run's kind; returns the final model directory."""
    from webchat.registry.hyperparameters import hyperparameters_validate
    from webchat.registry.models import TrainingRun

    out = run_dir(run.pk)
    # Checked again here: a row written before the allow-list, or by other code than the
    # admin's services, must not reach TrainConfig with paths or unbounded sizes either.
    hp = hyperparameters_validate(run.hyperparameters or {})
    if run.kind == TrainingRun.Kind.DEFAULT:
        from modeling.recipes import build_default_model

        return Path(
            build_default_model(
                out,
                progress=recorder.progress,
                should_cancel=recorder.should_cancel,
                seed=int(hp.get("seed", 0)),
            )
        )
    from modeling.train import TrainConfig, train

    if run.base_model is None and run.kind == TrainingRun.Kind.SFT:
        raise ValueError("a fine-tuning run needs a base model version")
    data = []
    replay: list[str] = []
    if run.base_model is not None and run.kind == TrainingRun.Kind.SFT:
        # What the promotion policy fills in (replay sources, dev selection) is checked too.
        hp = hyperparameters_validate(record_finetune_settings(run, hp))
        hp, replay = train_config_kwargs(hp)
    if run.dataset is not None:
        dataset_file = Path(run.dataset.path)
        if not dataset_file.is_file():
            raise ValueError(f"the file of dataset {run.dataset} is missing")
        if run.dataset.sha256:
            from webchat.curation.hashing import file_sha256

            if file_sha256(dataset_file) != run.dataset.sha256:
                raise ValueError(f"dataset {run.dataset} does not match its recorded hash")
        data.append(str(dataset_file))
    config = TrainConfig(
        kind=run.kind,
        out_dir=str(out),
        base_model=run.base_model.path if run.base_model else None,
        data=(data + replay) or ["skills:train"],
        on_bad_line=hp.pop("on_bad_line", "fail"),
        lineage={
            "training_run": run.pk,
            "parent_version": run.base_model.name if run.base_model else None,
            "dataset": str(run.dataset) if run.dataset else None,
            "replay": replay_lineage(run.hyperparameters),
        },
        **hp,
    )
    return Path(train(config, progress=recorder.progress, should_cancel=recorder.should_cancel))


def record_finetune_settings(run, hp: dict) -> dict:
    """Fill a fine-tune's replay and dev-selection settings from the promotion policy (where the
    run does not name them) and write them on the run's row, so the admin shows what it used."""
    from webchat.registry.models import PromotionPolicy
    from webchat.registry.services import training_run_update

    completed = finetune_hyperparameters(hp, policy=PromotionPolicy.load())
    recorded = {**(run.hyperparameters or {}), **completed}
    if recorded != run.hyperparameters:
        training_run_update(run_id=run.pk, hyperparameters=recorded)
        run.hyperparameters = recorded
    return completed


def register(run, model_dir: Path):
    """Publish the trained model as MODELS_DIR/versions/<kind>-run<id> and record it as a
    candidate. Nothing is written over an existing directory or version: the name is taken
    first in the database (names of that shape are reserved for runs), then the directory is
    published under a lock; if either is taken the run fails with the reason and its model stays
    in its run directory."""
    from modeling.checkpoint import model_info, publish_dir
    from webchat.registry.selectors import model_version_by_name
    from webchat.registry.services import RegistryError, model_version_register

    name = f"{run.kind}-run{run.pk}"
    final = Path(settings.MODELS_DIR) / "versions" / name
    existing = model_version_by_name(name=name)
    if existing is not None:
        if not _registered_by(run, existing, final):
            raise RegistryError(
                f"a model version named {name} already exists and is not this run's"
            )
        if not final.is_dir() and model_dir.is_dir():  # died between the row and the rename
            publish_dir(model_dir, final)
        return existing  # a redelivered run that registered before dying
    with transaction.atomic():  # the row goes if the directory cannot be published
        version = model_version_register(
            name=name,
            path=str(final),
            info=model_info(model_dir),
            parent=run.base_model,
            dataset=run.dataset,
        )
        publish_dir(model_dir, final)
    return version


def _registered_by(run, version, final: Path) -> bool:
    """Whether `version` is the one this run registered before it was redelivered (not a
    version that took the name earlier, or points elsewhere)."""
    return (
        Path(version.path) == final
        and version.parent_id == run.base_model_id
        and run.started_at is not None
        and version.created_at >= run.started_at
    )


def after_training(run, version) -> None:
    """Activate the default model when nothing is active yet (first start); then evaluate every
    finished run's model on the `cpu` queue (the learning loop continues from the evaluation:
    worker.evaluation -> worker.loop.loop_after_evaluation)."""
    from webchat.registry.models import TrainingRun
    from webchat.registry.services import model_version_activate, model_version_active
    from worker.evaluation import evaluate_version

    if run.kind == TrainingRun.Kind.DEFAULT and model_version_active() is None:
        model_version_activate(version=version)
    transaction.on_commit(lambda: evaluate_version.delay(version.pk, run.pk))
