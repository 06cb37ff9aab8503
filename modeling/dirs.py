"""Model directories on disk: written under a temporary sibling name and renamed into place,
and published only under a name that is free (nothing is ever written over an existing model).

Kept apart from the checkpoint format (modeling.checkpoint) because it is about names and renames,
not about what a model directory holds.
"""

import contextlib
import fcntl
import os
import shutil
import uuid
from pathlib import Path


class CheckpointError(Exception):
    """A model directory (or a Hugging Face one being imported) is missing, corrupt or unsupported.

    The message names the offending file.
    """


@contextlib.contextmanager
def _directory_lock(parent: Path):
    """Hold the lock that serialises publishing into `parent` (released by the kernel if the
    process dies, so a crash never leaves a name blocked)."""
    with open(parent / ".publish.lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def publish_dir(staged, path) -> Path:
    """Move a complete directory into place under a name that must be free: nothing is ever
    written over an existing directory.

    A rename on Linux silently replaces an empty directory, so the check and the rename happen
    under a lock on the parent that every publisher takes (two imports with one name: one wins,
    the other is refused and its own staged copy is left to it).

    Args:
        staged: the finished directory (best in the same parent: then the move is one rename;
            from another filesystem it is copied next to `path` first).
        path: where it goes; must not exist.
    Returns:
        The resolved destination path.
    Raises:
        CheckpointError: `path` exists (nothing is moved or removed).
    """
    staged, path = Path(staged).resolve(), Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    copied = None
    if os.stat(staged).st_dev != os.stat(path.parent).st_dev:
        copied = path.parent / f".{path.name}.tmp-{uuid.uuid4().hex}"
        shutil.copytree(staged, copied)
    try:
        with _directory_lock(path.parent):
            if os.path.lexists(path):
                raise CheckpointError(
                    f"{path.name} already exists in {path.parent.name}/: a model directory is "
                    "never overwritten; choose another name"
                )
            os.rename(copied or staged, path)
    except BaseException:
        if copied is not None:
            shutil.rmtree(copied, ignore_errors=True)
        raise
    if copied is not None:
        shutil.rmtree(staged, ignore_errors=True)
    return path


def write_dir_atomically(path: Path, write, exclusive: bool = False) -> Path:
    """Call write(tmp_dir) on a fresh sibling temp dir, then swap it in for `path` (or, with
    `exclusive`, publish it only where nothing is yet: CheckpointError otherwise)."""
    path = Path(path).resolve()
    path.parent.mkdir(parents=True, exist_ok=True)
    tag = uuid.uuid4().hex
    tmp = path.parent / f".{path.name}.tmp-{tag}"
    tmp.mkdir()
    try:
        write(tmp)
        for f in tmp.iterdir():  # data on disk before the rename makes it visible
            with open(f, "rb") as fh:
                os.fsync(fh.fileno())
        if exclusive:
            return publish_dir(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if path.exists():
        # a directory cannot be renamed over a non-empty one: move the old one aside first
        old = path.parent / f".{path.name}.old-{tag}"
        os.rename(path, old)
        os.rename(tmp, path)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.rename(tmp, path)
    return path
