"""The production shape, small, for the load bench and the fault tests: a private redis-server,
daphne and Celery worker processes on one Redis and one database, and a websocket chat client
that logs in with a session cookie and follows replies the way the page does.

Imported as `prodshape` by bench/bench_load.py and as `bench.prodshape` by tests/e2e (see
bench/harness.py for why these helpers live in bench/).
"""

import collections
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

try:  # run as a script from bench/, or imported from the repository root
    from harness import ROOT, free_port, start_celery_worker, start_daphne
except ImportError:
    from bench.harness import ROOT, free_port, start_celery_worker, start_daphne


class RedisServer:
    """A redis-server of our own on a free port (no persistence), killable and restartable on
    the same port without touching anybody else's Redis."""

    def __init__(self, workdir: Path, port: int | None = None):
        self.workdir = Path(workdir)
        self.port = port or free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 10.0) -> "RedisServer":
        binary = shutil.which("redis-server") or "/usr/bin/redis-server"
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(  # noqa: S603 - our own fixed command line, no shell
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", ""]
            + ["--appendonly", "no", "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        import redis

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                redis.Redis.from_url(self.url, socket_connect_timeout=0.5).ping()
                return self
            except redis.RedisError:
                time.sleep(0.1)
        raise RuntimeError(f"redis-server on port {self.port} did not start")

    def kill(self) -> None:
        """SIGKILL, as `kill -9` in the drill: nothing is saved."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=10)


def postgres_bindir() -> Path | None:
    """The folder with initdb and pg_ctl (Debian keeps them out of PATH), newest version first."""
    versions = Path("/usr/lib/postgresql").glob("*/bin/initdb")
    newest = sorted(versions, key=lambda p: int(p.parts[-3]) if p.parts[-3].isdigit() else 0)
    if newest:
        return newest[-1].parent
    found = shutil.which("initdb")
    return Path(found).resolve().parent if found else None


class PostgresCluster:
    """A PostgreSQL cluster of our own (initdb in a temporary folder, a free port, trust auth on
    127.0.0.1 only), restartable with `pg_ctl restart -m fast` without touching the machine's
    shared server. initdb refuses to run as root, so as root the cluster belongs to the
    `postgres` user (runuser)."""

    def __init__(self, port: int | None = None, bindir: Path | None = None):
        self.bindir = bindir or postgres_bindir()
        if self.bindir is None:
            raise FileNotFoundError("no PostgreSQL binaries (initdb, pg_ctl)")
        self.port = port or free_port()
        # Not under pytest's tmp_path: its root-only parents would lock the postgres user out.
        self.workdir = Path(tempfile.mkdtemp(prefix="webchat-pg-"))
        self.datadir = self.workdir / "data"
        self.log_path = self.workdir / "postgres.log"
        self.as_root = os.geteuid() == 0

    def url(self, name: str = "postgres") -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{name}"

    def _run(self, *args: str, timeout: float = 300.0) -> None:
        command = [str(self.bindir / args[0]), *args[1:]]
        if self.as_root:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(  # noqa: S603 - our own fixed command line, no shell
            command, check=True, timeout=timeout, capture_output=True, cwd=self.workdir
        )

    def start(self) -> "PostgresCluster":
        """initdb on first use, then start and wait until it accepts connections."""
        if not self.datadir.exists():
            if self.as_root:
                shutil.chown(self.workdir, "postgres", "postgres")
            # --no-sync: a throwaway cluster; its fsync of the new files took minutes on a busy disk
            self._run(
                "initdb", "--no-sync", "-D", str(self.datadir), "-U", "postgres", "--auth=trust"
            )
            # In the config file, not on pg_ctl's command line, so a restart keeps them. fsync
            # off: a throwaway cluster, and the fault is a restart, not a power cut.
            with open(self.datadir / "postgresql.conf", "a") as conf:
                conf.write(
                    f"\nport = {self.port}\nlisten_addresses = '127.0.0.1'\n"
                    f"unix_socket_directories = '{self.workdir}'\nfsync = off\n"
                    "full_page_writes = off\nsynchronous_commit = off\n"
                )
        self._run("pg_ctl", "start", "-w", "-D", str(self.datadir), "-l", str(self.log_path))
        return self

    def restart(self) -> None:
        """`pg_ctl restart -m fast`: every connection is cut, the server is back when it returns."""
        # -l: without a log file the server would write to (and hold open) our capture pipe
        log = str(self.log_path)
        self._run("pg_ctl", "restart", "-w", "-m", "fast", "-D", str(self.datadir), "-l", log)

    def createdb(self, name: str) -> str:
        """A new database in this cluster; returns its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (immediately) and remove its folder."""
        if self.datadir.exists():
            with contextlib.suppress(subprocess.CalledProcessError):  # not running
                self._run("pg_ctl", "stop", "-w", "-m", "immediate", "-D", str(self.datadir))
        shutil.rmtree(self.workdir, ignore_errors=True)


@dataclass
class Process:
    """One server or worker process and its log file."""

    name: str
    proc: subprocess.Popen
    log_path: Path

    def alive(self) -> bool:
        return self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def kill(self) -> None:
        if self.alive():
            self.proc.kill()
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.alive():
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()


@dataclass
class Shape:
    """daphne plus workers on `redis_url` and `database_url` (env shared by all of them)."""

    redis_url: str
    database_url: str
    workdir: Path
    extra_env: dict = field(default_factory=dict)
    processes: dict[str, Process] = field(default_factory=dict)
    port: int = 0

    def env(self) -> dict:
        env = dict(
            os.environ,
            REDIS_URL=self.redis_url,
            DATABASE_URL=self.database_url,
            WEBCHAT_EMBEDDED_WORKER="0",
            WEBCHAT_START_EMBEDDED_WORKER="0",
            WEBCHAT_AUTO_DEFAULT_MODEL="0",
            WEBCHAT_VAR_DIR=str(self.workdir / "var"),
            PYTHONUNBUFFERED="1",
        )
        env.update(self.extra_env)
        return env

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start_web(self, timeout: float = 60.0) -> Process:
        self.port = self.port or free_port()
        log_path = self.workdir / "daphne.log"
        log = open(log_path, "a")  # noqa: SIM115 - lives as long as the process
        proc = Process("web", start_daphne(self.port, self.env(), log), log_path)
        self.processes["web"] = proc
        deadline = time.monotonic() + timeout
        while True:
            if not proc.alive():
                raise RuntimeError(f"daphne exited:\n{proc.log()}")
            try:
                urllib.request.urlopen(self.url + "/accounts/login/", timeout=2)  # noqa: S310
                return proc
            except OSError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"daphne did not start:\n{proc.log()}") from None
                time.sleep(0.3)

    def start_worker(
        self, name: str, queues: str, *, concurrency: int, pool: str = "threads", timeout=60.0
    ) -> Process:
        log_path = self.workdir / f"{name}.log"
        log = open(log_path, "a")  # noqa: SIM115 - lives as long as the process
        started_at = log_path.stat().st_size if log_path.exists() else 0
        popen = start_celery_worker(
            queues,
            self.env(),
            log,
            concurrency=concurrency,
            loglevel="INFO",
            extra_args=["-n", f"{name}-{time.monotonic_ns()}@%h", "--without-gossip"]
            + ["--without-mingle", "--pool", pool],
        )
        proc = Process(name, popen, log_path)
        self.processes[name] = proc
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not proc.alive():
                raise RuntimeError(f"worker {name} exited early:\n{proc.log()}")
            if " ready." in proc.log()[started_at:]:
                return proc
            time.sleep(0.2)
        raise RuntimeError(f"worker {name} did not start:\n{proc.log()}")

    def provision(self, *, model_path: Path, usernames: list[str]) -> list[str]:
        """Migrate the shape's database, register and activate `model_path`, create the users
        (no rate limit to speak of); returns their session ids. Run in a subprocess with the
        shape's environment, so it works on a database this process is not configured for."""
        from modeling.checkpoint import model_info

        # read here, where torch is loaded already: the subprocess then never imports it (6 s)
        info = json.dumps(model_info(model_path))
        script = (
            "import json, sys; from bench.prodshape import provision_here; print(json.dumps("
            "provision_here(sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3]))))"
        )
        done = subprocess.run(  # noqa: S603 - our own fixed command line, no shell
            [sys.executable, "-c", script, str(model_path), info, json.dumps(usernames)],
            cwd=ROOT,
            env=dict(self.env(), DJANGO_SETTINGS_MODULE="webchat.settings"),
            capture_output=True,
            text=True,
            timeout=300,
        )
        if done.returncode:
            raise RuntimeError(f"provisioning failed:\n{done.stdout}\n{done.stderr}")
        return json.loads(done.stdout.strip().splitlines()[-1])

    def stop(self) -> None:
        for proc in self.processes.values():
            proc.stop()


def provision_here(model_path: str, info: dict, usernames: list[str]) -> list[str]:
    """Shape.provision's body, in a process whose DATABASE_URL is the shape's database."""
    import django

    django.setup()
    from django.contrib.auth.models import User
    from django.core.management import call_command

    from webchat.accounts.models import Profile
    from webchat.registry.services import model_version_activate, model_version_register

    call_command("migrate", verbosity=0)
    version = model_version_register(name="shape", path=model_path, info=info)
    model_version_activate(version=version)
    sessions = []
    for name in usernames:
        user = User.objects.create_user(name, password="x")  # noqa: S106 - a throwaway account
        Profile.objects.update_or_create(user=user, defaults={"rate_limit_per_minute": 10000})
        sessions.append(session_cookie(user))
    return sessions


def session_cookie(user) -> str:
    """A logged-in session for `user` in the database the shape uses (as the login view makes)."""
    from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY
    from django.contrib.sessions.backends.db import SessionStore

    session = SessionStore()
    session[SESSION_KEY] = str(user.pk)
    session[BACKEND_SESSION_KEY] = "django.contrib.auth.backends.ModelBackend"
    session[HASH_SESSION_KEY] = user.get_session_auth_hash()
    session.create()
    return session.session_key


def _done_if_final(message: dict, watch: int | None) -> dict | None:
    """A `done` frame for reply `watch` when `message` is that reply in a final state."""
    if message["id"] != watch or message["status"] in ("queued", "streaming"):
        return None
    return {"type": "done", "message_id": message["id"], **message}


class ChatClient:
    """The chat page's side of the websocket: send a turn, assemble its reply from `delta`,
    `message` and `done` frames, reconnect and resubscribe (the server resends the row)."""

    def __init__(self, base_url: str, session_key: str):
        self.ws_url = base_url.replace("http://", "ws://") + "/ws/chat/"
        self.origin = base_url
        self.session_key = session_key
        self.ws = None
        self.conversation_id: int | None = None
        self.text: dict[int, str] = {}
        self.seq: dict[int, int] = {}
        self.finished: dict[int, dict] = {}  # replies already final when accepted
        self.recent: collections.deque = collections.deque(maxlen=6)  # for a timeout's message

    def connect(self, timeout: float = 10.0) -> dict:
        from websockets.sync.client import connect

        self.ws = connect(
            self.ws_url,
            additional_headers={"Cookie": f"sessionid={self.session_key}"},
            origin=self.origin,
            open_timeout=timeout,
            close_timeout=2,
        )
        return self.recv(timeout)

    def close(self) -> None:
        if self.ws is not None:
            self.ws.close()
            self.ws = None

    def send(self, frame: dict) -> None:
        self.ws.send(json.dumps(frame))

    def recv(self, timeout: float) -> dict:
        frame = json.loads(self.ws.recv(timeout=timeout))
        message = frame.get("message") or {}
        self.recent.append(
            (frame["type"], frame.get("message_id", message.get("id")), frame.get("seq"))
        )
        return frame

    def ask(self, text: str, timeout: float = 30.0, **params) -> int:
        """Send a turn; returns the queued reply's id once the server accepted it."""
        self.send(
            {"type": "send", "text": text, "conversation_id": self.conversation_id}
            | {"params": params}
        )
        while True:
            frame = self.recv(timeout)
            if frame["type"] == "accepted":
                self.conversation_id = frame["conversation"]["id"]
                message = frame["message"]
                self.text[message["id"]] = message["content"]
                self.seq[message["id"]] = message["last_seq"]
                # the reply may have ended before this socket joined its conversation (a
                # fast worker): the accepted frame is then its only news, as on the page
                done = _done_if_final(message, message["id"])
                if done is not None:
                    self.finished[message["id"]] = done
                return message["id"]
            if frame["type"] == "error":
                raise RuntimeError(f"turn refused: {frame}")
            self.apply(frame)

    def resubscribe(self) -> None:
        """After a reconnect: watch the conversation again; its snapshot resets every reply."""
        self.send({"type": "subscribe", "conversation_id": self.conversation_id})

    def apply(self, frame: dict, watch: int | None = None) -> dict | None:
        """Fold one server frame into what this client has; returns a `done` frame (for a
        conversation snapshot: the one of reply `watch`, when the snapshot shows it final)."""
        kind = frame["type"]
        if kind == "delta":
            mid = frame["message_id"]
            if frame["seq"] == self.seq.get(mid, 0) + 1:
                self.text[mid] = self.text.get(mid, "") + frame["text"]
                self.seq[mid] = frame["seq"]
        elif kind == "message":
            # a reply resent whole (the socket adopted it); final, it ends the reply, as on the page
            message = frame["message"]
            self.text[message["id"]] = message["content"]
            self.seq[message["id"]] = message["last_seq"]
            return _done_if_final(message, watch)
        elif kind == "conversation":
            done = None
            for message in frame["messages"]:
                if message["role"] == "assistant":
                    self.text[message["id"]] = message["content"]
                    self.seq[message["id"]] = message["last_seq"]
                    done = done or _done_if_final(message, watch)
            return done
        elif kind == "done":
            self.text[frame["message_id"]] = frame["content"]
            return frame
        return None

    def until_done(self, message_id: int, timeout: float = 60.0, on_frame=None) -> dict:
        """Frames until `message_id` is done; returns its `done` frame."""
        deadline = time.monotonic() + timeout
        if message_id in self.finished:
            return self.finished.pop(message_id)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no done for reply {message_id}")
            try:
                frame = self.recv(remaining)
            except TimeoutError as exc:
                raise TimeoutError(f"{exc}; last frames: {list(self.recent)}") from None
            if on_frame is not None:
                on_frame(frame)
            done = self.apply(frame, watch=message_id)
            if done is not None and done["message_id"] == message_id:
                return done


__all__ = [
    "ROOT",
    "ChatClient",
    "PostgresCluster",
    "Process",
    "RedisServer",
    "Shape",
    "postgres_bindir",
    "session_cookie",
]
