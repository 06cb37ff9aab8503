"""OpenAI chat-completion requests to our terms: the conversation it carries, the sampling
parameters, the model name and how to answer (one JSON body or server-sent events).

Only the shape of the request is checked here; the limits a browser turn has (text sizes,
parameter ranges, the user's token cap, the rate limit) are the service's to apply.
"""

from dataclasses import dataclass

from webchat.chat.validation import ChatInputError, validate_text

ROLES = ("system", "user", "assistant")
# Request fields that are sampling parameters under the same name (OpenAI's, then ours).
SAMPLING_FIELDS = (
    "temperature",
    "top_p",
    "top_k",
    "repetition_penalty",
    "num_beams",
    "length_penalty",
    "seed",
)


@dataclass(frozen=True)
class CompletionRequest:
    system_prompt: str  # the system messages, joined
    turns: list[tuple[str, str]]  # (role, content), ending with a non-empty user turn
    params: dict
    model: str | None  # as the caller named it; None or "default" means the active model
    stream: bool
    include_usage: bool


def completion_request(body: dict) -> CompletionRequest:
    """A POST /v1/chat/completions body, checked and translated.

    Raises:
        ChatInputError: "out_of_range" or "invalid" for what we do not support or cannot read.
    """
    stream = _flag(body.get("stream"), "stream")
    options = body.get("stream_options")
    if options is None:
        options = {}
    if not isinstance(options, dict):
        raise ChatInputError(
            "invalid", "stream_options must be an object or null.", field="stream_options"
        )
    include_usage = _flag(options.get("include_usage"), "stream_options.include_usage")
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise ChatInputError("invalid", "model must be a string.", field="model")
    params = sampling_params(body)
    system_prompt, turns = chat_messages(body.get("messages"))
    return CompletionRequest(system_prompt, turns, params, model, stream, include_usage)


def _flag(value, field: str) -> bool:
    """An optional boolean field: true, false or null ("false" as a string is not false)."""
    if value is not None and not isinstance(value, bool):
        raise ChatInputError("invalid", f"{field} must be true, false or null.", field=field)
    return bool(value)


def sampling_params(body: dict) -> dict:
    """OpenAI request fields to our sampling parameters (extensions: top_k, num_beams,
    repetition_penalty, length_penalty)."""
    if body.get("n", 1) != 1:
        raise ChatInputError("out_of_range", "Only n=1 is supported.", field="n")
    for name in ("presence_penalty", "frequency_penalty"):
        if body.get(name) not in (None, 0, 0.0):
            raise ChatInputError(
                "invalid", f"{name} is not supported; use repetition_penalty.", field=name
            )
    if body.get("stop") not in (None, [], ""):
        raise ChatInputError("invalid", "stop sequences are not supported.", field="stop")
    params = {}
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
    if max_tokens is not None:
        params["max_new_tokens"] = max_tokens
    for name in SAMPLING_FIELDS:
        if body.get(name) is not None:
            params[name] = body[name]
    return params


def _text(content, field: str) -> str:
    if isinstance(content, list):  # the content-parts form: keep its text parts
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text":
                continue
            text = part.get("text")
            if not isinstance(text, str):
                raise ChatInputError(
                    "invalid", f"{field}[{j}].text must be a string.", field=f"{field}[{j}].text"
                )
            texts.append(text)
        content = "".join(texts)
    return validate_text(content, field=field, allow_empty=True)


def chat_messages(messages) -> tuple[str, list[tuple[str, str]]]:
    """OpenAI's messages list to (system prompt, turns).

    Args:
        messages: [{"role": "system"|"user"|"assistant", "content": str or parts}, ...],
            ending with a user turn; system messages become the system prompt.

    Returns:
        The system messages joined by blank lines, and the (role, content) turns.
    """
    if not isinstance(messages, list) or not messages:
        raise ChatInputError("invalid", "messages must be a non-empty list.", field="messages")
    turns, system = [], []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in ROLES:
            raise ChatInputError(
                "invalid",
                f"messages[{i}] needs a role of system, user or assistant.",
                field="messages",
            )
        content = _text(m.get("content"), f"messages[{i}].content")
        if m["role"] == "system":
            system.append(content)
        else:
            turns.append((m["role"], content))
    if not turns or turns[-1][0] != "user":
        raise ChatInputError("invalid", "The last message must be from the user.", field="messages")
    validate_text(turns[-1][1], field="messages[-1].content")
    return "\n\n".join(system), turns
