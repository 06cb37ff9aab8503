"""A generation request and what comes back from it: `Request`, its events and its handle.

`Engine.submit` takes a `Request` and returns a `RequestHandle`; iterating the handle yields
`Delta` events (text as it becomes safe to show) and then one `Finished`.
"""

from __future__ import annotations

import collections
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

from modeling.sampling import SamplingParams

if TYPE_CHECKING:
    from modeling.engine import Engine, _Sequence

FinishReason = Literal["stop", "length", "cancelled", "error"]


@dataclass
class Request:
    """One generation request.

    Args:
        prompt_ids: prompt token ids (at least one).
        params: sampling parameters, validated on submit.
        request_id: caller's id, echoed on every event (a random hex id by default).
        should_cancel: optional callable polled once per engine step while the request waits or
            runs; returning True cancels it. Keep it cheap (a flag read, not a network call per
            step). An exception raised by it finishes this request with "error".
    """

    prompt_ids: list[int]
    params: SamplingParams = field(default_factory=SamplingParams)
    request_id: str = field(default_factory=lambda: uuid.uuid4().hex)
    should_cancel: Callable[[], bool] | None = None


@dataclass(frozen=True)
class Delta:
    """New output of one request. One per generated token, except stop tokens.

    `text` may be "" (an incomplete UTF-8 character, or text held back because it could be the
    start of a stop string); concatenating every delta's text gives `Finished.text` exactly.
    """

    request_id: str
    text: str
    token_id: int | None  # the token sampled this step; None for a final flush of held text
    index: int  # number of tokens generated so far, this one included
    time: float  # time.perf_counter() when the token was sampled


@dataclass(frozen=True)
class Finished:
    """The last event of a request."""

    request_id: str
    finish_reason: FinishReason
    text: str  # the whole output, stop string excluded; equals the concatenated deltas
    token_ids: tuple[int, ...]  # every sampled token, a final stop token included
    prompt_tokens: int
    completion_tokens: int
    queue_time: float  # seconds from submit to admission into the batch
    time_to_first_token: float | None  # seconds from submit to the first sampled token
    duration: float  # seconds from submit to finish
    step: int  # engine step counter when the request finished (its row is free from then on)
    time: float  # time.perf_counter() at finish
    model_version: str | None = None
    error: str | None = None

    @property
    def tokens_per_second(self) -> float:
        """Generated tokens per second of generation time (admission to finish)."""
        busy = self.duration - self.queue_time
        return self.completion_tokens / busy if busy > 0 else 0.0


Event = Delta | Finished


class RequestHandle:
    """The caller's side of a submitted request: a blocking stream of events.

    Iterating yields `Delta` events and then one `Finished`. Safe to use from any thread; each
    handle should be consumed by one thread.
    """

    def __init__(self, engine: Engine, seq: _Sequence):
        self._engine = engine
        self._seq = seq
        self._events: collections.deque[Event] = collections.deque()
        self._cond = threading.Condition()
        self._finished: Finished | None = None
        self._cancelled = False

    @property
    def request_id(self) -> str:
        """The request's id."""
        return self._seq.request.request_id

    @property
    def model_version(self) -> str | None:
        """Version label of the engine serving this request."""
        return self._engine.version

    @property
    def done(self) -> bool:
        """True once the `Finished` event has been produced."""
        return self._finished is not None

    def cancel(self) -> None:
        """Ask the engine to stop this request; its row is freed at the engine's next step."""
        self._cancelled = True
        self._engine._wake()

    def queue_position(self) -> int:
        """Returns 0 once admitted (running or finished), else k >= 1: k-th in the waiting line."""
        return self._engine._queue_position(self._seq)

    def get(self, timeout: float | None = None) -> Event | None:
        """Next event, blocking up to `timeout` seconds (None: forever); None on timeout.

        When the engine has no background thread, waiting drives `engine.step()` instead.
        """
        deadline = None if timeout is None else time.perf_counter() + timeout
        engine = self._engine
        while True:
            with self._cond:
                if self._events:
                    return self._events.popleft()
                if self._finished is not None:  # the Finished event was already taken
                    return None
                remaining = None if deadline is None else deadline - time.perf_counter()
                if remaining is not None and remaining <= 0:
                    return None
                drive = not engine._thread_alive() and engine._has_work()
                if not drive:
                    # Background loop (or a beam-search thread) will notify; without a loop,
                    # wake up now and then in case work for the batch appears.
                    poll = None if engine._thread_alive() else 0.01
                    wait = poll if remaining is None else min(remaining, poll or remaining)
                    self._cond.wait(wait)
                    continue
            engine.step()

    def __iter__(self) -> Iterator[Event]:
        while True:
            event = self.get()
            if event is None:  # only reachable after Finished was consumed
                return
            yield event
            if isinstance(event, Finished):
                return

    def result(self, timeout: float | None = None) -> Finished:
        """Block until the request finishes and return its `Finished` event (deltas are dropped).

        Raises:
            TimeoutError: if it has not finished within `timeout` seconds.
        """
        deadline = None if timeout is None else time.perf_counter() + timeout
        while self._finished is None:
            remaining = None if deadline is None else deadline - time.perf_counter()
            if remaining is not None and remaining <= 0:
                raise TimeoutError(f"request {self.request_id} still running")
            self.get(remaining)
        return self._finished

    def _put(self, event: Event) -> None:
        with self._cond:
            self._events.append(event)
            if isinstance(event, Finished):
                self._finished = event
            self._cond.notify_all()
