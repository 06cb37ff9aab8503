"""The training state of a run on disk, for exact resume: ``out_dir/train_state/state.pt``.

It holds the model and optimizer state, the RNG states, the step and the loss history, plus the
config's trajectory fingerprint so that a resume under a different config is refused. It is
written through a temporary file, fsync and a rename, so a kill never leaves a half-written state.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import torch

STATE_DIR = "train_state"
STATE_FILE = "state.pt"


def state_path(out_dir: str | Path) -> Path:
    """Where a run directory keeps its training state.

    Args:
        out_dir: the run's out_dir.

    Returns:
        ``out_dir/train_state/state.pt``.
    """
    return Path(out_dir) / STATE_DIR / STATE_FILE


def save_train_state(path: Path, state: dict[str, Any]) -> Path:
    """Write a training state atomically, adding the current RNG states under ``"rng"``.

    Args:
        path: the state file (parent directories are created).
        state: step, model, optimizer, loss_history, dev_history, config, fingerprint.

    Returns:
        The path written.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + f".tmp{os.getpid()}")
    with open(tmp, "wb") as f:
        torch.save({**state, "rng": _rng_state()}, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def load_train_state(out_dir: str | Path) -> dict | None:
    """Read the training state of a run directory, if it has one.

    Args:
        out_dir: the run's out_dir.

    Returns:
        The state dict (step, model, optimizer, rng, loss_history, dev_history, config) or None.
    """
    path = state_path(out_dir)
    if not path.exists():
        return None
    # weights_only=False: the state holds Python RNG state and plain dicts, from our own run
    return torch.load(path, map_location="cpu", weights_only=False)


def restore_rng(state: dict) -> None:
    """Put the RNG states saved in a training state back (torch, Python, and CUDA if present).

    Args:
        state: a dict from :func:`load_train_state`.
    """
    rng = state["rng"]
    torch.set_rng_state(rng["torch"])
    random.setstate(rng["python"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])


def _rng_state() -> dict:
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state
