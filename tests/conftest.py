"""Fixtures shared by every test package: real Redis, a real Celery worker process."""

import os
import subprocess
import time
from pathlib import Path

import pytest
import torch

from bench.harness import random_gpt2, start_celery_worker

# Tiny test models run several times faster on one thread than on two contended ones.
torch.set_num_threads(1)

ROOT = Path(__file__).resolve().parent.parent
# A server the tests start (tests/e2e) must not start a worker or train the default model
# unless the test asks for it; the subprocesses inherit these.
os.environ.setdefault("WEBCHAT_START_EMBEDDED_WORKER", "0")
os.environ.setdefault("WEBCHAT_AUTO_DEFAULT_MODEL", "0")
REQUIRE_SERVICES = os.environ.get("WEBCHAT_REQUIRE_SERVICES") == "1"


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix):
    """The SQLite test database is a file (not :memory:) so that worker and server
    subprocesses can open it, one per test process."""
    from django.conf import settings

    database = settings.DATABASES["default"]
    if database["ENGINE"].endswith("sqlite3"):
        name = Path(settings.VAR_DIR) / f"test-db-{os.getpid()}.sqlite3"
        database.setdefault("TEST", {})["NAME"] = str(name)


@pytest.fixture(autouse=True)
def fresh_rate_limits():
    """Every test starts with full token buckets (login, signup and chat requests share one
    client address and, with REDIS_URL, one Redis) and no open sockets counted: a store of
    its own per test."""
    import uuid

    from django.conf import settings

    from webchat.chat import ratelimit, sockets

    ratelimit._bucket = ratelimit.TokenBucket(
        settings.REDIS_URL or None, prefix=f"webchat:test-ratelimit:{uuid.uuid4().hex}:"
    )
    # Open-socket counts too: user ids repeat from test to test.
    sockets._count = sockets.SocketCount(
        settings.REDIS_URL or None, prefix=f"webchat:test-sockets:{uuid.uuid4().hex}:"
    )
    yield
    ratelimit._bucket = None
    sockets._count = None


def _service_missing(what: str) -> None:
    # CI sets WEBCHAT_REQUIRE_SERVICES=1 so a missing service fails loudly instead of skipping.
    if REQUIRE_SERVICES:
        pytest.fail(f"{what} is required (WEBCHAT_REQUIRE_SERVICES=1) but unreachable")
    pytest.skip(f"{what} unreachable")


@pytest.fixture(scope="session")
def redis_url() -> str:
    """A real Redis for Celery and Channels tests (a separate db number from the site's)."""
    import redis

    url = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/15")
    try:
        redis.Redis.from_url(url, socket_connect_timeout=1).ping()
    except redis.RedisError:
        _service_missing(f"Redis at {url}")
    return url


def database_url_for(settings_dict: dict) -> str:
    """The DATABASE_URL that points a subprocess at the test database pytest-django created."""
    engine = settings_dict["ENGINE"]
    if engine.endswith("sqlite3"):
        return f"sqlite:///{settings_dict['NAME']}"
    user = settings_dict.get("USER") or ""
    password = f":{settings_dict['PASSWORD']}" if settings_dict.get("PASSWORD") else ""
    auth = f"{user}{password}@" if user else ""
    host = settings_dict.get("HOST") or "127.0.0.1"
    port = settings_dict.get("PORT") or 5432
    return f"postgres://{auth}{host}:{port}/{settings_dict['NAME']}"


class CeleryWorkerProcess:
    """A real `celery worker` process against real Redis, killable like a production worker."""

    def __init__(self, redis_url: str, database_url: str | None, queues: str, extra_env=None):
        self.redis_url = redis_url
        self.database_url = database_url
        self.queues = queues
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen | None = None
        self.log_path = ROOT / "var" / f"test-worker-{os.getpid()}-{time.monotonic_ns()}.log"

    def start(self, timeout: float = 30.0) -> "CeleryWorkerProcess":
        env = dict(os.environ, REDIS_URL=self.redis_url, WEBCHAT_EMBEDDED_WORKER="0")
        if self.database_url:
            env["DATABASE_URL"] = self.database_url
        env.update(self.extra_env)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log = open(self.log_path, "w")  # noqa: SIM115 - lives as long as the worker
        self.proc = start_celery_worker(
            self.queues,
            env,
            self.log,
            concurrency=8,
            loglevel="INFO",
            extra_args=[
                "-n",
                f"test-{time.monotonic_ns()}@%h",
                "--without-gossip",
                "--without-mingle",
            ],
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"celery worker exited early:\n{self.log_path.read_text()}")
            if " ready." in self.log_path.read_text():
                return self
            time.sleep(0.2)
        raise RuntimeError(f"celery worker did not start:\n{self.log_path.read_text()}")

    def kill(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if hasattr(self, "log"):
            self.log.close()
            self.log_path.unlink(missing_ok=True)

    def output(self) -> str:
        return self.log_path.read_text() if self.log_path.exists() else ""


@pytest.fixture
def celery_worker_process(redis_url):
    """Factory: start real worker processes; all are stopped at the end of the test."""
    started: list[CeleryWorkerProcess] = []

    def start(queues: str = "gpu,train,cpu", database_url: str | None = None, **extra_env):
        worker = CeleryWorkerProcess(redis_url, database_url, queues, extra_env).start()
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


def redis_celery_app(redis_url: str):
    """A Celery client app bound to the test Redis, sending by task name like the web side does."""
    from celery import Celery

    client = Celery("test-client", broker=redis_url, backend=redis_url)
    client.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_serializer="json",
        broker_connection_retry_on_startup=True,
    )
    return client


TINY_CORPUS = [
    "The capital of France is Paris.",
    "What is two plus two? Four.",
    "Hello there, how are you today?",
    "After Monday comes Tuesday. Spell cat: c-a-t.",
    "Streaming replies arrive token by token 😀 and in 中文 too.",
] * 20


def make_tiny_model_dir(path: Path, seed: int = 0, never_stops: bool = True) -> Path:
    """A tiny random GPT-2-family model directory with our tokenizer (created in milliseconds).

    Args:
        path: destination directory.
        seed: weight seed (two seeds give two different "model versions").
        never_stops: push the end-of-turn logit far down so replies run to max_new_tokens, which
            makes streaming, stop and kill tests deterministic in length.
    """
    from modeling.checkpoint import save_model
    from modeling.tokenizer import Tokenizer

    tokenizer = Tokenizer.train(TINY_CORPUS, vocab_size=300, min_frequency=1)
    model = random_gpt2(tokenizer, seed=seed, block_size=512, n_layer=2, n_head=2, n_embd=32)
    if never_stops:
        with torch.no_grad():
            wte = model.transformer.wte.weight
            # Final hidden state ~ ln_f.bias, so the logits ~ wte @ bias: aim it away from <|end|>.
            model.transformer.ln_f.weight.mul_(0.1)
            model.transformer.ln_f.bias.copy_(
                -3.0 * wte[tokenizer.end_id] / wte[tokenizer.end_id].norm()
            )
    return save_model(model, tokenizer, path, meta={"name": f"tiny-{seed}"})


def make_nul_model_dir(path: Path) -> Path:
    """A tiny model whose greedy reply is U+0000 after U+0000 (a random model emits any byte
    sometimes; PostgreSQL text refuses that one): the final bias aims every logit at the token of
    the NUL byte, which byte-level BPE has in its alphabet."""
    from modeling.checkpoint import save_model
    from modeling.tokenizer import Tokenizer

    tokenizer = Tokenizer.train(TINY_CORPUS, vocab_size=300, min_frequency=1)
    (nul,) = tokenizer.encode("\x00")
    model = random_gpt2(tokenizer, seed=0, block_size=512, n_layer=2, n_head=2, n_embd=32)
    with torch.no_grad():
        wte = model.transformer.wte.weight
        model.transformer.ln_f.weight.mul_(0.1)
        model.transformer.ln_f.bias.copy_(10.0 * wte[nul] / wte[nul].norm())
    return save_model(model, tokenizer, path, meta={"name": "nul-model"})


@pytest.fixture(scope="session")
def nul_model_dir(tmp_path_factory) -> Path:
    return make_nul_model_dir(tmp_path_factory.mktemp("nul-model") / "model")


@pytest.fixture(scope="session")
def tiny_model_factory(tmp_path_factory):
    """Factory of tiny model directories, cached per (seed, never_stops)."""
    made: dict[tuple, Path] = {}

    def make(seed: int = 0, never_stops: bool = True) -> Path:
        key = (seed, never_stops)
        if key not in made:
            made[key] = make_tiny_model_dir(
                tmp_path_factory.mktemp(f"tiny-{seed}-{int(never_stops)}") / "model",
                seed,
                never_stops,
            )
        return made[key]

    return make


@pytest.fixture
def active_tiny_model(db, tiny_model_factory):
    """A registered, active ModelVersion backed by a tiny model directory."""
    from modeling.checkpoint import model_info
    from webchat.registry.services import model_version_activate, model_version_register

    path = tiny_model_factory(0)
    version = model_version_register(name="tiny-0", path=str(path), info=model_info(path))
    return model_version_activate(version=version)


@pytest.fixture(scope="session")
def small_skills_model(tmp_path_factory) -> Path:
    """A small skills model trained once per test session by the default recipe at test size
    (modeling.recipes.tiny_recipe; slow: minutes on a busy machine). It is weak overall but
    answers some questions right, so it can be fooled, repaired and made to forget."""
    from modeling.recipes import build_default_model, tiny_recipe

    out = tmp_path_factory.mktemp("small-skills")
    return Path(build_default_model(out, seed=0, recipe=tiny_recipe()))
