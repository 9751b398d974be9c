"""Prometheus metrics of the workers, declared once.

Every metric the workers export is defined here, so the chart's dashboard and
alerts can be checked against this list. Prefork workers run tasks in child
processes: ``run`` points ``PROMETHEUS_MULTIPROC_DIR`` at an empty folder
before it execs Celery, every process writes its samples there, and the main
process serves the sum on ``RECYCLE_METRICS_PORT``.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from prometheus_client import (
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    start_http_server,
)
from prometheus_client.core import GaugeMetricFamily

from recycle_workers.logs import log_event

logger = logging.getLogger(__name__)

STAGE_BUCKETS = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1,
    2.5,
    5,
    10,
    20,
    40,
    80,
    120,
)
WAIT_BUCKETS = (0.1, 0.5, 1, 2.5, 5, 10, 15, 30, 60)

STAGE_STARTED = Counter(
    "recycle_stage_started_total", "Stage tasks started.", ["stage"]
)
STAGE_SUCCEEDED = Counter(
    "recycle_stage_succeeded_total",
    "Stage tasks that handed the job on or finished it.",
    ["stage"],
)
STAGE_FAILED = Counter(
    "recycle_stage_failed_total",
    "Stage tasks that ended the job as failed.",
    ["stage", "error_code"],
)
STAGE_DURATION = Histogram(
    "recycle_stage_duration_seconds",
    "Time a stage spent on one job.",
    ["stage"],
    buckets=STAGE_BUCKETS,
)
JOBS_FINISHED = Counter(
    "recycle_jobs_finished_total",
    "Jobs that ended, by status and error code.",
    ["status", "error_code"],
)
CACHE_LOOKUPS = Counter(
    "recycle_cache_lookups_total",
    "Answer cache look-ups, by result (hit or miss).",
    ["result"],
)
DEGRADED_ANSWERS = Counter(
    "recycle_degraded_answers_total",
    "Answers made without the model, by reason.",
    ["reason"],
)
AI_CALLS = Counter(
    "recycle_ai_calls_total",
    "Model calls, by outcome (ok or the reason they failed).",
    ["model", "stage", "outcome"],
)
AI_RETRIES = Counter(
    "recycle_ai_retries_total", "Requests the SDK sent again after an error.", ["model"]
)
AI_RATE_LIMITED = Counter(
    "recycle_ai_rate_limited_total",
    "Model calls that ended in HTTP 429 after retries.",
    ["model"],
)
AI_TOKENS = Counter(
    "recycle_ai_tokens_total",
    "Tokens used, by model and kind (input or output).",
    ["model", "kind"],
)
RATE_LIMIT_WAIT = Histogram(
    "recycle_ratelimit_wait_seconds",
    "Time a call waited for the shared per-minute budget.",
    ["model"],
    buckets=WAIT_BUCKETS,
)
SCHEDULE_LAST_SUCCESS = "recycle_schedule_last_success_timestamp_seconds"

ALL_METRICS = (
    STAGE_STARTED,
    STAGE_SUCCEEDED,
    STAGE_FAILED,
    STAGE_DURATION,
    JOBS_FINISHED,
    CACHE_LOOKUPS,
    DEGRADED_ANSWERS,
    AI_CALLS,
    AI_RETRIES,
    AI_RATE_LIMITED,
    AI_TOKENS,
    RATE_LIMIT_WAIT,
)


def exported_names() -> set[str]:
    """Every sample name a scrape can show (histograms add _bucket, _sum, _count)."""
    names: set[str] = set()
    for metric in ALL_METRICS:
        for family in metric.describe():
            base = family.name
            if family.type == "counter":
                names.add(f"{base}_total")
            elif family.type == "histogram":
                names.update({f"{base}_bucket", f"{base}_sum", f"{base}_count"})
            else:
                names.add(base)
    return names | {SCHEDULE_LAST_SUCCESS}


class ScheduleCollector:
    """The last success of each periodic job, read from Redis at each scrape.

    The jobs run on worker pods and note their successes in Redis; beat's pod
    exports them, so the value outlives any pod and there is one series per job.
    """

    def __init__(self, client, schedules: tuple[str, ...]) -> None:
        self.client = client
        self.schedules = schedules

    def collect(self):
        import redis

        family = GaugeMetricFamily(
            SCHEDULE_LAST_SUCCESS,
            "Unix time of the last successful run of each periodic job.",
            labels=["schedule"],
        )
        try:
            values = self.client.mget(
                [last_success_key(name) for name in self.schedules]
            )
        except redis.RedisError:
            values = [None] * len(self.schedules)
        for name, value in zip(self.schedules, values):
            if value is not None:
                family.add_metric([name], float(value))
        yield family


def last_success_key(schedule: str) -> str:
    return f"recycle:schedule:last_success:{schedule}"


def prepare_multiprocess_dir(path: str) -> None:
    """Empty the folder where this pod's processes write their samples."""
    folder = Path(path)
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)


def serve(port: int, *, collectors: tuple = ()) -> None:
    """Serve the metrics of every process of this pod on ``port`` (0: do nothing)."""
    if port == 0:
        return
    registry = None
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)
    for collector in collectors:
        (registry or REGISTRY).register(collector)
    try:
        if registry is None:
            start_http_server(port)
        else:
            start_http_server(port, registry=registry)
    except OSError as exc:
        # Metrics are for operators; a taken port must not stop the worker.
        log_event(
            logger,
            "metrics_unavailable",
            level=logging.WARNING,
            port=port,
            error=str(exc),
        )
        return
    log_event(logger, "metrics_serving", port=port)


def mark_process_dead(pid: int) -> None:
    """Drop a dead child's live gauges from the multiprocess folder."""
    if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        from prometheus_client import multiprocess

        multiprocess.mark_process_dead(pid)
