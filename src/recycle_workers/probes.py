"""Liveness and readiness for Kubernetes without asking the broker.

A worker touches the heartbeat file from its main loop and writes the ready
file once it consumes; the probe command only reads the two files, so a worker
busy with long tasks stays alive, and a hung main loop stops the heartbeat.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from celery import bootsteps

from recycle_workers.settings import Settings, get_settings

logger = logging.getLogger(__name__)


def touch(path: str) -> None:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.touch()
    # touch() keeps the old mtime on some filesystems when the file exists.
    now = time.time()
    os.utime(target, (now, now))


def clear(settings: Settings) -> None:
    """Forget an earlier process's probe files before a new one starts."""
    for path in (settings.heartbeat_file, settings.ready_file):
        Path(path).unlink(missing_ok=True)


def check_liveness(
    settings: Settings, *, max_age_s: float | None = None
) -> tuple[bool, str]:
    """Alive when the heartbeat file is younger than ``max_age_s``."""
    limit = max_age_s if max_age_s is not None else 3 * settings.heartbeat_interval_s
    try:
        age = time.time() - Path(settings.heartbeat_file).stat().st_mtime
    except FileNotFoundError:
        return False, f"no heartbeat file at {settings.heartbeat_file}"
    if age > limit:
        return False, f"heartbeat is {age:.0f} s old (limit {limit:.0f} s)"
    return True, f"heartbeat {age:.0f} s old"


def check_readiness(settings: Settings) -> tuple[bool, str]:
    """Ready once the worker has written the ready file."""
    if Path(settings.ready_file).exists():
        return True, "ready"
    return False, f"no ready file at {settings.ready_file}"


class HeartbeatStep(bootsteps.StartStopStep):
    """Touches the heartbeat file on the worker's own timer."""

    requires = {"celery.worker.components:Timer"}

    def __init__(self, worker, **kwargs) -> None:
        super().__init__(worker, **kwargs)
        self.settings = get_settings()
        self.entry = None

    def start(self, worker) -> None:
        touch(self.settings.heartbeat_file)
        self.entry = worker.timer.call_repeatedly(
            self.settings.heartbeat_interval_s, touch, (self.settings.heartbeat_file,)
        )

    def stop(self, worker) -> None:
        if self.entry is not None:
            self.entry.cancel()
        Path(self.settings.ready_file).unlink(missing_ok=True)
