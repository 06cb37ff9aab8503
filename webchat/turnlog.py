"""One id per reply in every log line about it: a context variable and the logging filter that
writes it into each record as `reply` (`-` outside a reply).

The consumer binds the assistant message id when it queues a turn; the generation task binds it
for as long as it runs (worker.observe), so the lines of the consumer, the worker and the pushes
back all carry `reply=<message id>`, and `grep reply=123` follows one turn through every process.
"""

import contextvars
import logging

reply_id: contextvars.ContextVar[int | None] = contextvars.ContextVar("reply_id", default=None)


def bind(message_id: int | None) -> contextvars.Token:
    """Tag the log lines of the current context (thread or task) with `message_id`."""
    return reply_id.set(int(message_id) if message_id is not None else None)


def unbind(token: contextvars.Token) -> None:
    reply_id.reset(token)


def _current() -> int | str:
    value = reply_id.get()
    return "-" if value is None else value


_base_factory = logging.getLogRecordFactory()


def _record_with_reply(*args, **kwargs) -> logging.LogRecord:
    record = _base_factory(*args, **kwargs)
    record.reply = _current()
    return record


# Every record gets `reply` where it is made (in the thread whose context knows the reply), so
# any handler's format may name it: Celery's own handlers included, which no filter of ours
# reaches.
if getattr(_base_factory, "__name__", "") != "_record_with_reply":
    logging.setLogRecordFactory(_record_with_reply)


class ReplyContext(logging.Filter):
    """Makes sure a record has `reply` (records made before this module was imported)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "reply"):
            record.reply = _current()
        return True
