"""What the benchmarks and the tests both need to run the real system small: a free port, the
real ASGI server and Celery workers in subprocesses, and a random GPT-2-family model.

It lives in bench/ because a benchmark runs as `python bench/x.py`, which puts bench/ (and not
the repository root) first on sys.path, so the scripts import it as `harness` with no path set
up; pytest puts the repository root on sys.path, so the tests import it as `bench.harness`.
Nothing in the installed packages fits: webchat/ never imports torch, and the test suite is no
place for the benchmarks to import from.
"""

import socket
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_daphne(port: int, env: dict, log) -> subprocess.Popen:
    """The site's real ASGI server as production runs it, `python -m webchat.server` (daphne
    with the site's websocket limits) on 127.0.0.1:port, run from the repository root with
    `env`; its output goes to the open file `log`."""
    return subprocess.Popen(  # noqa: S603 - our own fixed command line, no shell
        [sys.executable, "-m", "webchat.server", "-b", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def start_celery_worker(
    queues: str, env: dict, log, *, concurrency: int, loglevel: str, extra_args=()
) -> subprocess.Popen:
    """A real `celery worker` for `queues` with a thread pool, run from the repository root
    with `env` (REDIS_URL set); its output goes to the open file `log`."""
    return subprocess.Popen(  # noqa: S603 - our own fixed command line, no shell
        [sys.executable, "-m", "celery", "-A", "worker.app", "worker", "-Q", queues]
        + ["--pool", "threads", "--concurrency", str(concurrency), "-l", loglevel]
        + list(extra_args),
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def random_gpt2(tokenizer, *, seed: int = 0, **config):
    """A randomly initialised GPT-2-family Transformer for `tokenizer`.

    Args:
        tokenizer: a modeling.tokenizer.Tokenizer (sets the vocabulary size).
        seed: the weight seed (two seeds give two different "model versions").
        **config: the other modeling.model.ModelConfig fields (block_size, n_layer, ...).
    """
    import torch

    from modeling.model import ModelConfig, Transformer

    torch.manual_seed(seed)
    return Transformer(ModelConfig(family="gpt2", vocab_size=tokenizer.vocab_size, **config))
