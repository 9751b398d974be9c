"""Two real schedulers (`recycle-workers run --role scheduler`) on one Redis lease.

The jobs fire every second (a test schedule set through the settings) and the
lease lasts two seconds, so the whole exchange takes a few seconds of real time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import redis
from kombu import Connection

from recycle_workers.app import create_app
from recycle_workers.roles import MAINTENANCE_QUEUE, PERIODIC_JOBS
from recycle_workers.scheduler import LEASE_KEY
from recycle_workers.settings import load_settings

from services import REDIS_STATE_DB, broker_vhost

pytestmark = pytest.mark.services

REDIS_TEST_DB = REDIS_STATE_DB
LEASE_S = 2


@pytest.fixture
def beat_env(tmp_path):
    with broker_vhost(redis_db=REDIS_TEST_DB) as vhost:
        yield _beat_settings(vhost, tmp_path)


def _beat_settings(vhost: str, tmp_path: Path) -> dict:
    env = {
        "RECYCLE_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
        "RECYCLE_REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_TEST_DB}",
        "RECYCLE_STORAGE_URL": f"file://{tmp_path}/storage",
        "RECYCLE_LOG_FORMAT": "json",
        "RECYCLE_HEARTBEAT_INTERVAL_S": "1",
        "RECYCLE_SCHEDULER_LEASE_S": str(LEASE_S),
        **{
            f"RECYCLE_{job.schedule_setting.upper()}": "every 1s"
            for job in PERIODIC_JOBS
        },
    }
    _declare_maintenance_queue(env)
    return env


def _declare_maintenance_queue(env: dict) -> None:
    """So the messages beat sends are kept for the test to read."""
    app = create_app(load_settings(broker_url=env["RECYCLE_BROKER_URL"]))
    with Connection(env["RECYCLE_BROKER_URL"]) as connection:
        app.amqp.queues[MAINTENANCE_QUEUE](connection.default_channel).declare()


def start_beat(env: dict, folder: Path) -> subprocess.Popen:
    folder.mkdir()
    beat_env = {
        **os.environ,
        **env,
        "RECYCLE_HEARTBEAT_FILE": str(folder / "heartbeat"),
        "RECYCLE_READY_FILE": str(folder / "ready"),
    }
    log = open(folder / "beat.log", "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "recycle_workers", "run", "--role", "scheduler"],
        env=beat_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    process.folder = folder
    return process


def wait_for(condition, *, timeout: float, what: str) -> float:
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if condition():
            return time.monotonic() - started
        time.sleep(0.05)
    raise AssertionError(f"{what} did not happen within {timeout} s")


def lease_holder_pid(client) -> int | None:
    holder = client.get(LEASE_KEY)
    return int(holder.decode().split(":")[1]) if holder else None


def sent_task_ids(process) -> list[str]:
    lines = (process.folder / "beat.log").read_text(errors="replace").splitlines()
    events = [json.loads(line) for line in lines if line.startswith("{")]
    return [
        event["task_id"] for event in events if event.get("event") == "periodic_sent"
    ]


def drain_task_ids(broker_url: str) -> list[str]:
    task_ids = []
    with Connection(broker_url) as connection:
        queue = connection.SimpleQueue(MAINTENANCE_QUEUE)
        while True:
            try:
                message = queue.get(block=True, timeout=0.5)
            except queue.Empty:
                return task_ids
            task_ids.append(message.headers["id"])
            message.ack()


class TestTwoSchedulers:
    def test_should_send_each_window_once_and_let_the_standby_take_over(
        self, beat_env, tmp_path
    ):
        client = redis.Redis(db=REDIS_TEST_DB)
        holder = start_beat(beat_env, tmp_path / "holder")
        standby = None
        try:
            wait_for(
                lambda: lease_holder_pid(client) == holder.pid,
                timeout=30,
                what="the first scheduler taking the lease",
            )
            standby = start_beat(beat_env, tmp_path / "standby")
            wait_for(
                lambda: (standby.folder / "ready").exists(),
                timeout=30,
                what="the second scheduler starting",
            )
            time.sleep(3)
            assert lease_holder_pid(client) == holder.pid
            assert sent_task_ids(standby) == []

            holder.send_signal(signal.SIGKILL)
            holder.wait(timeout=10)
            takeover_s = wait_for(
                lambda: lease_holder_pid(client) == standby.pid,
                timeout=60,
                what="the standby taking the lease",
            )
            wait_for(
                lambda: len(sent_task_ids(standby)) >= 6,
                timeout=30,
                what="the standby sending jobs",
            )
        finally:
            for process in (holder, standby):
                if process is not None and process.poll() is None:
                    process.send_signal(signal.SIGTERM)
                    process.wait(timeout=30)

        print(f"takeover after SIGKILL: {takeover_s:.2f} s")
        assert takeover_s < LEASE_S + 2
        by_holder, by_standby = sent_task_ids(holder), sent_task_ids(standby)
        queued = drain_task_ids(beat_env["RECYCLE_BROKER_URL"])
        assert len(by_holder) >= 6 and len(by_standby) >= 6
        assert not set(by_holder) & set(by_standby)
        assert len(queued) == len(set(queued)), "a job was sent twice for one window"
        assert set(queued) == set(by_holder) | set(by_standby)
        assert {task_id.split("@")[0] for task_id in queued} == {
            job.name for job in PERIODIC_JOBS
        }
