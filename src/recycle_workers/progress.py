"""A job's progress, as an ordered list of events in Redis.

Each stage appends "started" and "done" events; the job's end appends one
"job" event. A client reads the list from where it left off, so no event is
missed or reordered, however fast the stages run.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from recycle_workers.cache import KEY_PREFIX, Cache


@dataclass(frozen=True, slots=True)
class ProgressEvent:
    """One step of a job: ``stage`` (or "job" for the end) and what happened."""

    stage: str
    status: str
    at: float


def events_key(job_id: str) -> str:
    return f"{KEY_PREFIX}progress:{job_id}"


def publish(cache: Cache, job_id: str, stage: str, status: str) -> None:
    """Append an event to the job's list; best effort, it never fails a job."""
    cache.append(
        events_key(job_id),
        {"stage": stage, "status": status, "at": time.time()},
        ttl_s=EVENTS_TTL_S,
    )


def read(cache: Cache, job_id: str, *, start: int = 0) -> list[ProgressEvent]:
    """The job's events from index ``start`` on."""
    return [
        ProgressEvent(**event)
        for event in cache.read_list(events_key(job_id), start=start)
    ]


EVENTS_TTL_S = 3600
