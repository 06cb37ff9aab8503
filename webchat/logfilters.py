"""Logging filters for the console."""

import logging

# Periodic housekeeping that runs every few seconds: its routine INFO lines (sent, received,
# succeeded) would bury everything else in `make run`'s console. What it finds is logged by the
# task itself at WARNING and still shows.
QUIET_TASKS = ("reap_interrupted", "reap-interrupted-replies")


class QuietPeriodicTasks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno > logging.INFO:
            return True
        message = record.getMessage()
        return not any(name in message for name in QUIET_TASKS)
