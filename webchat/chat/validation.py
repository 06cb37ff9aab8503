"""Checks on what users send (text, sampling parameters, ids) and the site-wide limits.

Every limit here is enforced on the server; the settings panel only mirrors the same ranges
(they reach the page through `param_ranges()`), so a hand-written frame or API call gets the
same answer as the page.
"""

import math
import re
from dataclasses import dataclass

from django.conf import settings

from webchat.chat.models import Conversation


class ChatInputError(Exception):
    """A request the server refuses, with a stable `code` and a sentence for the user."""

    def __init__(self, code: str, detail: str, **extra):
        super().__init__(detail)
        self.code = code
        self.detail = detail
        self.extra = extra


@dataclass(frozen=True)
class NumberRange:
    kind: type  # int or float
    low: float
    high: float
    default: float
    label: str


# The sampling parameters a user may set, keyed as modeling.sampling.SamplingParams names them.
PARAMS: dict[str, NumberRange] = {
    "temperature": NumberRange(float, 0.0, 2.0, 0.7, "Temperature"),
    "top_p": NumberRange(float, 0.05, 1.0, 0.95, "Top-p"),
    "top_k": NumberRange(int, 0, 1000, 50, "Top-k"),
    "max_new_tokens": NumberRange(int, 1, 4096, 256, "Max tokens"),
    "repetition_penalty": NumberRange(float, 0.5, 2.0, 1.1, "Repetition penalty"),
    "num_beams": NumberRange(int, 1, 8, 1, "Beams"),
    "length_penalty": NumberRange(float, 0.0, 3.0, 1.0, "Length penalty"),
}
SEED_MAX = 2**31 - 1
ID_MAX = 2**63 - 1  # the largest primary key a database column holds
# NUL is refused by PostgreSQL text columns; a lone surrogate cannot be encoded to UTF-8.
_BAD_CHARS = re.compile("[\x00\ud800-\udfff]")


def limits() -> dict:
    """Site-wide limits. Their defaults live in one place, settings.WEBCHAT (from the
    environment); a title is as long as the model field allows."""
    conf = settings.WEBCHAT
    return {
        "max_message_chars": conf["MAX_MESSAGE_CHARS"],
        "max_system_prompt_chars": conf["MAX_SYSTEM_PROMPT_CHARS"],
        "max_title_chars": Conversation._meta.get_field("title").max_length,
        "max_feedback_chars": conf["MAX_FEEDBACK_CHARS"],
        "max_active_generations": conf["MAX_ACTIVE_GENERATIONS_PER_USER"],
        "rate_limit_per_minute": conf["RATE_LIMIT_PER_MINUTE"],
        "max_tokens_per_reply": conf["MAX_TOKENS_PER_REPLY"],
        "max_frame_bytes": conf["MAX_FRAME_BYTES"],
    }


def user_max_tokens(user) -> int:
    """The cap on max_new_tokens for this user: staff may lower or raise it per user."""
    profile = getattr(user, "profile", None)
    cap = getattr(profile, "max_tokens_per_reply", None)
    return int(cap) if cap else limits()["max_tokens_per_reply"]


def reply_token_cap(context_length: int) -> int | None:
    """The longest reply a model of this context window gives: half the window, so the other
    half is left for the conversation (None when the window is unknown)."""
    return max(1, context_length // 2) if context_length else None


def _default(name: str, model_defaults: dict | None):
    """A parameter's default: the model's recommendation when it makes one within the range."""
    spec = PARAMS[name]
    value = (model_defaults or {}).get(name)
    if value is None or not spec.low <= value <= spec.high:
        return spec.default
    return spec.kind(value)


def param_ranges(max_tokens: int | None = None, model_defaults: dict | None = None) -> dict:
    """The ranges the settings panel shows, as JSON (defaults: the model's recommendation, else
    the site's)."""
    ranges = {
        name: {
            "min": r.low,
            "max": r.high,
            "default": _default(name, model_defaults),
            "label": r.label,
            "step": 1 if r.kind is int else 0.05,
        }
        for name, r in PARAMS.items()
    }
    if max_tokens is not None:
        ranges["max_new_tokens"]["max"] = max_tokens
        ranges["max_new_tokens"]["default"] = min(ranges["max_new_tokens"]["default"], max_tokens)
    return ranges


def _number(name: str, value, spec: NumberRange, high: float):
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ChatInputError("invalid", f"{spec.label} ({name}) must be a number.", field=name)
    # Ints compare exactly with floats in Python at any size; float(value) would overflow.
    if spec.kind is int and isinstance(value, float) and not value.is_integer():
        raise ChatInputError(
            "invalid", f"{spec.label} ({name}) must be a whole number.", field=name
        )
    if not (spec.low <= value <= high):  # also false for NaN
        raise ChatInputError(
            "out_of_range",
            f"{spec.label} ({name}) must be between {_fmt(spec.low)} and {_fmt(high)}; "
            f"got {_fmt(value)}.",
            field=name,
        )
    return spec.kind(value)


def _fmt(x) -> str:
    if isinstance(x, int):
        return str(x) if abs(x) < 10**12 else f"a {len(str(abs(x)))}-digit number"
    if not math.isfinite(x):
        return str(x)
    return str(int(x)) if x.is_integer() and abs(x) < 1e12 else f"{x:g}"


def validate_params(raw, *, max_tokens: int, model_defaults: dict | None = None) -> dict:
    """Check a sampling-parameter dict from a client; return the full dict the worker uses.

    Args:
        raw: the client's dict (missing keys take defaults; unknown keys are refused so a typo
            is not silently ignored).
        max_tokens: this user's cap on max_new_tokens.
        model_defaults: the model's recommended settings (modeling.generation_config
            .recommended_sampling); they replace the site's defaults for the keys the client
            leaves out.

    Returns:
        Keys of modeling.sampling.SamplingParams: max_new_tokens, temperature, top_k, top_p,
        repetition_penalty, do_sample, num_beams, length_penalty, seed.

    Raises:
        ChatInputError: code "invalid" (wrong type, unknown key) or "out_of_range".
    """
    if raw is None:
        raw = {}
    if not isinstance(raw, dict):
        raise ChatInputError("invalid", "params must be an object.", field="params")
    allowed = set(PARAMS) | {"do_sample", "seed"}
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise ChatInputError(
            "invalid",
            f"Unknown parameter(s): {', '.join(unknown)}. Allowed: {', '.join(sorted(allowed))}.",
            field=unknown[0],
        )
    out = {}
    for name, spec in PARAMS.items():
        high = min(spec.high, max_tokens) if name == "max_new_tokens" else spec.high
        default = min(_default(name, model_defaults), high)
        out[name] = _number(name, raw[name], spec, high) if raw.get(name) is not None else default
    seed = raw.get("seed")
    if seed is not None:
        if isinstance(seed, bool) or not isinstance(seed, int):
            raise ChatInputError("invalid", "seed must be a whole number or null.", field="seed")
        if not 0 <= seed <= SEED_MAX:
            raise ChatInputError(
                "out_of_range",
                f"seed must be between 0 and {SEED_MAX}; got {_fmt(seed)}.",
                field="seed",
            )
    out["seed"] = seed
    do_sample = raw.get("do_sample")
    if do_sample is not None and not isinstance(do_sample, bool):
        raise ChatInputError("invalid", "do_sample must be true or false.", field="do_sample")
    # Temperature 0 means greedy and beam search is deterministic, so neither samples.
    if do_sample is None:
        do_sample = out["temperature"] > 0 and out["num_beams"] == 1
    if out["num_beams"] > 1 and do_sample:
        raise ChatInputError(
            "invalid",
            "Beam search (beams > 1) cannot be combined with sampling.",
            field="num_beams",
        )
    out["do_sample"] = bool(do_sample)
    return out


def unusable_chars(value: str) -> str:
    """What in `value` no column can store ("" when nothing): NUL or a lone surrogate."""
    bad = _BAD_CHARS.search(value)
    if bad is None:
        return ""
    return "a NUL character" if bad.group() == "\x00" else "invalid Unicode (a lone surrogate)"


def storable_text(text: str) -> str:
    """Model output made storable: every NUL or lone surrogate becomes U+FFFD, one character
    for one, so lengths and offsets into the text stay the same (a model may emit any byte; what
    the user is shown and what is saved must be the same text)."""
    return _BAD_CHARS.sub("\ufffd", text)


def validate_text(
    value, *, field: str = "text", max_chars: int | None = None, allow_empty: bool = False
) -> str:
    """A user-supplied string within its size limit.

    Raises:
        ChatInputError: code "missing_field", "invalid" (not a string, or NUL or a lone
            surrogate in it), "empty" or "too_long".
    """
    if value is None:
        raise ChatInputError("missing_field", f"The field '{field}' is required.", field=field)
    if not isinstance(value, str):
        raise ChatInputError("invalid", f"The field '{field}' must be a string.", field=field)
    max_chars = max_chars or limits()["max_message_chars"]
    bad = unusable_chars(value)
    if bad:
        label = field.replace("_", " ")
        raise ChatInputError("invalid", f"The {label} contains {bad}.", field=field)
    if len(value) > max_chars:
        raise ChatInputError(
            "too_long",
            f"The {field.replace('_', ' ')} is {len(value)} characters; the limit is {max_chars}.",
            field=field,
            limit=max_chars,
        )
    if not allow_empty and not value.strip():
        raise ChatInputError("empty", f"The {field.replace('_', ' ')} is empty.", field=field)
    return value


def validate_id(value, field: str) -> int:
    if value is None:
        raise ChatInputError("missing_field", f"The field '{field}' is required.", field=field)
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= ID_MAX:
        raise ChatInputError("invalid", f"The field '{field}' must be a positive id.", field=field)
    return value
