"""The local servers integration tests talk to, and worker processes started on them."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import pytest


def require_port(name: str, port: int) -> None:
    """Fail with one line saying how to get a server the test needs."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return
    except OSError:
        pytest.fail(
            f"{name} is not running on 127.0.0.1:{port}; run 'make services' "
            "(or start it: see scripts/ensure-services)",
            pytrace=False,
        )


# Worker stacks flush database 15; tests of Redis-backed state alone flush 14.
REDIS_TEST_DB = 15
REDIS_STATE_DB = 14


@contextmanager
def broker_vhost(*, redis_db: int = REDIS_TEST_DB) -> Iterator[str]:
    """A RabbitMQ virtual host of its own, and Redis database ``redis_db`` emptied."""
    import redis

    require_port("RabbitMQ", 5672)
    require_port("Redis", 6379)
    if shutil.which("rabbitmqctl") is None:
        pytest.fail("rabbitmqctl is needed to make a test virtual host", pytrace=False)
    vhost = f"recycle-test-{uuid.uuid4().hex[:8]}"
    rabbitmqctl("add_vhost", vhost)
    rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
    redis.Redis(db=redis_db).flushdb()
    try:
        yield vhost
    finally:
        rabbitmqctl("delete_vhost", vhost)


def stack_environment(vhost: str, root: Path, **extra: str) -> tuple[dict, Path]:
    """Worker settings for one test stack: its vhost, Redis database and storage."""
    env = {
        "RECYCLE_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
        "RECYCLE_REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_TEST_DB}",
        "RECYCLE_STORAGE_URL": f"file://{root}/storage",
        "RECYCLE_LOG_FORMAT": "json",
        "RECYCLE_HEARTBEAT_INTERVAL_S": "1",
        "RECYCLE_METRICS_PORT": "0",
        **extra,
    }
    return env, root


def settings_from_env(env: dict):
    """Settings for a client in the test process, from a worker environment."""
    from recycle_workers.settings import load_settings

    return load_settings(
        **{key.removeprefix("RECYCLE_").lower(): value for key, value in env.items()}
    )


def rabbitmqctl(*args: str) -> None:
    subprocess.run(
        ["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60
    )


def start_role(
    role: str, env: dict, root: Path, extra: dict | None = None, *, name: str = ""
):
    """Start `recycle-workers run --role ROLE` with ``env`` and its own probe files."""
    probe_dir = root / (name or role)
    role_env = {
        **os.environ,
        **env,
        **(extra or {}),
        "RECYCLE_HEARTBEAT_FILE": str(probe_dir / "heartbeat"),
        "RECYCLE_READY_FILE": str(probe_dir / "ready"),
    }
    log = open(root / f"{name or role}.log", "ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "recycle_workers", "run", "--role", role],
        env=role_env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    process.probe_env = role_env
    return process


def wait_until_ready(process, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        probe = subprocess.run(
            [sys.executable, "-m", "recycle_workers", "probe", "readiness"],
            env=process.probe_env,
            capture_output=True,
            timeout=30,
        )
        if probe.returncode == 0:
            return
        assert process.poll() is None, f"worker exited early with {process.returncode}"
        time.sleep(0.5)
    raise AssertionError("worker did not become ready")


def stop(process, timeout: float = 30) -> int:
    process.send_signal(signal.SIGTERM)
    return process.wait(timeout=timeout)


@contextmanager
def running_roles(
    env: dict, root: Path, pools: dict[str, dict]
) -> Iterator[dict[str, subprocess.Popen]]:
    """Start each role of ``pools`` with its own extra settings, until all are ready.

    The roles still running are stopped on exit; one that already exited is left alone.
    """
    processes = {
        role: start_role(role, env, root, extra) for role, extra in pools.items()
    }
    try:
        for process in processes.values():
            wait_until_ready(process)
        yield processes
    finally:
        for process in processes.values():
            if process.poll() is None:
                stop(process)


def new_bucket(endpoint: str, *, prefix: str) -> tuple:
    """A fresh bucket on the moto server at ``endpoint``: its S3 client and name."""
    import boto3

    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    s3 = boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )
    s3.create_bucket(Bucket=name)
    return s3, name
