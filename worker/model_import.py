"""The `cpu` queue: importing a model directory as a new version (torch stays out of the web).

The task keeps the name `worker.models.import_model_dir` (its route and any queued message use it).
"""

import shutil
import uuid
from pathlib import Path

from django.conf import settings

from worker.app import app


@app.task(name="worker.models.import_model_dir", soft_time_limit=1800, time_limit=1860)
def import_model_dir(src: str, name: str) -> dict:
    """Validate and copy (ours) or convert (Hugging Face) a local model directory into
    MODELS_DIR/versions/<name> and register it as a candidate version.

    The copy is staged under a unique hidden name in versions/ and published by a rename that
    never replaces a directory, so two imports with one name cannot delete each other's copy:
    the second is refused and removes only its own staging directory.

    Args:
        src: a directory on the worker's disk: one of our model directories, or a Hugging Face
            GPT-2 / Llama / Qwen2 directory (config.json with `model_type`).
        name: the new version's name.

    Returns:
        {"ok": True, "version_id"} or {"ok": False, "error": "<what is wrong, naming the file>"}.
    """
    from modeling.checkpoint import CheckpointError, import_hf, load_model, model_info, publish_dir
    from webchat.registry.selectors import model_version_name_refusal
    from webchat.registry.services import RegistryError, model_version_register

    source = Path(src).expanduser()
    refusal = model_version_name_refusal(name=name)
    if refusal:
        return {"ok": False, "error": refusal}
    if not source.is_dir():
        return {"ok": False, "error": f"{source} is not a directory on the worker's disk"}
    versions = Path(settings.MODELS_DIR) / "versions"
    dst = versions / name
    if dst.exists():
        return {"ok": False, "error": f"{dst} already exists"}
    versions.mkdir(parents=True, exist_ok=True)
    staged = versions / f".import-{name}-{uuid.uuid4().hex}"
    try:
        config = (source / "config.json").read_text() if (source / "config.json").is_file() else ""
        if '"model_type"' in config:
            import_hf(source, staged, exclusive=True)
            kind = "hugging face"
        else:
            load_model(source)  # full validation: files, shapes, tokenizer
            shutil.copytree(source, staged)
            kind = "webchat"
        load_model(staged)
        info = model_info(staged)
        final = publish_dir(staged, dst)
    except (CheckpointError, OSError, ValueError) as exc:
        shutil.rmtree(staged, ignore_errors=True)
        return {"ok": False, "error": str(exc)}
    try:
        version = model_version_register(name=name, path=str(final), info=info)
    except RegistryError as exc:
        shutil.rmtree(final, ignore_errors=True)  # published by this import a moment ago
        return {"ok": False, "error": str(exc)}
    return {"ok": True, "version_id": version.pk, "kind": kind}
