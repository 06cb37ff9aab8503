"""JSON from clients (websocket frames, the page's JSON posts, API bodies), read strictly.

Python's json module accepts what no client should send and what the rest of the code cannot
hold: NaN and Infinity (and 1e400, which becomes inf), integers of thousands of digits, strings
with NUL (PostgreSQL refuses them) or lone surrogates (they cannot be encoded to UTF-8), and
nesting deep enough to exhaust the recursion limit. `loads` refuses all of these with a
ChatInputError, so every door answers the same clear error and nothing reaches a service.
"""

import json
import math

from webchat.chat.validation import ChatInputError, unusable_chars

MAX_DEPTH = 16  # our deepest legitimate shape is an API message's content parts (4 levels)
MAX_INT_DIGITS = 100  # far beyond any id or parameter; fields bound their own ranges


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ChatInputError(
            "out_of_range", f"The number {text[:40]} is too large; numbers must be finite."
        )
    return value


def _int(text: str) -> int:
    digits = len(text.lstrip("-"))
    if digits > MAX_INT_DIGITS:
        raise ChatInputError(
            "out_of_range",
            f"A number has {digits} digits; at most {MAX_INT_DIGITS} are accepted.",
        )
    return int(text)


def _constant(name: str):
    raise ChatInputError("invalid", f"{name} is not a number this server accepts.")


def check_text(value: str, where: str) -> None:
    """Refuse a string with NUL or a lone surrogate (ChatInputError "invalid")."""
    bad = unusable_chars(value)
    if bad:
        raise ChatInputError("invalid", f"{where} contains {bad}.")


def _walk(data) -> None:
    """Check depth and every string (keys too), without recursion."""
    stack = [(data, 1)]
    while stack:
        node, depth = stack.pop()
        if isinstance(node, dict | list):
            if depth > MAX_DEPTH:
                raise ChatInputError(
                    "invalid", f"The JSON is nested more than {MAX_DEPTH} levels deep."
                )
            items = node.items() if isinstance(node, dict) else enumerate(node)
            for key, value in items:
                if isinstance(key, str):
                    check_text(key, "A field name")
                stack.append((value, depth + 1))
        elif isinstance(node, str):
            check_text(node, "A text value")


def loads(raw: str | bytes):
    """Parse client JSON strictly.

    Args:
        raw: the JSON text (bytes are decoded as UTF-8, BOM-free).

    Returns:
        The parsed value.

    Raises:
        ChatInputError: "bad_json" for text that is not JSON (or not UTF-8), "out_of_range"
            for a non-finite or oversized number, "invalid" for NaN/Infinity, NUL, a lone
            surrogate or nesting beyond MAX_DEPTH.
    """
    if isinstance(raw, bytes | bytearray):
        try:
            raw = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise ChatInputError("bad_json", "The body is not valid UTF-8.") from None
    try:
        data = json.loads(raw, parse_float=_float, parse_int=_int, parse_constant=_constant)
    except RecursionError:
        raise ChatInputError(
            "invalid", f"The JSON is nested more than {MAX_DEPTH} levels deep."
        ) from None
    except ValueError:
        raise ChatInputError("bad_json", "The text is not valid JSON.") from None
    _walk(data)
    return data
