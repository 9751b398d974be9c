"""The task-scheduler role: Celery beat that sends the periodic jobs exactly once.

Two guards keep a job from being sent twice when Kubernetes briefly runs two
schedulers (or a paused one wakes up):

- a lease in Redis: only the beat holding it sends anything; the holder renews
  it on every tick, and a standby beat polls for it, so after the holder dies
  the standby takes over within the lease plus one poll;
- a claim per firing: before sending, beat claims the job's window (the
  scheduled time it fires for) in Redis; a window already claimed is skipped,
  so even two beats that both believe they hold the lease send it once.

The jobs themselves run on a worker (see :mod:`recycle_workers.maintenance`),
never inside beat.
"""

from __future__ import annotations

import copy
import logging
import os
import socket
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path

from celery.beat import PersistentScheduler, ScheduleEntry
from celery.schedules import BaseSchedule, crontab, schedule

from recycle_workers import probes
from recycle_workers.cache import tolerate_redis
from recycle_workers.logs import log_event
from recycle_workers.settings import EVERY_PATTERN, Settings, get_settings

logger = logging.getLogger(__name__)


def schedule_of(text: str, *, nowfun=None) -> BaseSchedule:
    """The Celery schedule for a validated setting: a cron expression or "every N s"."""
    every = EVERY_PATTERN.fullmatch(text)
    if every:
        return schedule(timedelta(seconds=float(every.group(1))), nowfun=nowfun)
    minute, hour, day_of_month, month_of_year, day_of_week = text.split(" ")
    return crontab(
        minute=minute,
        hour=hour,
        day_of_month=day_of_month,
        month_of_year=month_of_year,
        day_of_week=day_of_week,
        nowfun=nowfun,
    )


def window_of(job_schedule: BaseSchedule, now: datetime) -> str:
    """The scheduled time a firing at ``now`` belongs to, as an ISO string.

    For a cron schedule it is the latest matching minute at or before ``now``
    in the schedule's time zone; for a fixed period it is ``now`` rounded down
    to a multiple of the period since the epoch. Two schedulers that fire the
    same job for the same occasion compute the same window.
    """
    if isinstance(job_schedule, crontab):
        local = now.astimezone(job_schedule.tz)
        fired = previous_cron_time(job_schedule, local.replace(tzinfo=None))
        return (
            fired or local.replace(tzinfo=None, second=0, microsecond=0)
        ).isoformat()
    period = job_schedule.run_every.total_seconds()
    start = int(now.timestamp() // period * period)
    return datetime.fromtimestamp(start, tz=timezone.utc).isoformat()


def previous_cron_time(cron: crontab, wall: datetime) -> datetime | None:
    """The latest wall-clock minute at or before ``wall`` that ``cron`` matches.

    Returns ``None`` for an expression that matched nothing in the last
    :data:`CRON_LOOKBACK_DAYS` days (such as the 30th of February).
    """
    moment = wall.replace(second=0, microsecond=0)
    earliest = moment - timedelta(days=CRON_LOOKBACK_DAYS)
    while moment >= earliest:
        if not _matches_day(cron, moment):
            moment = moment.replace(hour=23, minute=59) - timedelta(days=1)
        elif moment.hour not in cron.hour:
            moment = moment.replace(minute=59) - timedelta(hours=1)
        elif moment.minute not in cron.minute:
            moment -= timedelta(minutes=1)
        else:
            return moment
    return None


def _matches_day(cron: crontab, moment: datetime) -> bool:
    return (
        moment.month in cron.month_of_year
        and moment.day in cron.day_of_month
        and moment.isoweekday() % 7 in cron.day_of_week
    )


class BeatLease:
    """The right to send periodic jobs, held by one beat at a time through Redis.

    ``hold`` takes the lease when it is free and renews it when this beat
    already has it; it answers ``False`` whenever Redis cannot confirm the
    lease, so a beat that cannot reach Redis stops sending.
    """

    def __init__(self, client, *, lease_s: float, token: str | None = None) -> None:
        self.client = client
        self.lease_ms = int(lease_s * 1000)
        self.token = token or new_token()
        self._hold = client.register_script(HOLD_SCRIPT)
        self._release = client.register_script(RELEASE_SCRIPT)

    def hold(self) -> bool:
        held = tolerate_redis(
            "lease_unavailable",
            "hold",
            lambda: self._hold(keys=[LEASE_KEY], args=[self.token, self.lease_ms]),
            False,
        )
        return bool(held)

    def release(self) -> None:
        tolerate_redis(
            "lease_unavailable",
            "release",
            lambda: self._release(keys=[LEASE_KEY], args=[self.token]),
            None,
        )

    def holder(self) -> str | None:
        value = self.client.get(LEASE_KEY)
        return value.decode() if value is not None else None


def claim_window(client, task: str, window: str) -> bool:
    """Claim the right to send ``task`` for ``window``; only the first claim wins."""
    key = f"{BEAT_KEY_PREFIX}sent:{task}:{window}"
    return bool(client.set(key, new_token(), nx=True, ex=WINDOW_CLAIM_TTL_S))


def new_token() -> str:
    """Names one beat process: its host, its pid and a random part."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def poll_interval_s(settings: Settings) -> float:
    """How often beat renews (or, on standby, asks for) the lease."""
    return min(float(settings.heartbeat_interval_s), settings.scheduler_lease_s / 3)


class HeartbeatScheduler(PersistentScheduler):
    """Beat's persistent scheduler, behind the Redis lease and the window claims.

    Every tick touches the heartbeat file, so a standby beat stays live for
    the probe while it waits.
    """

    lease: BeatLease
    redis_client = None

    def setup_schedule(self) -> None:
        Path(self.schedule_filename).parent.mkdir(parents=True, exist_ok=True)
        super().setup_schedule()
        settings = get_settings()
        if self.redis_client is None:
            self.redis_client = redis_client_from(settings)
        self.lease = BeatLease(self.redis_client, lease_s=settings.scheduler_lease_s)
        self.standby_sleep_s = poll_interval_s(settings)
        self.leading = False
        probes.touch(settings.ready_file)

    def tick(self, *args, **kwargs) -> float:
        probes.touch(get_settings().heartbeat_file)
        holding = self.lease.hold()
        if holding != self.leading:
            self.leading = holding
            event = "lease_acquired" if holding else "lease_lost"
            log_event(logger, event, token=self.lease.token)
        if not holding:
            return self.standby_sleep_s
        return super().tick(*args, **kwargs)

    def apply_entry(self, entry: ScheduleEntry, producer=None) -> None:
        now = entry.schedule.now()
        window = window_of(entry.schedule, now)
        try:
            claimed = claim_window(self.redis_client, entry.task, window)
        except Exception as exc:  # without Redis nobody can tell whether it was sent
            log_event(
                logger,
                "periodic_not_sent",
                level=logging.WARNING,
                task=entry.task,
                window=window,
                error=type(exc).__name__,
            )
            return
        if not claimed:
            log_event(logger, "periodic_skipped", task=entry.task, window=window)
            return

        task_id = f"{entry.name}@{window}"
        sending = copy.copy(entry)
        sending.options = {**entry.options, "task_id": task_id}
        log_event(
            logger, "periodic_sent", task=entry.task, window=window, task_id=task_id
        )
        super().apply_entry(sending, producer=producer)

    def close(self) -> None:
        # Hand the lease over on a clean stop so the next beat need not wait for it.
        lease = getattr(self, "lease", None)
        if lease is not None:
            lease.release()
        super().close()


def redis_client_from(settings: Settings):
    import redis

    return redis.Redis.from_url(
        settings.redis_url.get_secret_value(),
        socket_connect_timeout=REDIS_TIMEOUT_S,
        socket_timeout=REDIS_TIMEOUT_S,
    )


BEAT_KEY_PREFIX = "recycle:beat:"
LEASE_KEY = f"{BEAT_KEY_PREFIX}lease"
# Longer than any gap between two firings of a job, so a late duplicate still meets its
# claim.
WINDOW_CLAIM_TTL_S = 40 * 24 * 3600
CRON_LOOKBACK_DAYS = 400
REDIS_TIMEOUT_S = 2.0

HOLD_SCRIPT = """
local holder = redis.call('GET', KEYS[1])
if holder == false then
  redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
  return 1
end
if holder == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""

RELEASE_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""
