"""The Celery tasks: thin wrappers that run one pipeline stage and pass the job on.

Every stage message of a job carries the job id as its task id, so Celery's own
log lines name the job and a stage that dies past its time limit leaves its
failure under the job id. The job's outcome, success or failure, is stored
under the job id by :func:`finish`.

A stage checkpoints its output before it hands the job on: a message delivered
again after a crash reuses the checkpoint instead of repeating the AI call.

Redis holds the outcomes, but a Redis outage must not lose a job: every Redis
step before the outcome is best effort, and an outcome that cannot be stored is
sent back to the stage's own queue to be stored later, with growing delays.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Callable

from botocore.exceptions import ConnectionError as S3ConnectionError
from celery import Task, states
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from kombu import Queue
from kombu.exceptions import OperationalError
from redis.exceptions import RedisError

from recycle_workers import metrics, pipeline, progress
from recycle_workers.app import app
from recycle_workers.cache import KEY_PREFIX, RedisCache, checkpoint_key
from recycle_workers.catalog import default_catalog
from recycle_workers.errors import ErrorCode, JobError
from recycle_workers.llm import adapter_from_settings
from recycle_workers.logs import bound_job, log_event
from recycle_workers.models import JobMessage, JobResult
from recycle_workers.roles import ANALYSIS, GENERATION, RETRIEVAL, UPLOAD, StageSpec
from recycle_workers.settings import get_settings
from recycle_workers.stats import RedisStatsRecorder
from recycle_workers.storage import storage_from_settings

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def worker_services() -> pipeline.Services:
    """The services of this worker process, built on first use (after the fork)."""
    settings = get_settings()
    cache = RedisCache.from_url(settings.redis_url.get_secret_value())
    return pipeline.Services(
        settings=settings,
        storage=storage_from_settings(settings),
        cache=cache,
        catalog=default_catalog(),
        adapter=adapter_from_settings(settings),
        stats=RedisStatsRecorder(cache.client, tz=settings.timezone),
    )


@lru_cache(maxsize=1)
def in_flight_images():
    """The marks that keep the image purge away from photos of unfinished jobs."""
    from recycle_workers.maintenance import InFlightImages

    return InFlightImages(worker_services().cache.client)


class StageTask(Task):
    """Retries passing outages with backoff; a final failure ends the job as failed."""

    abstract = True
    ignore_result = True
    # Redis errors are not here: Celery records each retry in the result backend,
    # which is Redis, so a retry during a Redis outage would itself fail.
    autoretry_for = TRANSIENT_ERRORS = (
        ConnectionError,
        TimeoutError,
        S3ConnectionError,
        OperationalError,
    )
    max_retries = 4
    retry_backoff = 1
    retry_backoff_max = 30
    retry_jitter = True

    def on_failure(self, exc, task_id, args, kwargs, einfo) -> None:
        timed_out = isinstance(exc, (SoftTimeLimitExceeded, TimeLimitExceeded))
        code = ErrorCode.STAGE_TIMEOUT if timed_out else ErrorCode.STAGE_FAILED
        reason = (
            f"The {self.name} stage ran past its time limit."
            if timed_out
            else f"The {self.name} stage failed: {type(exc).__name__}."
        )
        stage = STAGE_BY_TASK.get(self.name, self.name)
        log_event(
            logger,
            "stage_failed",
            level=logging.ERROR,
            job_id=task_id,
            stage=stage,
            error=type(exc).__name__,
            outcome=code.value,
        )
        metrics.STAGE_FAILED.labels(stage, code.value).inc()
        finish(
            pipeline.failed_result(task_id, code, reason),
            queue=QUEUE_BY_TASK[self.name],
        )


def _stage_task(spec: StageSpec):
    return app.task(
        name=spec.task,
        base=StageTask,
        bind=True,
        soft_time_limit=spec.soft_time_limit_s,
        time_limit=spec.time_limit_s,
    )


@_stage_task(UPLOAD)
def upload(self, request: dict) -> None:
    parsed = pipeline.UploadRequest.model_validate(request)
    _run_stage(
        UPLOAD, parsed.job_id, lambda services: pipeline.run_upload(parsed, services)
    )


@_stage_task(ANALYSIS)
def analyze(self, message: dict) -> None:
    parsed = JobMessage.model_validate(message)
    _run_stage(
        ANALYSIS,
        parsed.job_id,
        lambda services: pipeline.run_analysis(parsed, services),
    )


@_stage_task(RETRIEVAL)
def retrieve(self, message: dict) -> None:
    parsed = JobMessage.model_validate(message)
    _run_stage(
        RETRIEVAL,
        parsed.job_id,
        lambda services: pipeline.run_retrieval(parsed, services),
    )


@_stage_task(GENERATION)
def generate(self, message: dict) -> None:
    parsed = JobMessage.model_validate(message)
    _run_stage(
        GENERATION,
        parsed.job_id,
        lambda services: pipeline.run_generation(parsed, services),
    )


NEXT_TASK = {UPLOAD.name: analyze, ANALYSIS.name: retrieve, RETRIEVAL.name: generate}
STAGE_BY_TASK = {
    spec.task: spec.name for spec in (UPLOAD, ANALYSIS, RETRIEVAL, GENERATION)
}
QUEUE_BY_TASK = {
    spec.task: spec.queue for spec in (UPLOAD, ANALYSIS, RETRIEVAL, GENERATION)
}


def _run_stage(
    spec: StageSpec,
    job_id: str,
    compute: Callable[[pipeline.Services], JobMessage | JobResult],
) -> None:
    """Run ``compute`` once per job and stage, then hand its outcome on."""
    with bound_job(job_id):
        _run_stage_once(spec, job_id, compute)


def _run_stage_once(
    spec: StageSpec,
    job_id: str,
    compute: Callable[[pipeline.Services], JobMessage | JobResult],
) -> None:
    services = worker_services()
    if _is_finished(job_id):
        log_event(logger, "duplicate_skipped", job_id=job_id, stage=spec.name)
        return
    if _set_aside_poison(spec, job_id, services):
        return
    metrics.STAGE_STARTED.labels(spec.name).inc()
    _guard(_store_progress, job_id, spec.name)
    progress.publish(services.cache, job_id, spec.name, "started")

    key = checkpoint_key(job_id, spec.name)
    saved = services.cache.get(key)
    if saved is not None:
        log_event(logger, "checkpoint_reused", job_id=job_id, stage=spec.name)
        outcome = _outcome_from_checkpoint(saved)
    else:
        try:
            outcome = compute(services)
        except JobError as exc:
            outcome = pipeline.failed_result(job_id, exc.code, exc.message)
        services.cache.set(key, _checkpoint_of(outcome), ttl_s=CHECKPOINT_TTL_S)

    duration_ms = _stage_duration_ms(outcome, spec.name)
    if duration_ms is not None:
        metrics.STAGE_DURATION.labels(spec.name).observe(duration_ms / 1000)
    if isinstance(outcome, JobResult) and outcome.status == "failed":
        metrics.STAGE_FAILED.labels(spec.name, outcome.error.code).inc()
    else:
        metrics.STAGE_SUCCEEDED.labels(spec.name).inc()
    log_event(
        logger,
        "stage_done",
        job_id=job_id,
        stage=spec.name,
        duration_ms=duration_ms,
        outcome=getattr(outcome, "status", "handed_on"),
    )
    progress.publish(services.cache, job_id, spec.name, "done")

    if isinstance(outcome, JobResult):
        finish(outcome, queue=spec.queue)
        return
    if spec is UPLOAD and outcome.image is not None:
        _guard(in_flight_images().mark, job_id, outcome.image.image_sha256)
    NEXT_TASK[spec.name].apply_async(
        args=[outcome.model_dump(mode="json")], task_id=job_id
    )


@app.task(name="recycle.finish", ignore_result=True)
def finish_later(result: dict, *, queue: str, attempt: int) -> None:
    """Store an outcome that Redis could not take when its stage ended."""
    parsed = JobResult.model_validate(result)
    with bound_job(parsed.job_id):
        finish(parsed, queue=queue, attempt=attempt)


def finish(result: JobResult, *, queue: str, attempt: int = 0) -> None:
    """Store the job's outcome under its id, where the client waits for it.

    When Redis cannot take it, the outcome goes back to ``queue`` to be stored
    after a delay that doubles up to 30 s, for about ten minutes in all.
    """
    try:
        app.backend.store_result(
            result.job_id, result.model_dump(mode="json"), states.SUCCESS
        )
    except (RedisError, OSError) as exc:
        _defer_outcome(result, queue=queue, attempt=attempt, error=exc)
        return
    worker_services().stats.record_job(result)
    _guard(in_flight_images().clear, result.job_id)
    error_code = result.error.code if result.error else ""
    metrics.JOBS_FINISHED.labels(result.status, error_code).inc()
    progress.publish(worker_services().cache, result.job_id, "job", result.status)
    log_event(
        logger,
        "job_finished",
        job_id=result.job_id,
        outcome=result.status,
        error_code=error_code or None,
        cached=result.cached,
        degraded=result.degraded,
        duration_ms=result.timings_ms.total,
    )


def _defer_outcome(
    result: JobResult, *, queue: str, attempt: int, error: Exception
) -> None:
    if attempt >= FINISH_ATTEMPTS:
        log_event(
            logger,
            "outcome_lost",
            level=logging.ERROR,
            job_id=result.job_id,
            attempts=attempt,
            error=type(error).__name__,
        )
        return
    delay_s = min(2**attempt, 30)
    log_event(
        logger,
        "outcome_deferred",
        level=logging.WARNING,
        job_id=result.job_id,
        attempt=attempt + 1,
        delay_s=delay_s,
        error=type(error).__name__,
    )
    finish_later.apply_async(
        args=[result.model_dump(mode="json")],
        kwargs={"queue": queue, "attempt": attempt + 1},
        task_id=result.job_id,
        queue=queue,
        routing_key=queue,
        countdown=delay_s,
    )


def _store_progress(job_id: str, stage: str) -> None:
    app.backend.store_result(job_id, {"stage": stage}, PROGRESS)


def _stage_duration_ms(outcome: JobMessage | JobResult, stage: str) -> float | None:
    if isinstance(outcome, JobMessage):
        return outcome.timings_ms.get(stage)
    return getattr(outcome.timings_ms, stage, None)


def _guard(operation: Callable, *args) -> None:
    """Run a bookkeeping step that must never fail the job it belongs to."""
    try:
        operation(*args)
    except (RedisError, OSError) as exc:
        log_event(
            logger,
            "bookkeeping_failed",
            level=logging.WARNING,
            job_id=args[0],
            step=operation.__name__,
            error=type(exc).__name__,
        )


def _is_finished(job_id: str) -> bool:
    """Whether the job already has its outcome; unknown (no Redis) counts as no."""
    try:
        return app.backend.get_state(job_id) in states.READY_STATES
    except (RedisError, OSError):
        return False


def _set_aside_poison(
    spec: StageSpec, job_id: str, services: pipeline.Services
) -> bool:
    """Count this delivery; past ``MAX_DELIVERIES``, fail the job and dead-letter it.

    Late acks and reject-on-worker-lost hand back the message of a task whose
    worker died, so a message that crashes its worker every time would come back
    forever. Deliveries are counted per job, stage and retry in Redis; without
    Redis the count is unknown and the message runs.
    """
    request = app.current_task.request
    key = f"{KEY_PREFIX}deliveries:{job_id}:{spec.name}:{request.retries}"
    try:
        with services.cache.client.pipeline(transaction=False) as pipe:
            pipe.incr(key)
            pipe.expire(key, CHECKPOINT_TTL_S)
            deliveries, _ = pipe.execute()
    except RedisError:
        return False
    if deliveries <= MAX_DELIVERIES:
        return False

    log_event(
        logger,
        "poison_message",
        level=logging.ERROR,
        job_id=job_id,
        stage=spec.name,
        deliveries=deliveries,
        queue=DEAD_LETTER_QUEUE,
    )
    with app.producer_or_acquire() as producer:
        producer.publish(
            {
                "task": spec.task,
                "job_id": job_id,
                "deliveries": deliveries,
                "args": request.args,
            },
            exchange="",
            routing_key=DEAD_LETTER_QUEUE,
            serializer="json",
            declare=[Queue(DEAD_LETTER_QUEUE, durable=True)],
            retry=True,
        )
    finish(
        pipeline.failed_result(
            job_id,
            ErrorCode.POISON_MESSAGE,
            f"The {spec.name} stage stopped its worker on each of {MAX_DELIVERIES} "
            "tries, so the job was set aside.",
        ),
        queue=spec.queue,
    )
    return True


def _checkpoint_of(outcome: JobMessage | JobResult) -> dict:
    kind = "result" if isinstance(outcome, JobResult) else "message"
    return {"kind": kind, "value": outcome.model_dump(mode="json")}


def _outcome_from_checkpoint(saved: dict) -> JobMessage | JobResult:
    model = JobResult if saved["kind"] == "result" else JobMessage
    return model.model_validate(saved["value"])


PROGRESS = "PROGRESS"
# Delays of 1, 2, 4 ... 30 s: ten minutes of Redis outage before an outcome is lost.
FINISH_ATTEMPTS = 24
CHECKPOINT_TTL_S = 24 * 3600
# A message delivered more often than this at one retry is poison.
MAX_DELIVERIES = 3
DEAD_LETTER_QUEUE = "q.dead_letter"
