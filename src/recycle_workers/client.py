"""The Python client: submit a job, read its state, wait for its result.

:class:`BrokerClient` sends jobs to the workers through RabbitMQ and reads
results from Redis; :class:`EmbeddedClient` runs the four stages in the calling
process with local storage and an in-process cache. Both have the same three
methods, so the HTTP service and the CLI do not care which one they hold::

    client = client_from_settings(load_settings())
    job_id = client.submit(image=photo_bytes, question="이 컵 어떻게 버려요?")
    result = client.wait(job_id, timeout=60)
    print(result.status, result.guidance)

``submit`` raises :class:`~recycle_workers.errors.JobError` for input that no
stage could use (nothing to ask, an image over the size cap, an overlong
question); nothing is enqueued then.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol
from urllib.parse import unquote, urlsplit

from recycle_workers import pipeline, progress
from recycle_workers.cache import MemoryCache
from recycle_workers.catalog import default_catalog
from recycle_workers.errors import ErrorCode, JobError
from recycle_workers.llm import adapter_from_settings
from recycle_workers.models import JobResult
from recycle_workers.settings import Mode, Settings
from recycle_workers.storage import FileStorage

Phase = Literal["queued", "running", "succeeded", "failed"]


@dataclass(frozen=True, slots=True)
class JobState:
    """Where a job is: queued, running a stage, or finished."""

    job_id: str
    phase: Phase
    stage: str | None = None


class Client(Protocol):
    def submit(
        self,
        *,
        image: bytes | None = None,
        question: str | None = None,
        lang: str = "ko",
    ) -> str: ...

    def state(self, job_id: str) -> JobState: ...

    def wait(self, job_id: str, *, timeout: float) -> JobResult: ...


class BrokerClient:
    """Jobs through RabbitMQ to the worker roles; results from the Redis backend."""

    def __init__(self, settings: Settings) -> None:
        from recycle_workers.app import create_app
        from recycle_workers.cache import RedisCache

        self.settings = settings
        self.app = create_app(settings)
        self.cache = RedisCache.from_url(settings.redis_url.get_secret_value())

    def submit(
        self,
        *,
        image: bytes | None = None,
        question: str | None = None,
        lang: str = "ko",
    ) -> str:
        from kombu.exceptions import OperationalError

        from recycle_workers.roles import UPLOAD

        request = pipeline.new_request(
            image=image, question=question, lang=lang, settings=self.settings
        )
        try:
            self.app.send_task(
                UPLOAD.task,
                args=[request.model_dump(mode="json")],
                task_id=request.job_id,
                queue=UPLOAD.queue,
                routing_key=UPLOAD.queue,
                retry=True,
                # The stages store the outcome themselves; without this Celery would
                # subscribe to Redis here, and a Redis outage would stop submissions.
                ignore_result=True,
            )
        except OperationalError as exc:
            raise JobError(
                ErrorCode.BROKER_UNAVAILABLE, f"The job could not be queued: {exc}."
            ) from None
        return request.job_id

    def state(self, job_id: str) -> JobState:
        meta = self.app.backend.get_task_meta(job_id)
        status, payload = meta["status"], meta.get("result")
        if status == "PROGRESS" and isinstance(payload, dict):
            return JobState(job_id, "running", payload.get("stage"))
        if status in ("SUCCESS", "FAILURE"):
            return JobState(job_id, self._result_from(job_id, meta).status)
        return JobState(job_id, "queued")

    def events(self, job_id: str, *, start: int = 0) -> list[progress.ProgressEvent]:
        """The job's progress events from index ``start`` on, oldest first."""
        return progress.read(self.cache, job_id, start=start)

    def result(self, job_id: str) -> JobResult | None:
        """The finished job's result, or ``None`` while it is still under way."""
        meta = self.app.backend.get_task_meta(job_id)
        if meta["status"] not in ("SUCCESS", "FAILURE"):
            return None
        return self._result_from(job_id, meta)

    def wait(self, job_id: str, *, timeout: float) -> JobResult:
        from celery.exceptions import TimeoutError as ResultTimeout

        # get() listens on the backend's pub/sub channel instead of polling.
        pending = self.app.AsyncResult(job_id)
        try:
            pending.get(timeout=timeout, propagate=False, disable_sync_subtasks=False)
        except ResultTimeout:
            raise JobError(
                ErrorCode.WAIT_TIMEOUT,
                f"Job {job_id} did not finish within {timeout:g} s; "
                "it may still finish.",
            ) from None
        return self._result_from(job_id, self.app.backend.get_task_meta(job_id))

    def close(self) -> None:
        self.app.close()

    @staticmethod
    def _result_from(job_id: str, meta: dict) -> JobResult:
        if meta["status"] == "SUCCESS":
            return JobResult.model_validate(meta["result"])
        # A stage that died past its hard limit leaves Celery's own failure record.
        return pipeline.failed_result(
            job_id,
            ErrorCode.STAGE_FAILED,
            f"A stage of the job failed: {meta.get('result')}.",
        )


class EmbeddedClient:
    """All four stages in this process; no RabbitMQ, Redis or S3."""

    def __init__(self, settings: Settings, *, storage_dir: Path | None = None) -> None:
        if storage_dir is None:
            storage_dir = Path(tempfile.gettempdir()) / "recycle-workers-embedded"
        self.settings = settings
        self.services = pipeline.Services(
            settings=settings,
            storage=FileStorage(storage_dir),
            cache=MemoryCache(),
            catalog=default_catalog(),
            adapter=adapter_from_settings(settings),
        )
        self._results: dict[str, JobResult] = {}

    def submit(
        self,
        *,
        image: bytes | None = None,
        question: str | None = None,
        lang: str = "ko",
    ) -> str:
        request = pipeline.new_request(
            image=image, question=question, lang=lang, settings=self.settings
        )
        self._results[request.job_id] = pipeline.run_embedded(request, self.services)
        return request.job_id

    def state(self, job_id: str) -> JobState:
        result = self._results.get(job_id)
        return JobState(job_id, result.status) if result else JobState(job_id, "queued")

    def wait(self, job_id: str, *, timeout: float) -> JobResult:
        try:
            return self._results[job_id]
        except KeyError:
            raise JobError(
                ErrorCode.WAIT_TIMEOUT, f"No job {job_id} in this process."
            ) from None

    def close(self) -> None:
        self._results.clear()


def client_from_settings(settings: Settings) -> BrokerClient | EmbeddedClient:
    """The client ``RECYCLE_MODE`` asks for."""
    if settings.mode == Mode.EMBEDDED:
        parts = urlsplit(settings.storage_url)
        storage_dir = Path(unquote(parts.path)) if parts.scheme == "file" else None
        return EmbeddedClient(settings, storage_dir=storage_dir)
    return BrokerClient(settings)
