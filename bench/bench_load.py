"""Load and faults in the production shape: N users chatting over the real websocket path.

Starts daphne, `celery worker -Q gpu --pool threads --concurrency 32`, `celery worker -Q
train,cpu --pool solo` and `celery beat` (the reaper) on a private redis-server and a fresh
database (SQLite in a temporary folder; --postgres: a private PostgreSQL cluster, initdb in a
temporary folder on a free port; --attach-postgres: a fresh database on this machine's shared
server at 127.0.0.1:5432), with
bench_e2e's small random model. Each user sends skills questions one after another; a share of
replies is stopped after the first delta, another share has its socket dropped mid-stream and
re-opened (the client resubscribes and resumes from the snapshot, as the page does). At the end
every stored reply is compared with what its client assembled.

    .venv/bin/python bench/bench_load.py --users 64 --seconds 300 [--fault worker-kill]
    (production mode: DJANGO_DEBUG=0 in every process, collectstatic first; --debug: not)
    --fault worker-kill      SIGKILL the gpu worker; a new one starts 2 s later (a supervisor)
    --fault redis-restart    kill -9 the (private) Redis, start it again 5 s later
    --fault postgres-restart `pg_ctl restart -m fast` the private cluster (implies --postgres;
                             with --attach-postgres: pg_ctlcluster restart of the shared one)

Prints a table and a final JSON line: replies/s, TTFT p50/p95/p99 (send -> first delta),
errors by code, lost (never final 60 s after the end) and mismatched (stored text differs from
what the client saw), each in-flight reply's fate, whether every process is still alive, and
how long after the fault ended the first new reply streamed (its first delta) and was done,
and for every reply a client gave up on, what the database holds for it.
"""

import argparse
import atexit
import collections
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_e2e import percentile, setup
from prodshape import ROOT, ChatClient, PostgresCluster, RedisServer, Shape

sys.path.insert(0, str(ROOT))

QUESTIONS = [
    "What is 3 plus 4?",
    "What is the capital of France?",
    "Which day comes after Monday?",
    "Spell the word cat.",
    "Reverse the word stone.",
    "How many grams are in 2 kilograms?",
]
FINAL = {"done", "stopped", "failed", "interrupted"}


class Ledger:
    """What every client saw, shared by the user threads."""

    def __init__(self):
        self.lock = threading.Lock()
        self.replies: dict[int, dict] = {}
        self.errors: collections.Counter = collections.Counter()
        self.error_times: list[float] = []
        self.error_detail: collections.Counter = collections.Counter()
        self.error_replies: dict[int, str] = {}  # reply the client was waiting for -> error

    def record(self, reply_id: int, **fields) -> None:
        with self.lock:
            self.replies.setdefault(reply_id, {}).update(fields)

    def error(self, code: str, detail: str = "", reply: int | None = None) -> None:
        with self.lock:
            if reply is not None:
                self.error_replies[reply] = f"{code}: {detail}"
            self.errors[code] += 1
            self.error_detail[f"{code}: {detail}"[:100]] += 1
            self.error_times.append(time.monotonic())


def run_user(base_url, session, ledger, stop_at, args, seed) -> None:
    rng = random.Random(seed)  # noqa: S311 - a reproducible load pattern, not a secret
    chat = ChatClient(base_url, session)
    phase = {"at": "connect"}
    while time.monotonic() < stop_at:
        try:
            if chat.ws is None:
                phase["at"] = "connect"
                chat.connect()
                if chat.conversation_id is not None:
                    chat.resubscribe()
            one_reply(chat, ledger, rng, args, phase)
        except Exception as exc:  # noqa: BLE001 - every failure is counted by its kind
            code = getattr(getattr(exc, "rcvd", None), "code", None)
            # what the client was doing when it failed, so every error can be explained
            detail = re.sub(r"reply \d+", "reply N", str(exc)) or "(no message)"
            ledger.error(
                f"close {code}" if code else exc.__class__.__name__,
                f"{phase['at']}: {detail}",
                reply=phase.pop("reply", None),
            )
            chat.close()
            time.sleep(0.5)
    chat.close()


def one_reply(chat: ChatClient, ledger: Ledger, rng: random.Random, args, phase: dict) -> None:
    action = rng.random()
    sent = time.monotonic()
    phase["at"] = "ask"
    reply = chat.ask(rng.choice(QUESTIONS), max_new_tokens=args.new_tokens, temperature=0)
    ledger.record(reply, sent=sent, action="plain")
    phase["reply"] = reply
    first: dict = {}

    def on_frame(frame):
        if frame["type"] == "delta" and frame["message_id"] == reply and not first:
            first["at"] = time.monotonic()
            ledger.record(reply, ttft=first["at"] - sent)
            if action < args.stop_share:
                ledger.record(reply, action="stop")
                chat.send({"type": "stop", "message_id": reply})
            elif action < args.stop_share + args.reconnect_share:
                ledger.record(reply, action="reconnect")
                raise ConnectionResetError("reconnect drill")

    try:
        phase["at"] = "stream"
        done = chat.until_done(reply, timeout=120, on_frame=on_frame)
    except ConnectionResetError:
        chat.close()
        phase["at"] = "reconnect"
        chat.connect()
        chat.resubscribe()
        phase["at"] = "resume"
        done = chat.until_done(reply, timeout=120)
    ledger.record(reply, status=done["status"], text=chat.text[reply], done_at=time.monotonic())
    phase.pop("reply", None)


def warm_up(base_url: str, session: str, args) -> None:
    """One reply before the clock starts: the gpu worker loads the model on its first request."""
    chat = ChatClient(base_url, session)
    chat.connect()
    chat.until_done(chat.ask(QUESTIONS[0], max_new_tokens=args.new_tokens), timeout=300)
    chat.close()


def inject(fault: str, shape: Shape, redis: RedisServer, cluster, log: dict) -> None:
    log["started"] = time.monotonic()
    if fault == "worker-kill":
        shape.processes["gpu"].kill()
        time.sleep(2)
        shape.start_worker("gpu", "gpu", concurrency=32)
    elif fault == "redis-restart":
        redis.kill()
        time.sleep(5)
        redis.start()
    elif fault == "postgres-restart" and cluster is not None:
        cluster.restart()
    elif fault == "postgres-restart":  # --attach-postgres: the machine's own server
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        subprocess.run(  # noqa: S603 - the machine's documented command, no shell
            ["/usr/bin/pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
            check=True,
        )
    log["ended"] = time.monotonic()


def settle(ledger: Ledger, timeout: float = 60.0) -> dict[int, tuple]:
    """Each reply's stored (status, content), once nothing is queued or streaming (or timeout)."""
    from django.db import OperationalError, connection

    from webchat.chat.models import Message

    ids = list(ledger.replies)
    deadline = time.monotonic() + timeout
    connection.close()  # opened at setup: a --fault postgres-restart ended it
    while True:
        try:
            rows = dict(
                (pk, (status, content))
                for pk, status, content in Message.objects.filter(pk__in=ids).values_list(
                    "pk", "status", "content"
                )
            )
        except OperationalError:
            connection.close()
            rows = {}
            if time.monotonic() > deadline:
                raise
        if rows and all(s in FINAL for s, _ in rows.values()) or time.monotonic() > deadline:
            return rows
        time.sleep(1)


def measure(args) -> dict:
    workdir = Path(tempfile.mkdtemp(prefix="bench-load-"))
    redis = RedisServer(workdir / "redis").start()
    database_url = f"sqlite:///{workdir / 'db.sqlite3'}"
    cluster = None
    if args.postgres:
        cluster = PostgresCluster().start()
        atexit.register(cluster.stop)  # a crashed run must not leave a server behind
        database_url = cluster.createdb("webchat_load")
    elif args.attach_postgres:
        name = f"webchat_load_{os.getpid()}"
        subprocess.run(  # noqa: S603 - our own fixed command line
            ["createdb", "-h", "127.0.0.1", "-U", "postgres", name],  # noqa: S607 - on PATH
            check=True,
        )
        database_url = f"postgres://postgres@127.0.0.1:5432/{name}"
    os.environ.update(DATABASE_URL=database_url, REDIS_URL=redis.url, WEBCHAT_VAR_DIR=str(workdir))
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "webchat.settings")
    if not args.debug:
        # production mode in every process, as docs/deploy.md runs it: no debug cursor on every
        # query; the static files manifest must exist; the bench signs its users' sessions with
        # the same key as the server
        os.environ.update(
            DJANGO_DEBUG="0",
            DJANGO_SECRET_KEY=f"bench-load-{os.getpid()}-{random.random()}",  # noqa: S311
            DJANGO_ALLOWED_HOSTS="127.0.0.1,localhost",
        )
        subprocess.run(  # noqa: S603 - our own fixed command line
            [sys.executable, "manage.py", "collectstatic", "--noinput", "--verbosity", "0"],
            cwd=ROOT,
            check=True,
        )
    sessions = setup(workdir, args.users)
    shape = Shape(redis.url, database_url, workdir)
    shape.start_web()
    shape.start_worker("gpu", "gpu", concurrency=32)
    shape.start_worker("train-cpu", "train,cpu", concurrency=1, pool="solo")
    beat = subprocess.Popen(  # noqa: S603 - our own fixed command line
        [sys.executable, "-m", "celery", "-A", "worker.app", "beat", "-l", "WARNING"]
        + ["-s", str(workdir / "beat-schedule")],
        cwd=ROOT,
        env=shape.env(),
        stdout=open(workdir / "beat.log", "w"),  # noqa: SIM115 - lives as long as beat
        stderr=subprocess.STDOUT,
    )
    warm_up(shape.url, sessions[0], args)
    ledger, fault = Ledger(), {}
    started = time.monotonic()
    stop_at = started + args.seconds
    users = [
        threading.Thread(target=run_user, args=(shape.url, s, ledger, stop_at, args, i))
        for i, s in enumerate(sessions)
    ]
    for t in users:
        t.start()
    in_flight: list[int] = []
    if args.fault != "none":
        time.sleep(args.seconds * args.fault_at)
        with ledger.lock:
            in_flight = [r for r, f in ledger.replies.items() if "status" not in f]
        inject(args.fault, shape, redis, cluster, fault)
        print(f"fault ended at {time.strftime('%H:%M:%S')}", file=sys.stderr)  # for the logs
    for t in users:
        t.join()
    elapsed = time.monotonic() - started
    rows = settle(ledger)
    alive = {name: p.alive() for name, p in shape.processes.items()} | {"beat": beat.poll() is None}
    beat.terminate()
    shape.stop()
    redis.stop()
    if cluster is not None:
        cluster.stop()
    if args.keep:
        print(f"logs kept in {workdir}", file=sys.stderr)
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return summarize(ledger, rows, elapsed, in_flight, fault, alive, args)


def summarize(ledger, rows, elapsed, in_flight, fault, alive, args) -> dict:
    seen = {r: f for r, f in ledger.replies.items() if "status" in f}
    lost = [r for r, (status, _c) in rows.items() if status not in FINAL]
    mismatched = [r for r, f in seen.items() if rows.get(r, (None, None))[1] != f["text"]]
    ttft = [f["ttft"] for f in ledger.replies.values() if "ttft" in f]
    took = [f["done_at"] - f["sent"] for f in seen.values()]
    recovery = recovery_first = last_error = None
    if fault:
        after = [f["done_at"] for f in seen.values() if f["sent"] >= fault["ended"]]
        recovery = round(min(after) - fault["ended"], 2) if after else None
        # the first reply sent after the fault that streamed: its first delta, from the fault's end
        new = [f for f in seen.values() if f["sent"] >= fault["ended"] and "ttft" in f]
        firsts = [f["sent"] + f["ttft"] for f in new]
        recovery_first = round(min(firsts) - fault["ended"], 2) if firsts else None
        late = [t for t in ledger.error_times if t >= fault["ended"]]
        last_error = round(max(late) - fault["ended"], 2) if late else None
    return {
        "users": args.users,
        "seconds": args.seconds,
        "fault": args.fault,
        "replies": len(ledger.replies),
        "replies_per_s": round(len(seen) / elapsed, 2),
        "ttft_p50_s": round(percentile(ttft, 0.5), 3) if ttft else None,
        "ttft_p95_s": round(percentile(ttft, 0.95), 3) if ttft else None,
        "ttft_p99_s": round(percentile(ttft, 0.99), 3) if ttft else None,
        "reply_s_p50": round(percentile(took, 0.5), 3) if took else None,
        "reply_s_max": round(max(took), 3) if took else None,
        "elapsed_s": round(elapsed, 1),
        "status": dict(collections.Counter(s for s, _c in rows.values())),
        "actions": dict(collections.Counter(f.get("action") for f in ledger.replies.values())),
        "errors": dict(ledger.errors),
        "error_detail": dict(ledger.error_detail),
        # each reply a client gave up on, with what the database holds for it at the end
        "errored_replies": {
            r: {"error": e, "stored": rows.get(r, ("?", ""))[0]}
            for r, e in list(ledger.error_replies.items())[:20]
        },
        "lost": len(lost),
        "mismatched": len(mismatched),
        "in_flight": len(in_flight),
        "in_flight_fate": dict(collections.Counter(rows[r][0] for r in in_flight if r in rows)),
        "recovery_s": recovery,
        "recovery_first_token_s": recovery_first,
        "last_error_after_fault_s": last_error,
        "processes_alive": alive,
    }


def print_table(result: dict) -> None:
    for key, value in result.items():
        print(f"{key:<18} {value}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--users", type=int, default=16)
    parser.add_argument("--seconds", type=float, default=60)
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--stop-share", type=float, default=0.1)
    parser.add_argument("--reconnect-share", type=float, default=0.1)
    parser.add_argument(
        "--fault", choices=["none", "worker-kill", "redis-restart", "postgres-restart"]
    )
    parser.add_argument("--fault-at", type=float, default=0.4, help="share of the run")
    parser.add_argument("--postgres", action="store_true", help="a private PostgreSQL cluster")
    parser.add_argument("--keep", action="store_true", help="keep the process logs")
    parser.add_argument(
        "--debug", action="store_true", help="DJANGO_DEBUG=1 (the embedded default), not production"
    )
    parser.add_argument(
        "--attach-postgres",
        action="store_true",
        help="a fresh database on the shared server at 127.0.0.1:5432 (its restart is shared)",
    )
    args = parser.parse_args()
    args.fault = args.fault or "none"
    if args.fault == "postgres-restart" and not args.attach_postgres:
        args.postgres = True  # SQLite has no server to restart
    result = measure(args)
    print_table(result)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
