"""Named training recipes. ``default``: the model a fresh install trains on first start.

The default recipe, sized for a 2-core CPU and about ten minutes:

1. a byte-level BPE tokenizer trained on the skills world (pretraining statements + training
   dialogues), every digit its own token;
2. a small Llama-style model (RoPE, RMSNorm, SwiGLU) with a 512-token context;
3. next-token pretraining on the plain-text statements of the world (several paraphrases and both
   directions of every fact, for every entity) mixed with the training dialogues as text: the QA
   of part of the entities in pretraining is what lets a model answer questions about the
   entities it only read about (Allen-Zhu & Li, "Physics of Language Models 3.1");
4. supervised fine-tuning on the skills training dialogues (questions, follow-ups, greetings and
   who-are-you turns, out-of-scope requests, complaints), mixed with the statements (full loss),
   with half the user turns perturbed online (modeling.recipe_noise: typos, entity typos, lower
   case, distractor sentences), in packed rows of 256 tokens (positions up to 512 are trained
   in pretraining, whose rows are 512 tokens);
5. evaluation (modeling.recipe_eval) recorded in meta.json, and the recommended decoding settings
   (greedy) in generation_config.json.

Each stage writes its own directory under ``out_dir`` and is skipped when its model already exists,
so a killed build resumes where it stopped (a stage in progress resumes from its training state).

Usage::

    python -m modeling.train --recipe default --out var/models/default
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from modeling.progress import ProgressFn
from modeling.recipe_noise import default_noise
from modeling.train import TrainConfig, train


@dataclass
class DefaultRecipe:
    """Knobs of the default recipe (the defaults are the measured recipe in docs/benchmarks.md)."""

    vocab_size: int = 1024
    text_docs: int = 2000  # skills.pretraining_text documents
    train_dialogues: int = 8000  # skills train dialogues (0 -> skills default)
    model: dict = field(
        default_factory=lambda: dict(family="llama", n_layer=4, n_head=4, n_embd=128)
    )
    seq_len: int = 512  # the context the model serves; pretraining rows fill all of it
    batch_size: int = 4
    # SFT rows: packed conversations up to 256 tokens (a 10-turn chat fits), twice the rows per
    # step, so a step costs the same tokens and less attention than at 512
    sft_seq_len: int = 256
    sft_batch_size: int = 8
    pack_sft: bool = True
    pretrain_data: tuple[str, ...] = ("skills-text", "skills:train")
    pretrain_steps: int = 800
    pretrain_lr: float = 3e-3
    perturb_prob: float = 0.5  # share of SFT user turns perturbed online (modeling.recipe_noise)
    sft_steps: int = 1600
    lr: float = 3e-3
    min_lr: float = 3e-4
    warmup_steps: int = 50
    weight_decay: float = 0.1
    eval_n: int = 200  # test and ood dialogues evaluated at the end (metrics in meta.json)
    num_threads: int = 0  # 0 -> measure which thread count is faster right now
    # recommended decoding (generation_config.json): greedy, since every skills answer is exact
    generation: dict = field(default_factory=lambda: dict(do_sample=False, max_new_tokens=256))


def tiny_recipe(**changes) -> DefaultRecipe:
    """The default recipe at test size: the same stages, data kinds and noise, seconds to train.

    Args:
        changes: DefaultRecipe fields to override.
    Returns:
        the recipe.
    """
    small = dict(
        vocab_size=512, text_docs=200, train_dialogues=600, seq_len=128, batch_size=8,
        sft_seq_len=128, sft_batch_size=8,
        model=dict(family="llama", n_layer=2, n_head=2, n_embd=64),
        pretrain_steps=100, sft_steps=600, lr=4e-3, pretrain_lr=4e-3, warmup_steps=10,
        eval_n=0, num_threads=1,
    )  # fmt: skip
    return DefaultRecipe(**{**small, **changes})


def newcomer_recipe(**changes) -> DefaultRecipe:
    """The default recipe's model at a few minutes' training: the same 4 x 128 Llama, stages,
    data kinds and noise, on shorter rows and fewer steps (about 2 minutes on 2 quiet cores).

    It is the smallest variant that gives every newcomer turn of
    tests/modeling/test_recipes.py the right kind of reply (tiny_recipe's 2 x 64 model does
    not: "Tell me a joke." got the farewell, misspelled capitals garbled names); its skills
    answers are often wrong, its replies' kinds are right.

    Args:
        changes: DefaultRecipe fields to override.
    Returns:
        the recipe.
    """
    small = dict(
        text_docs=500, train_dialogues=2000, seq_len=128, batch_size=8, sft_seq_len=128,
        sft_batch_size=8, pretrain_steps=200, sft_steps=800, eval_n=0, num_threads=1,
    )  # fmt: skip
    return DefaultRecipe(**{**small, **changes})


def choose_num_threads(max_threads: int | None = None, seconds: float = 0.25) -> int:
    """Pick the faster torch thread count, 1 or all cores, by timing a small matmul workload.

    On a shared machine a busy core stalls every multi-threaded kernel, and one thread can be many
    times faster than two; on an idle machine all cores win. Measuring beats guessing.

    Args:
        max_threads: the most threads to consider (default: os.cpu_count()).
        seconds: time spent on each candidate.

    Returns:
        The thread count that ran the workload faster.
    """
    max_threads = max_threads or os.cpu_count() or 1
    if max_threads <= 1:
        return 1
    previous = torch.get_num_threads()
    a, b = torch.randn(1024, 128), torch.randn(128, 512)
    rates = {}
    try:
        for n in (1, max_threads):
            torch.set_num_threads(n)
            a @ b
            count, t0 = 0, time.perf_counter()
            while time.perf_counter() - t0 < seconds:
                (a @ b).relu_() @ b.T
                count += 1
            rates[n] = count / (time.perf_counter() - t0)
    finally:
        torch.set_num_threads(previous)
    return max(rates, key=rates.get)


def _stage_done(stage_dir: Path) -> Path | None:
    model_dir = stage_dir / "model"
    return model_dir if (model_dir / "meta.json").is_file() else None


def build_default_model(
    out_dir: str | os.PathLike,
    progress: ProgressFn | None = None,
    should_cancel: Callable[[], bool] | None = None,
    seed: int = 0,
    recipe: DefaultRecipe | None = None,
) -> Path:
    """Train the default model from nothing: tokenizer, (pretraining,) fine-tuning, evaluation.

    Args:
        out_dir: working directory of the build (stages and the final model go under it).
        progress: receives train()'s progress dicts with ``step``/``total`` counted over the whole
            build (so the fraction only grows) plus ``stage`` ("tokenizer", "pretrain", "sft",
            "evaluate").
        should_cancel: checked between steps; raises modeling.train.Cancelled (a later call with
            the same out_dir resumes).
        seed: seeds the model initialisation and the data order.
        recipe: the knobs (default: DefaultRecipe()).

    Returns:
        The final model directory (``out_dir/sft/model``); its meta.json holds the recipe, the
        loss curves and exact-match accuracy on the skills test and OOD splits.
    """
    r = recipe or DefaultRecipe()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    report = _BuildProgress(progress, r.pretrain_steps + r.sft_steps, t_start)
    previous_threads = torch.get_num_threads()
    try:
        tok_file = _train_tokenizer(out, r, seed, report)
        base = None
        if r.pretrain_steps:
            base = _pretrain(out, r, seed, tok_file, report, should_cancel)
        final = _fine_tune(out, r, seed, base, tok_file, report, should_cancel)
        _record_evaluation(final, r, seed, time.perf_counter() - t_start, report)
        return final
    finally:
        torch.set_num_threads(previous_threads)


class _BuildProgress:
    """Forwards each stage's progress with step/total counted over the whole build."""

    def __init__(self, progress: ProgressFn | None, total: int, t_start: float):
        self.progress = progress
        self.total = total
        self.t_start = t_start
        self.first_step: int | None = None  # the step this session started from

    def stage(self, stage: str, offset: int) -> ProgressFn:
        """The callback of one stage whose step 0 is build step ``offset``."""

        def forward(info: dict) -> None:
            if self.progress is None:
                return
            step = offset + info["step"]
            out_info = {**info, "step": step, "total": self.total, "stage": stage}
            if info["phase"] == "train":
                # ETA of the whole build (the stages cost about the same per step), from the
                # steps this session has done (a resumed build starts part way)
                if self.first_step is None:
                    self.first_step = step - 1
                if step > self.first_step:
                    elapsed = time.perf_counter() - self.t_start
                    out_info["eta_s"] = elapsed / (step - self.first_step) * (self.total - step)
            self.progress(out_info)

        return forward

    def start(self, stage: str, offset: int, phase: str) -> None:
        """Announce a stage that reports no steps of its own (tokenizer, evaluation)."""
        self.stage(stage, offset)({"step": 0, "loss": None, "lr": 0.0, "phase": phase,
                                   "tokens_per_s": 0.0, "eta_s": 0.0})  # fmt: skip


def _train_tokenizer(out: Path, r: DefaultRecipe, seed: int, report: _BuildProgress) -> Path:
    """Stage 1: the tokenizer, trained on the world's statements and the training dialogues."""
    from modeling import skills
    from modeling.tokenizer import Tokenizer

    tok_file = out / "tokenizer.json"
    if not tok_file.is_file():
        report.start("tokenizer", 0, "train")
        texts = list(skills.pretraining_text(n=r.text_docs, seed=seed))
        dialogues = skills.dialogues("train", n=r.train_dialogues or None, seed=seed)
        texts += [m["content"] for d in dialogues for m in d.messages]
        Tokenizer.train(texts, vocab_size=r.vocab_size).save(tok_file)
    return tok_file


def _stage_config(r: DefaultRecipe, seed: int, **fields) -> TrainConfig:
    """A stage's TrainConfig: the fields every stage shares, plus the stage's own."""
    fields = {"seq_len": r.seq_len, "batch_size": r.batch_size, **fields}
    return TrainConfig(
        skills_n=r.train_dialogues,
        skills_seed=seed,
        skills_text_n=r.text_docs,
        seed=seed,
        weight_decay=r.weight_decay,
        warmup_steps=r.warmup_steps,
        min_lr=r.min_lr,
        lineage={"recipe": "default"},
        checkpoint_interval=200,
        **fields,
    )


def _pretrain(out: Path, r: DefaultRecipe, seed: int, tok_file: Path, report, should_cancel):
    """Stage 2 (optional): next-token pretraining on the plain-text statements."""
    stage = out / "pretrain"
    done = _stage_done(stage)
    if done is not None:
        return done
    torch.set_num_threads(r.num_threads or choose_num_threads())
    cfg = _stage_config(
        r,
        seed,
        kind="pretrain",
        out_dir=str(stage),
        tokenizer=str(tok_file),
        model=dict(r.model, block_size=r.seq_len),
        data=list(r.pretrain_data),
        max_steps=r.pretrain_steps,
        lr=r.pretrain_lr,
    )
    return train(cfg, report.stage("pretrain", 0), should_cancel)


def _fine_tune(out: Path, r: DefaultRecipe, seed: int, base, tok_file: Path, report, should_cancel):
    """Stage 3: fine-tuning on the dialogues mixed with the statements."""
    stage = out / "sft"
    done = _stage_done(stage)
    if done is not None:
        return done
    torch.set_num_threads(r.num_threads or choose_num_threads())
    source = {"base_model": str(base)} if base else {}
    if not base:
        source = {"tokenizer": str(tok_file), "model": dict(r.model, block_size=r.seq_len)}
    cfg = _stage_config(
        r,
        seed,
        kind="sft",
        out_dir=str(stage),
        seq_len=min(r.sft_seq_len, r.seq_len),  # never past the context the model was built with
        batch_size=r.sft_batch_size,
        data=["skills:train", "skills-text"],
        pack_sft=r.pack_sft,
        perturb_prob=r.perturb_prob,
        perturb_fn=default_noise if r.perturb_prob else None,
        max_steps=r.sft_steps,
        lr=r.lr,
        **source,
    )
    return train(cfg, report.stage("sft", r.pretrain_steps), should_cancel)


def _record_evaluation(
    final: Path, r: DefaultRecipe, seed: int, train_seconds: float, report: _BuildProgress
) -> None:
    """Stage 4: the report card (modeling.recipe_eval) and the recipe, recorded in meta.json;
    the recommended decoding settings in generation_config.json."""
    from modeling.generation_config import write_generation_config
    from modeling.recipe_eval import evaluate_default

    meta_file = final / "meta.json"
    meta = json.loads(meta_file.read_text())
    if r.eval_n and "default_eval" not in meta:
        report.start("evaluate", report.total, "eval")
        meta["default_eval"] = evaluate_default(final, n=r.eval_n, seed=seed)
        # the registry shows test/ood accuracy from here
        meta["skills_eval"] = {s: meta["default_eval"][s] for s in ("test", "ood")}
    meta["recipe"] = {"name": "default", **dataclasses.asdict(r)}
    meta.setdefault("build_seconds", round(train_seconds, 1))
    write_generation_config(final, r.generation)
    tmp = meta_file.with_name("meta.json.tmp")
    tmp.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, meta_file)


def evaluate_skills(
    model_dir: str | os.PathLike, n: int = 0, seed: int = 0, splits=("test", "ood")
) -> dict:
    """Exact-match accuracy of a model directory on skills splits.

    Args:
        model_dir: the model.
        n: dialogues per split (0 = the split's default size).
        seed: skills generator seed.
        splits: which splits.

    Returns:
        {split: evaluate() result (accuracy, correct, n, per_family)}.
    """
    from modeling import skills
    from modeling.chat import ChatFormat
    from modeling.checkpoint import load_model
    from modeling.evaluate import evaluate

    model, tokenizer, _ = load_model(model_dir)
    fmt = ChatFormat.for_model(tokenizer, model_dir)
    results = {}
    for split in splits:
        dialogues = skills.dialogues(split, seed=seed)
        results[split] = evaluate(model, fmt, dialogues[:n] if n else dialogues, batch_size=100)
    return results
