"""Training loop: SFT masking, overfitting, exact resume, DDP equivalence, bad data, cancel."""

import json
import os
import socket

import pytest
import torch

from modeling.checkpoint import load_model
from modeling.datafiles import DataError
from modeling.evaluate import evaluate
from modeling.tokenizer import Tokenizer
from modeling.train import Cancelled, TrainConfig, train
from modeling.train_state import load_train_state

DIALOGUES = [
    [("What is the capital of Spain?", "Madrid."), ("And for France?", "Paris.")],
    [("Spell the word cat.", "c-a-t.")],
    [("What day comes after Monday?", "Tuesday.")],
    [("Compute 3 + 4.", "7.")],
    [("Convert 2 kilometers to meters.", "2000.")],
    [("Reverse the word dog.", "g-o-d.")],
]


def conversation(pairs):
    messages = []
    for user, assistant in pairs:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    return messages


def write_jsonl(path, conversations):
    path.write_text("".join(json.dumps({"messages": c}) + "\n" for c in conversations))
    return str(path)


@pytest.fixture(scope="module")
def tokenizer_file(tmp_path_factory):
    texts = [m["content"] for pairs in DIALOGUES for m in conversation(pairs)]
    tok = Tokenizer.train(texts * 3, vocab_size=300)
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    tok.save(path)
    return str(path)


@pytest.fixture(scope="module")
def chats_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("data") / "chats.jsonl"
    return write_jsonl(path, [conversation(p) for p in DIALOGUES])


def tiny_config(tmp_path, tokenizer_file, data, **kw):
    base = dict(
        kind="sft",
        out_dir=str(tmp_path / "run"),
        tokenizer=tokenizer_file,
        model=dict(n_layer=2, n_head=2, n_embd=32, block_size=128),
        data=data,
        seq_len=128,
        batch_size=3,
        max_steps=6,
        lr=3e-3,
        min_lr=3e-4,
        warmup_steps=2,
        num_threads=1,
    )
    return TrainConfig(**{**base, **kw})


def losses_of(model_dir):
    return json.loads((model_dir / "meta.json").read_text())["loss_curve"]


def test_tiny_sft_run_overfits_a_handful_of_dialogues_to_exact_match(tmp_path, tokenizer_file):
    convs = [conversation(p) for p in DIALOGUES]
    data = write_jsonl(tmp_path / "d.jsonl", convs)
    cfg = tiny_config(
        tmp_path,
        tokenizer_file,
        [data],
        model=dict(n_layer=2, n_head=2, n_embd=64, block_size=128),
        batch_size=6,
        max_steps=80,
        lr=1e-2,
        min_lr=1e-3,
        weight_decay=0.0,
    )
    model_dir = train(cfg)
    model, tok, meta = load_model(model_dir)
    result = evaluate(model, tok, [{"messages": c} for c in convs], batch_size=4)
    assert result["accuracy"] == 1.0, result
    assert meta["loss_curve"][-1] < 0.05 < meta["loss_curve"][0]
    assert meta["lineage"]["kind"] == "sft"
    assert meta["train_config"]["max_steps"] == 80


def test_sft_loss_ignores_user_tokens(tmp_path, tokenizer_file):
    # A user turn after the last reply can influence no assistant token (causal attention), so a
    # trainer that masks user tokens reports the same loss whatever that turn says.
    base = conversation(DIALOGUES[0])
    variants = [base, base + [{"role": "user", "content": "ok"}]]
    variants.append(base + [{"role": "user", "content": "Spell the word cat. Spell it twice."}])
    first_losses = []
    for i, conv in enumerate(variants):
        data = write_jsonl(tmp_path / f"v{i}.jsonl", [conv])
        cfg = tiny_config(
            tmp_path,
            tokenizer_file,
            [data],
            out_dir=str(tmp_path / f"run{i}"),
            batch_size=1,
            max_steps=1,
        )
        first_losses.append(losses_of(train(cfg))[0])
    assert first_losses[1] == pytest.approx(first_losses[0], abs=1e-6)
    assert first_losses[2] == pytest.approx(first_losses[0], abs=1e-6)

    # Changing the content of an assistant reply does change the loss (the check can fail).
    changed = conversation([(DIALOGUES[0][0][0], "Lisbon."), DIALOGUES[0][1]])
    data = write_jsonl(tmp_path / "changed.jsonl", [changed])
    one_step = dict(out_dir=str(tmp_path / "runc"), batch_size=1, max_steps=1)
    cfg = tiny_config(tmp_path, tokenizer_file, [data], **one_step)
    assert abs(losses_of(train(cfg))[0] - first_losses[0]) > 1e-3


def test_resume_after_a_kill_reproduces_the_uninterrupted_loss_curve(
    tmp_path, tokenizer_file, chats_file
):
    # perturbation and NEFTune on: their randomness must replay exactly after the resume too
    kw = dict(max_steps=8, checkpoint_interval=3, perturb_prob=0.5, neftune_alpha=5.0)
    full = losses_of(train(tiny_config(tmp_path, tokenizer_file, [chats_file], **kw)))

    out = str(tmp_path / "killed")

    def die_at_step_5(info):
        if info["step"] == 5:
            raise RuntimeError("killed")

    cfg = tiny_config(tmp_path, tokenizer_file, [chats_file], out_dir=out, **kw)
    with pytest.raises(RuntimeError, match="killed"):
        train(cfg, progress=die_at_step_5)
    assert load_train_state(out)["step"] == 3  # the last periodic checkpoint
    resumed = losses_of(train(cfg))
    assert len(resumed) == len(full) == 8
    for step, (a, b) in enumerate(zip(full, resumed), start=1):
        assert abs(a - b) <= 1e-5, f"step {step}: {a} vs {b}"


def test_cancel_between_steps_stops_cleanly_and_the_checkpoint_resumes(
    tmp_path, tokenizer_file, chats_file
):
    out = tmp_path / "cancelled"
    cfg = tiny_config(tmp_path, tokenizer_file, [chats_file], out_dir=str(out), max_steps=6)
    seen = []
    with pytest.raises(Cancelled) as info:
        train(cfg, progress=lambda d: seen.append(d["step"]), should_cancel=lambda: len(seen) >= 4)
    assert info.value.step == 4
    assert seen == [1, 2, 3, 4]
    state = load_train_state(out)
    assert state["step"] == 4
    assert len(state["loss_history"]) == 4
    assert not (out / "model").exists()

    model_dir = train(cfg)  # the same call resumes from the saved step and finishes
    model, _, meta = load_model(model_dir)
    assert len(meta["loss_curve"]) == 6
    assert meta["metrics"]["step"] == 6
    assert model(torch.tensor([[1, 2, 3]]))[0].shape == (1, 3, model.config.vocab_size)


def test_malformed_jsonl_fails_the_run_with_file_and_line(tmp_path, tokenizer_file):
    good = json.dumps({"messages": conversation(DIALOGUES[1])})
    path = tmp_path / "bad.jsonl"
    path.write_text(good + "\n" + good + "\n{not json\n" + good + "\n")
    with pytest.raises(DataError, match=rf"{path}:3: invalid JSON"):
        train(tiny_config(tmp_path, tokenizer_file, [str(path)]))

    cfg = tiny_config(tmp_path, tokenizer_file, [str(path)], on_bad_line="skip", max_steps=1)
    meta = json.loads((train(cfg) / "meta.json").read_text())
    assert meta["data_rows"] == 3


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank, world, port, cfg_dict, result_file):
    os.environ.update(
        RANK=str(rank), WORLD_SIZE=str(world), LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port),
    )  # fmt: skip
    torch.set_num_threads(1)
    path = train(TrainConfig.from_dict(cfg_dict))
    if rank == 0:
        with open(result_file, "w") as f:
            json.dump(losses_of(path), f)


def test_two_process_gloo_ddp_matches_single_process_loss(tmp_path, tokenizer_file, chats_file):
    import torch.multiprocessing as mp

    single = tiny_config(
        tmp_path, tokenizer_file, [chats_file], batch_size=2, grad_accum=2, max_steps=3
    )
    expected = losses_of(train(single))
    per_rank = dict(out_dir=str(tmp_path / "ddp"), batch_size=2, grad_accum=1, max_steps=3)
    ddp = tiny_config(tmp_path, tokenizer_file, [chats_file], **per_rank)
    result = tmp_path / "ddp_losses.json"
    mp.spawn(_ddp_worker, args=(2, _free_port(), ddp.to_dict(), str(result)), nprocs=2)
    got = json.loads(result.read_text())
    assert len(got) == 3
    for a, b in zip(expected, got):
        assert abs(a - b) <= 1e-5


def test_default_recipe_builds_a_loadable_model_and_reports_progress(tmp_path):
    from modeling.recipes import DefaultRecipe, build_default_model

    recipe = DefaultRecipe(
        vocab_size=320,
        text_docs=100,
        train_dialogues=100,
        model=dict(family="llama", n_layer=1, n_head=2, n_embd=32),
        seq_len=96,
        batch_size=4,
        pretrain_steps=2,
        sft_steps=3,
        warmup_steps=1,
        eval_n=4,
        num_threads=1,
    )
    seen = []
    path = build_default_model(tmp_path / "default", progress=seen.append, recipe=recipe)
    model, _, meta = load_model(path)
    assert meta["skills_eval"]["ood"]["n"] == 4
    assert meta["recipe"]["sft_steps"] == 3
    assert meta["lineage"]["parent"].endswith("pretrain/model")
    steps = [d["step"] for d in seen if d["phase"] == "train" and d["stage"] != "tokenizer"]
    assert steps == [1, 2, 3, 4, 5]
    assert {d["total"] for d in seen} == {5}
    # a second call finds every stage done and returns the same model
    assert build_default_model(tmp_path / "default", recipe=recipe) == path


def test_a_named_perturb_recipe_is_plain_config_and_held_out_families_are_refused(
    tmp_path, tokenizer_file, chats_file
):
    cfg = tiny_config(tmp_path, tokenizer_file, [chats_file], perturb_recipe="mixed")
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert (again.perturb_recipe, again.perturb_rate) == ("mixed", 0.1)
    for held_out in ("ocr", "split_merge", "heldout", "nonsense"):
        bad = tiny_config(tmp_path, tokenizer_file, [chats_file], perturb_recipe=held_out)
        with pytest.raises(ValueError, match="held out for evaluation"):
            bad.validate()


def test_a_named_perturb_recipe_changes_training_and_replays_exactly(
    tmp_path, tokenizer_file, chats_file
):
    def run(name, **kw):
        cfg = tiny_config(
            tmp_path, tokenizer_file, [chats_file], out_dir=str(tmp_path / name), max_steps=3, **kw
        )
        return losses_of(train(cfg))

    plain = run("plain")
    mixed = dict(perturb_prob=1.0, perturb_recipe="mixed", perturb_rate=0.5)
    first, second = run("mixed-1", **mixed), run("mixed-2", **mixed)
    assert first == second  # the recipe draws from the trainer's seeded rng
    assert first != plain  # and it does perturb the user turns
