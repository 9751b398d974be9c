"""One job through the four stages, independent of how the stages are run.

Each ``run_*`` function is one stage: it takes the message the previous stage
produced, does its work through :class:`Services`, records its own duration and
returns the message for the next stage (or, for a cache hit or the last stage,
the finished :class:`JobResult`). The Celery tasks and the embedded client both
call these, so a job behaves the same behind a broker and in one process.
"""

from __future__ import annotations

import base64
import logging
import time
import uuid
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict

from recycle_workers import analyzer, generator, metrics, retriever, uploader
from recycle_workers.cache import Cache, analysis_key, answer_key, inflight_key
from recycle_workers.catalog import Catalog
from recycle_workers.errors import ErrorCode, JobError
from recycle_workers.llm import Adapter
from recycle_workers.logs import bound_job, log_event
from recycle_workers.models import (
    Analysis,
    ItemSummary,
    JobFailure,
    JobMessage,
    JobResult,
    Timings,
)
from recycle_workers.roles import ANALYSIS
from recycle_workers.settings import Settings
from recycle_workers.stats import NullStatsRecorder, StatsRecorder
from recycle_workers.storage import Storage

logger = logging.getLogger(__name__)


@dataclass
class Services:
    """The outside systems a stage uses, built once per process."""

    settings: Settings
    storage: Storage
    cache: Cache
    catalog: Catalog
    adapter: Adapter | None
    stats: StatsRecorder = field(default_factory=NullStatsRecorder)


class UploadRequest(BaseModel):
    """The first hop: the only message that may carry image bytes."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    job_id: str
    question: str | None = None
    lang: Literal["ko", "en"] = "ko"
    submitted_at: float
    image_b64: str | None = None

    def image_bytes(self) -> bytes | None:
        return base64.b64decode(self.image_b64) if self.image_b64 is not None else None


def new_request(
    *,
    image: bytes | None,
    question: str | None,
    lang: str,
    settings: Settings,
    job_id: str | None = None,
) -> UploadRequest:
    """Check a job's input and build its first message.

    Raises :class:`JobError` for input no stage could use, before anything is
    enqueued.
    """
    question = question.strip() if question else None
    if image is None and not question:
        raise JobError(ErrorCode.EMPTY_INPUT, "Send a photo, a question, or both.")
    if lang not in ("ko", "en"):
        raise JobError(
            ErrorCode.UNSUPPORTED_LANGUAGE, f"Language {lang!r} is not ko or en."
        )
    if question and len(question) > settings.max_question_chars:
        raise JobError(
            ErrorCode.QUESTION_TOO_LONG,
            f"The question has {len(question)} characters; the limit is "
            f"{settings.max_question_chars}.",
        )
    if image is not None:
        uploader.check_size(len(image), max_bytes=settings.max_image_bytes)
    return UploadRequest(
        job_id=job_id or new_job_id(),
        question=question,
        lang=lang,
        submitted_at=time.time(),
        image_b64=base64.b64encode(image).decode("ascii")
        if image is not None
        else None,
    )


def new_job_id() -> str:
    return uuid.uuid4().hex


def run_upload(request: UploadRequest, services: Services) -> JobMessage | JobResult:
    """Store the photo and look for a cached answer; a hit finishes the job."""
    started = time.perf_counter()
    settings = services.settings
    stored = None
    raw = request.image_bytes()
    if raw is not None:
        prepared = uploader.prepare_image(
            raw,
            max_bytes=settings.max_image_bytes,
            max_pixels=settings.max_image_pixels,
            max_side=settings.resize_max_side,
            jpeg_quality=settings.resize_jpeg_quality,
        )
        stored = uploader.store_image(prepared, raw, services.storage)

    key = answer_key(
        image_sha256=stored.image_sha256 if stored else None,
        question=request.question,
        catalog_version=services.catalog.version,
        lang=request.lang,
    )
    message = JobMessage(
        job_id=request.job_id,
        question=request.question,
        lang=request.lang,
        submitted_at=request.submitted_at,
        image=stored,
        cache_key=key,
        timings_ms={"upload": _elapsed_ms(started)},
    )

    cached = services.cache.get(key)
    if cached is not None:
        metrics.CACHE_LOOKUPS.labels("hit").inc()
        log_event(logger, "cache_hit", job_id=request.job_id)
        return _from_cache(cached, message)
    metrics.CACHE_LOOKUPS.labels("miss").inc()
    return message


def run_analysis(message: JobMessage, services: Services) -> JobMessage:
    """Identify the item and its state, once for identical jobs that arrive together."""
    started = time.perf_counter()
    if services.adapter is None:
        analysis = analyzer.analyze(
            question=message.question,
            image_jpeg=None,
            catalog=services.catalog,
            adapter=None,
        )
    else:
        analysis = _shared_analysis(message, services)
    usage = (
        {**message.usage, "analysis": analysis.usage}
        if analysis.usage
        else message.usage
    )
    return _advance(message, "analysis", started, analysis=analysis, usage=usage)


def _shared_analysis(message: JobMessage, services: Services) -> Analysis:
    """Analyse through the model, or take the analysis an identical job is making.

    The first job to claim the in-flight lock calls the model and publishes its
    analysis; the others wait for it. A holder that dies frees the lock when it
    expires, and a waiter then takes over.
    """
    cache = services.cache
    key = analysis_key(
        image_sha256=message.image.image_sha256 if message.image else None,
        question=message.question,
        catalog_version=services.catalog.version,
    )
    lock = inflight_key(key)
    deadline = time.monotonic() + INFLIGHT_WAIT_S
    while True:
        shared = cache.get(key)
        if shared is not None:
            log_event(logger, "analysis_shared", job_id=message.job_id)
            return Analysis.model_validate(shared).model_copy(update={"usage": None})
        if cache.claim(lock, ttl_s=ANALYSIS.time_limit_s):
            break
        if time.monotonic() >= deadline:
            log_event(
                logger,
                "inflight_wait_expired",
                level=logging.WARNING,
                job_id=message.job_id,
            )
            break
        time.sleep(INFLIGHT_POLL_S)

    try:
        image_jpeg = (
            services.storage.get(message.image.model_key) if message.image else None
        )
        analysis = analyzer.analyze(
            question=message.question,
            image_jpeg=image_jpeg,
            catalog=services.catalog,
            adapter=services.adapter,
        )
        if _reusable(analysis):
            cache.set(
                key,
                analysis.model_dump(mode="json"),
                ttl_s=services.settings.cache_ttl_s,
            )
    finally:
        cache.release(lock)
    return analysis


def run_retrieval(message: JobMessage, services: Services) -> JobMessage:
    """Pick the analysed item's rules for its state."""
    started = time.perf_counter()
    rules = retriever.retrieve(
        _analysis_of(message), catalog=services.catalog, lang=message.lang
    )
    return _advance(message, "retrieval", started, rules=rules)


def run_generation(message: JobMessage, services: Services) -> JobResult:
    """Write the answer, finish the job and cache the answer when it may be reused."""
    started = time.perf_counter()
    analysis = _analysis_of(message)
    rules = message.rules
    if rules is None:
        raise JobError(
            ErrorCode.STAGE_FAILED, "The job reached generation without rules."
        )
    guidance = generator.generate(
        question=message.question,
        analysis=analysis,
        rules=rules,
        catalog=services.catalog,
        lang=message.lang,
        adapter=services.adapter,
    )
    usage = (
        {**message.usage, "generation": guidance.usage}
        if guidance.usage
        else message.usage
    )
    message = _advance(message, "generation", started, usage=usage)
    for stage, stage_usage in message.usage.items():
        log_event(
            logger,
            "ai_usage",
            job_id=message.job_id,
            stage=stage,
            model=stage_usage.model,
            input_tokens=stage_usage.input_tokens,
            output_tokens=stage_usage.output_tokens,
        )
    services.stats.record_usage(message.job_id, message.usage)

    item = services.catalog.get(analysis.item_id) if analysis.item_id else None
    result = JobResult(
        job_id=message.job_id,
        status="succeeded",
        item=(
            ItemSummary(
                id=item.item_id,
                name_ko=item.name.ko,
                name_en=item.name.en,
                stream=item.stream,
            )
            if item
            else None
        ),
        state=analysis.state.public(),
        guidance=guidance.text,
        steps=guidance.steps,
        degraded=analysis.degraded_reason is not None
        or (
            services.adapter is not None
            and item is not None
            and guidance.method != "model"
        ),
        timings_ms=_timings(message),
    )
    if result.degraded:
        reason = analysis.degraded_reason or "generation_fallback"
        metrics.DEGRADED_ANSWERS.labels(reason).inc()
    if message.cache_key and _reusable(analysis):
        services.cache.set(
            message.cache_key, _to_cache(result), ttl_s=services.settings.cache_ttl_s
        )
    return result


def failed_result(
    job_id: str,
    code: ErrorCode | str,
    message: str,
    *,
    timings_ms: dict[str, float] | None = None,
    submitted_at: float | None = None,
) -> JobResult:
    """The result of a job that ended with an error."""
    timings = dict(timings_ms or {})
    if submitted_at is not None:
        timings["total"] = round((time.time() - submitted_at) * 1000, 1)
    return JobResult(
        job_id=job_id,
        status="failed",
        timings_ms=Timings(**timings),
        error=JobFailure(code=getattr(code, "value", code), message=message),
    )


def run_embedded(request: UploadRequest, services: Services) -> JobResult:
    """All four stages in this process, one after another."""
    with bound_job(request.job_id):
        return _run_all(request, services)


def _run_all(request: UploadRequest, services: Services) -> JobResult:
    try:
        outcome = run_upload(request, services)
        if isinstance(outcome, JobResult):
            return outcome
        outcome = run_analysis(outcome, services)
        outcome = run_retrieval(outcome, services)
        return run_generation(outcome, services)
    except JobError as exc:
        return failed_result(
            request.job_id, exc.code, exc.message, submitted_at=request.submitted_at
        )


def _advance(message: JobMessage, stage: str, started: float, **changes) -> JobMessage:
    timings = {**message.timings_ms, stage: _elapsed_ms(started)}
    return message.model_copy(update={**changes, "timings_ms": timings})


def _analysis_of(message: JobMessage):
    if message.analysis is None:
        raise JobError(
            ErrorCode.STAGE_FAILED, "The job reached a stage before its analysis."
        )
    return message.analysis


def _timings(message: JobMessage) -> Timings:
    total = round((time.time() - message.submitted_at) * 1000, 1)
    return Timings(**message.timings_ms, total=total)


def _reusable(analysis) -> bool:
    """Answers degraded by a passing model failure are not cached; offline ones are."""
    return analysis.degraded_reason in (None, analyzer.OFFLINE)


def _to_cache(result: JobResult) -> dict:
    return result.model_dump(mode="json", include=CACHED_FIELDS)


def _from_cache(cached: dict, message: JobMessage) -> JobResult:
    return JobResult(
        job_id=message.job_id,
        status="succeeded",
        cached=True,
        timings_ms=_timings(message),
        **{field: cached[field] for field in CACHED_FIELDS},
    )


def _elapsed_ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 1)


INFLIGHT_WAIT_S = 40.0
INFLIGHT_POLL_S = 0.1
CACHED_FIELDS = {"item", "state", "guidance", "steps", "degraded"}
