"""One evaluation stack: the worker stores exactly what modeling.evaluation_suite computes."""

import json

import pytest

from modeling import skills
from modeling.chat import ChatFormat
from modeling.checkpoint import load_model
from modeling.evaluation_suite import (
    TEST_ADAPTIVE,
    TEST_CLEAN,
    TEST_OOD,
    TEST_PERTURBED,
    TEST_REPLAYED,
    EvalSettings,
    evaluate_suite,
)
from modeling.tokenizer import Tokenizer
from modeling.train import TrainConfig, train
from webchat.registry.models import Evaluation, PromotionPolicy
from webchat.registry.services import eval_config_key, model_version_register

pytestmark = pytest.mark.django_db

SETTINGS = dict(
    eval_n=8, perturb_n=8, perturb_families=["typo", "entity_typo"], perturb_rates=[0.2],
    attack_n=4, attack_budget=20, seed=0,
)  # fmt: skip


@pytest.fixture(scope="module")
def test_split_model(tmp_path_factory):
    """A tiny model that memorised the first 8 test dialogues: right on most, so the numbers
    compared below are not all zeros."""
    root = tmp_path_factory.mktemp("suite")
    texts = [m["content"] for d in skills.dialogues("test", n=8) for m in d.messages]
    texts += [m["content"] for d in skills.dialogues("ood", n=8) for m in d.messages]
    Tokenizer.train(texts * 3, vocab_size=300).save(root / "tok.json")
    cfg = TrainConfig(
        kind="sft", out_dir=str(root / "run"), tokenizer=str(root / "tok.json"),
        model=dict(n_layer=2, n_head=2, n_embd=64, block_size=128), data=["skills:test"],
        skills_n=8, seq_len=128, batch_size=8, max_steps=60, lr=3e-3, min_lr=3e-4,
        warmup_steps=2, num_threads=1,
    )  # fmt: skip
    return train(cfg)


def test_the_worker_stores_the_numbers_the_suite_computes(settings, tmp_path, test_split_model):
    from modeling.checkpoint import model_info
    from worker.evaluation import evaluate_one

    settings.MODELS_DIR = tmp_path / "models"
    policy, _ = PromotionPolicy.objects.update_or_create(pk=1, defaults=SETTINGS)
    config = policy.eval_config()
    key = eval_config_key(config)
    parent = model_version_register(
        name="parent", path=str(test_split_model), info=model_info(test_split_model)
    )
    child = model_version_register(
        name="child", path=str(test_split_model), info=model_info(test_split_model), parent=parent
    )
    evaluate_one(parent, config, key)
    evaluate_one(child, config, key)
    stored = {
        e.test_set: e.metrics
        for e in Evaluation.objects.filter(model_version=child, config_key=key)
    }

    model, tokenizer, _ = load_model(test_split_model)
    fmt = ChatFormat.for_model(tokenizer, test_split_model)
    direct = evaluate_suite(model, fmt, EvalSettings.from_dict(config))
    replayed = evaluate_suite(
        model, fmt, config, replay_examples=direct[TEST_ADAPTIVE]["examples"]
    )[TEST_REPLAYED]
    direct[TEST_REPLAYED] = {**replayed, "source_version": "parent"}
    assert json.loads(json.dumps(direct)) == stored
    clean = stored[TEST_CLEAN]
    assert 0 < clean["accuracy"] <= 1
    assert clean["correct"] == [int(x) for x in clean["correct"]]  # per dialogue, in order
    assert len(clean["correct"]) == 8 == clean["n"]
    assert set(stored[TEST_PERTURBED]) == {"typo@0.2", "entity_typo@0.2"}
    assert len(stored[TEST_ADAPTIVE]["statuses"]) == 4
    assert stored[TEST_OOD]["n"] == 8


def _narrow_fine_tune(parent, replay_share: float):
    """A fine-tune of the parent from the admin's path on a narrow dataset (four "What is a
    plus a?" samples and nothing else), with or without replaying the parent's dialogues."""
    from webchat.curation.models import AdversarialSample
    from webchat.curation.services import dataset_build
    from webchat.registry.models import TrainingRun
    from webchat.registry.services import training_run_start

    AdversarialSample.objects.all().delete()
    for a in range(2, 6):
        AdversarialSample.objects.create(
            origin="skills", original_text=f"What is {a} plus {a}?",
            perturbed_text=f"Waht is {a} plus {a}?", target_reply=f"{2 * a}.", method="typo",
            valid=True, status="approved",
        )  # fmt: skip
    dataset = dataset_build(name=f"narrow{int(replay_share * 10)}", clean_records=[])
    hp = {
        "max_steps": 40, "lr": 3e-3, "min_lr": 3e-4, "warmup_steps": 2, "batch_size": 8,
        "seq_len": 128, "select_on_dev": False, "replay_share": replay_share,
        "replay_data": ["skills:test"] if replay_share else [], "skills_n": 8,
    }  # fmt: skip
    return training_run_start(
        kind=TrainingRun.Kind.SFT, base_model=parent, dataset=dataset, hyperparameters=hp
    )


def _finished(run):
    run.refresh_from_db()
    assert run.status == "done", run.error
    return run.output_model


@pytest.mark.slow  # two fine-tunes and four evaluations of a tiny model
def test_a_fine_tune_without_replay_on_a_narrow_dataset_is_refused_with_the_interval_shown(
    settings, tmp_path, test_split_model, django_capture_on_commit_callbacks
):
    from modeling.checkpoint import model_info
    from webchat.registry.gates import promotion_gates
    from webchat.registry.models import PromotionRecord
    from webchat.registry.services import (
        PromotionRefused,
        model_version_activate,
        model_version_promote,
    )
    from worker.app import app

    settings.MODELS_DIR = tmp_path / "models"
    settings.DATASETS_DIR = tmp_path / "datasets"
    PromotionPolicy.objects.update_or_create(
        pk=1, defaults={**SETTINGS, "require_lower_adaptive_asr": False}
    )
    parent = model_version_activate(
        version=model_version_register(
            name="parent", path=str(test_split_model), info=model_info(test_split_model)
        )
    )
    app.conf.task_always_eager = True
    try:
        with django_capture_on_commit_callbacks(execute=True):
            forgetful = _narrow_fine_tune(parent, 0.0)
        forgetful = _finished(forgetful)
        with django_capture_on_commit_callbacks(execute=True):
            replayed = _narrow_fine_tune(parent, 0.5)
        replayed = _finished(replayed)
    finally:
        app.conf.task_always_eager = False

    report = promotion_gates(candidate=forgetful, active=parent)
    clean = next(c for c in report["checks"] if c["name"] == "clean accuracy")
    assert not clean["passed"]
    assert clean["interval"]["high"] < 0  # the whole interval lies below the parent
    assert "interval" in clean["detail"]
    with pytest.raises(PromotionRefused, match="clean accuracy"):
        model_version_promote(version=forgetful)
    refused = PromotionRecord.objects.get(version=forgetful)
    assert refused.action == "refused"
    assert "interval" in json.dumps(refused.gates)
    # the same fine-tune replaying the parent's dialogues keeps them
    kept = next(
        c for c in promotion_gates(candidate=replayed, active=parent)["checks"]
        if c["name"] == "clean accuracy"
    )  # fmt: skip
    assert kept["passed"], kept["detail"]
