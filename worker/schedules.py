"""The old import path of worker.loop, kept for importers outside worker/ until they move."""

from worker.loop import (
    learning_loop,
    loop_after_evaluation,
    loop_reconcile,
    loop_start,
    mine_new_conversations,
)

__all__ = [
    "learning_loop",
    "loop_after_evaluation",
    "loop_reconcile",
    "loop_start",
    "mine_new_conversations",
]
