"""Browser and API tests against a real server: daphne in a subprocess (embedded worker) on the
pytest test database, headless Debian Chromium driven by Playwright."""

import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

import pytest

from bench.harness import free_port, random_gpt2, start_daphne
from tests.conftest import REQUIRE_SERVICES, TINY_CORPUS, database_url_for

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = ROOT / "test-artifacts"

# What the "script model" always answers: Markdown plus a script element that must stay text.
SCRIPT_REPLY = "Some **bold** words <script>window.__pwned=1</SCRIPT >"


def make_script_model_dir(path: Path) -> Path:
    """A model that answers every prompt with SCRIPT_REPLY, as if a model had been talked into
    writing HTML: a bigram lookup table (each token's embedding picks its successor through the
    untied output layer; the transformer block and positions are switched off)."""
    import torch

    from modeling.checkpoint import save_model
    from modeling.tokenizer import Tokenizer

    tokenizer = Tokenizer.train(TINY_CORPUS + [SCRIPT_REPLY] * 50, vocab_size=400, min_frequency=1)
    ids = tokenizer.encode(SCRIPT_REPLY)
    chain = [tokenizer.assistant_id, *ids, tokenizer.end_id]
    successor = dict(zip(chain, chain[1:]))
    assert all(successor[a] == b for a, b in zip(chain, chain[1:])), "reply needs unique bigrams"
    model = random_gpt2(
        tokenizer, block_size=256, n_layer=1, n_head=2, n_embd=128, tie_embeddings=False
    )
    config = model.config
    with torch.no_grad():
        for block in model.transformer.h:  # the residual stream is then just the token embedding
            for proj in (block.attn.c_proj, block.mlp.c_proj):
                proj.weight.zero_()
                if proj.bias is not None:
                    proj.bias.zero_()
        model.transformer.wpe.weight.zero_()
        model.transformer.ln_f.weight.fill_(1.0)
        model.transformer.ln_f.bias.zero_()
        wte = model.transformer.wte.weight
        normed = torch.nn.functional.layer_norm(wte, (config.n_embd,))
        model.lm_head.weight.zero_()
        for token, nxt in successor.items():
            model.lm_head.weight[nxt] += 5.0 * normed[token] / normed[token].norm()
    return save_model(model, tokenizer, path, meta={"name": "script-model"})


class Server:
    def __init__(self, url: str, proc: subprocess.Popen, log_path: Path):
        self.url, self.proc, self.log_path = url, proc, log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture(scope="module")
def asgi_server(django_db_setup, django_db_blocker, tmp_path_factory):
    """The real ASGI app (daphne) with its embedded Celery worker, on the test database."""
    from django.db import connection

    var = tmp_path_factory.mktemp("server-var")
    port = free_port()
    env = dict(
        os.environ,
        DATABASE_URL=database_url_for(connection.settings_dict),
        WEBCHAT_VAR_DIR=str(var),
        WEBCHAT_START_EMBEDDED_WORKER="1",
        DJANGO_DEBUG="1",
        PYTHONUNBUFFERED="1",
        # Every test here logs in or signs up from 127.0.0.1 within a minute or two; the
        # throttle itself is tested in tests/webchat/test_security_limits.py.
        WEBCHAT_LOGIN_ATTEMPTS_PER_MINUTE="10000",
        WEBCHAT_SIGNUPS_PER_MINUTE="10000",
    )
    for name in ("REDIS_URL", "WEBCHAT_EMBEDDED_WORKER"):
        env.pop(name, None)
    log_path = var / "daphne.log"
    log = open(log_path, "w")  # noqa: SIM115 - lives as long as the server (module scope)
    proc = start_daphne(port, env, log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"daphne exited:\n{log_path.read_text()}")
        try:
            urllib.request.urlopen(url + "/accounts/login/", timeout=2)  # noqa: S310 - our http URL
            break
        except OSError:
            if time.monotonic() > deadline:
                proc.kill()
                raise RuntimeError(f"daphne did not start:\n{log_path.read_text()}") from None
            time.sleep(0.3)
    server = Server(url, proc, log_path)
    yield server
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
    log.close()


@pytest.fixture
def tiny_model(active_tiny_model):
    """The never-stopping tiny model, active: replies run to max tokens, at a steady pace."""
    return active_tiny_model


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists() or not shutil.which(CHROMIUM):
        if REQUIRE_SERVICES:
            pytest.fail(f"{CHROMIUM} is required (WEBCHAT_REQUIRE_SERVICES=1)")
        pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the tests' ORM calls are still
    # plain synchronous code, which Django would otherwise refuse next to a running loop.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@pytest.fixture
def page(browser):
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    page = context.new_page()
    page.set_default_timeout(20000)
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.js_errors = errors
    yield page
    context.close()
