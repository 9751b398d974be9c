"""The Celery tasks: thin wrappers that run one pipeline stage and pass the job on.

Every stage message of a job carries the job id as its task id, so Celery's own
log lines name the job and a stage that dies past its time limit leaves its
failure under the job id. The job's outcome, success or failure, is stored
under the job id by :func:`finish`.

A stage checkpoints its output before it hands the job on: a message delivered
again after a crash reuses the checkpoint instead of repeating the AI call.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Callable

from botocore.exceptions import ConnectionError as S3ConnectionError
from celery import Task, states
from celery.exceptions import SoftTimeLimitExceeded, TimeLimitExceeded
from kombu.exceptions import OperationalError
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from recycle_workers import pipeline
from recycle_workers.app import app
from recycle_workers.cache import RedisCache, checkpoint_key
from recycle_workers.catalog import default_catalog
from recycle_workers.errors import ErrorCode, JobError
from recycle_workers.llm import adapter_from_settings
from recycle_workers.models import JobMessage, JobResult
from recycle_workers.roles import ANALYSIS, GENERATION, RETRIEVAL, UPLOAD, StageSpec
from recycle_workers.settings import get_settings
from recycle_workers.storage import storage_from_settings

logger = logging.getLogger(__name__)


@lru_cache(maxsize=1)
def worker_services() -> pipeline.Services:
    """The services of this worker process, built on first use (after the fork)."""
    settings = get_settings()
    return pipeline.Services(
        settings=settings,
        storage=storage_from_settings(settings),
        cache=RedisCache.from_url(settings.redis_url.get_secret_value()),
        catalog=default_catalog(),
        adapter=adapter_from_settings(settings),
    )


class StageTask(Task):
    """Retries passing outages with backoff; a final failure ends the job as failed."""

    abstract = True
    ignore_result = True
    autoretry_for = TRANSIENT_ERRORS = (
        ConnectionError,
        TimeoutError,
        RedisConnectionError,
        RedisTimeoutError,
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
        logger.error(
            "event=stage_failed job_id=%s task=%s error=%s", task_id, self.name, type(exc).__name__
        )
        finish(pipeline.failed_result(task_id, code, reason))


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
    _run_stage(UPLOAD, parsed.job_id, lambda services: pipeline.run_upload(parsed, services))


@_stage_task(ANALYSIS)
def analyze(self, message: dict) -> None:
    parsed = JobMessage.model_validate(message)
    _run_stage(ANALYSIS, parsed.job_id, lambda services: pipeline.run_analysis(parsed, services))


@_stage_task(RETRIEVAL)
def retrieve(self, message: dict) -> None:
    parsed = JobMessage.model_validate(message)
    _run_stage(RETRIEVAL, parsed.job_id, lambda services: pipeline.run_retrieval(parsed, services))


@_stage_task(GENERATION)
def generate(self, message: dict) -> None:
    parsed = JobMessage.model_validate(message)
    _run_stage(
        GENERATION, parsed.job_id, lambda services: pipeline.run_generation(parsed, services)
    )


NEXT_TASK = {UPLOAD.name: analyze, ANALYSIS.name: retrieve, RETRIEVAL.name: generate}


def _run_stage(
    spec: StageSpec,
    job_id: str,
    compute: Callable[[pipeline.Services], JobMessage | JobResult],
) -> None:
    """Run ``compute`` once per job and stage, then hand its outcome on."""
    services = worker_services()
    if _is_finished(job_id):
        logger.info("event=duplicate_skipped job_id=%s stage=%s", job_id, spec.name)
        return
    app.backend.store_result(job_id, {"stage": spec.name}, PROGRESS)

    key = checkpoint_key(job_id, spec.name)
    saved = services.cache.get(key)
    if saved is not None:
        logger.info("event=checkpoint_reused job_id=%s stage=%s", job_id, spec.name)
        outcome = _outcome_from_checkpoint(saved)
    else:
        try:
            outcome = compute(services)
        except JobError as exc:
            outcome = pipeline.failed_result(job_id, exc.code, exc.message)
        services.cache.set(key, _checkpoint_of(outcome), ttl_s=CHECKPOINT_TTL_S)

    if isinstance(outcome, JobResult):
        finish(outcome)
        return
    logger.info(
        "event=stage_done job_id=%s stage=%s duration_ms=%s",
        job_id, spec.name, outcome.timings_ms.get(spec.name),
    )
    NEXT_TASK[spec.name].apply_async(args=[outcome.model_dump(mode="json")], task_id=job_id)


def finish(result: JobResult) -> None:
    """Store the job's outcome under its id, where the client waits for it."""
    app.backend.store_result(result.job_id, result.model_dump(mode="json"), states.SUCCESS)
    logger.info(
        "event=job_finished job_id=%s status=%s cached=%s degraded=%s total_ms=%s",
        result.job_id, result.status, result.cached, result.degraded, result.timings_ms.total,
    )


def _is_finished(job_id: str) -> bool:
    return app.backend.get_state(job_id) in states.READY_STATES


def _checkpoint_of(outcome: JobMessage | JobResult) -> dict:
    kind = "result" if isinstance(outcome, JobResult) else "message"
    return {"kind": kind, "value": outcome.model_dump(mode="json")}


def _outcome_from_checkpoint(saved: dict) -> JobMessage | JobResult:
    model = JobResult if saved["kind"] == "result" else JobMessage
    return model.model_validate(saved["value"])


PROGRESS = "PROGRESS"
CHECKPOINT_TTL_S = 24 * 3600
