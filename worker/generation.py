"""The `gpu` queue: generation tasks that share one process-wide continuous-batching engine.

A worker process runs with a thread pool (`--pool threads`); every task thread hands its request
to the same `EngineHost`, which loads each model version once (lazily, on first use: never at
import time, so forked workers never touch CUDA before the fork) and keeps one `Engine` per
loaded version. New requests go to the version that is active *now* (checked per request), so
activating a version in the admin switches every worker without a restart; requests already
running finish on the model they started with, and an old version's engine is unloaded once it
is idle and no longer asked for.
"""

import logging
import threading
import time

from celery.exceptions import SoftTimeLimitExceeded
from django.conf import settings
from django.db import OperationalError

from webchat import metrics
from worker import claims
from worker.app import app
from worker.limits import Deadline

log = logging.getLogger(__name__)

FLUSH_INTERVAL_S = 0.1  # coalesce deltas: push at most every 100 ms ...
FLUSH_TOKENS = 8  # ... or every few tokens, whichever comes first
# ... and with more than this many replies decoding in the process, proportionally less often
# (at most every FLUSH_INTERVAL_MAX_S): every flush is a database write, a channel-layer send
# and a frame per watching socket, so the process's write rate stays near
# FLUSH_STREAMS / FLUSH_INTERVAL_S however many replies stream at once.
FLUSH_STREAMS = 16
FLUSH_INTERVAL_MAX_S = 0.5
HEARTBEAT_INTERVAL_S = 2.0
IDLE_WAIT_S = 0.25  # a task thread with nothing to send looks at its reply this often
FINISH_ATTEMPTS = 5  # about 7.5 s of waiting for the database to come back


class EngineHost:
    """The process-wide engines, one per loaded model version."""

    def __init__(self):
        self._lock = threading.Lock()
        self._engines: dict[int, tuple] = {}  # version id -> (engine, chat_format, path)

    def get(self, version_id: int, path: str):
        """The running engine and chat format for a model version, loading it on first use."""
        with self._lock:
            entry = self._engines.get(version_id)
            if entry is None or entry[2] != path:
                entry = self._load(version_id, path)
                self._engines[version_id] = entry
            return entry[0], entry[1]

    def _load(self, version_id: int, path: str):
        import torch

        from modeling.chat import ChatFormat
        from modeling.checkpoint import load_model
        from modeling.engine import Engine

        device = "cuda" if torch.cuda.is_available() else "cpu"
        threads = settings.WEBCHAT_ENGINE["CPU_THREADS"]
        if device == "cpu" and threads > 0 and not settings.EMBEDDED_WORKER:
            torch.set_num_threads(threads)
        started = time.perf_counter()
        model, tokenizer, _meta = load_model(path, device=device)
        engine = Engine(
            model, tokenizer, max_batch_size=engine_rows(model), version=str(version_id)
        )
        engine.start()
        log.info(
            "loaded model version %s from %s on %s in %.1f s",
            version_id,
            path,
            device,
            time.perf_counter() - started,
        )
        return engine, ChatFormat.for_model(tokenizer, path), path

    def unload_idle(self, keep: set[int]) -> None:
        """Drop engines of versions not in `keep` once they have nothing running."""
        with self._lock:
            for version_id in list(self._engines):
                engine = self._engines[version_id][0]
                if version_id not in keep and engine.is_idle():
                    engine.stop(drain=False)
                    del self._engines[version_id]
                    log.info("unloaded model version %s", version_id)

    def loaded_versions(self) -> list[int]:
        with self._lock:
            return list(self._engines)

    def shutdown(self) -> None:
        with self._lock:
            for engine, _fmt, _path in self._engines.values():
                engine.stop(drain=False)
            self._engines.clear()


host = EngineHost()


def engine_rows(model) -> int:
    """Rows the engine decodes together: WEBCHAT_ENGINE["MAX_BATCH_SIZE"], fewer when their
    preallocated KV cache (keys and values of every layer, every position) would take more than
    WEBCHAT_ENGINE["KV_CACHE_MB"], as vLLM sizes its cache by a share of the device's memory."""
    cfg = model.config
    itemsize = next(model.parameters()).element_size()
    per_row = 2 * cfg.n_layer * cfg.kv_heads * (cfg.block_size + 1) * cfg.hd * itemsize
    budget = settings.WEBCHAT_ENGINE["KV_CACHE_MB"] * 2**20
    return max(1, min(settings.WEBCHAT_ENGINE["MAX_BATCH_SIZE"], budget // per_row))


@app.task(
    name="worker.generation.generate_reply",
    bind=True,
    acks_late=True,  # idempotent: a redelivered task finds the message no longer queued
    soft_time_limit=900,
    time_limit=960,
    # The database away before the claim (a PostgreSQL restart): nothing was written yet, so
    # trying again is safe; the reply stays queued meanwhile.
    autoretry_for=(OperationalError,),
    retry_backoff=1,
    retry_backoff_max=8,
    max_retries=8,
)
def generate_reply(self, message_id: int) -> dict:
    """Generate the reply for a queued assistant message and stream it to its conversation.

    Args:
        message_id: the assistant Message (status `queued`).

    Returns:
        {"message_id", "status"}; status "skipped" when the message was not queued any more.
    """
    from django.db import close_old_connections

    close_old_connections()  # a connection that died with the database is not reused
    try:
        return _generate(message_id)
    finally:
        claims.task_ended(message_id)


def _generate(message_id: int) -> dict:
    from webchat.chat import replies
    from webchat.registry.services import model_version_active
    from worker import cancel

    queued = replies.message_queued(message_id=message_id)
    if queued is None:
        return {"message_id": message_id, "status": "skipped"}
    # Load the engine before claiming the row: a load can outlast the streaming heartbeat
    # timeout (a big model, a busy machine), and the reaper would mark a claimed row interrupted
    # meanwhile. A queued row is kept safe by this worker's claim on its task (worker.claims).
    version = queued.model_version or model_version_active()
    engine = chat_format = load_error = None
    if version is not None:
        host.unload_idle(keep={version.pk} | ({queued.model_version_id} - {None}))
        try:
            engine, chat_format = host.get(version.pk, version.path)
        except Exception as exc:  # noqa: BLE001 - any load failure fails the reply with its reason
            log.error("cannot load model version %s", version.pk, exc_info=exc)
            load_error = exc
    message = replies.message_claim(message_id=message_id)
    if message is None:
        return {"message_id": message_id, "status": "skipped"}
    relay = Relay(message, Deadline.for_current_task())
    try:
        if version is None:
            return relay.fail(
                "No model is active yet. An administrator must activate a model version "
                "(the default model trains on first start).",
                kind="no_model",
            )
        if load_error is not None:
            return relay.fail(
                f"Model version {version.name} could not be loaded: {load_error}",
                kind="load_failed",
            )
        relay.version_id = version.pk
        started = {"type": "chat.started", "message_id": message.pk, "model_version": version.name}
        request = build_request(message, engine, chat_format, relay)
        if isinstance(request, tuple):
            replies.push(message.conversation_id, started)
            return relay.fail(*request)
        handle = engine.submit(request)
        # Tell the watchers while the engine runs the prefill, not before: the push is off the
        # path to the first token. Every delta is pushed after this, from this thread.
        replies.push(message.conversation_id, started)
        cancel.watcher.watch(message_id, relay.stop_event)
        try:
            relay.stream(handle, engine)
        finally:
            cancel.watcher.unwatch(message_id)
        return {"message_id": message_id, "status": relay.status}
    except SoftTimeLimitExceeded:
        metrics.GENERATION_ERRORS.labels(kind="time_limit").inc()
        relay.finish("failed", relay.time_limit_error())
        return {"message_id": message_id, "status": "failed"}
    except Exception as exc:
        log.exception("generation of message %s failed", message_id)
        metrics.GENERATION_ERRORS.labels(kind=exc.__class__.__name__).inc()
        relay.finish("failed", f"Generation failed: {exc.__class__.__name__}: {exc}")
        raise
    finally:
        try:
            cancel.clear(message_id)
        except Exception as exc:  # noqa: BLE001 - the flag expires by itself (cancel.TTL_S)
            log.warning("could not clear the cancel flag of message %s: %s", message_id, exc)


def build_request(message, engine, chat_format, relay):
    """The engine request for a message, or (error for the user, error kind)."""
    from modeling.chat import ContextTooLongError
    from modeling.engine import Request
    from modeling.generate import SamplingParams
    from webchat.chat import replies
    from webchat.chat.validation import reply_token_cap

    params = dict(message.params or {})
    block = engine.max_seq_len
    # The web side already cut max_new_tokens to the model's cap when it queued the reply; this
    # covers a reply queued for "the active model" just before a smaller model was activated.
    max_new = min(int(params.get("max_new_tokens", 128)), reply_token_cap(block))
    params["max_new_tokens"] = max_new
    params["stop_token_ids"] = list(chat_format.stop_token_ids)
    params["stop_strings"] = list(getattr(chat_format, "stop_strings", ()))
    try:
        sampling = SamplingParams.from_dict(params)
    except (TypeError, ValueError) as exc:
        return f"Invalid sampling parameters: {exc}", "invalid_params"
    turns = replies.conversation_context(message=message)
    try:
        prompt = chat_format.render_prompt(turns, max_tokens=block - max_new)
    except ContextTooLongError:
        return (
            "Your message is too long for this model's context window "
            f"({block} tokens, {max_new} reserved for the reply). Shorten it or lower max tokens.",
            "context_too_long",
        )
    except ValueError as exc:
        return f"This conversation cannot be sent to the model: {exc}", "bad_context"
    relay.prompt_tokens = len(prompt)
    return Request(
        prompt_ids=prompt,
        params=sampling,
        request_id=str(message.pk),
        should_cancel=relay.cancel_requested,
    )


def flush_interval(engine) -> float:
    """How long a reply's deltas are coalesced: FLUSH_INTERVAL_S up to FLUSH_STREAMS replies
    decoding in this process's engine, longer in proportion above that."""
    running = engine.num_running if engine is not None else 0
    return min(FLUSH_INTERVAL_MAX_S, FLUSH_INTERVAL_S * max(1.0, running / FLUSH_STREAMS))


class Relay:
    """Coalesces engine deltas, saves them, then pushes them with contiguous sequence numbers."""

    def __init__(self, message, deadline: Deadline | None = None):
        self.message = message
        self.conversation_id = message.conversation_id
        self.text = ""
        self.pending = ""
        self.pending_tokens = 0
        self.seq = 0
        self.status = "streaming"
        self.version_id = None
        self.prompt_tokens = 0
        self.deadline = deadline or Deadline(None)
        self.timed_out = False
        self._cancel = threading.Event()
        self._lost = False  # the row left `streaming` under us (reaped): stop generating
        self._last_token_time: float | None = None

    @property
    def stop_event(self) -> threading.Event:
        """Set to stop the generation: the engine reads it every step (cancel_requested)."""
        return self._cancel

    def cancel_requested(self) -> bool:
        """The engine's cancel check, every decode step: a stop, a lost row, or the time limit
        (which the threads pool never enforces itself)."""
        if not self._cancel.is_set() and self.deadline.passed():
            self.timed_out = True
            self._cancel.set()
        return self._cancel.is_set()

    def time_limit_error(self) -> str:
        limit = f" ({self.deadline.limit_s:g} s)" if self.deadline.limit_s else ""
        return (
            f"Generation took too long and was stopped by the time limit{limit}. "
            "The text so far is kept; you can regenerate."
        )

    def flush(self) -> bool:
        """Save the pending text, then push it. True when a row was written (a heartbeat too)."""
        from webchat.chat import replies

        if not self.pending:
            return False
        try:
            saved = replies.message_save_progress(
                message_id=self.message.pk, content=self.text + self.pending, seq=self.seq + 1
            )
        except OperationalError as exc:
            # The database is away (a restart): keep the text pending and save it with the next
            # flush; nothing is pushed that is not saved, so the client never runs ahead.
            log.warning("saving the progress of message %s failed: %s", self.message.pk, exc)
            from django.db import close_old_connections

            close_old_connections()
            return False
        self.text += self.pending
        self.seq += 1
        if not saved:
            self._lost = True
            self._cancel.set()
        else:
            replies.push(
                self.conversation_id,
                {
                    "type": "chat.delta",
                    "message_id": self.message.pk,
                    "seq": self.seq,
                    "text": self.pending,
                },
            )
        self.pending = ""
        self.pending_tokens = 0
        return saved

    def observe_token(self, event) -> None:
        """Metrics of one token: time to the first (from the reply being queued), the gaps."""
        if event.token_id is None:
            return
        metrics.GENERATION_TOKENS.inc()
        if self._last_token_time is None:
            waited = time.time() - self.message.created_at.timestamp()
            metrics.TIME_TO_FIRST_TOKEN.observe(max(0.0, waited))
        else:
            metrics.INTER_TOKEN_LATENCY.observe(max(0.0, event.time - self._last_token_time))
        self._last_token_time = event.time

    def stream(self, handle, engine=None) -> None:
        from modeling.engine import Finished
        from webchat.chat import replies
        from webchat.chat.validation import storable_text

        last_flush = last_beat = last_poll = time.monotonic()
        position = None
        while True:
            # Sleep until the next event or until pending text is due, never in short polls:
            # every wake-up of one of 32 task threads takes the GIL from the engine's loop. A
            # Stop needs no poll here: the watcher sets self._cancel, which the engine reads
            # every step (the request's should_cancel).
            interval = flush_interval(engine)
            wait = IDLE_WAIT_S
            if self.pending:
                due = last_flush + interval - time.monotonic()
                wait = min(wait, max(0.005, due))
            event = handle.get(timeout=wait)
            now = time.monotonic()
            if now - last_poll >= IDLE_WAIT_S:
                last_poll = now
                if engine is not None:
                    metrics.REQUESTS_RUNNING.set(engine.num_running)
                    metrics.REQUESTS_WAITING.set(engine.num_waiting)
                if not self._cancel.is_set() and self.cancel_requested():
                    handle.cancel()  # the time limit passed
            if event is None:
                waiting = handle.queue_position()
                if waiting and waiting != position:
                    position = waiting
                    replies.push(
                        self.conversation_id,
                        {"type": "chat.queue", "message_id": self.message.pk, "position": waiting},
                    )
            elif isinstance(event, Finished):
                self.finished(event)
                return
            else:
                self.observe_token(event)
                self.pending += storable_text(event.text)
                self.pending_tokens += 1
            if self.pending and (
                self.seq == 0  # the first text goes out at once: time to first token matters
                or self.pending_tokens >= FLUSH_TOKENS
                or now - last_flush >= interval
            ):
                if self.flush():  # a saved flush is a heartbeat too (it sets heartbeat_at)
                    last_beat = now
                last_flush = now
            if now - last_beat >= HEARTBEAT_INTERVAL_S:
                try:
                    replies.message_heartbeat(message_id=self.message.pk)
                except OperationalError as exc:  # the database is away: the next beat retries
                    log.warning("heartbeat of message %s failed: %s", self.message.pk, exc)
                last_beat = now

    def finished(self, event) -> None:
        """The engine's last event: flush the rest and save the final state."""
        from webchat.chat.validation import storable_text

        # storable_text keeps lengths, so the engine's full text lines up with what was taken.
        self.pending += storable_text(event.text[len(self.text) + len(self.pending) :])
        self.flush()
        if self._lost:
            metrics.GENERATION_ERRORS.labels(kind="lost").inc()
            return
        reason = event.finish_reason
        status = {"stop": "done", "length": "done", "cancelled": "stopped"}.get(reason, "failed")
        error = event.error or ""
        if self.timed_out:
            status, error = "failed", self.time_limit_error()
            metrics.GENERATION_ERRORS.labels(kind="time_limit").inc()
        elif status == "failed":
            metrics.GENERATION_ERRORS.labels(kind="engine").inc()
        metrics.PROMPT_TOKENS.inc(event.prompt_tokens)
        usage = {
            "prompt_tokens": event.prompt_tokens,
            "completion_tokens": event.completion_tokens,
            "time_to_first_token_ms": (event.time_to_first_token or 0) * 1000,
            "tokens_per_s": event.tokens_per_second,
        }
        self.finish(status, error, usage)

    def finish(self, status: str, error: str = "", usage: dict | None = None) -> None:
        """Save the final state; a database restart is waited out for a few seconds (the
        write is idempotent: it only changes a row that is still active)."""
        from django.db import close_old_connections

        from webchat.chat import replies

        self.status = status
        usage = dict(
            usage or {}, prompt_tokens=(usage or {}).get("prompt_tokens", self.prompt_tokens)
        )
        for attempt in range(FINISH_ATTEMPTS):
            try:
                replies.message_finish(
                    message_id=self.message.pk,
                    status=status,
                    content=self.text,
                    seq=self.seq,
                    error=error,
                    usage=usage,
                    model_version_id=self.version_id,
                )
                return
            except OperationalError:
                if attempt == FINISH_ATTEMPTS - 1:
                    raise  # the reaper marks the row interrupted once its heartbeat lapses
                log.warning("saving the end of message %s failed; retrying", self.message.pk)
                close_old_connections()
                time.sleep(min(4.0, 0.5 * 2**attempt))

    def fail(self, reason: str, kind: str = "failed") -> dict:
        metrics.GENERATION_ERRORS.labels(kind=kind).inc()
        self.finish("failed", reason)
        return {"message_id": self.message.pk, "status": "failed"}


@app.task(name="worker.generation.reap_interrupted", soft_time_limit=60, time_limit=90)
def reap_interrupted() -> dict:
    """Periodic: re-dispatch queued replies whose task nobody holds, and mark messages whose
    worker stopped heartbeating as interrupted.

    Returns:
        {"redispatched": [ids], "interrupted": [ids]}.
    """
    from webchat.chat.replies import messages_reap_interrupted

    redispatched = claims.redispatch_unclaimed(send=lambda mid: generate_reply.delay(mid))
    return {"redispatched": redispatched, "interrupted": messages_reap_interrupted()}
