"""A pipeline of real worker processes that the fault tests can hurt, and its checks.

:class:`Stack` starts ``recycle-workers run`` per role on a throwaway RabbitMQ
virtual host (tests/services.py), restarts and kills them, and reads their JSON
logs. :func:`account_for` waits until every job has an outcome, and
:func:`finished_once` says whether any job was finished twice.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import time
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from recycle_workers.client import BrokerClient
from recycle_workers.models import JobResult

from services import settings_from_env, start_role, stop, wait_until_ready

HOOK_PATH = Path(__file__).resolve().parent / "hook"

# The production pools (the chart's defaults), small enough for a 2-core machine.
ROLES = {
    "uploader": {"RECYCLE_POOL": "prefork", "RECYCLE_CONCURRENCY": "2"},
    "analyzer": {"RECYCLE_POOL": "gevent", "RECYCLE_CONCURRENCY": "10"},
    "retriever": {"RECYCLE_POOL": "prefork", "RECYCLE_CONCURRENCY": "2"},
    "generator": {"RECYCLE_POOL": "gevent", "RECYCLE_CONCURRENCY": "10"},
}
ROLE_STAGE = {
    "uploader": "upload",
    "analyzer": "analysis",
    "retriever": "retrieval",
    "generator": "generation",
}


@dataclass
class Stack:
    """The four stage roles as processes, each restartable, sharing one environment."""

    env: dict
    root: Path
    roles: dict[str, dict] = field(default_factory=lambda: dict(ROLES))
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)
    starts: Counter = field(default_factory=Counter)

    def __post_init__(self) -> None:
        self.hook_dir = self.root / "hook"
        self.hook_dir.mkdir(parents=True, exist_ok=True)
        self.env = {
            "RECYCLE_METRICS_PORT": "0",
            "PYTHONPATH": os.pathsep.join(
                filter(None, [str(HOOK_PATH), os.environ.get("PYTHONPATH")])
            ),
            "RELIABILITY_HOOK_DIR": str(self.hook_dir),
            **self.env,
        }

    def start(self, role: str, **extra: str) -> subprocess.Popen:
        self.starts[role] += 1
        process = start_role(
            role, self.env, self.root, {**self.roles[role], **extra}, name=role
        )
        self.processes[role] = process
        return process

    def start_all(self) -> None:
        for role in self.roles:
            self.start(role)
        for role in self.roles:
            wait_until_ready(self.processes[role])

    def restart(self, role: str, **extra: str) -> None:
        process = self.processes[role]
        if process.poll() is None:
            stop(process)
        wait_until_ready(self.start(role, **extra))

    def kill(self, role: str) -> None:
        process = self.processes[role]
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)

    def stop_all(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                try:
                    stop(process, timeout=30)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def client(self) -> BrokerClient:
        return BrokerClient(settings_from_env(self.env))

    def started(self, stage: str) -> list[tuple[str, int]]:
        """(job_id, pid) of every start of ``stage`` the hook saw, oldest first."""
        log = self.hook_dir / "started.log"
        if not log.exists():
            return []
        rows = [line.split() for line in log.read_text().splitlines() if line.strip()]
        return [(job_id, int(pid)) for name, job_id, pid in rows if name == stage]

    def wait_started(self, stage: str, *, timeout: float = 30) -> tuple[str, int]:
        """The first job ``stage`` started, and the pid running it."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            started = self.started(stage)
            if started:
                return started[0]
            time.sleep(0.05)
        raise AssertionError(f"no {stage} task started within {timeout:g} s")

    def events(self, event: str) -> list[dict]:
        """Every JSON log line of every role with ``event``."""
        lines = []
        for log in self.root.glob("*.log"):
            for line in log.read_text(errors="replace").splitlines():
                if f'"{event}"' not in line:
                    continue
                try:
                    record = json.loads(line)
                except json.JSONDecodeError:
                    continue
                if record.get("event") == event:
                    lines.append(record)
        return lines


def account_for(
    client: BrokerClient, job_ids: list[str], *, timeout: float
) -> dict[str, JobResult]:
    """Every job's result; fails naming the jobs that have none after ``timeout``.

    Polls the backend rather than listening on it, so it rides out a Redis outage.
    """
    results: dict[str, JobResult] = {}
    deadline = time.monotonic() + timeout
    while len(results) < len(job_ids) and time.monotonic() < deadline:
        for job_id in job_ids:
            if job_id in results:
                continue
            try:
                result = client.result(job_id)
            except Exception:  # the backend is down for a moment; ask again
                result = None
            if result is not None:
                results[job_id] = result
        time.sleep(0.2)
    missing = [job_id for job_id in job_ids if job_id not in results]
    assert not missing, (
        f"{len(missing)} of {len(job_ids)} jobs have no outcome: {missing[:5]}"
    )
    for result in results.values():
        if result.status == "failed":
            assert result.error.code and result.error.message, result
    return results


def finished_once(stack: Stack, job_ids: list[str]) -> dict[str, int]:
    """The jobs finished more than once (job id to count); empty when none was."""
    counts = Counter(record.get("job_id") for record in stack.events("job_finished"))
    return {job_id: counts[job_id] for job_id in job_ids if counts[job_id] != 1}


def free_port(start: int) -> int:
    for port in range(start, start + 50):
        with socket.socket() as probe:
            if probe.connect_ex(("127.0.0.1", port)) != 0:
                return port
    raise RuntimeError(f"no free port from {start}")


class OwnRedis:
    """A test's own redis-server, on its own port and folder, that may be stopped.

    It keeps an append-only file, so a restart keeps what was written, as a
    production Redis with persistence would.
    """

    def __init__(self, folder: Path, *, port: int | None = None) -> None:
        self.folder = folder
        self.port = port or free_port(6390)
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        server = shutil.which("redis-server")
        assert server, "redis-server is needed for the Redis outage test"
        self.process = subprocess.Popen(
            [
                server,
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--dir",
                str(self.folder),
                "--appendonly",
                "yes",
                "--appendfsync",
                "always",
                "--save",
                "",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as probe:
                if probe.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.05)
        raise AssertionError(f"own redis-server did not listen on {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)


@contextmanager
def own_redis(folder: Path) -> Iterator[OwnRedis]:
    server = OwnRedis(folder)
    server.start()
    try:
        yield server
    finally:
        server.stop()
