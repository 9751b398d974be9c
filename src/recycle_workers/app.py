"""The Celery application: queues, routes and the reliability defaults.

Every worker role and the client share this configuration. A message is
acknowledged only after its task finished (late acks), a worker that dies
mid-task hands the message back (reject on worker lost), each worker process
reserves one message at a time (prefetch 1), and every publish waits for the
broker's confirm. The periodic maintenance jobs go to their own queue, and
beat's schedule is read from the settings.
"""

from __future__ import annotations

from pathlib import Path

from celery import Celery, signals
from kombu import Exchange, Queue

from recycle_workers import metrics, probes
from recycle_workers.logs import configure_logging
from recycle_workers.roles import MAINTENANCE_QUEUE, PERIODIC_JOBS, STAGES
from recycle_workers.scheduler import poll_interval_s, schedule_of
from recycle_workers.settings import Settings, get_settings


def create_app(settings: Settings) -> Celery:
    """A Celery app for ``settings``; the worker, beat and the client all use one."""
    app = Celery(
        "recycle_workers",
        broker=settings.broker_url.get_secret_value(),
        backend=settings.redis_url.get_secret_value(),
        include=["recycle_workers.tasks", "recycle_workers.maintenance"],
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
            Queue(queue, exchange, routing_key=queue, durable=True)
            for queue in [*(stage.queue for stage in STAGES), MAINTENANCE_QUEUE]
        ],
        task_routes={
            **{
                stage.task: {"queue": stage.queue, "routing_key": stage.queue}
                for stage in STAGES
            },
            **{
                job.task: {"queue": MAINTENANCE_QUEUE, "routing_key": MAINTENANCE_QUEUE}
                for job in PERIODIC_JOBS
            },
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
        # Beside the heartbeat file, so two schedulers on one host keep separate files.
        beat_schedule_filename=str(
            Path(settings.heartbeat_file).with_name(BEAT_SCHEDULE_FILE)
        ),
        beat_max_loop_interval=poll_interval_s(settings),
        beat_schedule=beat_schedule(settings),
    )
    app.steps["worker"].add(probes.HeartbeatStep)
    return app


def beat_schedule(settings: Settings) -> dict:
    """The periodic jobs, each on the schedule its setting names."""
    return {
        job.name: {
            "task": job.task,
            "schedule": schedule_of(getattr(settings, job.schedule_setting)),
        }
        for job in PERIODIC_JOBS
    }


@signals.setup_logging.connect
def _configure_logging(**_) -> None:
    settings = get_settings()
    role = settings.role.value if settings.role else None
    configure_logging(
        level=settings.log_level, log_format=settings.log_format, role=role
    )


@signals.worker_init.connect
def _serve_worker_metrics(**_) -> None:
    metrics.serve(get_settings().metrics_port)


@signals.beat_init.connect
def _serve_beat_metrics(**_) -> None:
    import redis

    settings = get_settings()
    client = redis.Redis.from_url(
        settings.redis_url.get_secret_value(),
        socket_connect_timeout=2,
        socket_timeout=2,
    )
    schedules = tuple(job.name for job in PERIODIC_JOBS)
    metrics.serve(
        settings.metrics_port,
        collectors=(metrics.ScheduleCollector(client, schedules),),
    )


@signals.worker_process_shutdown.connect
def _forget_child_metrics(pid=None, **_) -> None:
    if pid is not None:
        metrics.mark_process_dead(pid)


@signals.worker_ready.connect
def _mark_ready(**_) -> None:
    probes.touch(get_settings().ready_file)


BROKER_CONNECT_TIMEOUT_S = 5
RESULT_TTL_S = 24 * 3600
BEAT_SCHEDULE_FILE = "celerybeat-schedule"
PUBLISH_RETRY_POLICY = {
    "max_retries": 3,
    "interval_start": 0.2,
    "interval_step": 0.5,
    "interval_max": 2,
}

app = create_app(get_settings())
