"""A model's recommended decoding settings: ``generation_config.json``, as Hugging Face keeps them.

Our builds write it (the default model: greedy, up to 256 new tokens); imported Hugging Face
models bring their own, which ``modeling.checkpoint.import_hf`` copies and checks. The chat and
the API start from ``recommended_sampling(model_dir)`` and apply the user's changes on top.

Hugging Face's keys and their meaning here: ``do_sample`` false means greedy (temperature 0);
``temperature``, ``top_k``, ``top_p``, ``repetition_penalty``, ``max_new_tokens`` map one to one.
When ``do_sample`` is true and a key is absent, Hugging Face's own default applies (temperature 1,
top-k 50, top-p 1).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

GENERATION_CONFIG_FILE = "generation_config.json"
_HF_SAMPLING_DEFAULTS = {"temperature": 1.0, "top_k": 50, "top_p": 1.0}
_NUMBERS = {"temperature": float, "top_k": int, "top_p": float, "repetition_penalty": float,
            "max_new_tokens": int}  # fmt: skip


def write_generation_config(model_dir: str | os.PathLike, settings: dict) -> Path:
    """Write generation_config.json into a model directory (atomically: temp file, rename).

    Args:
        model_dir: the model directory.
        settings: Hugging Face generation keys, e.g. {"do_sample": False, "max_new_tokens": 256}.
            Keys already in the file (such as eos_token_id) are kept unless settings names them.
    Returns:
        the file written.
    """
    file = Path(model_dir) / GENERATION_CONFIG_FILE
    current = json.loads(file.read_text()) if file.is_file() else {}
    tmp = file.with_name(GENERATION_CONFIG_FILE + ".tmp")
    tmp.write_text(json.dumps({**current, **settings}, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, file)
    return file


def recommended_sampling(model_dir: str | os.PathLike) -> dict:
    """The decoding settings a model recommends, as modeling.generate.SamplingParams keys.

    Args:
        model_dir: the model directory.
    Returns:
        a dict with some of temperature, top_k, top_p, repetition_penalty, max_new_tokens;
        empty when the model recommends nothing (no file, or only stop ids in it).
    Raises:
        ValueError: the file is not a JSON object or a value has the wrong type (names the file).
    """
    file = Path(model_dir) / GENERATION_CONFIG_FILE
    if not file.is_file():
        return {}
    try:
        raw = json.loads(file.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ValueError(f"{file}: not valid JSON ({e})") from e
    if not isinstance(raw, dict):
        raise ValueError(f"{file}: expected a JSON object")
    out: dict = {}
    for key, kind in _NUMBERS.items():
        value = raw.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ValueError(f"{file}: {key} must be a number, got {value!r}")
        out[key] = kind(value)
    if raw.get("do_sample") is False:
        out["temperature"] = 0.0
        for key in ("top_k", "top_p"):
            out.pop(key, None)
    elif raw.get("do_sample") is True:
        out = {**_HF_SAMPLING_DEFAULTS, **out}
    return out
