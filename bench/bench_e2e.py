"""End to end: browser websocket -> daphne -> Redis -> Celery gpu worker -> engine -> back.

Starts a real ASGI server (daphne) and a real `celery worker -Q gpu` against Redis with a small
random Llama-style model, opens N websocket clients (one user each) and measures, per reply, the
client's time to first token (send frame -> first delta frame) against the engine's own time to
first token (request submitted to the engine -> first token sampled, saved on the message). The
difference is the system's overhead: the consumer's validation and writes, the enqueue, Redis, the
worker picking the task up, prompt building, and the trip back through the channel layer.

    .venv/bin/python bench/bench_e2e.py [--clients 1 32] [--new-tokens 32] [--redis URL]

Prints a table and a final JSON line. Needs a reachable Redis.
"""

import argparse
import asyncio
import json
import os
import shutil
import socket
import statistics
import sys
import time
from pathlib import Path

from harness import free_port, random_gpt2, start_celery_worker, start_daphne

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def percentile(values, q):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


def make_model(path: Path) -> Path:
    import torch

    from modeling.checkpoint import save_model
    from modeling.skills import pretraining_text
    from modeling.tokenizer import Tokenizer

    tokenizer = Tokenizer.train(pretraining_text(500, seed=0), vocab_size=1024)
    model = random_gpt2(tokenizer, block_size=512, n_layer=4, n_head=4, n_embd=256)
    n_special = len(tokenizer.special_ids)
    with torch.no_grad():
        # A random model often picks control tokens, which print as nothing. Make the final
        # hidden state lean on dimension 0 (LayerNorm bias) and give control tokens a negative
        # weight there, so replies are visible text of the requested length, as a trained
        # model's would be; the rest of the state still varies the tokens.
        wte = model.transformer.wte.weight
        wte[:, 0] = 1.0
        wte[:n_special, 0] = -1.0
        model.transformer.ln_f.weight.mul_(0.2)
        model.transformer.ln_f.bias.zero_()
        model.transformer.ln_f.bias[0] = 5.0
    return save_model(model, tokenizer, path, meta={"name": "bench-e2e"})


def setup(workdir: Path, n_users: int) -> list[str]:
    """Migrate a fresh SQLite database, register the model, create users; return session ids."""
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command
    from django.test import Client

    from modeling.checkpoint import model_info
    from webchat.accounts.models import Profile
    from webchat.registry.services import model_version_activate, model_version_register

    call_command("migrate", verbosity=0)
    model_dir = make_model(workdir / "model")
    version = model_version_register(name="bench", path=str(model_dir), info=model_info(model_dir))
    model_version_activate(version=version)
    sessions = []
    for i in range(n_users):
        user = User.objects.create_user(f"bench{i}", password="x")  # noqa: S106 - a bench account
        Profile.objects.update_or_create(user=user, defaults={"rate_limit_per_minute": 10000})
        client = Client()
        client.force_login(user)
        sessions.append(client.cookies["sessionid"].value)
    return sessions


async def one_turn(url: str, session: str, text: str, new_tokens: int) -> dict:
    import websockets

    headers = {"Cookie": f"sessionid={session}", "Origin": "http://127.0.0.1"}
    async with websockets.connect(url, additional_headers=headers, max_size=2**22) as ws:
        json.loads(await ws.recv())  # hello
        sent = time.perf_counter()
        await ws.send(
            json.dumps(
                {
                    "type": "send",
                    "text": text,
                    "params": {"max_new_tokens": new_tokens, "temperature": 0},
                }
            )
        )
        first = None
        while True:
            frame = json.loads(await ws.recv())
            if os.environ.get("BENCH_DEBUG"):
                print(
                    round((time.perf_counter() - sent) * 1000),
                    frame["type"],
                    {k: v for k, v in frame.items() if k in ("seq", "message_id", "position")},
                )
            if frame["type"] == "error":
                raise RuntimeError(frame)
            if frame["type"] == "delta" and first is None:
                first = time.perf_counter()
            if frame["type"] == "done":
                end = time.perf_counter()
                usage = frame["usage"]
                return {
                    "client_ttft_ms": (first - sent) * 1000 if first else None,
                    "engine_ttft_ms": usage.get("time_to_first_token_ms"),
                    "total_ms": (end - sent) * 1000,
                    "tokens": usage.get("completion_tokens"),
                    "status": frame["status"],
                }


async def round_of(url, sessions, n, new_tokens):
    return await asyncio.gather(
        *[
            one_turn(url, sessions[i], f"What is the capital of France? ({i})", new_tokens)
            for i in range(n)
        ]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clients", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--new-tokens", type=int, default=32)
    ap.add_argument("--rounds", type=int, default=5, help="rounds per client count (1 warm-up)")
    ap.add_argument(
        "--redis", default=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14")
    )
    args = ap.parse_args()

    workdir = ROOT / "var" / "bench-e2e"
    shutil.rmtree(workdir, ignore_errors=True)
    workdir.mkdir(parents=True)
    env = dict(
        os.environ,
        DJANGO_SETTINGS_MODULE="webchat.settings",
        DATABASE_URL=f"sqlite:///{workdir / 'db.sqlite3'}",
        REDIS_URL=args.redis,
        WEBCHAT_VAR_DIR=str(workdir),
        WEBCHAT_AUTO_DEFAULT_MODEL="0",
        WEBCHAT_START_EMBEDDED_WORKER="0",
        WEBCHAT_MAX_ACTIVE_PER_USER="1",
    )
    os.environ.update(env)
    import redis

    redis.Redis.from_url(args.redis).flushdb()
    sessions = setup(workdir, max(args.clients))
    port = free_port()
    logs = open(workdir / "processes.log", "w")  # noqa: SIM115 - closed after the processes
    procs = [
        start_daphne(port, env, logs),
        start_celery_worker("gpu", env, logs, concurrency=32, loglevel="WARNING"),
    ]
    url = f"ws://127.0.0.1:{port}/ws/chat/"
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.3)
        asyncio.run(round_of(url, sessions, 1, 4))  # warm-up: loads the model in the worker
        rows = [measure(url, sessions, n, args.rounds, args.new_tokens) for n in args.clients]
    finally:
        for p in procs:
            p.terminate()
        for p in procs:
            p.wait(10)
        logs.close()
    print_table(rows)
    print(json.dumps({"bench": "e2e", "new_tokens": args.new_tokens, "rows": rows}))


def measure(url: str, sessions: list[str], n: int, rounds: int, new_tokens: int) -> dict:
    """One table row: `rounds` rounds of `n` concurrent turns, the first one not counted."""
    results = []
    for r in range(rounds):
        got = asyncio.run(round_of(url, sessions, n, new_tokens))
        if r:  # the first round of each size warms the engine's batch shapes
            results += got
    missing = [x for x in results if x["client_ttft_ms"] is None]
    if missing:
        raise RuntimeError(f"replies without any delta: {missing[:3]}")
    client = [x["client_ttft_ms"] for x in results]
    engine = [x["engine_ttft_ms"] for x in results]
    overhead = [c - e for c, e in zip(client, engine)]
    return {
        "clients": n,
        "replies": len(results),
        "client_ttft_p50_ms": statistics.median(client),
        "client_ttft_p95_ms": percentile(client, 0.95),
        "engine_ttft_p50_ms": statistics.median(engine),
        "overhead_p50_ms": statistics.median(overhead),
        "overhead_p95_ms": percentile(overhead, 0.95),
        "total_p50_ms": statistics.median(x["total_ms"] for x in results),
        "all_done": all(x["status"] == "done" for x in results),
    }


def print_table(rows: list[dict]) -> None:
    head = [
        "clients",
        "replies",
        "client TTFT p50",
        "p95",
        "engine TTFT p50",
        "overhead p50",
        "overhead p95",
        "total p50",
    ]
    print(" | ".join(head))
    for r in rows:
        print(
            " | ".join(
                [
                    str(r["clients"]),
                    str(r["replies"]),
                    f"{r['client_ttft_p50_ms']:.1f} ms",
                    f"{r['client_ttft_p95_ms']:.1f} ms",
                    f"{r['engine_ttft_p50_ms']:.1f} ms",
                    f"{r['overhead_p50_ms']:.1f} ms",
                    f"{r['overhead_p95_ms']:.1f} ms",
                    f"{r['total_p50_ms']:.0f} ms",
                ]
            )
        )


if __name__ == "__main__":
    main()
