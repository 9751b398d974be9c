"""The periodic jobs: purge old images, clean Redis keys, write yesterday's statistics.

Beat only sends them (see :mod:`recycle_workers.scheduler`); a worker consuming
``q.maintenance`` (the uploader, by default) runs them. Each job is a plain
function taking its outside systems and the current time, so tests drive it
with their own clock, and each can run twice with the result of running once:

- :func:`purge_images` deletes stored photos older than the retention, in
  batches, saving a cursor after each so an interrupted run resumes where it
  stopped; a photo of a job still in flight (:class:`InFlightImages`) is kept;
- :func:`clean_cache` gives an expiry to ``recycle:`` keys that lost theirs,
  drops locks a dead worker left behind and trims the answer cache to its cap;
- :func:`write_yesterday_stats` stores the previous day's statistics.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta, timezone
from functools import lru_cache
from pathlib import PurePosixPath

from recycle_workers import stats
from recycle_workers.app import app
from recycle_workers.logs import log_event
from recycle_workers.metrics import last_success_key
from recycle_workers.roles import ANALYSIS, CACHE_CLEANUP, DAILY_STATS, PURGE_IMAGES
from recycle_workers.scheduler import WINDOW_CLAIM_TTL_S, redis_client_from
from recycle_workers.settings import Settings, get_settings
from recycle_workers.storage import Storage, storage_from_settings
from recycle_workers.tasks import CHECKPOINT_TTL_S

logger = logging.getLogger(__name__)


class InFlightImages:
    """Which stored photos belong to jobs that have not finished yet.

    The upload stage marks a job's photo once it is stored; :func:`finish`
    clears the mark. A mark also ends by itself after ``ttl_s``, so a job lost
    without finishing does not keep its photo forever.
    """

    def __init__(self, client, *, clock=time.time, ttl_s: int | None = None) -> None:
        self.client = client
        self.clock = clock
        self.ttl_s = ttl_s or IN_FLIGHT_TTL_S

    def mark(self, job_id: str, image_sha256: str) -> None:
        deadline = self.clock() + self.ttl_s
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zadd(_jobs_of_image_key(image_sha256), {job_id: deadline})
            pipe.expire(_jobs_of_image_key(image_sha256), self.ttl_s)
            pipe.set(_image_of_job_key(job_id), image_sha256, ex=self.ttl_s)
            pipe.execute()

    def clear(self, job_id: str) -> None:
        image_sha256 = self.client.get(_image_of_job_key(job_id))
        if image_sha256 is None:
            return
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zrem(_jobs_of_image_key(image_sha256.decode()), job_id)
            pipe.delete(_image_of_job_key(job_id))
            pipe.execute()

    def holds(self, image_sha256: str) -> bool:
        """Whether a job still in flight uses this photo."""
        key = _jobs_of_image_key(image_sha256)
        with self.client.pipeline(transaction=False) as pipe:
            pipe.zremrangebyscore(key, "-inf", self.clock())
            pipe.zcard(key)
            _, remaining = pipe.execute()
        return remaining > 0


@dataclass
class PurgeReport:
    scanned: int = 0
    deleted: int = 0
    kept_in_flight: int = 0
    resumed_after: str | None = None
    skipped: bool = False


def purge_images(
    storage: Storage,
    client,
    *,
    retention_days: int,
    batch_size: int,
    now: datetime,
    in_flight: InFlightImages,
) -> PurgeReport:
    """Delete every stored photo last written before ``now - retention_days``.

    Keys are visited in order, ``batch_size`` at a time; the last key of each
    batch is saved as the cursor, so a run that dies resumes after it. A
    photo is checked once more just before it is deleted: a photo written
    again since the listing, or used by a job in flight, is kept.
    """
    report = PurgeReport()
    if not client.set(PURGE_LOCK_KEY, "1", nx=True, ex=PURGE_IMAGES.time_limit_s):
        log_event(logger, "purge_skipped", reason="already_running")
        report.skipped = True
        return report

    try:
        cutoff = now - timedelta(days=retention_days)
        cursor = client.get(PURGE_CURSOR_KEY)
        after = cursor.decode() if cursor is not None else ""
        report.resumed_after = after or None

        batch: list[tuple[str, datetime]] = []
        for prefix in IMAGE_PREFIXES:
            for key, modified in storage.list(prefix):
                if key <= after:
                    continue
                batch.append((key, modified))
                if len(batch) >= batch_size:
                    _purge_batch(storage, client, batch, cutoff, in_flight, report)
                    batch = []
        _purge_batch(storage, client, batch, cutoff, in_flight, report)
        client.delete(PURGE_CURSOR_KEY)
    finally:
        client.delete(PURGE_LOCK_KEY)
    return report


def _purge_batch(
    storage: Storage,
    client,
    batch: list[tuple[str, datetime]],
    cutoff: datetime,
    in_flight: InFlightImages,
    report: PurgeReport,
) -> None:
    for key, modified in batch:
        report.scanned += 1
        if modified >= cutoff:
            continue
        if in_flight.holds(image_sha256_of(key)):
            report.kept_in_flight += 1
            continue
        if not _still_older_than(storage, key, cutoff):
            continue
        storage.delete(key)
        report.deleted += 1
    if batch:
        client.set(PURGE_CURSOR_KEY, batch[-1][0], ex=PURGE_CURSOR_TTL_S)


def _still_older_than(storage: Storage, key: str, cutoff: datetime) -> bool:
    for listed, modified in storage.list(key):
        if listed == key:
            return modified < cutoff
    return False


def image_sha256_of(key: str) -> str:
    """The photo hash in a storage key such as ``originals/ab/<sha256>.jpg``."""
    return PurePosixPath(key).stem


@dataclass
class CleanupReport:
    scanned: int = 0
    expiry_restored: int = 0
    locks_removed: int = 0
    evicted: int = 0


def clean_cache(client, *, max_entries: int, cache_ttl_s: int) -> CleanupReport:
    """Put each ``recycle:`` key back under its expiry, the answer cache under its cap.

    Redis drops expired keys by itself; what it cannot drop is a key that lost
    its expiry (written by hand, or by an older release) and a lock whose
    expiry is longer than any holder could live. Known families without an
    expiry get theirs back, such locks are deleted, and when the answer and
    analysis entries outnumber ``max_entries`` those closest to expiring (the
    oldest) go first. Keys of families this release does not know are left.
    """
    report = CleanupReport()
    entries: list[tuple[int, bytes]] = []
    family_ttls = {**FAMILY_TTL_S, "answer:": cache_ttl_s, "analysis:": cache_ttl_s}

    for keys in _scan_batches(client, f"{KEY_PREFIX}*"):
        with client.pipeline(transaction=False) as pipe:
            for key in keys:
                pipe.ttl(key)
            ttls = pipe.execute()

        with client.pipeline(transaction=False) as pipe:
            for key, ttl in zip(keys, ttls):
                report.scanned += 1
                family = _family_of(key.decode(errors="replace"))
                if family is None or ttl == MISSING:
                    continue
                if family in LOCK_MAX_HOLD_S:
                    if ttl == NO_EXPIRY or ttl > LOCK_MAX_HOLD_S[family]:
                        pipe.delete(key)
                        report.locks_removed += 1
                    continue
                if ttl == NO_EXPIRY:
                    pipe.expire(key, family_ttls[family])
                    report.expiry_restored += 1
                    ttl = family_ttls[family]
                if family in CACHE_FAMILIES:
                    entries.append((ttl, key))
            pipe.execute()

    excess = len(entries) - max_entries
    if excess > 0:
        entries.sort()
        for start in range(0, excess, SCAN_COUNT):
            client.delete(
                *(key for _, key in entries[start : min(excess, start + SCAN_COUNT)])
            )
        report.evicted = excess
    return report


def _scan_batches(client, pattern: str):
    cursor = 0
    while True:
        cursor, keys = client.scan(cursor=cursor, match=pattern, count=SCAN_COUNT)
        if keys:
            yield keys
        if cursor == 0:
            return


def _family_of(key: str) -> str | None:
    rest = key.removeprefix(KEY_PREFIX)
    for family in (*LOCK_MAX_HOLD_S, *FAMILY_TTL_S, *CACHE_FAMILIES):
        if rest.startswith(family):
            return family
    return None


def write_yesterday_stats(
    client, storage: Storage, *, tz: str, now: datetime
) -> stats.DailyStats | None:
    """Store the statistics of the day before ``now`` in ``tz``."""
    day = stats.previous_day(now, tz)
    return stats.write_daily_stats(client, storage, day, tz=tz, now=now)


@lru_cache(maxsize=1)
def maintenance_services() -> tuple[Settings, Storage, object]:
    """The settings, image store and Redis client of this worker process."""
    settings = get_settings()
    return settings, storage_from_settings(settings), redis_client_from(settings)


def _periodic_task(spec):
    return app.task(
        name=spec.task,
        ignore_result=True,
        soft_time_limit=spec.soft_time_limit_s,
        time_limit=spec.time_limit_s,
    )


@_periodic_task(PURGE_IMAGES)
def purge_images_task() -> None:
    settings, storage, client = maintenance_services()
    report = purge_images(
        storage,
        client,
        retention_days=settings.image_retention_days,
        batch_size=settings.purge_batch_size,
        now=datetime.now(timezone.utc),
        in_flight=InFlightImages(client),
    )
    _record_success(PURGE_IMAGES, client, asdict(report))


@_periodic_task(CACHE_CLEANUP)
def clean_cache_task() -> None:
    settings, _, client = maintenance_services()
    report = clean_cache(
        client, max_entries=settings.cache_max_entries, cache_ttl_s=settings.cache_ttl_s
    )
    _record_success(CACHE_CLEANUP, client, asdict(report))


@_periodic_task(DAILY_STATS)
def daily_stats_task() -> None:
    settings, storage, client = maintenance_services()
    written = write_yesterday_stats(
        client, storage, tz=settings.timezone, now=datetime.now(timezone.utc)
    )
    summary = (
        {"day": str(written.day), "jobs": written.jobs} if written else {"kept": True}
    )
    _record_success(DAILY_STATS, client, summary)


def _record_success(spec, client, fields: dict) -> None:
    """Log the job's report and note its success where beat's metrics read it."""
    import redis

    log_event(logger, "maintenance_done", task=spec.task, **fields)
    try:
        client.set(last_success_key(spec.name), time.time())
    except redis.RedisError as exc:
        log_event(
            logger,
            "last_success_not_noted",
            level=logging.WARNING,
            task=spec.task,
            error=type(exc).__name__,
        )


def _jobs_of_image_key(image_sha256: str) -> str:
    return f"{KEY_PREFIX}images_in_flight:{image_sha256}"


def _image_of_job_key(job_id: str) -> str:
    return f"{KEY_PREFIX}job_image:{job_id}"


KEY_PREFIX = "recycle:"
IMAGE_PREFIXES = ("model/", "originals/")
PURGE_LOCK_KEY = f"{KEY_PREFIX}maintenance:purge_images:lock"
PURGE_CURSOR_KEY = f"{KEY_PREFIX}maintenance:purge_images:cursor"
PURGE_CURSOR_TTL_S = 7 * 24 * 3600
# A queue backlog can hold a job for days during an outage; its photo stays that long.
IN_FLIGHT_TTL_S = 7 * 24 * 3600
SCAN_COUNT = 1000
NO_EXPIRY, MISSING = -1, -2

# A lock is held at most its holder's hard time limit; past that its holder is dead.
LOCK_MAX_HOLD_S = {
    "inflight:": ANALYSIS.time_limit_s,
    "maintenance:purge_images:lock": PURGE_IMAGES.time_limit_s,
}
CACHE_FAMILIES = ("answer:", "analysis:")
FAMILY_TTL_S = {
    "checkpoint:": CHECKPOINT_TTL_S,
    "images_in_flight:": IN_FLIGHT_TTL_S,
    "job_image:": IN_FLIGHT_TTL_S,
    "stats:": stats.RAW_RECORD_TTL_S,
    "beat:sent:": WINDOW_CLAIM_TTL_S,
    "maintenance:": PURGE_CURSOR_TTL_S,
    "ratelimit:": 3600,
}
