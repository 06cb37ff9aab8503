"""kombu's Redis transport with one fix: losing Redis must not stop the worker.

When the broker connection drops, Celery's consumer closes its channel, and kombu's Redis channel
then tries to put the worker's unacknowledged messages back on their queues, over the connection
that has just gone (and whose client kombu has already cleared: AttributeError 'NoneType' object
has no attribute 'hostname'). Celery treats that as an unrecoverable error and shuts the worker
down; this was the gpu worker dying in 3 of 4 Redis restarts (issue 16). Here the failed restore
is logged and skipped: the messages stay in Redis's unacked set (restored after the visibility
timeout), and a reply among them is re-dispatched by the reaper once its claim lapses
(worker.claims); the running tasks finish into the database meanwhile.

Selected by CELERY_BROKER_TRANSPORT when REDIS_URL is set; `Consumer` below by
CELERY_WORKER_CONSUMER.
"""

import functools
import logging

from celery.worker.consumer import Consumer as CeleryConsumer
from kombu.transport import redis as kombu_redis

log = logging.getLogger(__name__)


class QoS(kombu_redis.QoS):
    def restore_unacked(self, client=None):
        try:
            super().restore_unacked(client)
        except Exception as exc:  # noqa: BLE001 - any failure here would end the worker
            log.warning(
                "could not restore %d unacknowledged message(s) while the broker is away "
                "(%s: %s); they stay in Redis and come back after the visibility timeout",
                len(self._delivered),
                exc.__class__.__name__,
                exc,
            )
            self._delivered.clear()

    # A task that was running when the connection dropped finishes later and acks through the
    # channel that delivered it, which is closed now (its connection is None: AttributeError).
    # Its message is in Redis's unacked set and is redelivered after the visibility timeout;
    # the task is idempotent and skips it then.
    def ack(self, delivery_tag):
        try:
            super().ack(delivery_tag)
        except AttributeError:
            log.warning(
                "ack of %s skipped: its channel closed when the broker went away", delivery_tag
            )

    def reject(self, delivery_tag, requeue=False):
        try:
            super().reject(delivery_tag, requeue=requeue)
        except AttributeError:
            log.warning("reject of %s skipped: its channel closed with the broker", delivery_tag)


class Channel(kombu_redis.Channel):
    QoS = QoS


class Transport(kombu_redis.Transport):
    Channel = Channel


# How often a worker tries the broker again while it is away. Celery's consumer calls kombu's
# ensure_connection with its defaults (2 s, then 2 s more each time, up to 30 s: tries at 0, 2,
# 6, 12, 20, 30 s ...) and has no setting for them, so a Redis back after 5 s was first tried
# again 1 to 7 s later, and one back after 13 s up to 7 s later (issue 16: "new replies within
# 10 s of Redis being back"). Trying Redis once a second costs nothing.
RECONNECT_INTERVAL_S = 1.0


class Consumer(CeleryConsumer):
    """Celery's task consumer, retrying a lost broker every RECONNECT_INTERVAL_S."""

    def ensure_connected(self, conn):
        conn.ensure_connection = functools.partial(
            conn.ensure_connection,
            interval_start=RECONNECT_INTERVAL_S / 2,
            interval_step=RECONNECT_INTERVAL_S / 2,
            interval_max=RECONNECT_INTERVAL_S,
        )
        return super().ensure_connected(conn)
