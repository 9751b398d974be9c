"""What each role consumes and how long its tasks may run.

The chart's grace periods and the probes' thresholds are set from this table:
a role's ``grace_period_s`` is longer than its longest hard time limit, so a
warm shutdown can always finish the task in hand. The periodic maintenance
jobs run on the uploader's pods from their own queue; they may outlast a grace
period, which is safe because each one resumes or repeats without harm.
"""

from __future__ import annotations

from dataclasses import dataclass

from recycle_workers.settings import Role


@dataclass(frozen=True, slots=True)
class StageSpec:
    """One pipeline stage: its Celery task, its queue and its time limits."""

    name: str
    task: str
    queue: str
    soft_time_limit_s: int
    time_limit_s: int


UPLOAD = StageSpec("upload", "recycle.upload", "q.image_upload", 25, 30)
ANALYSIS = StageSpec("analysis", "recycle.analyze", "q.gpt5_analysis", 100, 120)
RETRIEVAL = StageSpec("retrieval", "recycle.retrieve", "q.rule_retrieval", 8, 10)
GENERATION = StageSpec(
    "generation", "recycle.generate", "q.response_generation", 50, 60
)

STAGES: tuple[StageSpec, ...] = (UPLOAD, ANALYSIS, RETRIEVAL, GENERATION)

MAINTENANCE_QUEUE = "q.maintenance"


@dataclass(frozen=True, slots=True)
class PeriodicSpec:
    """One periodic job: its Celery task, the setting with its schedule, its limits."""

    name: str
    task: str
    schedule_setting: str
    soft_time_limit_s: int
    time_limit_s: int


PURGE_IMAGES = PeriodicSpec(
    "purge_images", "recycle.purge_images", "schedule_purge_images", 3300, 3600
)
CACHE_CLEANUP = PeriodicSpec(
    "cache_cleanup", "recycle.clean_cache", "schedule_cache_cleanup", 600, 660
)
DAILY_STATS = PeriodicSpec(
    "daily_stats", "recycle.daily_stats", "schedule_daily_stats", 600, 660
)

PERIODIC_JOBS: tuple[PeriodicSpec, ...] = (PURGE_IMAGES, CACHE_CLEANUP, DAILY_STATS)
MAINTENANCE_ROLE = Role.UPLOADER

STAGE_BY_ROLE: dict[Role, StageSpec] = {
    Role.UPLOADER: UPLOAD,
    Role.ANALYZER: ANALYSIS,
    Role.RETRIEVER: RETRIEVAL,
    Role.GENERATOR: GENERATION,
}


def queues_for(role: Role) -> list[str]:
    """The queues a worker of ``role`` consumes by default (none for the scheduler)."""
    stage = STAGE_BY_ROLE.get(role)
    queues = [stage.queue] if stage else []
    if role is MAINTENANCE_ROLE:
        queues.append(MAINTENANCE_QUEUE)
    return queues
