"""The Celery application: queues, routes and the reliability defaults.

Every worker role and the client share this configuration. A message is
acknowledged only after its task finished (late acks), a worker that dies
mid-task hands the message back (reject on worker lost), each worker process
reserves one message at a time (prefetch 1), and every publish waits for the
broker's confirm.
"""

from __future__ import annotations

from celery import Celery, signals
from kombu import Exchange, Queue

from recycle_workers import probes
from recycle_workers.logs import configure_logging
from recycle_workers.roles import STAGES
from recycle_workers.settings import Settings, get_settings


def create_app(settings: Settings) -> Celery:
    """A Celery app for ``settings``; the worker, beat and the client all use one."""
    app = Celery(
        "recycle_workers",
        broker=settings.broker_url.get_secret_value(),
        backend=settings.redis_url.get_secret_value(),
        include=["recycle_workers.tasks"],
    )
    exchange = Exchange("recycle", type="direct", durable=True)
    app.conf.update(
        task_serializer="json",
        result_serializer="json",
        accept_content=["json"],
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        task_store_errors_even_if_ignored=True,
        task_queues=[
            Queue(stage.queue, exchange, routing_key=stage.queue, durable=True)
            for stage in STAGES
        ],
        task_routes={
            stage.task: {"queue": stage.queue, "routing_key": stage.queue} for stage in STAGES
        },
        task_default_exchange=exchange.name,
        task_publish_retry_policy=PUBLISH_RETRY_POLICY,
        broker_transport_options={"confirm_publish": True},
        broker_connection_timeout=BROKER_CONNECT_TIMEOUT_S,
        broker_connection_retry_on_startup=True,
        broker_heartbeat=30,
        result_expires=RESULT_TTL_S,
        result_backend_transport_options={"retry_policy": PUBLISH_RETRY_POLICY},
        redis_socket_connect_timeout=BROKER_CONNECT_TIMEOUT_S,
        redis_socket_timeout=30,
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        timezone=settings.timezone,
        enable_utc=True,
        beat_scheduler="recycle_workers.scheduler:HeartbeatScheduler",
        beat_schedule_filename=BEAT_SCHEDULE_FILE,
        beat_max_loop_interval=settings.heartbeat_interval_s,
    )
    app.steps["worker"].add(probes.HeartbeatStep)
    return app


@signals.setup_logging.connect
def _configure_logging(**_) -> None:
    settings = get_settings()
    configure_logging(level=settings.log_level, log_format=settings.log_format)


@signals.worker_ready.connect
def _mark_ready(**_) -> None:
    probes.touch(get_settings().ready_file)


BROKER_CONNECT_TIMEOUT_S = 5
RESULT_TTL_S = 24 * 3600
BEAT_SCHEDULE_FILE = "/tmp/recycle-workers/celerybeat-schedule"
PUBLISH_RETRY_POLICY = {
    "max_retries": 3,
    "interval_start": 0.2,
    "interval_step": 0.5,
    "interval_max": 2,
}

app = create_app(get_settings())
