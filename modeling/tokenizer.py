"""Byte-level BPE tokenizer (HF `tokenizers`) whose chat control tokens user text cannot produce.

Every tokenizer we train has the same six control tokens at ids 0..5 and splits numbers into
single digits. `encode` treats text as text:
typing "<|user|>" gives the ids of those characters, never the control id; control tokens are only
ever inserted by id (see modeling/chat.py). Foreign tokenizer.json files (GPT-2, Llama, Qwen2, ...)
load too; their missing control ids are None.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import cached_property
from pathlib import Path

from tokenizers import Tokenizer as HFTokenizer
from tokenizers import decoders, models, pre_tokenizers, trainers

SPECIAL_TOKENS = ["<|bos|>", "<|system|>", "<|user|>", "<|assistant|>", "<|end|>", "<|pad|>"]

# A Python str may hold lone surrogates ("\ud800"), which are not encodable as UTF-8 and which
# `tokenizers` rejects; they become U+FFFD, as any UTF-8 decoder would show them.
_SURROGATES = re.compile("[\ud800-\udfff]")


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's reversible map from the 256 byte values to printable characters."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1)]
    printable += range(ord("®"), ord("ÿ") + 1)
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


_BYTE_OF_CHAR = {c: b for b, c in _bytes_to_unicode().items()}


class Tokenizer:
    """Thin wrapper over a `tokenizers.Tokenizer` with control-token-safe encoding.

    Args:
        backend: the HF `tokenizers.Tokenizer` to wrap (it is copied, not modified).
    """

    def __init__(self, backend: HFTokenizer):
        self._json = backend.to_str()
        self._tk = HFTokenizer.from_str(self._json)
        # The one switch that stops added special tokens from being matched inside text;
        # `add_special_tokens=False` only concerns the post-processor (BOS/EOS templates).
        self._tk.encode_special_tokens = True
        added = self._tk.get_added_tokens_decoder()
        self.special_ids: frozenset[int] = frozenset(i for i, t in added.items() if t.special)
        self._added_ids = frozenset(added)
        self.vocab_size: int = self._tk.get_vocab_size(with_added_tokens=True)
        ids = [self._tk.token_to_id(t) for t in SPECIAL_TOKENS]
        self.bos_id, self.system_id, self.user_id, self.assistant_id, self.end_id, self.pad_id = ids

    # ----------------------------------------------------------------------------- construction

    @classmethod
    def train(
        cls, texts: Iterable[str], vocab_size: int = 2048, min_frequency: int = 2
    ) -> Tokenizer:
        """Train a byte-level BPE tokenizer whose control tokens take ids 0..5.

        Args:
            texts: training strings (any iterable; consumed once).
            vocab_size: target size including the 256 byte tokens and the control tokens.
            min_frequency: a pair must occur this often to be merged.
        Returns:
            The trained Tokenizer (the vocabulary may be smaller when the corpus runs out of pairs).
        """
        if vocab_size < 256 + len(SPECIAL_TOKENS):
            raise ValueError(f"vocab_size must be >= {256 + len(SPECIAL_TOKENS)}, got {vocab_size}")
        tk = HFTokenizer(models.BPE())
        # Every digit its own token, as Llama does: with merged numbers ("12", " 56") a small
        # model must learn each sum as a lookup; with digits it can learn the place-value rule.
        tk.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Digits(individual_digits=True),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
            ]
        )
        tk.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            min_frequency=min_frequency,
            special_tokens=SPECIAL_TOKENS,  # added first, so they get ids 0..5 in this order
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        )
        tk.train_from_iterator((_clean(t) for t in texts), trainer=trainer)
        return cls(tk)

    @classmethod
    def load(cls, path: str | Path) -> Tokenizer:
        """Load a tokenizer.json file, or the tokenizer.json inside a directory.

        Args:
            path: a .json file or a directory containing tokenizer.json.
        Returns:
            The Tokenizer.
        """
        path = Path(path)
        file = path / "tokenizer.json" if path.is_dir() else path
        if not file.is_file():
            raise FileNotFoundError(f"no tokenizer file at {file}")
        return cls(HFTokenizer.from_file(str(file)))

    def save(self, path: str | Path) -> None:
        """Write the tokenizer as JSON.

        Args:
            path: a file name ending in .json, or a directory (then tokenizer.json inside it).
        """
        path = Path(path)
        file = path if path.suffix == ".json" else path / "tokenizer.json"
        file.parent.mkdir(parents=True, exist_ok=True)
        file.write_text(self._json, encoding="utf-8")

    def to_json(self) -> str:
        """Returns: the tokenizer.json text (what `save` writes)."""
        return self._json

    # ----------------------------------------------------------------------------- encode/decode

    def encode(self, text: str) -> list[int]:
        """Encode text as plain text: control-token strings are never turned into control ids.

        Args:
            text: any str; lone surrogates (not valid Unicode scalars) become U+FFFD.
        Returns:
            Token ids, without BOS/EOS or any other post-processing.
        """
        return self._tk.encode(_clean(text), add_special_tokens=False).ids

    def encode_with_special_tokens(self, text: str) -> list[int]:
        """Encode text in which special-token strings ARE parsed into their ids.

        Only for text we produced ourselves, such as a rendered Hugging Face chat template
        (that is how those templates insert control tokens). Never use it on user text.

        Args:
            text: the trusted text.
        Returns:
            Token ids, without post-processing.
        """
        return self._parsing_tk.encode(_clean(text), add_special_tokens=False).ids

    def decode(self, ids: Sequence[int], skip_special: bool = True) -> str:
        """Decode ids to text; invalid UTF-8 (a cut multi-byte character) shows as U+FFFD.

        Args:
            ids: token ids.
            skip_special: drop special (control) tokens from the text.
        Returns:
            The text.
        """
        return self._tk.decode(list(ids), skip_special_tokens=skip_special)

    def decode_bytes(self, ids: Sequence[int], skip_special: bool = True) -> bytes:
        """Decode ids to raw bytes, for exact incremental UTF-8 decoding of a stream of tokens.

        Exact for byte-level tokenizers (ours, GPT-2, Llama 3, Qwen2); for other decoders it falls
        back to UTF-8 of `decode`, which may already contain U+FFFD for a cut character.

        Args:
            ids: token ids.
            skip_special: drop special (control) tokens.
        Returns:
            The bytes the tokens stand for.
        """
        if not self._byte_level:
            return self.decode(ids, skip_special).encode("utf-8")
        out = bytearray()
        for i in ids:
            if i in self.special_ids and skip_special:
                continue
            token = self._tk.id_to_token(i)
            if token is None:
                raise ValueError(f"token id {i} is outside the vocabulary ({self.vocab_size})")
            if i in self._added_ids:  # added tokens are stored as raw text, not byte-mapped
                out += token.encode("utf-8")
            else:
                out += bytes(_BYTE_OF_CHAR[c] for c in token)
        return bytes(out)

    def token_id(self, token: str) -> int | None:
        """Returns: the id of a token string (e.g. "<|end|>"), or None if it is not in the vocab."""
        return self._tk.token_to_id(token)

    def id_to_token(self, token_id: int) -> str | None:
        """Returns: the token string of an id (byte-level pieces look like "Ġhello"), or None."""
        return self._tk.id_to_token(token_id)

    def __len__(self) -> int:
        return self.vocab_size

    @cached_property
    def _parsing_tk(self) -> HFTokenizer:
        # A second copy rather than toggling a flag on the shared one: encoding may run in threads.
        return HFTokenizer.from_str(self._json)

    @cached_property
    def _byte_level(self) -> bool:
        return isinstance(self._tk.decoder, decoders.ByteLevel)


def _clean(text: str) -> str:
    if not isinstance(text, str):
        raise TypeError(f"expected str, got {type(text).__name__}")
    return _SURROGATES.sub("\ufffd", text)
