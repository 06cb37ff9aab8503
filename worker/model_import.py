"""The `cpu` queue: importing a model directory as a new version (torch stays out of the web).

The task keeps the name `worker.models.import_model_dir` (its route and any queued message use it).
"""

import re
import shutil
from pathlib import Path

from django.conf import settings

from worker.app import app


@app.task(name="worker.models.import_model_dir", soft_time_limit=1800, time_limit=1860)
def import_model_dir(src: str, name: str) -> dict:
    """Validate and copy (ours) or convert (Hugging Face) a local model directory into
    MODELS_DIR/versions/<name> and register it as a candidate version.

    Args:
        src: a directory on the worker's disk: one of our model directories, or a Hugging Face
            GPT-2 / Llama / Qwen2 directory (config.json with `model_type`).
        name: the new version's name.

    Returns:
        {"ok": True, "version_id"} or {"ok": False, "error": "<what is wrong, naming the file>"}.
    """
    from modeling.checkpoint import CheckpointError, import_hf, load_model, model_info
    from webchat.registry.selectors import model_version_by_name
    from webchat.registry.services import model_version_register

    source = Path(src).expanduser()
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}", name or ""):
        return {"ok": False, "error": "name: use letters, digits, '.', '_' and '-' (max 100)"}
    if model_version_by_name(name=name) is not None:
        return {"ok": False, "error": f"a model version named {name!r} already exists"}
    if not source.is_dir():
        return {"ok": False, "error": f"{source} is not a directory on the worker's disk"}
    dst = Path(settings.MODELS_DIR) / "versions" / name
    if dst.exists():
        return {"ok": False, "error": f"{dst} already exists"}
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        config = (source / "config.json").read_text() if (source / "config.json").is_file() else ""
        if '"model_type"' in config:
            import_hf(source, dst)
            kind = "hugging face"
        else:
            load_model(source)  # full validation: files, shapes, tokenizer
            shutil.copytree(source, dst)
            kind = "webchat"
        load_model(dst)
        info = model_info(dst)
    except (CheckpointError, OSError, ValueError) as exc:
        shutil.rmtree(dst, ignore_errors=True)
        return {"ok": False, "error": str(exc)}
    version = model_version_register(name=name, path=str(dst), info=info)
    return {"ok": True, "version_id": version.pk, "kind": kind}
