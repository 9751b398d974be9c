"""Statistics per day: what each job did, summed up once a day, kept as JSON.

While the workers run, :class:`RedisStatsRecorder` keeps one small record per
finished job and one per job's token usage, in Redis hashes keyed by the local
day (``RECYCLE_TIMEZONE``) and by job id, so recording the same job twice
changes nothing. Once a day :func:`write_daily_stats` turns a day's records
into a :class:`DailyStats` and stores it as ``stats/daily/YYYY-MM-DD.json`` in
the image store, where ``recycle-workers stats`` reads it.
"""

from __future__ import annotations

import json
import logging
import math
import time
from collections import Counter
from datetime import date, datetime, timedelta
from typing import Iterable, Protocol
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field

from recycle_workers.cache import tolerate_redis
from recycle_workers.logs import log_event
from recycle_workers.models import JobResult, TokenUsage
from recycle_workers.storage import Storage, StorageError

logger = logging.getLogger(__name__)


class StatsRecorder(Protocol):
    """Where the workers note each finished job and its token usage."""

    def record_job(self, result: JobResult) -> None: ...

    def record_usage(self, job_id: str, usage: dict[str, TokenUsage]) -> None: ...


class NullStatsRecorder:
    """Records nothing; embedded mode keeps no statistics."""

    def record_job(self, result: JobResult) -> None:
        return None

    def record_usage(self, job_id: str, usage: dict[str, TokenUsage]) -> None:
        return None


class RedisStatsRecorder:
    """One record per job in Redis, under the day it finished; errors only log."""

    def __init__(self, client, *, tz: str, clock=time.time) -> None:
        self.client = client
        self.tz = ZoneInfo(tz)
        self.clock = clock

    def record_job(self, result: JobResult) -> None:
        record = {
            "status": result.status,
            "item": result.item.id if result.item else None,
            "stream": result.item.stream if result.item else None,
            "degraded": result.degraded,
            "cached": result.cached,
            "error": result.error.code if result.error else None,
            "timings_ms": result.timings_ms.model_dump(exclude_none=True),
        }
        self._write(jobs_key(self._today()), result.job_id, record)

    def record_usage(self, job_id: str, usage: dict[str, TokenUsage]) -> None:
        if usage:
            record = {stage: value.model_dump() for stage, value in usage.items()}
            self._write(usage_key(self._today()), job_id, record)

    def _today(self) -> date:
        return datetime.fromtimestamp(self.clock(), tz=self.tz).date()

    def _write(self, key: str, job_id: str, record: dict) -> None:
        def write() -> None:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.hset(key, job_id, json.dumps(record, separators=(",", ":")))
                pipe.expire(key, RAW_RECORD_TTL_S)
                pipe.execute()

        tolerate_redis("stats_unavailable", "write", write, None, job_id=job_id)


class Percentiles(BaseModel):
    model_config = ConfigDict(frozen=True)

    count: int
    p50: float
    p95: float
    p99: float


class ModelTokens(BaseModel):
    model_config = ConfigDict(frozen=True)

    calls: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


class DailyStats(BaseModel):
    """One day of jobs, as stored in ``stats/daily/YYYY-MM-DD.json``."""

    model_config = ConfigDict(frozen=True)

    day: date
    timezone: str
    generated_at: datetime
    jobs: int = 0
    succeeded: int = 0
    failed: int = 0
    failures_by_code: dict[str, int] = Field(default_factory=dict)
    degraded: int = 0
    cached: int = 0
    cache_hit_rate: float = 0.0
    latency_ms: dict[str, Percentiles] = Field(default_factory=dict)
    top_items: list[tuple[str, int]] = Field(default_factory=list)
    streams: list[tuple[str, int]] = Field(default_factory=list)
    tokens_by_model: dict[str, ModelTokens] = Field(default_factory=dict)


def summarise(
    day: date,
    jobs: Iterable[dict],
    usage: Iterable[dict],
    *,
    tz: str,
    generated_at: datetime,
) -> DailyStats:
    """Sum one day's job and usage records up into a :class:`DailyStats`."""
    records = list(jobs)
    statuses = Counter(record["status"] for record in records)
    failures = Counter(record["error"] for record in records if record.get("error"))
    items = Counter(record["item"] for record in records if record.get("item"))
    streams = Counter(record["stream"] for record in records if record.get("stream"))
    cached = sum(1 for record in records if record.get("cached"))

    latencies: dict[str, list[float]] = {}
    for record in records:
        for stage, value in record.get("timings_ms", {}).items():
            latencies.setdefault(stage, []).append(float(value))

    tokens: dict[str, ModelTokens] = {}
    for job_usage in usage:
        for stage_usage in job_usage.values():
            seen = tokens.get(stage_usage["model"], ModelTokens())
            tokens[stage_usage["model"]] = ModelTokens(
                calls=seen.calls + 1,
                input_tokens=seen.input_tokens + stage_usage.get("input_tokens", 0),
                output_tokens=seen.output_tokens + stage_usage.get("output_tokens", 0),
            )

    return DailyStats(
        day=day,
        timezone=tz,
        generated_at=generated_at,
        jobs=len(records),
        succeeded=statuses.get("succeeded", 0),
        failed=statuses.get("failed", 0),
        failures_by_code=dict(sorted(failures.items(), key=_by_count)),
        degraded=sum(1 for record in records if record.get("degraded")),
        cached=cached,
        cache_hit_rate=round(cached / len(records), 4) if records else 0.0,
        latency_ms={
            stage: percentiles(values)
            for stage, values in sorted(latencies.items(), key=_stage_order)
        },
        top_items=sorted(items.items(), key=_by_count)[:TOP_ITEMS],
        streams=sorted(streams.items(), key=_by_count),
        tokens_by_model=dict(sorted(tokens.items())),
    )


def percentiles(values: list[float]) -> Percentiles:
    """p50, p95 and p99 by the nearest-rank method."""
    ordered = sorted(values)

    def rank(fraction: float) -> float:
        return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]

    return Percentiles(
        count=len(ordered), p50=rank(0.50), p95=rank(0.95), p99=rank(0.99)
    )


def write_daily_stats(
    client, storage: Storage, day: date, *, tz: str, now: datetime
) -> DailyStats | None:
    """Summarise ``day`` from Redis and store it; the same records give the same file.

    When the day's records have expired from Redis but its file exists, the file
    is kept as it is and ``None`` is returned.
    """
    jobs = _read_hash(client, jobs_key(day))
    usage = _read_hash(client, usage_key(day))
    if not jobs and not usage and load_daily_stats(storage, day) is not None:
        log_event(logger, "daily_stats_kept", day=str(day))
        return None

    stats = summarise(day, jobs, usage, tz=tz, generated_at=now)
    storage.put(
        stats_key(day),
        stats.model_dump_json(indent=2).encode("utf-8"),
        content_type="application/json",
    )
    return stats


def load_daily_stats(storage: Storage, day: date) -> DailyStats | None:
    """The stored statistics of ``day``, or ``None`` when there are none."""
    try:
        payload = storage.get(stats_key(day))
    except StorageError:
        return None
    return DailyStats.model_validate_json(payload)


def previous_day(now: datetime, tz: str) -> date:
    """Yesterday, in the scheduler's time zone."""
    return now.astimezone(ZoneInfo(tz)).date() - timedelta(days=1)


def render_table(stats: DailyStats) -> str:
    """The day's statistics as aligned text for a terminal."""
    lines = [
        f"statistics for {stats.day.isoformat()} ({stats.timezone})",
        "",
        f"  {'jobs':<22}{stats.jobs:>10}",
        f"  {'succeeded':<22}{stats.succeeded:>10}",
        f"  {'failed':<22}{stats.failed:>10}",
        *(
            f"    {code:<20}{count:>10}"
            for code, count in stats.failures_by_code.items()
        ),
        f"  {'degraded answers':<22}{stats.degraded:>10}",
        f"  {'cache hits':<22}{stats.cached:>10}  ({stats.cache_hit_rate:.1%})",
    ]
    if stats.latency_ms:
        lines += [
            "",
            f"  {'latency (ms)':<14}{'count':>8}{'p50':>10}{'p95':>10}{'p99':>10}",
        ]
        lines += [
            f"  {stage:<14}{value.count:>8}"
            f"{value.p50:>10.1f}{value.p95:>10.1f}{value.p99:>10.1f}"
            for stage, value in stats.latency_ms.items()
        ]
    if stats.top_items:
        lines += ["", f"  {'top items':<32}{'jobs':>8}"]
        lines += [f"  {item:<32}{count:>8}" for item, count in stats.top_items]
    if stats.streams:
        lines += ["", f"  {'streams':<32}{'jobs':>8}"]
        lines += [f"  {stream:<32}{count:>8}" for stream, count in stats.streams]
    if stats.tokens_by_model:
        lines += [
            "",
            f"  {'tokens by model':<24}{'calls':>8}{'input':>12}{'output':>12}",
        ]
        lines += [
            f"  {model:<24}{value.calls:>8}"
            f"{value.input_tokens:>12}{value.output_tokens:>12}"
            for model, value in stats.tokens_by_model.items()
        ]
    return "\n".join(lines)


def jobs_key(day: date) -> str:
    return f"{KEY_PREFIX}{day.isoformat()}:jobs"


def usage_key(day: date) -> str:
    return f"{KEY_PREFIX}{day.isoformat()}:usage"


def stats_key(day: date) -> str:
    return f"{STORAGE_PREFIX}{day.isoformat()}.json"


def _read_hash(client, key: str) -> list[dict]:
    return [json.loads(value) for _, value in client.hscan_iter(key, count=1000)]


def _by_count(entry: tuple[str, int]) -> tuple[int, str]:
    return -entry[1], entry[0]


def _stage_order(entry: tuple[str, list[float]]) -> int:
    return STAGE_ORDER.index(entry[0]) if entry[0] in STAGE_ORDER else len(STAGE_ORDER)


KEY_PREFIX = "recycle:stats:"
STORAGE_PREFIX = "stats/daily/"
# Raw records outlive their day long enough for a missed daily run to be repeated.
RAW_RECORD_TTL_S = 3 * 24 * 3600
TOP_ITEMS = 10
STAGE_ORDER = ("upload", "analysis", "retrieval", "generation", "total")
