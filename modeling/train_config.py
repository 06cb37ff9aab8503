"""The config of one training run (modeling.train.train): a dataclass that round-trips JSON.

Every field has a default, so a JSON config names only what it changes; unknown keys are refused.
The trajectory fingerprint (the fields that change what a run computes) guards resume: a training
state written under another fingerprint is not continued.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field

from modeling.data import SourceOptions
from modeling.regularisers import PerturbFn


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
    # Replay (no forgetting): sources in the syntax of `data` (a fine-tune replays its parent's
    # training mix, e.g. ["skills:train", "skills-text"]); replay_share of every step's rows come
    # from them (0 -> off; below 1, so each step keeps rows of its own data).
    replay_data: list[str] = field(default_factory=list)
    replay_share: float = 0.0
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
    # Select on dev (modeling.dev_selection): at step 0 and every eval_interval steps measure the
    # clean and the robust (dev_perturb_recipe at dev_perturb_rate) accuracy on eval_accuracy_n
    # skills dev dialogues; keep the checkpoint with the best robust accuracy among those whose
    # clean accuracy is within clean_dev_tolerance_points of the parent's (step 0); stop after
    # `patience` evals without a new best (0 -> never early); the saved model is the kept one.
    select_on_dev: bool = False
    dev_perturb_recipe: str = "mixed"
    dev_perturb_rate: float = 0.2
    clean_dev_tolerance_points: float = 0.5
    patience: int = 0
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
        # imported here: modeling.augment loads the skills tables, which --help does not need
        from modeling.augment import TRAIN_RECIPES

        if self.perturb_recipe and self.perturb_recipe not in TRAIN_RECIPES:
            raise ValueError(
                f"perturb_recipe must be one of {', '.join(TRAIN_RECIPES)} (ocr and "
                f"split_merge are held out for evaluation); got {self.perturb_recipe!r}"
            )
        if not 0.0 < self.perturb_rate <= 1.0:
            raise ValueError("perturb_rate must be in (0, 1]")
        if self.lr <= 0 or self.min_lr < 0 or self.min_lr > self.lr:
            raise ValueError("need 0 <= min_lr <= lr and lr > 0")
        self._validate_replay()
        self._validate_selection()

    def _validate_replay(self) -> None:
        from modeling.data import check_source

        if not 0.0 <= self.replay_share < 1.0:
            raise ValueError(
                f"replay_share must be in [0, 1) (the share of each batch drawn from replay; a "
                f"step keeps rows of its own data), got {self.replay_share!r}"
            )
        if self.replay_share > 0 and not self.replay_data:
            raise ValueError(
                'replay_share > 0 needs replay_data (e.g. ["skills:train", "skills-text"])'
            )
        if self.replay_share > 0 and self.kind != "sft":
            raise ValueError("replay is for fine-tunes: kind must be 'sft'")
        for spec in self.replay_data:
            check_source(spec)

    def _validate_selection(self) -> None:
        from modeling.augment import EVAL_ONLY_RECIPES, RECIPES

        if self.patience < 0:
            raise ValueError("patience must be >= 0 (0: never stop early)")
        if self.clean_dev_tolerance_points < 0:
            raise ValueError("clean_dev_tolerance_points must be >= 0")
        if not self.select_on_dev:
            return
        if self.kind != "sft":
            raise ValueError("select_on_dev needs kind 'sft' (it measures dev dialogue accuracy)")
        if self.eval_interval < 1 or self.eval_accuracy_n < 1:
            raise ValueError(
                "select_on_dev needs eval_interval >= 1 and eval_accuracy_n >= 1 (the dev "
                "dialogues measured at every eval)"
            )
        if self.dev_perturb_recipe in EVAL_ONLY_RECIPES:
            raise ValueError(
                f"dev_perturb_recipe {self.dev_perturb_recipe!r} is held out for evaluation: "
                "selecting on it would leak it into training"
            )
        if self.dev_perturb_recipe not in RECIPES:
            raise ValueError(
                f"dev_perturb_recipe must be one of {', '.join(RECIPES)}; "
                f"got {self.dev_perturb_recipe!r}"
            )
        if not 0.0 < self.dev_perturb_rate <= 1.0:
            raise ValueError("dev_perturb_rate must be in (0, 1]")

    def source_options(self) -> SourceOptions:
        """How this run reads its data sources.

        Returns:
            The data fields as modeling.data.SourceOptions.
        """
        return SourceOptions(
            skills_n=self.skills_n,
            skills_seed=self.skills_seed,
            skills_text_n=self.skills_text_n,
            on_bad_line=self.on_bad_line,
        )

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
