"""What a training run starts from: a base model directory, or a fresh model and tokenizer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch
from torch import nn

from modeling.data import tokenizer_texts
from modeling.distributed import Dist
from modeling.train_config import TrainConfig


def build_model_and_tokenizer(config: TrainConfig, out_dir: Path, device: torch.device, ddp: Dist):
    """The run's model (on device), its tokenizer and the parent's meta.json.

    A base model is loaded with its tokenizer; otherwise a fresh model is built from
    ``config.model`` with the given tokenizer, the one this run trained before (resume), or one
    trained now on the data sources.

    Args:
        config: the run.
        out_dir: the run directory (a tokenizer trained here is saved in it).
        device: where the model goes.
        ddp: this process's place (a tokenizer cannot be trained under DDP).
    Returns:
        (model, tokenizer, parent_meta); parent_meta is {} for a fresh model.
    """
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
        texts = tokenizer_texts(config.data, config.source_options())
        tokenizer = Tokenizer.train(texts, vocab_size=config.tokenizer_vocab_size)
        out_dir.mkdir(parents=True, exist_ok=True)
        tokenizer.save(tok_file)
    mcfg = ModelConfig(**{**config.model, "vocab_size": tokenizer.vocab_size})
    mcfg.block_size = max(mcfg.block_size, config.seq_len)
    torch.manual_seed(config.seed)
    model = Transformer(mcfg)
    return model.to(device), tokenizer, {}


def model_config_dict(model: nn.Module) -> dict:
    """The model's config dataclass as a dict ({} for a model without one).

    Args:
        model: the trained model.
    Returns:
        the config fields.
    """
    cfg = getattr(model, "config", None)
    return dataclasses.asdict(cfg) if dataclasses.is_dataclass(cfg) else {}
