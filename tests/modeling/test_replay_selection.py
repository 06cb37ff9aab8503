"""Fine-tunes that do not forget and pick their model on dev: replay share, select on dev."""

import json

import pytest
import torch

from modeling import skills
from modeling.checkpoint import load_model
from modeling.data import Batches, Example, replay_count, replay_slots
from modeling.dev_selection import DevSelector, DevSet
from modeling.tokenizer import Tokenizer
from modeling.train import TrainConfig, train


@pytest.fixture(scope="module")
def skills_tokenizer(tmp_path_factory):
    texts = [m["content"] for d in skills.dialogues("dev", n=8) for m in d.messages]
    texts += [m["content"] for d in skills.dialogues("train", n=8) for m in d.messages]
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    Tokenizer.train(texts * 3, vocab_size=300).save(path)
    return str(path)


def sft_config(tmp_path, tokenizer, **kw):
    base = dict(
        kind="sft",
        out_dir=str(tmp_path / "run"),
        tokenizer=tokenizer,
        model=dict(n_layer=2, n_head=2, n_embd=64, block_size=128),
        data=["skills:dev"],
        skills_n=8,
        seq_len=128,
        batch_size=8,
        max_steps=6,
        lr=3e-3,
        min_lr=3e-4,
        warmup_steps=2,
        num_threads=1,
    )
    return TrainConfig(**{**base, **kw})


class _Fmt:
    """Renders a conversation whose one message names its row (enough to count rows)."""

    def render(self, messages, max_tokens=None):
        ids = [int(messages[0]["content"])] * 3
        return ids, [1, 1, 1]


def test_replay_share_sets_the_rows_of_every_step_and_spreads_them():
    own = [Example(conversations=[[{"role": "user", "content": str(i)}]]) for i in range(10)]
    old = [Example(conversations=[[{"role": "user", "content": str(100 + i)}]]) for i in range(7)]
    batches = Batches(
        own, _Fmt(), seq_len=8, batch_size=4, grad_accum=2, world=2, replay=old, replay_share=0.25
    )
    assert batches.replay_per_step == replay_count(16, 0.25) == 4
    for step in range(12):
        idx = batches.step_indices(step)
        assert sum(batches.is_replay(i) for i in idx) == 4
        # each micro-batch of each rank gets its share, not one rank all of them
        for m in range(2):
            for rank in range(2):
                x, _ = batches.micro_batch(step, m, rank)
                assert int((x[:, 0] >= 100).sum()) == 1
    seen = {i for s in range(12) for i in batches.step_indices(s) if batches.is_replay(i)}
    assert len(seen) == len(old)  # the replay stream runs through every replay row
    assert batches.step_indices(5) == batches.step_indices(5)  # a pure function of the step
    assert replay_count(16, 0.0) == 0
    assert replay_count(16, 0.01) == 1
    assert replay_count(2, 0.9) == 1
    assert replay_slots(8, 2) == [False, False, False, True, False, False, False, True]


def test_a_fine_tune_records_its_replay_in_lineage_and_hyperparameters(tmp_path, skills_tokenizer):
    cfg = sft_config(
        tmp_path, skills_tokenizer, replay_data=["skills:train", "skills-text"], replay_share=0.5,
        skills_text_n=20,
    )  # fmt: skip
    meta = json.loads((train(cfg) / "meta.json").read_text())
    assert meta["lineage"]["replay_data"] == ["skills:train", "skills-text"]
    assert meta["lineage"]["replay_share"] == 0.5
    assert meta["train_config"]["replay_share"] == 0.5
    assert meta["replay_rows_per_step"] == 4
    assert meta["replay_rows"] > 8


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"replay_share": 1.0, "replay_data": ["skills:train"]}, "replay_share must be in"),
        ({"replay_share": -0.1}, "replay_share must be in"),
        ({"replay_share": 0.3}, "needs replay_data"),
        ({"replay_share": 0.3, "replay_data": ["missing.jsonl"]}, "not found: missing.jsonl"),
        ({"select_on_dev": True}, "eval_interval >= 1 and eval_accuracy_n >= 1"),
        (
            {"select_on_dev": True, "eval_interval": 2, "eval_accuracy_n": 4,
             "dev_perturb_recipe": "ocr"},
            "held out for evaluation",
        ),
        ({"patience": -1}, "patience must be >= 0"),
    ],
)  # fmt: skip
def test_bad_replay_and_selection_settings_are_refused_before_anything_is_written(
    tmp_path, skills_tokenizer, fields, message
):
    cfg = sft_config(tmp_path, skills_tokenizer, **fields)
    with pytest.raises((ValueError, FileNotFoundError), match=message):
        train(cfg)
    assert not (tmp_path / "run").exists()


def test_the_selector_keeps_the_best_robust_checkpoint_within_the_clean_tolerance():
    model = torch.nn.Linear(1, 1)
    sel = DevSelector(tolerance_points=0.5, patience=2)
    for step, clean, robust in [
        (0, 0.900, 0.60),  # the parent
        (10, 0.880, 0.90),  # more robust but 2 points worse clean: not eligible
        (20, 0.896, 0.70),  # within 0.5 points: the new best
        (30, 0.900, 0.65),
    ]:
        with torch.no_grad():
            model.weight.fill_(step)
        sel.consider(step, clean, robust, model)
    assert sel.best_step == 20
    assert sel.best_state["weight"].item() == 20
    assert not sel.should_stop()
    sel.consider(40, 0.91, 0.70, model)  # equal robust accuracy is no new best
    assert sel.should_stop()
    assert [h["best_step"] for h in sel.history] == [0, 0, 20, 20, 20]


def test_select_on_dev_saves_the_best_dev_checkpoint_and_stops_early(tmp_path, skills_tokenizer):
    cfg = sft_config(
        tmp_path, skills_tokenizer, max_steps=200, select_on_dev=True, eval_interval=10,
        eval_accuracy_n=8, patience=3, dev_perturb_recipe="typo",
    )  # fmt: skip
    evals = []
    model_dir = train(cfg, progress=lambda i: evals.append(i) if i["phase"] == "eval" else None)
    meta = json.loads((model_dir / "meta.json").read_text())
    sel = meta["selection"]
    assert evals[0]["step"] == 0
    assert sel["parent_dev_clean"] == evals[0]["dev_clean"]
    assert all({"dev_clean", "dev_robust", "best_step"} <= set(e) for e in evals)
    eligible = [e for e in evals if e["dev_clean"] >= sel["parent_dev_clean"] - 0.005]
    best = max(eligible, key=lambda e: (e["dev_robust"], -e["step"]))
    assert sel["best_step"] == best["step"] > 0
    # stopped `patience` evals after the best, well before max_steps
    assert sel["stopped_early_at"] == best["step"] + 3 * 10 < 200 == cfg.max_steps
    assert meta["metrics"]["best_step"] == best["step"]
    # the saved weights are the best step's: they score its numbers again
    model, tokenizer, _ = load_model(model_dir)
    from modeling.chat import ChatFormat

    dev = DevSet.build(
        [{"messages": list(d.messages), "family": d.family} for d in skills.dialogues("dev", n=8)],
        "typo", 0.2, cfg.seed,
    )  # fmt: skip
    assert dev.accuracy(model, ChatFormat(tokenizer)) == (best["dev_clean"], best["dev_robust"])


def test_select_on_dev_gives_back_the_parent_when_nothing_beats_it(tmp_path, skills_tokenizer):
    cfg = sft_config(
        tmp_path, skills_tokenizer, max_steps=50, lr=1e-6, min_lr=1e-7, select_on_dev=True,
        eval_interval=2, eval_accuracy_n=4, patience=2,
    )  # fmt: skip
    model_dir = train(cfg)
    sel = json.loads((model_dir / "meta.json").read_text())["selection"]
    assert (sel["best_step"], sel["stopped_early_at"]) == (0, 4)
    torch.manual_seed(cfg.seed)
    from modeling.model import ModelConfig, Transformer

    model, _, _ = load_model(model_dir)
    fresh = Transformer(ModelConfig(**{**cfg.model, "vocab_size": model.config.vocab_size}))
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name


def _accuracy(model_dir, dialogues):
    from modeling.chat import ChatFormat
    from modeling.evaluate import evaluate

    model, tokenizer, _ = load_model(model_dir)
    return evaluate(model, ChatFormat(tokenizer), dialogues)["accuracy"]


@pytest.mark.slow  # three tiny training runs
def test_replay_keeps_what_a_narrow_fine_tune_would_forget(tmp_path, skills_tokenizer):
    parent = train(sft_config(tmp_path / "parent", skills_tokenizer, max_steps=60))
    # what the parent learned: those of its 8 training dialogues it answers right (most of them)
    known = [
        {"messages": list(d.messages), "family": d.family} for d in skills.dialogues("dev", n=8)
    ]
    known = [d for d in known if _accuracy(parent, [d]) == 1.0]
    assert len(known) >= 6
    before = _accuracy(parent, known)
    narrow = tmp_path / "narrow.jsonl"
    narrow.write_text(
        "".join(
            json.dumps({"messages": [{"role": "user", "content": f"What is {a} plus {a}?"},
                                     {"role": "assistant", "content": f"{2 * a}."}]}) + "\n"
            for a in range(2, 6)
        )
    )  # fmt: skip
    common = dict(base_model=str(parent), data=[str(narrow)], max_steps=40)
    forgot = train(sft_config(tmp_path / "plain", None, **common))
    kept = train(
        sft_config(
            tmp_path / "replay", None, replay_data=["skills:dev"], replay_share=0.5,
            **common,
        )
    )  # fmt: skip
    assert before >= 0.875
    assert _accuracy(forgot, known) <= before - 0.25  # the narrow data overwrote the rest
    assert _accuracy(kept, known) >= before - 0.125
