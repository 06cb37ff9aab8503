"""Training runs as Celery tasks: progress, registration, failure with a reason, cancel."""

import pytest

from webchat.registry.models import ModelVersion, TrainingRun
from webchat.registry.services import training_run_cancel
from worker.training import run_training

pytestmark = pytest.mark.django_db

TINY_SFT = {
    "max_steps": 4,
    "batch_size": 2,
    "seq_len": 64,
    "skills_n": 16,
    "warmup_steps": 1,
    "lr": 1e-3,
    "num_threads": 1,
}


@pytest.fixture
def models_dir(settings, tmp_path):
    settings.MODELS_DIR = tmp_path / "models"
    return settings.MODELS_DIR


def test_a_fine_tune_run_records_progress_and_registers_a_candidate(active_tiny_model, models_dir):
    run = TrainingRun.objects.create(
        kind="sft", base_model=active_tiny_model, hyperparameters=TINY_SFT
    )
    result = run_training(run.pk)
    run.refresh_from_db()
    assert result["status"] == "done", run.error
    assert run.status == "done"
    assert run.progress == 1.0
    assert len(run.loss_curve) == 4
    assert all(loss > 0 for _, loss in run.loss_curve)
    assert "step 4/4" in run.log_tail
    candidate = run.output_model
    assert candidate.status == "candidate"
    assert candidate.parent == active_tiny_model
    assert (models_dir / "versions" / candidate.name / "model.safetensors").is_file()
    active_tiny_model.refresh_from_db()
    assert active_tiny_model.status == "active"  # promotion is a separate, gated step
    assert run_training(run.pk)["status"] == "skipped"  # redelivery does nothing


def test_a_run_fed_a_corrupt_dataset_fails_with_the_reason_and_changes_nothing(
    active_tiny_model, models_dir, tmp_path
):
    from webchat.curation.models import Dataset

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"messages": [{"role": "user", "content": "hi"}]}\nnot json\n')
    dataset = Dataset.objects.create(name="bad", path=str(bad))
    run = TrainingRun.objects.create(
        kind="sft", base_model=active_tiny_model, dataset=dataset, hyperparameters=TINY_SFT
    )
    versions_before = list(ModelVersion.objects.values_list("pk", "status"))
    assert run_training(run.pk)["status"] == "failed"
    run.refresh_from_db()
    assert run.status == "failed"
    assert "bad.jsonl:1" in run.error or "bad.jsonl:2" in run.error
    assert list(ModelVersion.objects.values_list("pk", "status")) == versions_before


def test_a_run_with_a_changed_dataset_file_fails_its_hash_check(
    active_tiny_model, models_dir, tmp_path
):
    from webchat.curation.models import Dataset

    good = tmp_path / "d.jsonl"
    good.write_text(
        '{"messages": [{"role": "user", "content": "hi"}, '
        '{"role": "assistant", "content": "hello."}]}\n'
    )
    dataset = Dataset.objects.create(name="d", path=str(good), sha256="0" * 64)
    run = TrainingRun.objects.create(
        kind="sft", base_model=active_tiny_model, dataset=dataset, hyperparameters=TINY_SFT
    )
    run_training(run.pk)
    run.refresh_from_db()
    assert run.status == "failed"
    assert "does not match its recorded hash" in run.error


def test_a_cancelled_run_stops_and_registers_nothing(active_tiny_model, models_dir):
    run = TrainingRun.objects.create(
        kind="sft", base_model=active_tiny_model, hyperparameters=TINY_SFT
    )
    training_run_cancel(run=run)
    assert run_training(run.pk)["status"] == "skipped"
    run.refresh_from_db()
    assert run.status == "cancelled"
    assert run.output_model is None
    assert ModelVersion.objects.count() == 1


def test_a_fine_tune_with_online_augmentation_runs_and_a_held_out_recipe_is_refused(
    active_tiny_model, models_dir
):
    augmented = {**TINY_SFT, "perturb_prob": 0.5, "perturb_recipe": "mixed", "perturb_rate": 0.2}
    run = TrainingRun.objects.create(
        kind="sft", base_model=active_tiny_model, hyperparameters=augmented
    )
    assert run_training(run.pk)["status"] == "done"

    held_out = {**augmented, "perturb_recipe": "ocr"}
    run = TrainingRun.objects.create(
        kind="sft", base_model=active_tiny_model, hyperparameters=held_out
    )
    versions_before = list(ModelVersion.objects.values_list("pk", "status"))
    assert run_training(run.pk)["status"] == "failed"
    run.refresh_from_db()
    assert "held out for evaluation" in run.error
    assert list(ModelVersion.objects.values_list("pk", "status")) == versions_before


def test_a_run_stopped_by_a_shutting_down_web_process_is_queued_again_and_resumes(
    active_tiny_model, models_dir
):
    from webchat.registry.services import training_runs_requeue
    from worker import embedded

    run = TrainingRun.objects.create(
        kind="sft", base_model=active_tiny_model, hyperparameters=TINY_SFT
    )
    embedded.shutting_down.set()  # what the interpreter's exit hook does on Ctrl-C
    try:
        assert run_training(run.pk)["status"] == "interrupted"
    finally:
        embedded.shutting_down.clear()
    run.refresh_from_db()
    assert run.status == "queued"
    assert not run.output_model
    assert "shutting down" in run.log_tail
    cancelled = TrainingRun.objects.create(
        kind="sft", base_model=active_tiny_model, cancel_requested=True
    )
    TrainingRun.objects.create(kind="sft", base_model=active_tiny_model, status="done")

    queued = []
    assert training_runs_requeue(send=queued.append) == [run.pk]  # the next start
    assert queued == [run.pk]
    assert cancelled.pk not in queued
    assert run_training(run.pk)["status"] == "done"  # resumes from its checkpoint
    run.refresh_from_db()
    assert run.status == "done"
    assert run.output_model is not None
    assert len(run.loss_curve) == 4  # no step trained twice


def test_the_exit_hook_runs_before_python_joins_the_worker_pool_threads(tmp_path):
    import subprocess
    import sys
    import textwrap

    # A pool thread that only ends when the flag is set: without the hook the interpreter
    # would wait for it forever at exit.
    script = textwrap.dedent(
        """
        import concurrent.futures, os, time
        os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webchat.settings")
        import django; django.setup()
        from worker import embedded
        embedded._register_exit_hook()
        pool = concurrent.futures.ThreadPoolExecutor(1)
        pool.submit(lambda: embedded.shutting_down.wait(60) and print("stopped by the hook"))
        time.sleep(0.2)
        """
    )
    env = {k: v for k, v in __import__("os").environ.items() if k != "DATABASE_URL"}
    env["WEBCHAT_VAR_DIR"] = str(tmp_path)
    done = subprocess.run(  # noqa: S603 - our own interpreter and script
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=30, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "stopped by the hook" in done.stdout
