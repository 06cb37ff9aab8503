"""Training regularisers: online random perturbation of user turns, and NEFTune noise.

Both are off by default and both are deterministic given their seed: the trainer seeds the
perturbation of a row by its stream position and NEFTune's generator by the step and micro-batch,
so a resumed or DDP run draws exactly what the uninterrupted single-process run drew.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

PerturbFn = Callable[[str, random.Random], str]


def typo_noise(text: str, rng: random.Random, rate: float = 0.1) -> str:
    """The default online perturbation: `modeling.augment.typo` (character typos on words of 4+
    letters, at least one word), without the skills validity oracle so it works on any text.

    Args:
        text: the user turn.
        rng: the random source (explicit so that results are reproducible).
        rate: per-word edit probability.

    Returns:
        The perturbed text.
    """
    from modeling.augment import typo

    return typo(text, rng, rate=rate)


@dataclass(frozen=True)
class UserTurnPerturbation:
    """Perturbs each user turn of a conversation with probability ``prob``.

    Attributes:
        fn: (text, rng) -> perturbed text.
        prob: probability that one user turn is perturbed.
    """

    fn: PerturbFn
    prob: float

    def __call__(self, messages: list[dict], rng: random.Random) -> list[dict]:
        """Return the messages with some user turns perturbed (the input is not modified).

        Args:
            messages: the conversation.
            rng: the random source; one draw per user turn decides, then fn draws from it too.

        Returns:
            A new message list.
        """
        return [
            {**m, "content": self.fn(m["content"], rng)}
            if m["role"] == "user" and rng.random() < self.prob
            else m
            for m in messages
        ]


def user_turn_perturbation(
    prob: float, fn: PerturbFn | None = None, recipe: str = "", rate: float = 0.1
) -> UserTurnPerturbation | None:
    """The online perturbation a run asked for, or None when it is off.

    Args:
        prob: probability that a user turn is perturbed (0 -> off).
        fn: an explicit (text, rng) -> text; wins over ``recipe``.
        recipe: a named modeling.augment training recipe; "" -> :func:`typo_noise`.
        rate: the recipe's word rate (:func:`typo_noise` keeps its own default).

    Returns:
        The perturbation, or None when ``prob`` is 0.
    """
    if prob <= 0:
        return None
    if fn is None and recipe:
        from modeling.augment import recipe as augment_recipe

        # strict=False: a turn the skills oracle cannot parse (any real user text) is still
        # perturbed, held to the recipe's other constraints.
        fn = augment_recipe(recipe, rate=rate, strict=False)
    return UserTurnPerturbation(fn or typo_noise, prob)


class NEFTune:
    """Forward hook adding NEFTune noise to the input embeddings while the model is training.

    Noise is uniform in [-1, 1] scaled by alpha / sqrt(T * d) (Jain et al. 2023), drawn from a
    generator the trainer re-seeds before each micro-batch, so a resumed run draws the same noise.
    """

    def __init__(self, embedding: nn.Module, alpha: float, device: torch.device):
        self.alpha = alpha
        self.generator = torch.Generator(device=device)
        self.handle = embedding.register_forward_hook(self._hook)

    @classmethod
    def attach(
        cls, model: nn.Module, vocab_size: int, alpha: float, device: torch.device
    ) -> NEFTune:
        """Hook NEFTune onto the token embedding of a model.

        Args:
            model: the model (its ``get_input_embeddings()``, else its vocab-sized nn.Embedding).
            vocab_size: the tokenizer's vocabulary size, to recognise the token embedding.
            alpha: the noise scale.
            device: where the model lives (the noise generator's device).

        Returns:
            The attached hook; call :meth:`remove` when training ends.
        """
        return cls(_input_embedding(model, vocab_size), alpha, device)

    def reseed(self, seed: int) -> None:
        """Seed the noise of the next forward pass.

        Args:
            seed: the seed.
        """
        self.generator.manual_seed(seed)

    def remove(self) -> None:
        """Detach the hook from the embedding."""
        self.handle.remove()

    def _hook(self, module: nn.Module, inputs: Any, output: torch.Tensor) -> torch.Tensor:
        if not module.training or self.alpha <= 0:
            return output
        T, d = output.shape[-2], output.shape[-1]
        noise = torch.empty(output.shape, device=output.device, dtype=torch.float32)
        noise.uniform_(-1.0, 1.0, generator=self.generator)
        return output + (noise * (self.alpha / math.sqrt(T * d))).to(output.dtype)


def _input_embedding(model: nn.Module, vocab_size: int) -> nn.Module:
    get = getattr(model, "get_input_embeddings", None)
    if callable(get):
        return get()
    for m in model.modules():
        if isinstance(m, nn.Embedding) and m.num_embeddings == vocab_size:
            return m
    raise ValueError("NEFTune: could not find the token embedding module")
