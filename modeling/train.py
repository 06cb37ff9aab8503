"""Pretraining and supervised fine-tuning (SFT) for modeling.model.Transformer.

One loop covers both kinds of run:

- ``pretrain``: next-token loss on every position of packed rows of plain text.
- ``sft``: loss only on assistant tokens of conversations (the chat format's loss mask); plain-text
  sources given to an SFT run are mixed in as packed rows with full loss.

The loop is AdamW (weight decay on 2-D parameters only), linear warmup then cosine decay to
``min_lr``, gradient accumulation, clipping, bf16 autocast + TF32 on CUDA, optional
``torch.compile``, dev loss at intervals, periodic training checkpoints with exact resume, a
progress callback and a cancel check between steps, and DDP when started under ``torchrun``.

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

import argparse
import contextlib
import dataclasses
import json
import math
import os
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

ProgressFn = Callable[[dict], None]
PerturbFn = Callable[[str, random.Random], str]

STATE_DIR = "train_state"
STATE_FILE = "state.pt"
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


@dataclass
class TrainConfig:
    """Everything one training run needs; JSON-serialisable except ``perturb_fn``.

    Data sources (``data`` and ``dev_data``) are strings:
    ``"skills:<split>"`` (dialogues of modeling.skills: train, dev, test, ood),
    ``"skills-text"`` (plain statements of the skills world, for pretraining),
    a ``.jsonl`` path (``{"messages": [...]}`` per line) or a ``.txt`` path (plain text).
    """

    kind: str = "sft"  # "pretrain" | "sft"
    out_dir: str = "var/runs/run"
    # Model: start from a model directory, or build a fresh model from `model` (ModelConfig fields;
    # vocab_size is taken from the tokenizer).
    base_model: str | None = None
    model: dict = field(default_factory=dict)
    tokenizer: str | None = None  # tokenizer.json path/dir for a fresh model; None -> train one
    tokenizer_vocab_size: int = 1024
    # Data
    data: list[str] = field(default_factory=lambda: ["skills:train"])
    dev_data: list[str] = field(default_factory=list)
    skills_n: int = 0  # dialogues per skills split (0 -> the generator's default)
    skills_seed: int = 0
    skills_text_n: int = 0  # documents of skills-text (0 -> 2000)
    pack_sft: bool = False  # several whole conversations per SFT row (attention crosses them)
    on_bad_line: str = "fail"  # "fail" | "skip" a malformed JSONL line (reported as file:line)
    seq_len: int = 256
    # Optimisation
    batch_size: int = 16  # rows per micro-batch per process
    grad_accum: int = 1  # micro-batches per optimizer step per process
    max_steps: int = 1000
    lr: float = 1e-3
    min_lr: float = 1e-4
    warmup_steps: int = 50
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 -> off
    # Evaluation and checkpoints (0 -> only at the end / never)
    eval_interval: int = 0
    eval_examples: int = 256  # dev examples for the dev loss
    eval_accuracy_n: int = 0  # also exact-match accuracy on this many dev dialogues (skills only)
    checkpoint_interval: int = 0
    resume: bool = True  # continue from out_dir/train_state when present
    keep_train_state: bool = False  # keep train_state/ after the final model is saved
    # System
    seed: int = 0
    device: str = "auto"  # "auto" | "cpu" | "cuda" | "cuda:1" ...
    dtype: str = "auto"  # "auto" (bf16 autocast on CUDA, fp32 on CPU) | "float32" | "bfloat16"
    compile: bool = False
    num_threads: int = 0  # torch.set_num_threads on CPU; 0 -> leave as is
    # Regularisers (off by default)
    perturb_prob: float = 0.0  # probability that a user turn of an SFT example is perturbed
    perturb_fn: PerturbFn | None = None  # (text, rng) -> text; None -> perturb_recipe
    # A named modeling.augment training recipe ("typo", "word", "distractor", "noise", "mixed")
    # at word rate perturb_rate, for configs that must stay JSON (the admin's fine-tunes);
    # "" -> typo_noise. Evaluation-only families (ocr, split_merge) are refused.
    perturb_recipe: str = ""
    perturb_rate: float = 0.1
    neftune_alpha: float = 0.0  # NEFTune: uniform noise alpha/sqrt(L*d) on input embeddings
    # Lineage recorded in meta.json (free-form: dataset id, training run id, ...)
    lineage: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        """Return the config as JSON-serialisable dict (a callable is recorded by its name).

        Returns:
            dict of all fields.
        """
        d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        fn = d.pop("perturb_fn")
        d["perturb_fn"] = None if fn is None else getattr(fn, "__qualname__", repr(fn))
        return json.loads(json.dumps(d))

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Build a config from a dict, rejecting unknown keys.

        Args:
            d: field values (e.g. parsed from a JSON config file).

        Returns:
            The config.
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"unknown TrainConfig fields: {', '.join(unknown)}")
        d = dict(d)
        if isinstance(d.get("perturb_fn"), str):
            raise ValueError("perturb_fn cannot be given as a string; pass a callable in Python")
        return cls(**d)

    def validate(self) -> None:
        """Raise ValueError with a clear message on an inconsistent config."""
        if self.kind not in ("pretrain", "sft"):
            raise ValueError(f"kind must be 'pretrain' or 'sft', got {self.kind!r}")
        if self.on_bad_line not in ("fail", "skip"):
            raise ValueError(f"on_bad_line must be 'fail' or 'skip', got {self.on_bad_line!r}")
        for name in ("seq_len", "batch_size", "grad_accum", "max_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1")
        if not self.data:
            raise ValueError("data: give at least one source")
        if not 0.0 <= self.perturb_prob <= 1.0:
            raise ValueError("perturb_prob must be in [0, 1]")
        if self.perturb_recipe and self.perturb_recipe not in TRAIN_PERTURB_RECIPES:
            raise ValueError(
                f"perturb_recipe must be one of {', '.join(TRAIN_PERTURB_RECIPES)} (ocr and "
                f"split_merge are held out for evaluation); got {self.perturb_recipe!r}"
            )
        if not 0.0 < self.perturb_rate <= 1.0:
            raise ValueError("perturb_rate must be in (0, 1]")
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise ValueError("need 0 <= min_lr <= lr and lr > 0")

    def _trajectory_fingerprint(self) -> dict:
        # Fields that change what the run computes; resuming under different ones would splice two
        # different runs together.
        d = self.to_dict()
        for k in (
            "out_dir",
            "device",
            "eval_interval",
            "eval_examples",
            "eval_accuracy_n",
            "checkpoint_interval",
            "resume",
            "keep_train_state",
            "num_threads",
            "compile",
            "lineage",
            "dev_data",
        ):
            d.pop(k)
        return d


# ----------------------------------------------------------------------------------------------
# Regularisers


TRAIN_PERTURB_RECIPES = ("typo", "word", "distractor", "noise", "mixed")


def typo_noise(text: str, rng: random.Random, rate: float = 0.1) -> str:
    """The default online perturbation: `modeling.augment.typo` (character typos on words of 4+
    letters, at least one word), without the skills validity oracle so it works on any text.

    Args:
        text: the user turn.
        rng: the random source (explicit so that results are reproducible).
        rate: per-word edit probability.

    Returns:
        The perturbed text.
    """
    from modeling.augment import typo

    return typo(text, rng, rate=rate)


class _NEFTune:
    """Forward hook adding NEFTune noise to the input embeddings while the model is training.

    Noise is uniform in [-1, 1] scaled by alpha / sqrt(T * d) (Jain et al. 2023), drawn from a
    generator re-seeded by the trainer before each micro-batch, so a resumed run draws the same
    noise.
    """

    def __init__(self, embedding: nn.Module, alpha: float, device: torch.device):
        self.alpha = alpha
        self.generator = torch.Generator(device=device)
        self.handle = embedding.register_forward_hook(self._hook)

    def reseed(self, seed: int) -> None:
        self.generator.manual_seed(seed)

    def _hook(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if not module.training or self.alpha <= 0:
            return output
        T, d = output.shape[-2], output.shape[-1]
        noise = torch.empty(output.shape, device=output.device, dtype=torch.float32)
        noise.uniform_(-1.0, 1.0, generator=self.generator)
        return output + (noise * (self.alpha / math.sqrt(T * d))).to(output.dtype)


def _input_embedding(model: nn.Module, vocab_size: int) -> nn.Module:
    get = getattr(model, "get_input_embeddings", None)
    if callable(get):
        return get()
    for m in model.modules():
        if isinstance(m, nn.Embedding) and m.num_embeddings == vocab_size:
            return m
    raise ValueError("NEFTune: could not find the token embedding module")


# ----------------------------------------------------------------------------------------------
# Schedule


def lr_at(step: int, config: TrainConfig) -> float:
    """Learning rate for optimizer step ``step`` (0-based): linear warmup, then cosine to min_lr.

    Args:
        step: the step about to be taken.
        config: the run config (lr, min_lr, warmup_steps, max_steps).

    Returns:
        The learning rate.
    """
    if step < config.warmup_steps:
        return config.lr * (step + 1) / config.warmup_steps
    span = max(1, config.max_steps - config.warmup_steps)
    progress = min(1.0, (step - config.warmup_steps) / span)
    return config.min_lr + 0.5 * (config.lr - config.min_lr) * (1.0 + math.cos(math.pi * progress))


def make_optimizer(model: nn.Module, config: TrainConfig, device: torch.device):
    """AdamW with weight decay on 2-D parameters only (matrices and embeddings).

    Args:
        model: the model whose trainable parameters are optimised.
        config: lr, weight_decay, betas.
        device: where the parameters live (fused AdamW on CUDA).

    Returns:
        The optimizer.
    """
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [
        {"params": decay, "weight_decay": config.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    extra = {"fused": True} if device.type == "cuda" else {}
    return torch.optim.AdamW(groups, lr=config.lr, betas=(config.beta1, config.beta2), **extra)


# ----------------------------------------------------------------------------------------------
# Data: examples and deterministic batches


@dataclass
class _Example:
    """One training row: one or more whole conversations (packed; loss on assistant tokens) or a
    row of packed plain-text tokens (loss everywhere)."""

    conversations: list[list[dict]] | None = None
    tokens: list[int] | None = None


def _skills():
    from modeling import skills

    return skills


def _read_conversations(spec: str, config: TrainConfig) -> list[list[dict]]:
    """The message lists of a conversation source (skills split or JSONL file)."""
    from modeling import data as data_mod

    if spec.startswith("skills:"):
        return [d["messages"] for d in _skills_dialogues(spec.split(":", 1)[1], config)]
    on_error = "skip" if config.on_bad_line == "skip" else "raise"
    convs, issues = data_mod.read_jsonl_conversations(spec, on_error=on_error)
    return [c["messages"] for c in convs]


def _read_texts(spec: str, config: TrainConfig) -> list[str]:
    """The documents of a plain-text source (skills-text or a .txt file, one paragraph each)."""
    from modeling import data as data_mod

    if spec == "skills-text":
        return _skills_text(config)
    return data_mod.read_text(spec, split="paragraph")


def _is_conversation_source(spec: str) -> bool:
    return spec.startswith("skills:") or spec.endswith(".jsonl")


def _check_source(spec: str) -> None:
    if spec.startswith("skills:") or spec == "skills-text":
        return
    if not Path(spec).is_file():
        raise FileNotFoundError(f"data source not found: {spec}")
    if not spec.endswith((".jsonl", ".txt")):
        raise ValueError(f"data source {spec}: expected a .jsonl or .txt file")


def _load_examples(
    specs: Sequence[str], config: TrainConfig, chat_format, kind: str
) -> tuple[list[_Example], int]:
    """Training rows from data sources, and the number of conversations dropped as unrenderable.

    Conversations become SFT rows (packed several to a row with ``pack_sft``); plain text, and
    conversations in a pretraining run, become packed rows of seq_len + 1 tokens.
    """
    from modeling import data as data_mod
    from modeling.chat import ContextTooLongError

    tokenizer = chat_format.tokenizer
    examples: list[_Example] = []
    texts: list[str] = []
    dropped = 0
    width = config.seq_len + 1
    for spec in specs:
        _check_source(spec)
        if not _is_conversation_source(spec):
            texts += _read_texts(spec, config)
            continue
        conversations = _read_conversations(spec, config)
        if kind == "pretrain":
            texts += ["\n".join(m["content"] for m in c) for c in conversations]
            continue
        group: list[list[dict]] = []
        used = 0
        for messages in conversations:
            try:
                n = len(chat_format.render(messages, max_tokens=width)[0])
            except (ContextTooLongError, ValueError):
                dropped += 1
                continue
            if not config.pack_sft:
                examples.append(_Example(conversations=[messages]))
                continue
            if group and used + n > width:
                examples.append(_Example(conversations=group))
                group, used = [], 0
            group.append(messages)
            used += n
        if group:
            examples.append(_Example(conversations=group))
    if texts:
        rows = data_mod.pack_pretraining(tokenizer, texts, config.seq_len)
        examples += [_Example(tokens=r) for r in rows.tolist()]
    return examples, dropped


def _skills_dialogues(split: str, config: TrainConfig) -> list[dict]:
    skills = _skills()
    ds = skills.dialogues(split, n=config.skills_n or None, seed=config.skills_seed)
    return [_as_dialogue(d) for d in ds]


def _skills_text(config: TrainConfig) -> list[str]:
    skills = _skills()
    n = config.skills_text_n or 2000
    return list(skills.pretraining_text(n=n, seed=config.skills_seed))


def _as_dialogue(d: Any) -> dict:
    """Normalise a dialogue (skills.Dialogue, JSONL record or dict) to {"messages", "family"}."""
    if isinstance(d, dict):
        family = d.get("family") or (d.get("meta") or {}).get("family")
        return {"messages": list(d["messages"]), "family": family}
    return {"messages": list(d.messages), "family": getattr(d, "family", None)}


class _Batches:
    """The deterministic, resumable example order and the rendering of rows into tensors.

    The global batch of step s is rows modeling.data.batch_indices(n, G, seed, s) (a fresh seeded
    permutation each epoch). Micro-batch m of rank r takes the contiguous slice number
    m*world + r of that global batch, so a single process with grad_accum*world micro-batches
    visits exactly the same micro-batches as a DDP run.
    """

    def __init__(self, examples, chat_format, config: TrainConfig, pad_id: int, world: int):
        self.examples = examples
        self.chat_format = chat_format
        self.config = config
        self.pad_id = pad_id
        self.world = world
        self.global_batch = config.batch_size * config.grad_accum * world
        self._cache: dict[int, tuple[list[int], list[int]]] = {}

    def row(self, idx: int, perturb_seed: int | None = None) -> tuple[list[int], list[int]]:
        """Inputs and targets (-100 = no loss) of example idx.

        Args:
            idx: example index.
            perturb_seed: seeds the user-turn perturbation (None: no perturbation).
        """
        ex = self.examples[idx]
        if ex.tokens is not None:
            return ex.tokens[:-1], ex.tokens[1:]
        cfg = self.config
        perturb = perturb_seed is not None and cfg.perturb_prob > 0
        if not perturb and idx in self._cache:
            return self._cache[idx]
        rng = random.Random(perturb_seed) if perturb else None
        width = cfg.seq_len + 1
        ids: list[int] = []
        mask: list[int] = []
        for original in ex.conversations:
            messages = self._perturb(original, rng) if rng is not None else original
            try:
                c_ids, c_mask = self.chat_format.render(messages, max_tokens=width)
            except ValueError:  # a perturbation made the last exchange too long to fit
                c_ids, c_mask = self.chat_format.render(original, max_tokens=width)
            if ids and len(ids) + len(c_ids) > width:
                break  # a perturbation lengthened the group: leave the rest of it out this time
            ids += c_ids
            mask += c_mask
        x = ids[:-1]
        y = [t if m else -100 for t, m in zip(ids[1:], mask[1:])]
        if not perturb:
            self._cache[idx] = (x, y)
        return x, y

    def _perturb_fn(self) -> PerturbFn:
        cfg = self.config
        if cfg.perturb_fn is not None:
            return cfg.perturb_fn
        if not cfg.perturb_recipe:
            return typo_noise
        if getattr(self, "_recipe_fn", None) is None:
            from modeling.augment import recipe

            # strict=False: a turn the skills oracle cannot parse (any real user text) is still
            # perturbed, held to the recipe's other constraints.
            self._recipe_fn = recipe(cfg.perturb_recipe, rate=cfg.perturb_rate, strict=False)
        return self._recipe_fn

    def _perturb(self, messages: list[dict], rng: random.Random) -> list[dict]:
        fn = self._perturb_fn()
        p = self.config.perturb_prob
        return [
            {**m, "content": fn(m["content"], rng)}
            if m["role"] == "user" and rng.random() < p
            else m
            for m in messages
        ]

    def micro_batch(self, step: int, micro: int, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) int64 tensors (B, T) for one micro-batch, right-padded to its longest row."""
        from modeling.data import batch_indices

        B = self.config.batch_size
        order = batch_indices(len(self.examples), self.global_batch, self.config.seed, step)
        first = (micro * self.world + rank) * B
        rows = []
        for j in range(first, first + B):
            # the perturbation seed names the stream position, so every epoch perturbs afresh
            position = step * self.global_batch + j
            rows.append(self.row(int(order[j]), self.config.seed * 1_000_003 + position))
        T = max(len(x) for x, _ in rows)
        if self.config.compile:
            T = self.config.seq_len  # one static shape, so torch.compile does not recompile
        x = torch.full((B, T), self.pad_id, dtype=torch.long)
        y = torch.full((B, T), -100, dtype=torch.long)
        for b, (xs, ys) in enumerate(rows):
            x[b, : len(xs)] = torch.tensor(xs, dtype=torch.long)
            y[b, : len(ys)] = torch.tensor(ys, dtype=torch.long)
        return x, y


# ----------------------------------------------------------------------------------------------
# Distributed


@dataclass
class _Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device_str: str) -> _Dist:
    """Join the process group when started under torchrun (RANK / WORLD_SIZE in the environment)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    rank = int(os.environ["RANK"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    owns = False
    if not dist.is_initialized():
        cuda = device_str.startswith("cuda") or (device_str == "auto" and torch.cuda.is_available())
        dist.init_process_group(backend="nccl" if cuda else "gloo", rank=rank, world_size=world)
        owns = True
    return _Dist(rank=rank, world=world, local_rank=local_rank, owns_group=owns)


def _resolve_device(device_str: str, ddp: _Dist) -> torch.device:
    if device_str == "auto":
        device_str = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device_str)
    if device.type == "cuda" and ddp.enabled:
        device = torch.device("cuda", ddp.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    return device


# ----------------------------------------------------------------------------------------------
# Training state (checkpoints for resume)


def _atomic_torch_save(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save(obj, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def load_train_state(out_dir: str | Path) -> dict | None:
    """Read the training state of a run directory, if it has one.

    Args:
        out_dir: the run's out_dir.

    Returns:
        The state dict (step, model, optimizer, rng, loss_history, dev_history, config) or None.
    """
    path = Path(out_dir) / STATE_DIR / STATE_FILE
    if not path.exists():
        return None
    return torch.load(path, map_location="cpu", weights_only=False)


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: dict) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------------------------
# Model and tokenizer


def _build_model_and_tokenizer(config: TrainConfig, out_dir: Path, device: torch.device, ddp):
    """Return (model, tokenizer, parent_meta)."""
    from modeling.checkpoint import load_model
    from modeling.model import ModelConfig, Transformer
    from modeling.tokenizer import Tokenizer

    if config.base_model:
        model, tokenizer, meta = load_model(config.base_model, device="cpu")
        return model.to(device), tokenizer, meta
    tok_file = out_dir / "tokenizer.json"
    if config.tokenizer:
        tokenizer = Tokenizer.load(config.tokenizer)
    elif tok_file.exists():
        tokenizer = Tokenizer.load(tok_file)
    else:
        if ddp.enabled:
            raise ValueError("DDP from scratch needs a trained tokenizer: set config.tokenizer")
        texts = _tokenizer_texts(config)
        tokenizer = Tokenizer.train(texts, vocab_size=config.tokenizer_vocab_size)
        out_dir.mkdir(parents=True, exist_ok=True)
        tokenizer.save(tok_file)
    mcfg = ModelConfig(**{**config.model, "vocab_size": tokenizer.vocab_size})
    mcfg.block_size = max(mcfg.block_size, config.seq_len)
    torch.manual_seed(config.seed)
    model = Transformer(mcfg)
    return model.to(device), tokenizer, {}


def _tokenizer_texts(config: TrainConfig) -> list[str]:
    """Every text of the training sources (one per message content), for tokenizer training."""
    texts: list[str] = []
    for spec in config.data:
        _check_source(spec)
        if _is_conversation_source(spec):
            texts += [m["content"] for c in _read_conversations(spec, config) for m in c]
        else:
            texts += _read_texts(spec, config)
    return texts


# ----------------------------------------------------------------------------------------------
# The loop


def _model_config_dict(model: nn.Module) -> dict:
    cfg = getattr(model, "config", None)
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else {}


@torch.no_grad()
def _dev_loss(model, batches: _Batches, n: int, device, autocast) -> float:
    """Token-mean loss over the first n dev rows (fixed order, no perturbation)."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    B = batches.config.batch_size
    n = min(n, len(batches.examples))
    for start in range(0, n, B):
        rows = [batches.row(i) for i in range(start, min(n, start + B))]
        T = max(len(x) for x, _ in rows)
        x = torch.full((len(rows), T), batches.pad_id, dtype=torch.long)
        y = torch.full((len(rows), T), -100, dtype=torch.long)
        for b, (xs, ys) in enumerate(rows):
            x[b, : len(xs)] = torch.tensor(xs, dtype=torch.long)
            y[b, : len(ys)] = torch.tensor(ys, dtype=torch.long)
        k = int((y != -100).sum())
        if k == 0:
            continue
        with autocast():
            _, loss = model(x.to(device), y.to(device))
        total += float(loss) * k
        count += k
    model.train(was_training)
    return total / max(1, count)


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
            calls also carry ``dev_loss`` and, when measured, ``dev_accuracy``).
        should_cancel: checked between steps (on rank 0, broadcast to all ranks under DDP).

    Returns:
        The final model directory ``out_dir/model`` (config.json, model.safetensors, tokenizer.json,
        meta.json with lineage, config, final metrics and the loss curve).

    Raises:
        Cancelled: when should_cancel() returned True; the state of the last completed step is saved
            in out_dir/train_state first, so the same call resumes from it.
    """
    from modeling.chat import ChatFormat
    from modeling.checkpoint import save_model

    config.validate()
    out_dir = Path(config.out_dir)
    ddp = _setup_distributed(config.device)
    neftune = None
    try:
        device = _resolve_device(config.device, ddp)
        if device.type == "cpu" and config.num_threads:
            torch.set_num_threads(config.num_threads)
        use_bf16 = config.dtype == "bfloat16" or (config.dtype == "auto" and device.type == "cuda")
        if device.type == "cuda":
            torch.backends.cuda.matmul.allow_tf32 = True
            torch.backends.cudnn.allow_tf32 = True

        def autocast():
            if use_bf16:
                return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
            return contextlib.nullcontext()

        model, tokenizer, parent_meta = _build_model_and_tokenizer(config, out_dir, device, ddp)
        if config.seq_len > model.config.block_size:
            # a base model's context is the hard limit; rows are cut to fit it
            config = dataclasses.replace(config, seq_len=model.config.block_size)
        chat_format = ChatFormat.for_model(tokenizer, config.base_model)
        pad_id = tokenizer.pad_id if tokenizer.pad_id is not None else 0

        examples, dropped = _load_examples(config.data, config, chat_format, config.kind)
        if not examples:
            raise ValueError("the data sources produced no training examples")
        batches = _Batches(examples, chat_format, config, pad_id, ddp.world)
        dev = None
        if config.dev_data:
            dev_examples, _ = _load_examples(config.dev_data, config, chat_format, config.kind)
            dev = _Batches(dev_examples, chat_format, config, pad_id, 1) if dev_examples else None

        optimizer = make_optimizer(model, config, device)
        step = 0
        loss_history: list[float] = []
        dev_history: list[dict] = []
        state_path = out_dir / STATE_DIR / STATE_FILE
        if config.resume and state_path.exists():
            state = torch.load(state_path, map_location="cpu", weights_only=False)
            if state["fingerprint"] != config._trajectory_fingerprint():
                raise ValueError(
                    f"{state_path} belongs to a run with a different config; use another out_dir "
                    "or resume=False"
                )
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            _set_rng_state(state["rng"])
            step = state["step"]
            loss_history = list(state["loss_history"])
            dev_history = list(state["dev_history"])

        raw_model = model
        if config.neftune_alpha > 0:
            emb = _input_embedding(raw_model, tokenizer.vocab_size)
            neftune = _NEFTune(emb, config.neftune_alpha, device)
        if config.compile:
            model = torch.compile(model)
        if ddp.enabled:
            from torch.nn.parallel import DistributedDataParallel as DDP

            ids = [device.index] if device.type == "cuda" else None
            model = DDP(model, device_ids=ids)

        def save_state(at_step: int) -> Path | None:
            if not ddp.is_main:
                return None
            _atomic_torch_save(
                {
                    "step": at_step,
                    "model": raw_model.state_dict(),
                    "optimizer": optimizer.state_dict(),
                    "rng": _rng_state(),
                    "loss_history": loss_history,
                    "dev_history": dev_history,
                    "config": config.to_dict(),
                    "fingerprint": config._trajectory_fingerprint(),
                },
                state_path,
            )
            return state_path

        def evaluate_dev(at_step: int) -> dict:
            entry: dict = {"step": at_step}
            if dev is not None:
                entry["dev_loss"] = _dev_loss(
                    raw_model, dev, config.eval_examples, device, autocast
                )
            if config.eval_accuracy_n and config.kind == "sft":
                entry.update(_dev_accuracy(raw_model, chat_format, config))
            return entry

        model.train()
        t_start = time.perf_counter()
        step_at_start = step
        tokens_seen = 0
        lr = lr_at(step, config)
        info: dict = {"tokens_per_s": 0.0}
        while step < config.max_steps:
            if should_cancel is not None and _agree(bool(should_cancel()), ddp, device):
                path = save_state(step)
                raise Cancelled(step, path)
            lr = lr_at(step, config)
            for group in optimizer.param_groups:
                group["lr"] = lr
            micros = [batches.micro_batch(step, m, ddp.rank) for m in range(config.grad_accum)]
            n_local = sum(int((y != -100).sum()) for _, y in micros)
            n_global = _all_reduce_sum(float(n_local), ddp, device)
            step_loss = torch.zeros((), device=device)
            for m, (x, y) in enumerate(micros):
                x, y = x.to(device, non_blocking=True), y.to(device, non_blocking=True)
                n_micro = int((y != -100).sum())
                if neftune is not None:
                    neftune.reseed(config.seed * 1_000_003 + step * 4099 + m * ddp.world + ddp.rank)
                last = m == config.grad_accum - 1
                sync = contextlib.nullcontext() if (last or not ddp.enabled) else model.no_sync()
                with sync:
                    with autocast():
                        logits, loss = model(x, y)
                    if n_micro == 0:
                        # Keep the backward (DDP needs every rank to reduce) but add nothing.
                        scaled = logits.float().sum() * 0.0
                    else:
                        # Token-weighted over the global batch; DDP averages over ranks, so * world.
                        scaled = loss.float() * (n_micro * ddp.world / max(n_global, 1.0))
                        step_loss += loss.detach().float() * (n_micro / max(n_global, 1.0))
                    scaled.backward()
                tokens_seen += int((x != pad_id).sum())
            if config.grad_clip > 0:
                torch.nn.utils.clip_grad_norm_(raw_model.parameters(), config.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            step_loss_value = _all_reduce_sum(float(step_loss), ddp, device)
            step += 1
            loss_history.append(step_loss_value)

            elapsed = time.perf_counter() - t_start
            done = step - step_at_start
            info = {
                "step": step,
                "total": config.max_steps,
                "loss": step_loss_value,
                "lr": lr,
                "tokens_per_s": tokens_seen * ddp.world / max(elapsed, 1e-9),
                "eta_s": elapsed / done * (config.max_steps - step),
                "phase": "train",
            }
            if ddp.is_main and progress is not None:
                progress(info)
            if (
                config.eval_interval
                and step % config.eval_interval == 0
                and step < config.max_steps
                and ddp.is_main
            ):
                entry = evaluate_dev(step)
                dev_history.append(entry)
                if progress is not None and len(entry) > 1:
                    progress({**info, **entry, "phase": "eval"})
            if config.checkpoint_interval and step % config.checkpoint_interval == 0:
                save_state(step)

        final: dict = {"step": step, "train_loss": loss_history[-1] if loss_history else None}
        if ddp.is_main:
            entry = evaluate_dev(step)
            if len(entry) > 1:
                dev_history.append(entry)
                final.update({k: v for k, v in entry.items() if k != "step"})
                if progress is not None:
                    last_loss = loss_history[-1] if loss_history else None
                    base = {"step": step, "total": config.max_steps, "loss": last_loss, "lr": lr}
                    base["tokens_per_s"] = info["tokens_per_s"]
                    progress({**base, "eta_s": 0.0, **entry, "phase": "eval"})
        model_dir = out_dir / MODEL_DIR
        if ddp.is_main:
            meta = {
                "lineage": {
                    "parent": str(config.base_model) if config.base_model else None,
                    "parent_meta": parent_meta.get("lineage") if parent_meta else None,
                    "kind": config.kind,
                    "data": list(config.data),
                    **config.lineage,
                },
                "model_config": _model_config_dict(raw_model),
                "num_params": sum(p.numel() for p in raw_model.parameters()),
                "train_config": config.to_dict(),
                "metrics": final,
                "loss_curve": loss_history,
                "dev_curve": dev_history,
                "world_size": ddp.world,
                "data_rows": len(examples),
                "dropped_conversations": dropped,
                "train_seconds_last_session": round(time.perf_counter() - t_start, 3),
            }
            save_model(raw_model, tokenizer, model_dir, meta=meta)
            if not config.keep_train_state and state_path.exists():
                state_path.unlink()
        if ddp.enabled:
            dist.barrier()
        return model_dir
    finally:
        if neftune is not None:
            neftune.handle.remove()
        if ddp.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def _agree(flag: bool, ddp: _Dist, device) -> bool:
    """Rank 0's decision, shared with every rank (so all ranks stop at the same step)."""
    if not ddp.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.broadcast(t, src=0)
    return bool(t.item())


def _all_reduce_sum(value: float, ddp: _Dist, device) -> float:
    if not ddp.enabled:
        return value
    t = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return float(t.item())


def _dev_accuracy(model, chat_format, config: TrainConfig) -> dict:
    from modeling.evaluate import evaluate

    dialogues = _skills_dialogues("dev", config)[: config.eval_accuracy_n]
    result = evaluate(model, chat_format, dialogues, batch_size=64)
    return {"dev_accuracy": result["accuracy"]}


# ----------------------------------------------------------------------------------------------
# Command line


class _ProgressBar:
    """tqdm bar fed by the progress callback: step/total, loss, tokens/s, ETA."""

    def __init__(self, desc: str = "train"):
        from tqdm import tqdm

        self.bar = tqdm(total=0, desc=desc, unit="step", dynamic_ncols=True)
        self.phase_total: tuple[str, int] | None = None

    def __call__(self, info: dict) -> None:
        phase = str(info.get("phase", "train"))
        total = int(info.get("total") or 0)
        if (phase, total) != self.phase_total and phase != "eval":
            self.phase_total = (phase, total)
            self.bar.reset(total=total)
            self.bar.set_description(phase)
        if phase == "eval":
            shown = {k: v for k, v in info.items() if k.startswith("dev_") or k.startswith("test")}
            if not shown:
                return
            self.bar.write(
                f"step {info['step']}: " + ", ".join(f"{k}={v:.4g}" for k, v in shown.items())
            )
            return
        self.bar.n = int(info.get("step", 0))
        post = {}
        if info.get("loss") is not None:
            post["loss"] = f"{info['loss']:.4f}"
        if info.get("tokens_per_s"):
            post["tok/s"] = f"{info['tokens_per_s']:.0f}"
        if info.get("eta_s") is not None:
            post["eta"] = f"{info['eta_s']:.0f}s"
        self.bar.set_postfix(post, refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="python -m modeling.train",
        description="Pretrain or fine-tune a model. Flags override values from --config.",
    )
    p.add_argument("--config", help="JSON file with TrainConfig fields")
    p.add_argument("--recipe", choices=["default"], help="run a named recipe (ignores other flags)")
    p.add_argument("--out", dest="out_dir", help="run directory (out_dir)")
    p.add_argument("--kind", choices=["pretrain", "sft"])
    p.add_argument("--base", dest="base_model", help="start from this model directory")
    p.add_argument("--model", help="ModelConfig fields as JSON, for a fresh model")
    p.add_argument("--tokenizer", help="tokenizer.json for a fresh model (default: train one)")
    p.add_argument("--data", nargs="+", help="sources: skills:train, skills-text, *.jsonl, *.txt")
    p.add_argument("--dev-data", nargs="+")
    p.add_argument("--on-bad-line", choices=["fail", "skip"])
    p.add_argument("--seq-len", type=int)
    p.add_argument("--batch-size", type=int)
    p.add_argument("--grad-accum", type=int)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--min-lr", type=float)
    p.add_argument("--warmup-steps", type=int)
    p.add_argument("--weight-decay", type=float)
    p.add_argument("--grad-clip", type=float)
    p.add_argument("--eval-interval", type=int)
    p.add_argument("--checkpoint-interval", type=int)
    p.add_argument("--seed", type=int)
    p.add_argument("--device")
    p.add_argument("--dtype", choices=["auto", "float32", "bfloat16"])
    p.add_argument("--compile", action="store_true", default=None)
    p.add_argument("--num-threads", type=int)
    p.add_argument("--perturb-prob", type=float)
    p.add_argument("--neftune-alpha", type=float)
    p.add_argument("--no-resume", dest="resume", action="store_false", default=None)
    p.add_argument("--quiet", action="store_true", help="no progress bar")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry point: ``python -m modeling.train --config run.json`` (or flags).

    Args:
        argv: arguments (default sys.argv[1:]).

    Returns:
        Process exit status (0 ok, 130 cancelled by Ctrl-C).
    """
    args = _parse_args(argv)
    is_main = int(os.environ.get("RANK", "0")) == 0
    bar = _ProgressBar() if is_main and not args.quiet else None
    interrupted = {"flag": False}
    try:
        if args.recipe == "default":
            from modeling.recipes import build_default_model

            path = build_default_model(args.out_dir or "var/models/default", progress=bar)
        else:
            values: dict = {}
            if args.config:
                values.update(json.loads(Path(args.config).read_text(encoding="utf-8")))
            skip = {"config", "recipe", "quiet", "model"}
            for k, v in vars(args).items():
                if k not in skip and v is not None:
                    values[k] = v
            if args.model:
                values["model"] = json.loads(args.model)
            path = train(
                TrainConfig.from_dict(values),
                progress=bar,
                should_cancel=lambda: interrupted["flag"],
            )
    except KeyboardInterrupt:
        interrupted["flag"] = True
        if bar:
            bar.close()
        print("interrupted", file=sys.stderr)
        return 130
    except Cancelled as e:
        if bar:
            bar.close()
        print(f"cancelled at step {e.step}; state saved to {e.checkpoint}", file=sys.stderr)
        return 130
    if bar:
        bar.close()
    if is_main:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
