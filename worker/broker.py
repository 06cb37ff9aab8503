"""kombu's Redis transport with one fix: losing Redis must not stop the worker.

When the broker connection drops, Celery's consumer closes its channel, and kombu's Redis channel
then tries to put the worker's unacknowledged messages back on their queues, over the connection
that has just gone (and whose client kombu has already cleared: AttributeError 'NoneType' object
has no attribute 'hostname'). Celery treats that as an unrecoverable error and shuts the worker
down; this was the gpu worker dying in 3 of 4 Redis restarts (issue 16). Here the failed restore
is logged and skipped: the messages stay in Redis's unacked set (restored after the visibility
timeout), and a reply among them is re-dispatched by the reaper once its claim lapses
(worker.claims); the running tasks finish into the database meanwhile.

Selected by CELERY_BROKER_TRANSPORT when REDIS_URL is set.
"""

import logging

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
