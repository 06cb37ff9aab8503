"""The learning loop measured on the product's own path: does a round yield a better model?

For each seed, from the default model (trained as the product trains it on first start: a
``default`` TrainingRun), ``--rounds`` learning rounds run through the same services and Celery
tasks the admin calls (eager: in this process, no separate training or evaluation code):

1. generate adversarial samples from the skills training split against the active model
   (``curation_job_start(kind="generate")``, the "Run a learning round now" page's defaults,
   ROUND_DEFAULTS: methods mixed + attack, word rate, attack budget; ``--mine-n`` dialogues);
2. approve every valid sample (the "approve all valid" bulk action, ``sample_review``);
3. build a dataset with the build form's defaults (``curation_job_start(kind="build")``);
4. fine-tune the active model with the fine-tune form's defaults (``training_run_start``; the
   worker adds the promotion policy's replay share and dev selection);
5. the worker evaluates the candidate (``worker.evaluation.evaluate_version``, the promotion
   policy's settings) and the gates decide (``promotion_gates``, ``model_version_promote``).

Per round it prints clean accuracy, OOD accuracy, accuracy under each trained perturbation family,
the held-out families (OCR, split/merge) and entity typos at word rate 0.2, adaptive and replayed
ASR, the repair rate (when the evaluation has one), the gate's verdict with the clean interval,
and wall time; then the means over seeds, the issue's targets, and a final JSON line.

``--ablation`` adds the verified-vs-unverified ablation: a second lineage per seed whose samples
come from the attack with the validity oracle off (modeling.attack with no constraints, slot
words editable), stored as samples through the same service, approved and built with
``only_valid=False``; everything after generation is the same product path.

    .venv/bin/python bench/bench_loop.py                          # 3 rounds x 3 seeds (hours)
    .venv/bin/python bench/bench_loop.py --rounds 1 --seeds 1     # one round, one seed

Each seed runs in its own process with its own SQLite database under ``--out``/seed<N>/ and
caches every finished round, so a rerun continues (delete a seed's folder to start it over).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from loop_report import HELDOUT, TRAINED, print_table, targets

ROOT = Path(__file__).resolve().parent.parent


def _setup_django(workdir: Path, overrides: dict) -> None:
    """A fresh product in workdir: its SQLite database, models and datasets; tasks run eagerly."""
    workdir.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        DJANGO_SETTINGS_MODULE="webchat.settings",
        DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}",
        WEBCHAT_VAR_DIR=str(workdir),
        WEBCHAT_AUTO_DEFAULT_MODEL="0",
        WEBCHAT_START_EMBEDDED_WORKER="0",
    )
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.conf import settings
    from django.core.management import call_command

    from webchat.registry.models import PromotionPolicy
    from worker.app import app

    call_command("migrate", verbosity=0)
    settings.MODELS_DIR = workdir / "models"
    settings.DATASETS_DIR = workdir / "datasets"
    app.conf.task_always_eager = True
    if overrides:
        PromotionPolicy.objects.filter(pk=PromotionPolicy.load().pk).update(**overrides)


def _admin():
    from django.contrib.auth.models import User

    user = User.objects.filter(username="bench-admin").first()
    return user or User.objects.create_superuser("bench-admin", "bench@example.org", "x")  # noqa: S106


def _default_model(seed: int, quick: dict):
    """The active model: the product's default-model run on first start (cached in the DB; an
    interrupted run resumes from its checkpoint). ``quick``: DefaultRecipe overrides for a smoke
    run, built by modeling.recipes and registered as the active version instead (its numbers
    say nothing about the product's default model)."""
    from webchat.registry.models import TrainingRun
    from webchat.registry.selectors import model_version_active
    from webchat.registry.services import training_run_start
    from worker.training import run_training

    active = model_version_active()
    if active is not None:
        return active
    if quick:
        return _quick_default(seed, quick)
    run = TrainingRun.objects.filter(kind=TrainingRun.Kind.DEFAULT).first()
    if run is None:
        run = training_run_start(kind=TrainingRun.Kind.DEFAULT, hyperparameters={"seed": seed})
    else:
        run_training.delay(run.pk)  # a bench killed mid-build: the run resumes
    run.refresh_from_db()
    if run.status != TrainingRun.Status.DONE:
        raise RuntimeError(f"the default model run failed: {run.error}")
    return model_version_active()


def _quick_default(seed: int, quick: dict):
    from django.conf import settings

    from modeling.checkpoint import model_info
    from modeling.recipes import DefaultRecipe, build_default_model
    from webchat.registry.services import model_version_activate, model_version_register
    from worker.evaluation import evaluate_version

    out = Path(settings.MODELS_DIR) / "quick-default"
    path = build_default_model(out, seed=seed, recipe=DefaultRecipe(**quick))
    version = model_version_register(name="quick-default", path=str(path), info=model_info(path))
    model_version_activate(version=version)
    evaluate_version.delay(version.pk)
    return version


def _form_initial(form_class) -> dict:
    return {name: f.initial for name, f in form_class.base_fields.items() if f.initial is not None}


def _generate(active, mine_n: int, seed: int, verified: bool) -> dict:
    """Step 1: samples against the active model (the learning-round page's defaults)."""
    from webchat.curation.admin.forms import SkillsGenerateForm
    from webchat.curation.models import CurationJob, LoopSettings
    from webchat.curation.services import ROUND_DEFAULTS, curation_job_start

    # "Run a learning round now": its defaults, else the generation form's
    form = {**_form_initial(SkillsGenerateForm), **ROUND_DEFAULTS}
    methods = list(LoopSettings.load().mine_methods or form.get("methods") or ["mixed"])
    params = {
        "source": "skills",
        "split": "train",
        "n": mine_n,
        "methods": methods,
        "rate": form.get("rate", 0.2),
        "budget": form.get("budget", 200),
        "seed": seed,
        "model_version_id": active.pk,
    }
    if not verified:
        return _generate_unverified(active, params)
    job = curation_job_start(kind=CurationJob.Kind.GENERATE, params=params, user=_admin())
    job.refresh_from_db()
    if job.status != CurationJob.Status.DONE:
        raise RuntimeError(f"generation failed: {job.error}")
    return job.result


def _generate_unverified(active, params: dict) -> dict:
    """The ablation's samples: the attack with no validity check, saved as the product saves
    samples (adversarial_sample_create), with the oracle's verdict recorded but not applied."""
    import random

    from modeling import attack
    from webchat.curation.models import AdversarialSample
    from webchat.curation.services import adversarial_sample_create
    from worker.curation import LoadedModel, sources_from_skills, validity

    loaded = LoadedModel(active)
    made = 0
    for i, src in enumerate(sources_from_skills("train", params["n"], params["seed"])):
        messages = src.context + [{"role": "user", "content": src.text}]
        rng = random.Random(params["seed"] * 7919 + i)  # noqa: S311 - seeded
        r = attack.attack(
            loaded.model,
            loaded.fmt,
            messages,
            src.target,
            budget=params["budget"],
            rng=rng,
            constraints=[],
            protect_slots=False,
        )
        if r.status != "successful":
            continue
        valid, note = validity(src.text, r.perturbed, src.context)
        adversarial_sample_create(
            kind=AdversarialSample.Kind.ADVERSARIAL,
            origin="skills",
            family=src.family,
            context=src.context,
            original_text=src.text,
            perturbed_text=r.perturbed,
            target_reply=src.target,
            method="attack",
            parameters={"unverified": True},
            valid=valid,
            validity_note=note,
            attacked_model=active,
            model_output=r.output,
            fooled=True,
            queries=r.queries,
        )
        made += 1
    return {"samples": made, "valid": None, "fooled": made}


def _approve_and_build(verified: bool, round_no: int):
    """Steps 2-3: approve (all valid; the ablation: all) and build with the form's defaults."""
    from webchat.curation.admin.forms import BuildDatasetForm
    from webchat.curation.models import AdversarialSample, CurationJob, Dataset
    from webchat.curation.services import curation_job_start, sample_review

    pending = AdversarialSample.objects.filter(status=AdversarialSample.Review.PENDING)
    if verified:
        pending = pending.filter(valid=True)
    sample_review(user=_admin(), samples=pending, status="approved")
    form = _form_initial(BuildDatasetForm)
    params = {
        "name": f"bench-r{round_no}",
        "clean_share": form.get("clean_share", 0.5),
        "only_valid": verified and form.get("only_valid", True),
    }
    job = curation_job_start(kind=CurationJob.Kind.BUILD, params=params, user=_admin())
    job.refresh_from_db()
    if job.status != CurationJob.Status.DONE:
        raise RuntimeError(f"dataset build failed: {job.error}")
    return Dataset.objects.get(pk=job.result["dataset_id"])


def _fine_tune(active, dataset, overrides: dict):
    """Steps 4-5: the fine-tune form's defaults; the worker trains, registers and evaluates."""
    from webchat.curation.services import FINETUNE_DEFAULTS
    from webchat.registry.models import TrainingRun
    from webchat.registry.services import training_run_start

    run = training_run_start(
        kind=TrainingRun.Kind.SFT,
        base_model=active,
        dataset=dataset,
        hyperparameters={**FINETUNE_DEFAULTS, **overrides},
        user=_admin(),
    )
    run.refresh_from_db()
    if run.status != TrainingRun.Status.DONE:
        raise RuntimeError(f"fine-tune run #{run.pk} {run.status}: {run.error}")
    return run


def _row(version, results: dict) -> dict:
    """The round's numbers, read from the Evaluation rows the worker stored."""
    from modeling.evaluation_suite import (
        TEST_ADAPTIVE,
        TEST_CLEAN,
        TEST_OOD,
        TEST_PERTURBED,
        TEST_REPAIR,
        TEST_REPLAYED,
    )

    pert = results.get(TEST_PERTURBED) or {}

    def at(family):
        return (pert.get(f"{family}@0.2") or {}).get("accuracy")

    heldout = [at(f) for f in HELDOUT if at(f) is not None]
    repair = results.get(TEST_REPAIR) or {}
    return {
        "version": version.name,
        "clean": results[TEST_CLEAN]["accuracy"],
        "clean_n": results[TEST_CLEAN]["n"],
        "ood": results[TEST_OOD]["accuracy"],
        **{f"{f}@0.2": at(f) for f in (*TRAINED, *HELDOUT)},
        "heldout@0.2": statistics.mean(heldout) if heldout else None,
        "entity_typo@0.2": at("entity_typo"),
        "adaptive_asr": (results.get(TEST_ADAPTIVE) or {}).get("asr"),
        "replayed_asr": (results.get(TEST_REPLAYED) or {}).get("asr"),
        "repair_rate": repair.get("repair_rate", repair.get("rate")),
        "per_family": {
            f: v["accuracy"] for f, v in results[TEST_CLEAN].get("per_family", {}).items()
        },
    }


def _gate_summary(report: dict) -> dict:
    clean = next((c for c in report["checks"] if c["name"] == "clean accuracy"), {})
    interval = clean.get("interval") or {}
    return {
        "passed": report["passed"],
        "clean_low": interval.get("low"),
        "clean_high": interval.get("high"),
        "failed": [f"{c['name']}: {c['detail']}" for c in report["checks"] if not c["passed"]],
    }


def run_seed(args, seed: int, verified: bool) -> list[dict]:
    """Every round of one lineage, in this process (cached per round under its folder)."""
    name = f"seed{seed}" + ("" if verified else "-unverified")
    workdir = Path(args.out) / name
    _setup_django(workdir, json.loads(args.policy) if args.policy else {})
    from webchat.registry.selectors import evaluation_results, model_version_active
    from webchat.registry.services import (
        PromotionRefused,
        model_version_evaluate,
        model_version_promote,
        promotion_gates,
    )

    rows = []
    t0 = time.perf_counter()
    default = _default_model(seed, json.loads(args.quick_default or "{}"))
    if not evaluation_results(default):
        model_version_evaluate(version=default)
    rows.append(
        {
            "seed": seed,
            "round": 0,
            "verified": verified,
            **_row(default, evaluation_results(default)),
            "wall_s": round(time.perf_counter() - t0, 1),
        }
    )
    for r in range(1, args.rounds + 1):
        cached = workdir / f"round{r}.json"
        if cached.is_file():
            rows.append(json.loads(cached.read_text()))
            continue
        t0 = time.perf_counter()
        active = model_version_active()
        mined = _generate(active, args.mine_n, seed * 1000 + r, verified)
        dataset = _approve_and_build(verified, r)
        run = _fine_tune(active, dataset, json.loads(args.finetune or "{}"))
        version = run.output_model
        report = promotion_gates(candidate=version, active=active)
        try:
            model_version_promote(version=version, user=_admin(), note=f"bench round {r}")
            promoted = True
        except PromotionRefused:
            promoted = False
        selection = (run.hyperparameters or {}).get("select_on_dev")
        row = {
            "seed": seed,
            "round": r,
            "verified": verified,
            **_row(version, evaluation_results(version)),
            "samples": mined.get("samples"),
            "fooled": mined.get("fooled"),
            "dataset_records": (dataset.counts or {}).get("records"),
            "select_on_dev": selection,
            "gate": _gate_summary(report),
            "promoted": promoted,
            "wall_s": round(time.perf_counter() - t0, 1),
        }
        cached.write_text(json.dumps(row))
        rows.append(row)
    return rows


def _lineage_cmd(args, seed: int, verified: bool) -> list[str]:
    return [
        sys.executable, __file__, "--seed-process", str(seed), "1" if verified else "0",
        "--rounds", str(args.rounds), "--mine-n", str(args.mine_n), "--out", args.out,
        "--policy", args.policy, "--quick-default", args.quick_default,
        "--finetune", args.finetune,
    ]  # fmt: skip


def _run_lineages(args, lineages: list[tuple[int, bool]]) -> list[list[dict]]:
    """One process per lineage (its own database and Django setup), ``--jobs`` at a time; each
    process picks its own torch thread count (modeling.recipes.choose_num_threads), so two
    lineages on two cores run side by side instead of fighting over both."""
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if args.jobs > 1:
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // args.jobs)))
    running: list[tuple[subprocess.Popen, int, bool, Path, object]] = []
    pending = list(lineages)
    results: dict[tuple[int, bool], list[dict]] = {}
    while pending or running:
        while pending and len(running) < args.jobs:
            seed, verified = pending.pop(0)
            log_file = out / f"seed{seed}-{int(verified)}.log"
            log = open(log_file, "w")  # noqa: SIM115 - closed when the process ends
            proc = subprocess.Popen(  # noqa: S603 - our own script
                _lineage_cmd(args, seed, verified), stdout=log, stderr=subprocess.STDOUT, env=env
            )
            running.append((proc, seed, verified, log_file, log))
        time.sleep(1)
        for item in list(running):
            proc, seed, verified, log_file, log = item
            if proc.poll() is None:
                continue
            running.remove(item)
            log.close()
            result = out / f"rows-{seed}-{int(verified)}.json"
            if proc.returncode or not result.is_file():
                for other in running:
                    other[0].terminate()
                sys.stderr.write(log_file.read_text()[-5000:])
                raise SystemExit(f"seed {seed} failed (log: {log_file})")
            results[(seed, verified)] = json.loads(result.read_text())
    return [results[lineage] for lineage in lineages]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--mine-n", type=int, default=300, help="training dialogues mined per round")
    ap.add_argument("--ablation", action="store_true", help="also the unverified lineage")
    ap.add_argument(
        "--jobs", type=int, default=1, help="lineages (seed processes) run side by side"
    )
    ap.add_argument("--out", default=str(ROOT / "var" / "bench" / "loop"))
    ap.add_argument(
        "--policy",
        default="",
        help="PromotionPolicy field overrides as JSON "
        "(smaller evaluations for a smoke run; the default is the product's policy)",
    )
    ap.add_argument(
        "--quick-default",
        default="",
        help="DefaultRecipe overrides as JSON for a smoke run (a smaller default model instead "
        "of the product's default run)",
    )
    ap.add_argument(
        "--finetune",
        default="",
        help="fine-tune hyperparameter overrides as JSON for a smoke run (default: the form's)",
    )
    ap.add_argument("--seed-process", nargs=2, metavar=("SEED", "VERIFIED"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.seed_process:
        seed, verified = int(args.seed_process[0]), args.seed_process[1] == "1"
        rows = run_seed(args, seed, verified)
        (Path(args.out) / f"rows-{seed}-{int(verified)}.json").write_text(json.dumps(rows))
        return 0
    lineages = [
        (seed, verified)
        for verified in ((True, False) if args.ablation else (True,))
        for seed in range(args.seeds)
    ]
    rows = []
    for result in _run_lineages(args, lineages):
        rows += result
    means = print_table(rows)
    met = targets(means, rows)
    for t in met:
        print(f"{t['target']}: {'-' if t['met'] is None else 'met' if t['met'] else 'MISSED'}")
    print(
        json.dumps(
            {
                "bench": "loop",
                "rounds": args.rounds,
                "seeds": args.seeds,
                "mine_n": args.mine_n,
                "policy": args.policy,
                "means": means,
                "targets": met,
                "rows": rows,
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
