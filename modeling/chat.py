"""Conversations to token ids: the native chat layout, imported models' own templates, truncation.

Native layout (models we train): control tokens are inserted by id, text is encoded as plain text,

    <|bos|> [<|system|> sys <|end|>] <|user|> text <|end|> <|assistant|> text <|end|> ...

and the loss mask is 1 on assistant content and its <|end|> (so the model learns to stop), else 0.

Usage: `python -m modeling.chat MODEL_DIR` chats with a model directory in the terminal.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Literal, TypedDict

from modeling.tokenizer import Tokenizer

Role = Literal["system", "user", "assistant"]


class Message(TypedDict):
    role: Role
    content: str


class ContextTooLongError(ValueError):
    """Even the system turn plus the last exchange do not fit in `max_tokens`."""


def _learns(message: Message) -> bool:
    """True for assistant turns the loss covers. An assistant message with `"weight": 0` (the
    OpenAI fine-tuning convention) stays in the context but is not learned, e.g. the wrong reply
    of an error-repair dialogue."""
    return message["role"] == "assistant" and message.get("weight", 1) != 0


def validate_messages(messages: Sequence[Message]) -> None:
    """Check the turn order: an optional system turn first, then user/assistant alternating.

    Args:
        messages: the conversation.
    Raises:
        ValueError: naming the first offending message.
    """
    if any(not isinstance(m, Mapping) for m in messages):
        raise ValueError("messages must be dicts with 'role' and 'content'")
    first = 1 if messages and messages[0].get("role") == "system" else 0
    if len(messages) <= first:
        raise ValueError("a conversation needs at least one user turn")
    for i, message in enumerate(messages):
        role = message.get("role")
        if not isinstance(message.get("content"), str):
            raise ValueError(f"message {i} ({role}): content must be a str")
        if i < first:
            continue
        expected = "user" if (i - first) % 2 == 0 else "assistant"
        if role != expected:
            where = "the first turn" if i == 0 else "only the first turn"
            hint = f"; system may be {where}" if role == "system" else ""
            raise ValueError(
                f"message {i}: expected role {expected!r}, got {role!r} (after an optional system "
                f"turn, turns alternate user/assistant starting with user{hint})"
            )


class ChatFormat:
    """The native format: control tokens by id, so user text can never forge a turn boundary.

    Subclasses (`TemplateChatFormat`, `PlainChatFormat`) change only `_encode`; validation and
    truncation are shared. Use `ChatFormat.for_model` to pick the right one for a model.

    Args:
        tokenizer: a Tokenizer that has our control tokens.
    """

    stop_token_ids: list[int]
    stop_strings: tuple[str, ...] = ()  # text that also ends a reply (plain-text fallback only)

    def __init__(self, tokenizer: Tokenizer):
        control = (tokenizer.bos_id, tokenizer.system_id, tokenizer.user_id)
        control += (tokenizer.assistant_id, tokenizer.end_id)
        if any(i is None for i in control):
            raise ValueError("tokenizer lacks the control tokens; use ChatFormat.for_model")
        self.tokenizer = tokenizer
        self.stop_token_ids = [tokenizer.end_id]

    @classmethod
    def for_model(cls, tokenizer: Tokenizer, model_dir: str | Path | None = None) -> ChatFormat:
        """Pick a model's chat format: native if its tokenizer has our control tokens, else the
        Hugging Face chat template from `model_dir`, else a plain "User: ...\\nAssistant: ..." text.

        Args:
            tokenizer: the model's tokenizer.
            model_dir: the model directory (for tokenizer_config.json, chat_template.jinja,
                generation_config.json, config.json); None means native or plain.
        Returns:
            The ChatFormat.
        """
        tok = tokenizer
        if None not in (tok.bos_id, tok.system_id, tok.user_id, tok.assistant_id, tok.end_id):
            return ChatFormat(tokenizer)
        model_dir = Path(model_dir) if model_dir is not None else None
        config = _read_json(model_dir / "tokenizer_config.json") if model_dir else {}
        # Template variables, as transformers passes its special_tokens_map: bos_token, eos_token...
        token_strings = {k: _token_content(v) for k, v in config.items() if k.endswith("_token")}
        token_strings = {k: v for k, v in token_strings.items() if v}
        stop_ids = _eos_token_ids(tokenizer, model_dir, token_strings.get("eos_token"))
        template = _chat_template(model_dir, config) if model_dir else None
        if template is not None:
            return TemplateChatFormat(tokenizer, template, token_strings, stop_ids)
        bos = token_strings.get("bos_token") if config.get("add_bos_token") else None
        return PlainChatFormat(tokenizer, stop_ids, bos_id=tokenizer.token_id(bos) if bos else None)

    def render(
        self, messages: Sequence[Message], max_tokens: int | None = None
    ) -> tuple[list[int], list[int]]:
        """Render a conversation for training: token ids and the loss mask.

        Truncation drops whole user/assistant pairs, oldest first, keeping the system turn and the
        last exchange; a turn is never cut in half.

        Args:
            messages: the conversation (validated by `validate_messages`).
            max_tokens: the most tokens the row may have; None means no limit.
        Returns:
            (ids, mask), equal lengths, mask 1 on assistant content and its end-of-turn token.
        Raises:
            ContextTooLongError: the last exchange does not fit, or every reply that is left after
                truncation got dropped (the row would teach nothing). Data loaders skip such rows.
            ValueError: bad turn order, or no assistant turn at all.
        """
        validate_messages(messages)
        if not any(m["role"] == "assistant" for m in messages):
            raise ValueError("a training conversation needs at least one assistant turn")
        ids, mask = self._fit(messages, max_tokens, add_generation_prompt=False)
        if not any(mask):
            raise ContextTooLongError(
                f"after truncation to {max_tokens} tokens no assistant reply is left to learn from"
            )
        return ids, mask

    def render_prompt(
        self, messages: Sequence[Message], max_tokens: int | None = None
    ) -> list[int]:
        """Render a conversation that ends with a user turn as a prompt for the assistant's reply.

        Args:
            messages: the conversation; the last message must be from the user.
            max_tokens: the most prompt tokens (leave room for the reply); None means no limit.
        Returns:
            Token ids ending with the assistant marker (the template's generation prompt).
        Raises:
            ContextTooLongError: the system turn plus the last user turn do not fit.
            ValueError: bad turn order.
        """
        validate_messages(messages)
        if messages[-1]["role"] != "user":
            raise ValueError("render_prompt needs a conversation that ends with a user turn")
        return self._fit(messages, max_tokens, add_generation_prompt=True)[0]

    def _fit(
        self, messages: Sequence[Message], max_tokens: int | None, add_generation_prompt: bool
    ) -> tuple[list[int], list[int]]:
        validate_messages(messages)
        head = list(messages[:1]) if messages[0]["role"] == "system" else []
        body = list(messages[len(head) :])

        def encode_dropping(pairs: int) -> tuple[list[int], list[int]]:
            return self._encode(head + body[2 * pairs :], add_generation_prompt)

        if max_tokens is None:
            return encode_dropping(0)
        # Binary search for the fewest dropped pairs that fit (fewer pairs never make it longer);
        # a conversation of 100 turns costs ~7 renders instead of ~50.
        lo, hi, best = 0, (len(body) - 1) // 2, None
        while lo <= hi:
            mid = (lo + hi) // 2
            ids, mask = encode_dropping(mid)
            if len(ids) <= max_tokens:
                best, hi = (ids, mask), mid - 1
            else:
                lo = mid + 1
        if best is None:
            need = len(encode_dropping((len(body) - 1) // 2)[0])
            raise ContextTooLongError(
                f"the system turn and the last exchange need {need} tokens, limit is {max_tokens}"
            )
        return best

    def _encode(
        self, messages: Sequence[Message], add_generation_prompt: bool
    ) -> tuple[list[int], list[int]]:
        tok = self.tokenizer
        ids, mask = [tok.bos_id], [0]
        marker = {"system": tok.system_id, "user": tok.user_id, "assistant": tok.assistant_id}
        for message in messages:
            text = tok.encode(message["content"])
            ids += [marker[message["role"]], *text, tok.end_id]
            learn = int(_learns(message))
            mask += [0] + [learn] * (len(text) + 1)
        if add_generation_prompt:
            ids.append(tok.assistant_id)
            mask.append(0)
        return ids, mask


class TemplateChatFormat(ChatFormat):
    """An imported model's Hugging Face chat template (Jinja), rendered as transformers does.

    The rendered text is encoded with special-token parsing on, since that is how templates insert
    control tokens; message contents, though, are located in the rendering and encoded as plain
    text, so a user typing "<|im_end|>" cannot forge a turn (transformers would parse it). For a
    template that rewrites contents beyond trimming, the whole text is parsed, as transformers does.

    Args:
        tokenizer: the model's tokenizer.
        template: the Jinja chat template source.
        token_strings: template variables such as bos_token and eos_token.
        stop_token_ids: ids that end a reply.
    """

    def __init__(
        self,
        tokenizer: Tokenizer,
        template: str,
        token_strings: dict[str, str],
        stop_token_ids: list[int],
    ):
        self.tokenizer = tokenizer
        self.stop_token_ids = stop_token_ids
        self._template = _compile_template(template)
        self._token_strings = token_strings

    def render_text(self, messages: Sequence[Message], add_generation_prompt: bool) -> str:
        """Render messages to text with the template (no validation, no truncation).

        Args:
            messages: the conversation.
            add_generation_prompt: append the template's assistant header.
        Returns:
            The rendered text, as `tokenizer.apply_chat_template(..., tokenize=False)` gives it.
        """
        from jinja2.exceptions import TemplateError

        messages = [{"role": m["role"], "content": m["content"]} for m in messages]
        try:
            return self._template.render(
                messages=messages,
                add_generation_prompt=add_generation_prompt,
                tools=None,
                documents=None,
                **self._token_strings,
            )
        except TemplateError as e:
            raise ValueError(f"the chat template rejected the conversation: {e}") from e

    def _encode(
        self, messages: Sequence[Message], add_generation_prompt: bool
    ) -> tuple[list[int], list[int]]:
        text = self.render_text(messages, add_generation_prompt)
        plain = self._content_spans(messages, add_generation_prompt, text)
        learn = [] if add_generation_prompt else self._reply_spans(messages, text)
        cuts = sorted({0, len(text), *(c for span in plain + learn for c in span)})
        ids, mask = [], []
        for a, b in zip(cuts, cuts[1:]):
            if _covers(plain, a, b):
                piece = self.tokenizer.encode(text[a:b])
            else:
                piece = self.tokenizer.encode_with_special_tokens(text[a:b])
            ids += piece
            mask += [int(_covers(learn, a, b))] * len(piece)
        return ids, mask

    def _content_spans(
        self, messages: Sequence[Message], add_generation_prompt: bool, text: str
    ) -> list[tuple[int, int]]:
        # Render again with a private-use placeholder per content; where substituting the contents
        # (or trimmed contents, for templates that `| trim`) back gives the same text, we know
        # exactly where each content sits.
        marked = [{**m, "content": f"\ue000{i}\ue001"} for i, m in enumerate(messages)]
        parts = re.split("\ue000([0-9]+)\ue001", self.render_text(marked, add_generation_prompt))
        for strip in (False, True):
            out, spans, pos = [parts[0]], [], len(parts[0])
            for index, literal in zip(parts[1::2], parts[2::2]):
                content = messages[int(index)]["content"]
                content = content.strip() if strip else content
                spans.append((pos, pos + len(content)))
                out += [content, literal]
                pos += len(content) + len(literal)
            if "".join(out) == text:
                return spans
        return []

    def _reply_spans(self, messages: Sequence[Message], text: str) -> list[tuple[int, int]]:
        # A reply is what rendering message i adds after the generation prompt of messages[:i]:
        # its content and end-of-turn text. That needs a template whose renderings of a
        # conversation's prefixes are prefixes of its rendering (true of ordinary templates).
        spans = []
        for i, message in enumerate(messages):
            if not _learns(message):
                continue
            before = self.render_text(messages[:i], add_generation_prompt=True)
            through = self.render_text(messages[: i + 1], add_generation_prompt=False)
            if not (text.startswith(through) and through.startswith(before)):
                raise ValueError(
                    "this chat template renders earlier turns differently as the conversation "
                    "grows, so no loss mask can be derived from it"
                )
            spans.append((len(before), len(through)))
        return spans


class PlainChatFormat(ChatFormat):
    """Fallback for a model with neither our control tokens nor a chat template (e.g. base GPT-2).

    Layout, one turn a line: `[bos]System: sys⏎User: text⏎Assistant: text<eos>⏎User: ...`.
    Assistant content and its eos are learned; without an eos, the newline ending the reply is.
    "\\nUser:" is a stop string too, since base models ramble on into the next turn.

    Args:
        tokenizer: the model's tokenizer.
        stop_token_ids: eos ids; the first also ends each assistant reply in training rows.
        bos_id: prepended when the model expects a BOS token.
    """

    stop_strings = ("\nUser:",)

    def __init__(self, tokenizer: Tokenizer, stop_token_ids: list[int], bos_id: int | None = None):
        self.tokenizer = tokenizer
        self.stop_token_ids = stop_token_ids
        self.bos_id = bos_id

    def _encode(
        self, messages: Sequence[Message], add_generation_prompt: bool
    ) -> tuple[list[int], list[int]]:
        enc = self.tokenizer.encode
        ids, mask = ([self.bos_id], [0]) if self.bos_id is not None else ([], [])

        def add(piece: list[int], learn: int) -> None:
            ids.extend(piece)
            mask.extend([learn] * len(piece))

        for message in messages:
            role, content = message["role"], message["content"]
            if role == "assistant":
                learn = int(_learns(message))
                add(enc("Assistant:"), 0)
                add(enc(" " + content), learn)
                if self.stop_token_ids:
                    add([self.stop_token_ids[0]], learn)
                add(enc("\n"), 0 if self.stop_token_ids else learn)
            else:
                add(enc(f"{role.capitalize()}: {content}\n"), 0)
        if add_generation_prompt:
            add(enc("Assistant:"), 0)
        return ids, mask


# --------------------------------------------------------------------------- Hugging Face files


def _covers(spans: list[tuple[int, int]], a: int, b: int) -> bool:
    return any(s <= a and b <= e for s, e in spans)


def _read_json(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: invalid JSON ({e})") from e


def _token_content(value) -> str | None:
    # tokenizer_config.json stores special tokens as strings or as serialized AddedToken dicts.
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


def _chat_template(model_dir: Path, config: dict) -> str | None:
    # transformers >= 4.47 saves the template beside tokenizer_config.json; older ones inside it,
    # as a string or as a list of named templates.
    jinja_file = model_dir / "chat_template.jinja"
    if jinja_file.is_file():
        return jinja_file.read_text(encoding="utf-8")
    template = config.get("chat_template")
    if isinstance(template, list):
        named = {t.get("name"): t.get("template") for t in template}
        template = named.get("default")
    return template if isinstance(template, str) and template else None


def _eos_token_ids(
    tokenizer: Tokenizer, model_dir: Path | None, eos_token: str | None
) -> list[int]:
    ids: list[int] = []
    if model_dir is not None:
        for name in ("generation_config.json", "config.json"):
            value = _read_json(model_dir / name).get("eos_token_id")
            ids += value if isinstance(value, list) else [value] if isinstance(value, int) else []
    names = [eos_token] if eos_token else []
    if not ids and not names:  # no files to go by: the usual end-of-text spellings
        names = ["<|endoftext|>", "</s>", "<eos>", "<|im_end|>"]
    ids += [tokenizer.token_id(n) for n in names if tokenizer.token_id(n) is not None]
    return list(dict.fromkeys(ids))


def _compile_template(source: str):
    """Compile a chat template in the Jinja environment transformers uses."""
    from datetime import datetime

    import jinja2
    from jinja2.ext import Extension, loopcontrols
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    class GenerationTag(Extension):
        # transformers' {% generation %}...{% endgeneration %} marks assistant text for its own
        # masks; we derive masks from prefixes, so the tag only has to render its body.
        tags = {"generation"}

        def parse(self, parser):
            lineno = next(parser.stream).lineno
            body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
            return jinja2.nodes.CallBlock(self.call_method("_body"), [], [], body).set_lineno(
                lineno
            )

        def _body(self, caller):
            return caller()

    def raise_exception(message):
        raise jinja2.exceptions.TemplateError(message)

    def tojson(x, ensure_ascii=False, indent=None, separators=None, sort_keys=False):
        # Jinja's own tojson escapes HTML characters; templates expect plain JSON.
        return json.dumps(
            x, ensure_ascii=ensure_ascii, indent=indent, separators=separators, sort_keys=sort_keys
        )

    env = ImmutableSandboxedEnvironment(
        trim_blocks=True, lstrip_blocks=True, extensions=[GenerationTag, loopcontrols]
    )
    env.filters["tojson"] = tojson
    env.globals["raise_exception"] = raise_exception
    # Templates ask for today's local date, as transformers renders them.
    env.globals["strftime_now"] = lambda fmt: datetime.now().strftime(fmt)  # noqa: DTZ005
    return env.from_string(source)


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> None:
    """Chat with a model directory in the terminal, streaming each reply.

    Args:
        argv: command-line arguments (default: sys.argv[1:]); see `--help`.
    """
    import argparse

    from modeling.checkpoint import load_model
    from modeling.generate import stream
    from modeling.sampling import SamplingParams

    parser = argparse.ArgumentParser(prog="python -m modeling.chat", description=main.__doc__)
    parser.add_argument("model_dir", help="a model directory (config.json, model.safetensors, ...)")
    parser.add_argument("--temperature", type=float, default=0.8, help="0 decodes greedily")
    parser.add_argument("--top-p", type=float, default=0.95)
    parser.add_argument("--top-k", type=int, default=0, help="0 = off")
    parser.add_argument("--max-new-tokens", type=int, default=256)
    parser.add_argument("--system", default=None, help="a system prompt")
    parser.add_argument("--seed", type=int, default=None, help="makes sampling reproducible")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)

    model, tokenizer, _ = load_model(args.model_dir, device=args.device)
    chat = ChatFormat.for_model(tokenizer, args.model_dir)
    prompt_limit = model.config.block_size - args.max_new_tokens
    if prompt_limit <= 0:
        parser.error(f"--max-new-tokens must be below the context size {model.config.block_size}")
    history: list[Message] = [{"role": "system", "content": args.system}] if args.system else []
    print("Type a message; /reset starts over, /quit or Ctrl-D leaves.")
    for turn in range(1_000_000):
        try:
            text = input("\nyou> ")
        except (EOFError, KeyboardInterrupt):
            print()
            return
        if text.strip() in ("/quit", "/exit"):
            return
        if text.strip() == "/reset":
            history = history[:1] if args.system else []
            continue
        history.append({"role": "user", "content": text})
        try:
            prompt = chat.render_prompt(history, max_tokens=prompt_limit)
        except ContextTooLongError as e:
            print(f"(message too long: {e})")
            history.pop()
            continue
        params = SamplingParams(
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            do_sample=args.temperature > 0,
            stop_token_ids=tuple(chat.stop_token_ids),
            stop_strings=chat.stop_strings,
            seed=None if args.seed is None else args.seed + turn,
        )
        params.validate()
        print("bot> ", end="", flush=True)
        reply = []
        try:
            for delta in stream(model, tokenizer, prompt, params):
                reply.append(delta)
                print(delta, end="", flush=True)
        except KeyboardInterrupt:  # Ctrl-C stops this reply, keeps what was shown
            pass
        print()
        history.append({"role": "assistant", "content": "".join(reply)})


if __name__ == "__main__":
    main()
