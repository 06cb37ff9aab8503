"""Continuous batching: many generation requests share one model and one KV cache.

The engine owns a KV cache with `max_batch_size` rows. Each scheduler iteration (`Engine.step`)
1. drops cancelled requests (their rows are free before this step decodes anything),
2. when no prefill is under way, admits waiting requests in FIFO order while the batch size and
   the token budget allow,
3. prefills the admitted prompts as one right-padded batch, at most `prefill_chunk` prompt tokens
   per step; a request whose prompt is complete samples its first token and joins the batch,
4. runs one decode step for every running row, each row with its own sampling parameters, seed,
   stop rules and max tokens, and frees the rows that finished.

Running rows are kept packed at the front of the cache (a finished row is filled by moving the
last row into it), so a decode step costs as many rows as are running, not `max_batch_size`.

The engine works on token ids; the tokenizer is used only to turn tokens into text deltas and to
check stop strings. It knows nothing about Django or Celery. Typical use from many threads:

    engine = Engine(model, tokenizer, max_batch_size=16)
    engine.start()                                   # background scheduler thread
    handle = engine.submit(Request(prompt_ids, SamplingParams(max_new_tokens=64)))
    for event in handle:                             # Delta ... Delta, Finished
        ...

Without `start()`, iterating a handle drives `step()` itself, which is handy in tests and
scripts. `stop(drain=True)` closes the engine to new requests and finishes the ones it accepted.

Beam search (`num_beams > 1`) does not batch with sampling: such a request is served outside
the batch by `modeling.generate.generate` in a side thread (one beam request at a time) and its
text arrives as a single delta when the search ends.
"""

from __future__ import annotations

import collections
import copy
import dataclasses
import logging
import threading
import time
from dataclasses import dataclass

import torch

from modeling.generate import IncrementalDecoder, generate
from modeling.request import Delta, Event, Finished, FinishReason, Request, RequestHandle
from modeling.sampling import make_generator, process_logits, select_tokens

# The request types are re-exported: callers import them from here with the Engine.
__all__ = [
    "Delta",
    "Engine",
    "Event",
    "FinishReason",
    "Finished",
    "Request",
    "RequestHandle",
    "StepStats",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class StepStats:
    """What one `Engine.step` did."""

    admitted: int  # requests taken from the waiting line this step (their prefill started)
    joined: int  # requests whose prefill completed this step (first token sampled)
    decoded: int  # rows that ran the decode forward this step
    finished: int  # requests that finished this step (any reason)
    running: int  # rows decoding after the step
    prefilling: int  # requests still prefilling after the step
    waiting: int  # requests still waiting after the step


class _Sequence:
    """Engine-side state of one request."""

    def __init__(self, request: Request, max_new: int, tokenizer, device: torch.device):
        self.request = request
        self.params = request.params
        self.prompt_ids = [int(t) for t in request.prompt_ids]
        self.max_new = max_new
        self.cost = len(self.prompt_ids) + max_new  # what it holds of the token budget
        self.generator = make_generator(self.params, device) if self.params.is_sampling else None
        self.stop_ids = frozenset(self.params.stop_token_ids)
        self.decoder = IncrementalDecoder(tokenizer, self.params.stop_strings)
        self.token_ids: list[int] = []
        self.slot: int | None = None  # batch cache row while decoding
        self.group_row = 0  # row in the prefill cache while prefilling
        self.prefilled = 0  # prompt tokens already in the prefill cache
        self.done = False
        self.handle: RequestHandle | None = None
        self.submitted = time.perf_counter()
        self.admitted: float | None = None
        self.first_token: float | None = None


def _row_view(cache, start: int, stop: int):
    """A KVCache over rows [start, stop) of `cache` that shares its storage.

    Writes through the view (new keys/values, lengths += n) land in `cache`, so a decode forward
    costs the running rows only, not max_batch_size. Relies on KVCache keeping `k`, `v` as
    (n_layer, B, ...) and `lengths` as (B,) tensors.
    """
    view = copy.copy(cache)
    view.k = cache.k[:, start:stop]
    view.v = cache.v[:, start:stop]
    view.lengths = cache.lengths[start:stop]
    return view


class Engine:
    """Continuous-batching generation over one model.

    Args:
        model: a `modeling.model.Transformer` (any module with the same forward/new_cache API).
        tokenizer: its tokenizer (for text deltas and stop strings).
        max_batch_size: most requests decoding at once (rows of the KV cache).
        max_tokens: token budget: the sum of prompt + max_new_tokens over running requests may
            not exceed it; None means max_batch_size * max_seq_len (no extra limit).
        max_seq_len: longest prompt + output per request (KV cache length); defaults to, and is
            capped at, `model.config.block_size`. max_new_tokens is clamped to fit.
        version: label reported on handles and `Finished` events (the model version).
        prefill_chunk: most prompt tokens prefilled per step (shared by the requests admitted
            together, at least one each), so a long prompt delays the running rows' next token
            by one chunk per step instead of stalling them for the whole prompt; None prefills
            whole prompts in one step.
    """

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer,
        max_batch_size: int = 16,
        max_tokens: int | None = None,
        max_seq_len: int | None = None,
        version: str | None = None,
        prefill_chunk: int | None = 512,
    ):
        if max_batch_size < 1:
            raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
        block = model.config.block_size
        self.model = model.eval()
        self.tokenizer = tokenizer
        self.max_batch_size = max_batch_size
        self.max_seq_len = min(max_seq_len or block, block)
        self.max_tokens = max_tokens or max_batch_size * self.max_seq_len
        self.version = version
        self.prefill_chunk = prefill_chunk
        self.device = next(model.parameters()).device
        self.step_count = 0  # scheduler iterations so far
        self._waiting: collections.deque[_Sequence] = collections.deque()
        self._rows: list[_Sequence] = []  # decoding requests; _rows[i].slot == i
        self._prefilling: list[_Sequence] = []  # admitted, prompt not yet fully in the cache
        self._pcache = None  # the prefilling group's own KVCache
        self._cache = None  # (max_batch_size, max_seq_len) KVCache, allocated on first step
        self._views: dict[int, object] = {}  # row count n -> KVCache view of rows [0, n)
        self._lock = threading.Lock()  # guards _waiting, _closed, _stopping, _drain, _beam_active
        self._wakeup = threading.Condition(self._lock)
        self._step_lock = threading.Lock()  # one scheduler iteration at a time
        self._closed = False  # no new submissions
        self._stopping = False  # background loop exits now
        self._drain = False  # background loop exits once idle
        self._thread: threading.Thread | None = None
        self._beam_lock = threading.Lock()  # beam requests run one at a time
        self._beam_active = 0

    # ----------------------------------------------------------------- public API

    def submit(self, request: Request) -> RequestHandle:
        """Queue a request; thread-safe. Returns at once with its handle.

        Args:
            request: the request; its params are validated here.
        Returns:
            RequestHandle: stream of `Delta` events and a final `Finished`.
        Raises:
            ValueError: invalid params, empty prompt, prompt of max_seq_len tokens or more, or a
                request that alone exceeds the token budget.
            RuntimeError: the engine is closed (stopped, or draining).
        """
        params = request.params
        params.validate()
        n_prompt = len(request.prompt_ids)
        if n_prompt == 0:
            raise ValueError("prompt_ids is empty: at least one token is needed")
        if n_prompt >= self.max_seq_len:
            raise ValueError(
                f"prompt has {n_prompt} tokens; this engine allows at most "
                f"{self.max_seq_len - 1} (max_seq_len {self.max_seq_len})"
            )
        max_new = min(params.max_new_tokens, self.max_seq_len - n_prompt)
        if n_prompt + max_new > self.max_tokens:
            raise ValueError(
                f"request needs {n_prompt + max_new} tokens of budget (prompt + max_new_tokens); "
                f"the engine has {self.max_tokens}"
            )
        seq = _Sequence(request, max_new, self.tokenizer, self.device)
        seq.handle = RequestHandle(self, seq)
        beam = params.num_beams > 1
        with self._lock:
            if self._closed:
                raise RuntimeError("engine is closed to new requests")
            if beam:
                self._beam_active += 1
            else:
                self._waiting.append(seq)
            self._wakeup.notify_all()
        if beam:
            threading.Thread(target=self._run_beam, args=(seq,), daemon=True).start()
        return seq.handle

    @property
    def num_running(self) -> int:
        """Requests decoding (holding a row of the batch cache)."""
        return len(self._rows)

    @property
    def num_prefilling(self) -> int:
        """Requests admitted whose prompt is still being prefilled."""
        return len(self._prefilling)

    @property
    def num_waiting(self) -> int:
        """Requests waiting for admission."""
        return len(self._waiting)

    @property
    def tokens_in_use(self) -> int:
        """Token budget held by running requests."""
        return sum(s.cost for s in self._rows) + sum(s.cost for s in self._prefilling)

    def is_idle(self) -> bool:
        """True when nothing is waiting, running or searching beams."""
        with self._lock:
            return not self._has_work() and not self._beam_active

    def step(self) -> StepStats:
        """One scheduler iteration: cancel, admit + prefill, decode one token per row, free rows.

        Returns:
            StepStats: counts for this iteration.
        """
        with self._step_lock, torch.inference_mode():
            self.step_count += 1
            finished = self._drop_cancelled()
            admitted = self._admit()
            joined, n = self._prefill()
            finished += n
            decoded = len(self._rows)
            finished += self._decode()
            return StepStats(
                admitted=len(admitted),
                joined=joined,
                decoded=decoded,
                finished=finished,
                running=len(self._rows),
                prefilling=len(self._prefilling),
                waiting=len(self._waiting),
            )

    def run_until_idle(self, max_steps: int | None = None) -> int:
        """Sync mode: step until nothing waits or runs (beam requests excepted).

        Args:
            max_steps: stop after this many steps even if work is left.
        Returns:
            The number of steps taken.
        """
        n = 0
        while self._has_work() and (max_steps is None or n < max_steps):
            self.step()
            n += 1
        return n

    def start(self) -> Engine:
        """Run the scheduler loop in a daemon thread (idempotent). Returns self."""
        with self._lock:
            if self._thread is not None and self._thread.is_alive():
                return self
            if self._stopping:
                raise RuntimeError("engine is stopped")
            self._thread = threading.Thread(target=self._loop, name="engine", daemon=True)
            self._thread.start()
        return self

    def stop(self, drain: bool = True, wait: bool = True, timeout: float | None = None) -> None:
        """Close the engine to new requests and end the background loop.

        Args:
            drain: finish every accepted request first (True), or cancel them all now (False).
            wait: block until the loop thread has exited (without a thread and with drain, the
                remaining work is stepped here).
            timeout: most seconds to wait for the thread.
        """
        with self._lock:
            self._closed = True
            if drain:
                self._drain = True
            else:
                self._stopping = True
            self._wakeup.notify_all()
            thread = self._thread
        if thread is not None:
            if wait:
                thread.join(timeout)
        elif drain and wait:
            self.run_until_idle()
        if not drain:
            self._cancel_all()

    # ----------------------------------------------------------------- scheduler

    def _loop(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and not self._has_work():
                    if self._drain and not self._beam_active:
                        return
                    self._wakeup.wait()
                if self._stopping:
                    return
            try:
                self.step()
            except Exception:  # a bug in the engine itself: log it and keep serving
                logger.exception("engine step failed")
                time.sleep(0.01)

    def _has_work(self) -> bool:
        return bool(self._waiting or self._rows or self._prefilling)

    def _wake(self) -> None:
        with self._lock:
            self._wakeup.notify_all()

    def _thread_alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def _queue_position(self, seq: _Sequence) -> int:
        with self._lock:
            for i, s in enumerate(self._waiting):
                if s is seq:
                    return i + 1
        return 0

    def _drop_cancelled(self) -> int:
        """Finish cancelled requests (waiting or running) and free their rows."""
        n = 0
        with self._lock:
            waiting = list(self._waiting)
        for s in waiting + self._prefilling + self._rows:
            try:
                cancelled = s.handle._cancelled or bool(
                    s.request.should_cancel and s.request.should_cancel()
                )
            except Exception as exc:
                self._finish(s, "error", error=f"should_cancel raised {exc!r}")
                n += 1
                continue
            if cancelled:
                self._finish(s, "cancelled")
                n += 1
        if n:
            with self._lock:
                self._waiting = collections.deque(s for s in self._waiting if not s.done)
            self._prefilling = [s for s in self._prefilling if not s.done]
            if not self._prefilling:
                self._pcache = None
            self._compact()
        return n

    def _admit(self) -> list[_Sequence]:
        """Take waiting requests, in order, while rows and token budget last."""
        if self._prefilling:  # one prefill group at a time; the line waits for it
            return []
        admitted = []
        with self._lock:
            budget = self.max_tokens - self.tokens_in_use
            # Strict FIFO: a large request at the head waits for room instead of being overtaken
            # forever by small ones behind it.
            while self._waiting and len(self._rows) + len(admitted) < self.max_batch_size:
                if self._waiting[0].cost > budget:
                    break
                s = self._waiting.popleft()
                budget -= s.cost
                admitted.append(s)
        now = time.perf_counter()
        for s in admitted:
            s.admitted = now
        self._prefilling = admitted
        return admitted

    def _prefill(self) -> tuple[int, int]:
        """Run one chunk of the prefilling group; rows whose prompt is done join the batch.

        The group's prompts are right-padded into one forward over a temporary cache, at most
        `prefill_chunk` prompt tokens per step in all, so running rows keep decoding between
        the chunks of a long prompt. A row whose prompt is complete gets its first token from
        this forward and is copied into the batch cache.

        Returns:
            (rows that joined the batch, requests that finished).
        """
        group = self._prefilling
        if not group:
            return 0, 0
        if self._cache is None:
            self._cache = self.model.new_cache(self.max_batch_size, self.max_seq_len, self.device)
        longest = max(len(s.prompt_ids) for s in group)
        if self._pcache is None:
            self._pcache = self.model.new_cache(len(group), longest, self.device)
            for i, s in enumerate(group):
                s.group_row, s.prefilled = i, 0
        per_row = longest if self.prefill_chunk is None else self.prefill_chunk // len(group)
        valid = [0] * self._pcache.batch_size  # rows that left the group get 0 new tokens
        for s in group:
            valid[s.group_row] = min(max(1, per_row), len(s.prompt_ids) - s.prefilled)
        T = max(valid)
        idx = torch.zeros(len(valid), T, dtype=torch.long)  # (k, T), right-padded with id 0
        for s in group:
            n = valid[s.group_row]
            idx[s.group_row, :n] = torch.tensor(s.prompt_ids[s.prefilled : s.prefilled + n])
        lengths = None if min(valid) == T else torch.tensor(valid, device=self.device)
        try:
            logits, _ = self.model(
                idx.to(self.device), cache=self._pcache, valid_lengths=lengths, last_only=True
            )  # (k, 1, V): at each row's last real token of this chunk
        except Exception as exc:
            logger.exception("prefill failed")
            for s in group:
                self._finish(s, "error", error=f"prefill failed: {exc!r}")
            self._prefilling, self._pcache = [], None
            return 0, len(group)
        ready = []
        for s in group:
            s.prefilled += valid[s.group_row]
            if s.prefilled == len(s.prompt_ids):
                ready.append(s)
        for s in ready:
            s.slot = len(self._rows)
            self._rows.append(s)
            self._cache.copy_row_from(s.slot, self._pcache, s.group_row)
        self._prefilling = [s for s in group if s.prefilled < len(s.prompt_ids)]
        if not self._prefilling:
            self._pcache = None
        if not ready:
            return 0, 0
        rows = torch.tensor([s.group_row for s in ready], device=self.device)
        return len(ready), self._sample_and_accept(ready, logits[rows, -1])

    def _decode(self) -> int:
        """One decode forward over every running row, then sample and apply stop rules."""
        rows = list(self._rows)
        if not rows:
            return 0
        n = len(rows)
        idx = torch.tensor([[s.token_ids[-1]] for s in rows], device=self.device)  # (n, 1)
        try:
            cache = self._cache if n == self.max_batch_size else self._views.get(n)
            if cache is None:  # one view per row count, made once (the cache is never replaced)
                cache = self._views[n] = _row_view(self._cache, 0, n)
            logits, _ = self.model(idx, cache=cache, last_only=True)  # (n, 1, V)
        except Exception as exc:
            logger.exception("decode step failed")
            for s in rows:
                self._finish(s, "error", error=f"decode failed: {exc!r}")
            self._compact()
            return n
        return self._sample_and_accept(rows, logits[:, -1])

    def _select(self, seqs: list[_Sequence], logits: torch.Tensor) -> list[int | Exception]:
        """Next token per row, each with its own params and generator, as generate() picks it.

        Args:
            seqs: the rows' sequences.
            logits: (n, V) raw next-token scores.
        Returns:
            A token id per row, or the exception that row's processing raised.
        """
        params = [s.params for s in seqs]
        if all(not p.is_sampling and p.repetition_penalty == 1.0 for p in params):
            return logits.argmax(dim=-1).tolist()  # the common greedy batch: one op

        def pick(rows: list[_Sequence], scores: torch.Tensor) -> list[int]:
            ps = [s.params for s in rows]
            seen = None
            if any(p.repetition_penalty != 1.0 for p in ps):
                seen = [s.prompt_ids + s.token_ids for s in rows]
            processed = process_logits(scores, seen, ps)  # (n, V)
            return select_tokens(processed, ps, [s.generator for s in rows]).tolist()

        try:
            return pick(seqs, logits)
        except Exception:
            # Find the culprit(s) row by row so one bad request cannot fail the others.
            out: list[int | Exception] = []
            for i, s in enumerate(seqs):
                try:
                    out.append(pick([s], logits[i : i + 1])[0])
                except Exception as exc:
                    out.append(exc)
            return out

    def _sample_and_accept(self, seqs: list[_Sequence], logits: torch.Tensor) -> int:
        """Sample one token per sequence from `logits` (n, V), emit deltas, free finished rows."""
        tokens = self._select(seqs, logits.float())
        now = time.perf_counter()
        n_finished = 0
        for s, tok in zip(seqs, tokens):
            if isinstance(tok, Exception):
                logger.error("request %s: sampling failed: %r", s.request.request_id, tok)
                self._finish(s, "error", error=f"sampling failed: {tok!r}")
            else:
                try:
                    self._accept(s, tok, now)
                except Exception as exc:
                    logger.exception("request %s failed", s.request.request_id)
                    self._finish(s, "error", error=repr(exc))
            n_finished += s.done
        self._compact()
        return n_finished

    def _accept(self, s: _Sequence, token: int, now: float) -> None:
        """Record one sampled token: emit its text, apply stop token/strings and max tokens."""
        if s.handle._cancelled:  # set during this step: drop the token, free the row now
            self._finish(s, "cancelled")
            return
        s.token_ids.append(token)
        if s.first_token is None:
            s.first_token = now
        if token in s.stop_ids:
            self._finish(s, "stop")
            return
        text = s.decoder.push(token)
        if s.decoder.stopped:
            self._finish(s, "stop", last_delta=text)
            return
        if len(s.token_ids) >= s.max_new:
            self._finish(s, "length", last_delta=text)
            return
        s.handle._put(Delta(s.request.request_id, text, token, len(s.token_ids), now))

    def _finish(
        self, s: _Sequence, reason: FinishReason, error: str | None = None, last_delta: str = ""
    ) -> None:
        """Send the last delta and `Finished`; the row is freed by the next `_compact`."""
        if s.done:
            return
        s.done = True
        now = time.perf_counter()
        rid = s.request.request_id
        if reason in ("stop", "length"):
            # Text held back as a possible stop-string prefix turned out to be real output.
            last_delta += s.decoder.flush()
        # (cancelled/error: the output is exactly what was already sent)
        if last_delta:
            last_token = s.token_ids[-1] if s.token_ids else None
            s.handle._put(Delta(rid, last_delta, last_token, len(s.token_ids), now))
        admitted = s.admitted if s.admitted is not None else now
        s.handle._put(
            Finished(
                request_id=rid,
                finish_reason=reason,
                text=s.decoder.final_text,
                token_ids=tuple(s.token_ids),
                prompt_tokens=len(s.prompt_ids),
                completion_tokens=len(s.token_ids),
                queue_time=admitted - s.submitted,
                time_to_first_token=None if s.first_token is None else s.first_token - s.submitted,
                duration=now - s.submitted,
                step=self.step_count,
                time=now,
                model_version=self.version,
                error=error,
            )
        )

    def _compact(self) -> None:
        """Free the rows of finished requests, moving rows from the end into the holes."""
        if not any(s.done for s in self._rows):
            return
        alive = [s for s in self._rows if not s.done]
        n = len(alive)
        movers = [s for s in alive if s.slot >= n]  # rows past the new end
        holes = [s.slot for s in self._rows if s.done and s.slot < n]
        for hole, s in zip(holes, movers):
            self._cache.copy_row_from(hole, self._cache, s.slot)
            s.slot = hole
        for b in range(n, len(self._rows)):
            self._cache.reset_row(b)
        for s in self._rows:
            if s.done:
                s.slot = None
        self._rows = sorted(alive, key=lambda s: s.slot)

    def _cancel_all(self) -> None:
        with self._step_lock, torch.inference_mode():
            with self._lock:
                pending = list(self._waiting) + self._prefilling + list(self._rows)
                self._waiting.clear()
            self._prefilling, self._pcache = [], None
            for s in pending:
                self._finish(s, "cancelled")
            self._compact()

    # ----------------------------------------------------------------- beam search

    def _run_beam(self, s: _Sequence) -> None:
        """Serve a beam-search request outside the batch with `modeling.generate.generate`."""
        try:
            with self._beam_lock:
                if s.handle._cancelled or self._stopping:
                    self._finish(s, "cancelled")
                    return
                s.admitted = time.perf_counter()
                params = dataclasses.replace(s.params, max_new_tokens=s.max_new)
                check = s.request.should_cancel

                def stop_now() -> bool:
                    return self._stopping or s.handle._cancelled or bool(check and check())

                with torch.inference_mode():
                    ids = generate(
                        self.model,
                        s.prompt_ids,
                        params,
                        tokenizer=self.tokenizer,
                        should_stop=stop_now,
                    )
                s.first_token = time.perf_counter()
                s.token_ids = list(ids)
                if stop_now():
                    self._finish(s, "cancelled")
                    return
                text = "".join(s.decoder.push(t) for t in ids if t not in s.stop_ids)
                stopped = s.decoder.stopped or bool(ids and ids[-1] in s.stop_ids)
                reason: FinishReason = "stop" if stopped or len(ids) < s.max_new else "length"
                self._finish(s, reason, last_delta=text)
        except Exception as exc:
            logger.exception("beam search failed")
            self._finish(s, "error", error=f"beam search failed: {exc!r}")
        finally:
            with self._lock:
                self._beam_active -= 1
                self._wakeup.notify_all()
