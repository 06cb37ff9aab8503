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
