"""Select on dev, never on test: which checkpoint of a fine-tune is kept, and when it stops.

The rule (TrainConfig.select_on_dev): at step 0 the parent's clean dev accuracy is measured; at
every evaluation the checkpoint with the best *robust* dev accuracy (the dev turns perturbed by a
training recipe) among those whose *clean* dev accuracy is within ``tolerance_points`` of the
parent's is kept; after ``patience`` evaluations without a new best the run stops early; the
saved model is the kept one. Step 0 (the parent itself) is a candidate too, so a fine-tune that
cannot beat its parent on robust dev accuracy without losing clean accuracy gives back the
parent's weights (``best_step`` 0), and the gates then have nothing to promote.

Only the skills dev split is read; the test split stays for the gates.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

RULE = (
    "best robust dev accuracy among checkpoints whose clean dev accuracy is within "
    "{tol:g} points of the parent's (step 0); {stop}"
)


@dataclass
class DevSet:
    """The dev dialogues of a selection, clean and perturbed (fixed for the whole run).

    Attributes:
        prompts: clean prompts (conversations ending with the user turn).
        perturbed: the same prompts with the last user turn perturbed (one valid variant).
        references: the correct replies.
    """

    prompts: list[list[dict]]
    perturbed: list[list[dict]]
    references: list[str]

    @classmethod
    def build(cls, dialogues: list[dict], recipe: str, rate: float, seed: int) -> DevSet:
        """Split dev dialogues into prompts and references and perturb them once.

        Args:
            dialogues: {"messages", "family"} dicts ending with the reference reply.
            recipe: a modeling.augment recipe (training families only: the caller checks).
            rate: its word rate.
            seed: seeds the perturbation.
        Returns:
            The dev set.
        """
        from modeling.evaluate import split_dialogue
        from modeling.robustness import perturb_prompts

        parts = [split_dialogue(d) for d in dialogues]
        prompts = [p for p, _, _ in parts]
        perturbed, _ = perturb_prompts(prompts, recipe, rate, seed)
        return cls(prompts, perturbed, [r for _, r, _ in parts])

    def accuracy(self, model: torch.nn.Module, chat_format: Any) -> tuple[float, float]:
        """(clean, robust) exact-match accuracy of a model on the dev set.

        Args:
            model: the model (put back in its training mode afterwards).
            chat_format: its ChatFormat.
        Returns:
            (clean accuracy, perturbed accuracy), each in [0, 1].
        """
        from modeling.evaluate import predict
        from modeling.skills import is_correct

        n = len(self.references)
        caps = [len(chat_format.tokenizer.encode(r)) + 4 for r in self.references]
        outs = predict(
            model, chat_format, self.prompts + self.perturbed, batch_size=64,
            max_new_tokens=caps + caps,
        )  # fmt: skip
        ok = [is_correct(o, r) for o, r in zip(outs, self.references + self.references)]
        return sum(ok[:n]) / max(1, n), sum(ok[n:]) / max(1, n)


@dataclass
class DevSelector:
    """The selection's state: the parent's clean accuracy, the kept best and the patience count.

    Attributes:
        tolerance_points: how far (in points of 100) clean dev accuracy may fall below the parent's.
        patience: evaluations without a new best before stopping (0: never stop early).
        parent_clean: the parent's clean dev accuracy (None until step 0 is measured).
        best_step / best_clean / best_robust: the kept checkpoint and its numbers.
        best_state: the kept checkpoint's weights (on CPU).
        since_best: evaluations since the last new best.
        stopped_at: the step the run stopped early at (None: it ran to max_steps).
    """

    tolerance_points: float = 0.5
    patience: int = 0
    parent_clean: float | None = None
    best_step: int | None = None
    best_clean: float | None = None
    best_robust: float | None = None
    best_state: dict | None = None
    since_best: int = 0
    stopped_at: int | None = None
    history: list[dict] = field(default_factory=list)

    def eligible(self, clean: float) -> bool:
        """Whether a checkpoint's clean dev accuracy is within the tolerance of the parent's."""
        if self.parent_clean is None:
            raise RuntimeError("the parent (step 0) has not been measured yet")
        return clean >= self.parent_clean - self.tolerance_points / 100.0 - 1e-9

    def consider(self, step: int, clean: float, robust: float, model: torch.nn.Module) -> dict:
        """Record one evaluation; keep the model's weights when it is the new best.

        Args:
            step: the step evaluated (0: the parent, before any update).
            clean: its clean dev accuracy.
            robust: its robust dev accuracy.
            model: the model at that step (its state is copied when kept).
        Returns:
            the progress entry {"step", "dev_clean", "dev_robust", "best_step", "eligible"}.
        """
        if self.parent_clean is None:
            self.parent_clean = clean
        ok = self.eligible(clean)
        if ok and (self.best_robust is None or robust > self.best_robust + 1e-9):
            self.best_step, self.best_clean, self.best_robust = step, clean, robust
            self.best_state = {k: v.detach().to("cpu", copy=True) for k, v in
                               model.state_dict().items()}  # fmt: skip
            self.since_best = 0
        elif step > 0:
            self.since_best += 1
        entry = {"step": step, "dev_clean": clean, "dev_robust": robust,
                 "best_step": self.best_step, "eligible": ok}  # fmt: skip
        self.history.append(entry)
        return entry

    def should_stop(self) -> bool:
        """Whether ``patience`` evaluations in a row brought no new best."""
        return self.patience > 0 and self.since_best >= self.patience

    def summary(self, final_step: int) -> dict:
        """What meta.json records about the selection.

        Args:
            final_step: the last step trained.
        Returns:
            {"rule", "parent_dev_clean", "tolerance_points", "patience", "best_step",
            "best_dev_clean", "best_dev_robust", "stopped_early_at", "final_step", "evals"}.
        """
        return {
            "rule": RULE.format(
                tol=self.tolerance_points,
                stop=f"stop after {self.patience} evals without a new best"
                if self.patience
                else "no early stop",
            ),
            "parent_dev_clean": self.parent_clean,
            "tolerance_points": self.tolerance_points,
            "patience": self.patience,
            "best_step": self.best_step,
            "best_dev_clean": self.best_clean,
            "best_dev_robust": self.best_robust,
            "stopped_early_at": self.stopped_at,
            "final_step": final_step,
            "evals": len(self.history),
        }

    def measure(self, dev: DevSet, step: int, model: torch.nn.Module, chat_format: Any) -> dict:
        """Measure a step on the dev set and :meth:`consider` it.

        Args:
            dev: the dev set.
            step: the step (0: the parent).
            model: the model at that step.
            chat_format: its ChatFormat.
        Returns:
            the progress entry (see consider).
        """
        clean, robust = dev.accuracy(model, chat_format)
        return self.consider(step, clean, robust, model)

    def state_dict(self) -> dict:
        """Everything needed to continue the selection after a resume."""
        return dict(self.__dict__)

    def load_state_dict(self, state: dict) -> None:
        """Restore a selection saved by :meth:`state_dict`.

        Args:
            state: the saved dict.
        """
        self.__dict__.update(state)
