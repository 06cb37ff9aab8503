"""Pretraining and supervised fine-tuning (SFT) for modeling.model.Transformer: the training loop.

A run is described by a modeling.train_config.TrainConfig (importable from here too); the
command line is modeling.train_cli, run as ``python -m modeling.train``.

One loop covers both kinds of run:

- ``pretrain``: next-token loss on every position of packed rows of plain text.
- ``sft``: loss only on assistant tokens of conversations (the chat format's loss mask); plain-text
  sources given to an SFT run are mixed in as packed rows with full loss.

The loop is AdamW (weight decay on 2-D parameters only), linear warmup then cosine decay to
``min_lr`` (modeling.optim), gradient accumulation, clipping, bf16 autocast + TF32 on CUDA,
optional ``torch.compile``, dev loss at intervals, periodic training checkpoints with exact resume,
a progress callback and a cancel check between steps, and DDP when started under ``torchrun``
(modeling.distributed). Rows and batches come from modeling.data; the optional regularisers
(user-turn perturbation, NEFTune) from modeling.regularisers.

Determinism is by construction rather than by saved RNG state: the row order of epoch ``e`` is a
permutation seeded by ``(seed, e)`` (modeling.data.batch_indices), the global batch of step ``s`` is
stream positions ``[s*G, (s+1)*G)``, and every random choice inside a step (user-turn perturbation,
NEFTune noise) is seeded by the step and stream position. So a run resumed at step ``s`` replays
exactly what the uninterrupted run did, and a DDP run sees the same global batch as one process.
The loss of a step is the mean over all assistant (SFT) or all (pretraining) target tokens of its
global batch, however the batch is split into micro-batches and ranks.

Layout of ``out_dir``::

    tokenizer.json          the tokenizer, when this run trained it (reused on resume)
    train_state/state.pt    model + optimizer + RNG + step + loss history (written atomically)
    model/                  the final model directory (modeling.checkpoint.save_model)

CLI::

    python -m modeling.train --config run.json
    python -m modeling.train --kind sft --base var/models/default/model --data chats.jsonl \
        --out var/runs/ft1 --max-steps 300
    python -m modeling.train --recipe default --out var/models/default
"""

from __future__ import annotations

import contextlib
import dataclasses
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from modeling.data import (
    IGNORE_INDEX,
    Batches,
    load_examples,
    skills_dialogues,
)
from modeling.dev_selection import DevSelector, DevSet
from modeling.distributed import (
    Dist,
    agree,
    all_reduce_sum,
    barrier,
    resolve_device,
    setup_distributed,
    wrap_ddp,
)
from modeling.optim import lr_at, make_optimizer
from modeling.progress import ProgressFn
from modeling.regularisers import NEFTune, user_turn_perturbation
from modeling.train_config import TrainConfig
from modeling.train_setup import build_model_and_tokenizer, model_config_dict
from modeling.train_state import load_train_state, restore_rng, save_train_state, state_path

__all__ = ["MODEL_DIR", "Cancelled", "TrainConfig", "load_train_state", "train"]

MODEL_DIR = "model"


class Cancelled(Exception):
    """Raised by :func:`train` when ``should_cancel()`` returned True between two steps.

    Before raising, the training state at the last completed step is written to
    ``out_dir/train_state/state.pt``, so calling :func:`train` again with the same config resumes
    there.

    Attributes:
        step: number of optimizer steps completed.
        checkpoint: path of the training state written at that step (None on non-zero DDP ranks).
    """

    def __init__(self, step: int, checkpoint: Path | None):
        super().__init__(f"training cancelled after step {step}")
        self.step = step
        self.checkpoint = checkpoint


# ----------------------------------------------------------------------------------------------
# The loop


@dataclass
class _Run:
    """One training session: what the loop's steps share."""

    config: TrainConfig
    ddp: Dist
    device: torch.device
    use_bf16: bool
    model: nn.Module  # what the loop calls: raw_model, compiled and/or wrapped in DDP
    raw_model: nn.Module
    tokenizer: Any
    parent_meta: dict
    chat_format: Any
    batches: Batches
    dev: Batches | None
    dropped: int
    optimizer: torch.optim.Optimizer
    step: int = 0
    loss_history: list[float] = field(default_factory=list)
    dev_history: list[dict] = field(default_factory=list)
    neftune: NEFTune | None = None
    tokens_seen: int = 0  # this session's input tokens (for tokens/s)
    selector: DevSelector | None = None  # select_on_dev: the kept checkpoint and its numbers
    devset: DevSet | None = None

    @property
    def out_dir(self) -> Path:
        """The run directory."""
        return Path(self.config.out_dir)

    @property
    def state_path(self) -> Path:
        """Where the training state for resume is written."""
        return state_path(self.out_dir)

    def autocast(self):
        """bf16 autocast when the run trains in bf16, else a no-op context."""
        if self.use_bf16:
            return torch.autocast(device_type=self.device.type, dtype=torch.bfloat16)
        return contextlib.nullcontext()


def train(
    config: TrainConfig,
    progress: ProgressFn | None = None,
    should_cancel: Callable[[], bool] | None = None,
) -> Path:
    """Run (or resume) one training run and save the final model.

    Args:
        config: the run (see TrainConfig).
        progress: called on rank 0 after every step and at evaluations with a dict
            ``{step, total, loss, lr, tokens_per_s, eta_s, phase}`` (phase "train" or "eval"; eval
            calls also carry ``dev_loss`` and, when measured, ``dev_accuracy``; with
            select_on_dev they carry ``dev_clean``, ``dev_robust`` and ``best_step``, from
            step 0, the parent, on).
        should_cancel: checked between steps (on rank 0, broadcast to all ranks under DDP).

    Returns:
        The final model directory ``out_dir/model`` (config.json, model.safetensors, tokenizer.json,
        meta.json with lineage, config, final metrics and the loss curve).

    Raises:
        Cancelled: when should_cancel() returned True; the state of the last completed step is saved
            in out_dir/train_state first, so the same call resumes from it.
    """
    config.validate()
    ddp = setup_distributed(config.device)
    run = None
    try:
        run = _prepare(config, ddp)
        _resume(run)
        if config.neftune_alpha > 0:
            run.neftune = NEFTune.attach(
                run.raw_model, run.tokenizer.vocab_size, config.neftune_alpha, run.device
            )
        if config.compile:
            run.model = torch.compile(run.model)
        run.model = wrap_ddp(run.model, ddp, run.device)
        t_start = time.perf_counter()
        info = _loop(run, progress, should_cancel, t_start)
        return _finish(run, progress, info, t_start)
    finally:
        if run is not None and run.neftune is not None:
            run.neftune.remove()
        ddp.close()


def _prepare(config: TrainConfig, ddp: Dist) -> _Run:
    """Device, model, tokenizer, data and optimizer of a run (before any resume)."""
    from modeling.chat import ChatFormat

    device = resolve_device(config.device, ddp)
    if device.type == "cpu" and config.num_threads:
        torch.set_num_threads(config.num_threads)
    use_bf16 = config.dtype == "bfloat16" or (config.dtype == "auto" and device.type == "cuda")
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    out_dir = Path(config.out_dir)
    model, tokenizer, parent_meta = build_model_and_tokenizer(config, out_dir, device, ddp)
    if config.seq_len > model.config.block_size:
        # a base model's context is the hard limit; rows are cut to fit it
        config = dataclasses.replace(config, seq_len=model.config.block_size)
    chat_format = ChatFormat.for_model(tokenizer, config.base_model)
    pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0

    examples, dropped = _examples(config.data, config, chat_format)
    if not examples:
        raise ValueError("the data sources produced no training examples")
    perturb = user_turn_perturbation(
        config.perturb_prob, config.perturb_fn, config.perturb_recipe, config.perturb_rate
    )
    replay = []
    if config.replay_share > 0:
        replay, _ = _examples(config.replay_data, config, chat_format)
        if not replay:
            raise ValueError("the replay sources produced no training examples")
    batches = _batches(config, examples, chat_format, pad_id, ddp.world, perturb, replay)
    dev = None
    if config.dev_data:
        dev_examples, _ = _examples(config.dev_data, config, chat_format)
        dev = _batches(config, dev_examples, chat_format, pad_id, 1, None) if dev_examples else None
    selector = devset = None
    if config.select_on_dev:
        dialogues = skills_dialogues("dev", config.source_options())[: config.eval_accuracy_n]
        devset = DevSet.build(
            dialogues, config.dev_perturb_recipe, config.dev_perturb_rate, config.seed
        )
        selector = DevSelector(config.clean_dev_tolerance_points, config.patience)
    return _Run(
        selector=selector,
        devset=devset,
        config=config,
        ddp=ddp,
        device=device,
        use_bf16=use_bf16,
        model=model,
        raw_model=model,
        tokenizer=tokenizer,
        parent_meta=parent_meta,
        chat_format=chat_format,
        batches=batches,
        dev=dev,
        dropped=dropped,
        optimizer=make_optimizer(model, config, device),
    )


def _examples(specs: Sequence[str], config: TrainConfig, chat_format):
    return load_examples(
        specs,
        chat_format,
        config.source_options(),
        kind=config.kind,
        seq_len=config.seq_len,
        pack=config.pack_sft,
    )


def _batches(config: TrainConfig, examples, chat_format, pad_id, world, perturb, replay=()):
    sizes = {
        name: getattr(config, name) for name in ("seq_len", "batch_size", "grad_accum", "seed")
    }
    return Batches(
        examples,
        chat_format,
        world=world,
        pad_id=pad_id,
        perturb=perturb,
        fixed_width=config.compile,  # one static shape, so torch.compile does not recompile
        replay=replay,
        replay_share=config.replay_share,
        **sizes,
    )


def _resume(run: _Run) -> None:
    """Continue from out_dir/train_state when the config allows it and the state is there."""
    state = load_train_state(run.out_dir) if run.config.resume else None
    if state is None:
        return
    if state["fingerprint"] != run.config._trajectory_fingerprint():
        raise ValueError(
            f"{run.state_path} belongs to a run with a different config; use another out_dir "
            "or resume=False"
        )
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    restore_rng(state)
    run.step = state["step"]
    run.loss_history = list(state["loss_history"])
    run.dev_history = list(state["dev_history"])
    if run.selector is not None and state.get("selection"):
        run.selector.load_state_dict(state["selection"])


def _save_state(run: _Run) -> Path | None:
    """Write the training state at the current step (rank 0 only); returns its path."""
    if not run.ddp.is_main:
        return None
    state = {
        "step": run.step,
        "model": run.raw_model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "loss_history": run.loss_history,
        "dev_history": run.dev_history,
        "config": run.config.to_dict(),
        "fingerprint": run.config._trajectory_fingerprint(),
        "selection": run.selector.state_dict() if run.selector is not None else None,
    }
    return save_train_state(run.state_path, state)


def _loop(run: _Run, progress, should_cancel, t_start: float) -> dict:
    """Take optimizer steps until max_steps; returns the last progress dict."""
    config, ddp = run.config, run.ddp
    run.model.train()
    step_at_start = run.step
    info: dict = {"step": run.step, "total": config.max_steps, "loss": None, "eta_s": None,
                  "tokens_per_s": 0.0, "lr": lr_at(run.step, config)}  # fmt: skip
    if run.selector is not None and run.selector.parent_clean is None:
        _select(run, progress, info)  # step 0: the parent's dev accuracy
    while run.step < config.max_steps:
        if should_cancel is not None and agree(bool(should_cancel()), ddp, run.device):
            raise Cancelled(run.step, _save_state(run))
        lr = lr_at(run.step, config)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        loss = _optimizer_step(run)
        run.step += 1
        run.loss_history.append(loss)
        elapsed = time.perf_counter() - t_start
        info = {
            "step": run.step,
            "total": config.max_steps,
            "loss": loss,
            "lr": lr,
            "tokens_per_s": run.tokens_seen * ddp.world / max(elapsed, 1e-9),
            "eta_s": elapsed / (run.step - step_at_start) * (config.max_steps - run.step),
            "phase": "train",
        }
        if ddp.is_main and progress is not None:
            progress(info)
        interval = config.eval_interval
        if interval and run.step % interval == 0 and run.step < config.max_steps and ddp.is_main:
            entry = _evaluate_dev(run)
            run.dev_history.append(entry)
            if progress is not None and len(entry) > 1:
                progress({**info, **entry, "phase": "eval"})
        at_end = run.step == config.max_steps
        due = run.selector is not None and (run.step % interval == 0 or at_end)
        if due and agree(_select(run, progress, info), ddp, run.device):
            run.selector.stopped_at = run.step if not at_end else None
            break
        if config.checkpoint_interval and run.step % config.checkpoint_interval == 0:
            _save_state(run)
    return info


def _select(run: _Run, progress, info: dict) -> bool:
    """One dev-selection evaluation at the current step (rank 0); True when the run should stop."""
    if not run.ddp.is_main:
        return False
    entry = run.selector.measure(run.devset, run.step, run.raw_model, run.chat_format)
    run.model.train()
    if progress is not None:
        progress({**info, **entry, "step": run.step, "phase": "eval"})
    return run.selector.should_stop()


def _optimizer_step(run: _Run) -> float:
    """Forward and backward over the step's micro-batches, then one AdamW step.

    Returns:
        The step's loss: the token mean over the whole global batch (all ranks).
    """
    config, ddp, device, step = run.config, run.ddp, run.device, run.step
    micros = [run.batches.micro_batch(step, m, ddp.rank) for m in range(config.grad_accum)]
    n_local = sum(int((y != IGNORE_INDEX).sum()) for _, y in micros)
    n_global = all_reduce_sum(float(n_local), ddp, device)
    step_loss = torch.zeros((), device=device)
    for m, (x, y) in enumerate(micros):
        x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
        n_micro = int((y != IGNORE_INDEX).sum())
        if run.neftune is not None:
            run.neftune.reseed(config.seed * 1_000_003 + step * 4099 + m * ddp.world + ddp.rank)
        last = m == config.grad_accum - 1
        sync = contextlib.nullcontext() if (last or not ddp.enabled) else run.model.no_sync()
        with sync:
            with run.autocast():
                logits, loss = run.model(x, y)
            if n_micro == 0:
                # Keep the backward (DDP needs every rank to reduce) but add nothing.
                scaled = logits.float().sum() * 0.0
            else:
                # Token-weighted over the global batch; DDP averages over ranks, so * world.
                scaled = loss.float() * (n_micro * ddp.world / max(n_global, 1.0))
                step_loss += loss.detach().float() * (n_micro / max(n_global, 1.0))
            scaled.backward()
        run.tokens_seen += int((x != run.batches.pad_id).sum())
    if config.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(run.raw_model.parameters(), config.grad_clip)
    run.optimizer.step()
    run.optimizer.zero_grad(set_to_none=True)
    return all_reduce_sum(float(step_loss), ddp, device)


def _evaluate_dev(run: _Run) -> dict:
    """Dev loss (with dev data) and skills dev accuracy (when asked) at the current step."""
    entry: dict = {"step": run.step}
    if run.dev is not None:
        entry["dev_loss"] = _dev_loss(run)
    if run.config.eval_accuracy_n and run.config.kind == "sft" and run.selector is None:
        from modeling.evaluate import evaluate

        dialogues = skills_dialogues("dev", run.config.source_options())
        dialogues = dialogues[: run.config.eval_accuracy_n]
        result = evaluate(run.raw_model, run.chat_format, dialogues, batch_size=64)
        entry["dev_accuracy"] = result["accuracy"]
    return entry


@torch.no_grad()
def _dev_loss(run: _Run) -> float:
    """Token-mean loss over the first eval_examples dev rows (fixed order, no perturbation)."""
    model = run.raw_model
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    for x, y in run.dev.leading(run.config.eval_examples):
        k = int((y != IGNORE_INDEX).sum())
        if k == 0:
            continue
        with run.autocast():
            _, loss = model(x.to(run.device), y.to(run.device))
        total += float(loss) * k
        count += k
    model.train(was_training)
    return total / max(1, count)


def _finish(run: _Run, progress, info: dict, t_start: float) -> Path:
    """Final evaluation, then (rank 0) the model directory with its meta.json."""
    config = run.config
    last_loss = run.loss_history[-1] if run.loss_history else None
    final: dict = {"step": run.step, "train_loss": last_loss}
    if run.ddp.is_main:
        entry = _evaluate_dev(run)
        if len(entry) > 1:
            run.dev_history.append(entry)
            final.update({k: v for k, v in entry.items() if k != "step"})
            if progress is not None:
                base = {"step": run.step, "total": config.max_steps, "loss": last_loss}
                base.update(lr=info["lr"], tokens_per_s=info["tokens_per_s"])
                progress({**base, "eta_s": 0.0, **entry, "phase": "eval"})
    selection = None
    if run.selector is not None and run.ddp.is_main:
        selection = run.selector.summary(run.step)
        if run.selector.best_state is not None:
            run.raw_model.load_state_dict(run.selector.best_state)
        final.update(best_step=selection["best_step"], dev_clean=selection["best_dev_clean"],
                     dev_robust=selection["best_dev_robust"])  # fmt: skip
    model_dir = run.out_dir / MODEL_DIR
    if run.ddp.is_main:
        from modeling.checkpoint import save_model

        meta = {
            "lineage": {
                "parent": str(config.base_model) if config.base_model else None,
                "parent_meta": run.parent_meta.get("lineage") if run.parent_meta else None,
                "kind": config.kind,
                "data": list(config.data),
                "replay_data": list(config.replay_data) if config.replay_share > 0 else [],
                "replay_share": config.replay_share,
                **config.lineage,
            },
            "selection": selection,
            "model_config": model_config_dict(run.raw_model),
            "num_params": sum(p.numel() for p in run.raw_model.parameters()),
            "train_config": config.to_dict(),
            "metrics": final,
            "loss_curve": run.loss_history,
            "dev_curve": run.dev_history,
            "world_size": run.ddp.world,
            "data_rows": len(run.batches.examples),
            "replay_rows": len(run.batches.replay),
            "replay_rows_per_step": run.batches.replay_per_step,
            "dropped_conversations": run.dropped,
            "train_seconds_last_session": round(time.perf_counter() - t_start, 3),
        }
        # a fine-tune keeps its base's chat template and recommended decoding settings
        save_model(run.raw_model, run.tokenizer, model_dir, meta=meta, copy_from=config.base_model)
        if not config.keep_train_state and run.state_path.exists():
            run.state_path.unlink()
    barrier(run.ddp)
    return model_dir


if __name__ == "__main__":
    from modeling.train_cli import main

    sys.exit(main())
