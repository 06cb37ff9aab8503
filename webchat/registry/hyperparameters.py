"""The hyperparameters a training run may take from the admin: an allow-list of
`modeling.train_config.TrainConfig` fields (and the fine-tune settings worker.finetune adds), each
with its type and range.

Paths never come from here: a run reads its Dataset, its base model and its recipe's own data,
and writes where the worker says (`data`, `tokenizer`, `out_dir` and `base_model` are refused by
name; `replay_data` and `dev_data` may only name the recipe's built-in sources, never a file). The
resource fields (steps, batch, sequence length, model size, device) have ceilings the site sets
(`settings.WEBCHAT_TRAINING`, docs/deploy.md). The messages name the field and the limit only, so
a refusal says nothing about the server's disk.
"""

import math
from dataclasses import dataclass

from django.conf import settings

from modeling.augment import TRAIN_RECIPES

# Fields that name files or directories: they come from the run's rows, never from a form.
PATH_FIELDS = {
    "data": "the run reads its dataset and the recipe's own data",
    "tokenizer": "a run uses its base model's tokenizer or trains its own",
    "out_dir": "the worker chooses where a run writes",
    "base_model": "choose the base model in the run's own field",
}
# Fields the run sets itself.
RUN_FIELDS = ("kind", "lineage", "perturb_fn", "resume", "keep_train_state")

INT_MAX = 2**31 - 1
# The recipe's own data a run may replay or select on (modeling.data sources that are no file).
BUILTIN_SOURCES = ("skills:train", "skills:dev", "skills-text")


class HyperparameterError(ValueError):
    """Hyperparameters that may not be used; `errors` holds one message per bad field."""

    def __init__(self, errors: list[str]):
        super().__init__("; ".join(errors))
        self.errors = errors


@dataclass(frozen=True)
class Rule:
    """One allowed field: its type, an inclusive range (or choices) and, for resource fields,
    the key of `settings.WEBCHAT_TRAINING` that caps it."""

    kind: type
    low: float | None = None
    high: float | None = None
    choices: tuple = ()
    ceiling: str = ""
    open_low: bool = False  # the lower bound itself is not allowed (lr > 0)
    note: str = ""  # said after the choices when a value is refused


RULES = {
    "max_steps": Rule(int, 1, ceiling="MAX_STEPS"),
    "batch_size": Rule(int, 1, ceiling="MAX_BATCH_SIZE"),
    "grad_accum": Rule(int, 1, 64),
    "seq_len": Rule(int, 8, ceiling="MAX_SEQ_LEN"),
    "lr": Rule(float, 0.0, 1.0, open_low=True),
    "min_lr": Rule(float, 0.0, 1.0),
    "warmup_steps": Rule(int, 0, ceiling="MAX_STEPS"),
    "weight_decay": Rule(float, 0.0, 1.0),
    "beta1": Rule(float, 0.0, 0.9999),
    "beta2": Rule(float, 0.0, 0.9999),
    "grad_clip": Rule(float, 0.0, 100.0),
    "eval_interval": Rule(int, 0, ceiling="MAX_STEPS"),
    "eval_examples": Rule(int, 0, 10_000),
    "eval_accuracy_n": Rule(int, 0, 2_000),
    "checkpoint_interval": Rule(int, 0, ceiling="MAX_STEPS"),
    "skills_n": Rule(int, 0, 200_000),
    "skills_seed": Rule(int, 0, INT_MAX),
    "skills_text_n": Rule(int, 0, 200_000),
    "pack_sft": Rule(bool),
    "on_bad_line": Rule(str, choices=("fail", "skip")),
    "tokenizer_vocab_size": Rule(int, 260, 65_536),
    "seed": Rule(int, 0, INT_MAX),
    "num_threads": Rule(int, 0, 256),
    "device": Rule(str, ceiling="DEVICES"),
    "dtype": Rule(str, choices=("auto", "float32", "bfloat16")),
    "perturb_prob": Rule(float, 0.0, 1.0),
    "perturb_recipe": Rule(
        str,
        choices=("", *TRAIN_RECIPES),
        note=" (ocr and split_merge are held out for evaluation)",
    ),
    "perturb_rate": Rule(float, 0.0, 1.0, open_low=True),
    "neftune_alpha": Rule(float, 0.0, 50.0),
    "model": Rule(dict),
    # Replay of the parent's mix and selection on dev (worker.finetune fills them in).
    "replay_share": Rule(float, 0.0, 0.99),
    "replay_data": Rule(list, choices=BUILTIN_SOURCES),
    "dev_data": Rule(list, choices=BUILTIN_SOURCES),
    "select_on_dev": Rule(bool),
    "dev_perturb_recipe": Rule(str, choices=("", *TRAIN_RECIPES)),
    "patience": Rule(int, 0, 1000),
    "clean_dev_tolerance_points": Rule(float, 0.0, 100.0),
}

# A fresh model's shape (`model`, ModelConfig fields); its size is capped by MAX_PARAMS.
MODEL_RULES = {
    "family": Rule(str, choices=("gpt2", "llama")),
    "n_layer": Rule(int, 1, 64),
    "n_head": Rule(int, 1, 64),
    "n_kv_head": Rule(int, 1, 64),
    "n_embd": Rule(int, 8, 8192),
    "block_size": Rule(int, 8, ceiling="MAX_SEQ_LEN"),
    "intermediate_size": Rule(int, 8, 65_536),
    "bias": Rule(bool),
    "qkv_bias": Rule(bool),
    "tie_embeddings": Rule(bool),
    "dropout": Rule(float, 0.0, 0.9),
    "rope_theta": Rule(float, 1.0, 1e7),
}


def training_limits() -> dict:
    """The site's ceilings on training resources (settings.WEBCHAT_TRAINING, from the
    environment; docs/deploy.md)."""
    return settings.WEBCHAT_TRAINING


def _check(name: str, value, rule: Rule, limits: dict) -> str | None:
    """The message for a bad value of one field, or None."""
    if rule.kind is bool:
        return None if isinstance(value, bool) else f"{name}: give true or false"
    if rule.kind is dict:
        return None if isinstance(value, dict) else f"{name}: give an object"
    if rule.kind is list:
        if isinstance(value, list) and len(value) <= 8 and all(v in rule.choices for v in value):
            return None
        return f"{name}: a list of the built-in sources {', '.join(rule.choices)}; never a file"
    if rule.kind is str:
        choices = rule.choices or tuple(limits[rule.ceiling])
        if isinstance(value, str) and value in choices:
            return None
        return f"{name}: one of {', '.join(repr(c) for c in choices)} on this site{rule.note}"
    numeric = isinstance(value, int) or (rule.kind is float and isinstance(value, float))
    if isinstance(value, bool) or not numeric:
        return f"{name}: give {'an integer' if rule.kind is int else 'a number'}"
    if isinstance(value, float) and not math.isfinite(value):
        return f"{name}: give a finite number"
    high = limits[rule.ceiling] if rule.ceiling else rule.high
    if rule.low is not None and (value < rule.low or (rule.open_low and value == rule.low)):
        return f"{name}: must be {'above' if rule.open_low else 'at least'} {rule.low}"
    if high is not None and value > high:
        site = f" on this site (WEBCHAT_TRAIN_{rule.ceiling})" if rule.ceiling else ""
        return f"{name}: at most {high}{site}"
    return None


def estimated_parameters(model: dict, vocab_size: int) -> int:
    """A fresh model's parameter count from its shape (ModelConfig's defaults where unset),
    without building it: embeddings, attention, MLP and an untied head."""
    family = model.get("family", "llama")
    d = int(model.get("n_embd", 128))
    n_head = int(model.get("n_head", 4))
    head_dim = d // max(1, n_head)
    kv = int(model.get("n_kv_head") or n_head)
    hidden = int(model.get("intermediate_size") or (4 * d if family == "gpt2" else 8 * d // 3))
    attention = 2 * d * n_head * head_dim + 2 * d * kv * head_dim
    mlp = (2 if family == "gpt2" else 3) * d * hidden
    positions = int(model.get("block_size", 1024)) * d if family == "gpt2" else 0
    embeddings = vocab_size * d + positions
    head = 0 if model.get("tie_embeddings", True) else vocab_size * d
    return embeddings + int(model.get("n_layer", 4)) * (attention + mlp) + head


def _model_errors(model: dict, vocab_size: int, limits: dict) -> list[str]:
    errors = []
    for key, value in model.items():
        rule = MODEL_RULES.get(key)
        if rule is None:
            errors.append(f"model.{key}: not a model field that may be set here")
            continue
        message = _check(f"model.{key}", value, rule, limits)
        if message:
            errors.append(message)
    if not errors:
        n = estimated_parameters(model, vocab_size)
        if n > limits["MAX_PARAMS"]:
            errors.append(
                f"model: about {n:,} parameters, at most {limits['MAX_PARAMS']:,} on this site "
                "(WEBCHAT_TRAIN_MAX_PARAMS)"
            )
    return errors


def hyperparameters_validate(hyperparameters) -> dict:
    """Check a run's hyperparameters against the allow-list, the ranges and the site's ceilings.

    Args:
        hyperparameters: the JSON object from a form or the loop settings.

    Returns:
        A copy, unchanged: nothing is coerced, so what is stored is what was checked.

    Raises:
        HyperparameterError: one message per bad field (no paths, no file checks).
    """
    if not isinstance(hyperparameters, dict):
        raise HyperparameterError(["give the hyperparameters as a JSON object"])
    limits = training_limits()
    errors = []
    for name, value in hyperparameters.items():
        if name in PATH_FIELDS:
            errors.append(f"{name}: may not be set here ({PATH_FIELDS[name]})")
        elif name in RUN_FIELDS:
            errors.append(f"{name}: set by the run itself")
        elif name not in RULES:
            errors.append(f"{name}: not a training setting that may be set here")
        else:
            message = _check(name, value, RULES[name], limits)
            if message:
                errors.append(message)
    if not errors and isinstance(hyperparameters.get("model"), dict):
        vocab = hyperparameters.get("tokenizer_vocab_size", 1024)
        errors += _model_errors(hyperparameters["model"], vocab, limits)
    lr, min_lr = hyperparameters.get("lr"), hyperparameters.get("min_lr")
    if not errors and lr is not None and min_lr is not None and min_lr > lr:
        errors.append("min_lr: must not be above lr")
    if errors:
        raise HyperparameterError(errors)
    return dict(hyperparameters)
