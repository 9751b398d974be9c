"""The task-scheduler role: Celery beat, with a heartbeat for the liveness probe.

Not yet: the periodic jobs (image purge, cache clean-up, daily statistics) and
the Redis lease that keeps a second beat idle are built on top of this.
"""

from __future__ import annotations

from pathlib import Path

from celery.beat import PersistentScheduler

from recycle_workers import probes
from recycle_workers.settings import get_settings


class HeartbeatScheduler(PersistentScheduler):
    """Beat's persistent scheduler, touching the heartbeat file on every tick."""

    def setup_schedule(self) -> None:
        Path(self.schedule_filename).parent.mkdir(parents=True, exist_ok=True)
        super().setup_schedule()
        probes.touch(get_settings().ready_file)

    def tick(self, *args, **kwargs) -> float:
        probes.touch(get_settings().heartbeat_file)
        return super().tick(*args, **kwargs)
