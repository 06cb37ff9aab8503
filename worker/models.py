"""The old import path of worker.model_import, kept for importers outside worker/ until they
move (it was never ORM models)."""

from worker.model_import import import_model_dir

__all__ = ["import_model_dir"]
