"""Metrics, progress events and log lines of jobs run by real worker processes."""

from __future__ import annotations

import json
import os
import pty
import select
import socket
import subprocess
import sys
import time

import httpx
import pytest

from recycle_workers.client import BrokerClient

from images import photo
from services import (
    broker_vhost,
    running_roles,
    settings_from_env,
    stack_environment,
)

pytestmark = pytest.mark.services

QUESTION = "생수병 어떻게 버려요? 비밀문구-7731"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    pools = {
        "uploader": {"RECYCLE_POOL": "prefork", "RECYCLE_CONCURRENCY": "2"},
        "analyzer": {"RECYCLE_POOL": "gevent", "RECYCLE_CONCURRENCY": "5"},
        "retriever": {"RECYCLE_POOL": "threads", "RECYCLE_CONCURRENCY": "2"},
        "generator": {"RECYCLE_POOL": "gevent", "RECYCLE_CONCURRENCY": "5"},
    }
    with broker_vhost() as vhost:
        env, root = stack_environment(vhost, tmp_path_factory.mktemp("observed"))
        ports = {role: free_port() for role in pools}
        metered = {
            role: {**extra, "RECYCLE_METRICS_PORT": str(ports[role])}
            for role, extra in pools.items()
        }
        with running_roles(env, root, metered):
            yield env, root, ports


@pytest.fixture(scope="module")
def finished_job(stack):
    env, _, _ = stack
    client = BrokerClient(settings_from_env(env))
    job_id = client.submit(image=photo(), question=QUESTION)
    result = client.wait(job_id, timeout=60)
    assert result.status == "succeeded"
    yield client, job_id
    client.close()


def scrape(port: int) -> str:
    return httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text


def sample(text: str, name: str, **labels) -> float:
    """The value of one sample, or 0 when the scrape does not have it."""
    wanted = ",".join(f'{key}="{value}"' for key, value in sorted(labels.items()))
    for line in text.splitlines():
        if line.startswith("#") or " " not in line:
            continue
        series, value = line.rsplit(" ", 1)
        metric, _, label_text = series.partition("{")
        found = ",".join(
            sorted(part for part in label_text.rstrip("}").split(",") if part)
        )
        if metric == name and found == wanted:
            return float(value)
    return 0.0


class TestMetrics:
    def test_should_count_each_stage_on_its_own_role(self, stack, finished_job):
        _, _, ports = stack
        for role, stage in (
            ("uploader", "upload"),
            ("analyzer", "analysis"),
            ("retriever", "retrieval"),
            ("generator", "generation"),
        ):
            text = scrape(ports[role])
            assert sample(text, "recycle_stage_started_total", stage=stage) >= 1, role
            assert sample(text, "recycle_stage_succeeded_total", stage=stage) >= 1, role
            assert (
                sample(text, "recycle_stage_duration_seconds_count", stage=stage) >= 1
            ), role

    def test_should_count_finished_jobs_cache_look_ups_and_degraded_answers(
        self, stack, finished_job
    ):
        _, _, ports = stack
        generator = scrape(ports["generator"])
        uploader = scrape(ports["uploader"])

        assert (
            sample(
                generator,
                "recycle_jobs_finished_total",
                status="succeeded",
                error_code="",
            )
            >= 1
        )
        assert (
            sample(generator, "recycle_degraded_answers_total", reason="offline") >= 1
        )
        assert sample(uploader, "recycle_cache_lookups_total", result="miss") >= 1

    def test_should_count_failures_by_stage_and_code(self, stack, finished_job):
        client, _ = finished_job
        _, _, ports = stack
        before = sample(
            scrape(ports["uploader"]),
            "recycle_stage_failed_total",
            stage="upload",
            error_code="image_unreadable",
        )

        client.wait(client.submit(image=b"not a photo at all"), timeout=60)

        after = sample(
            scrape(ports["uploader"]),
            "recycle_stage_failed_total",
            stage="upload",
            error_code="image_unreadable",
        )
        assert after == before + 1


class TestProgress:
    def test_should_deliver_progress_events_in_stage_order(self, finished_job):
        client, job_id = finished_job

        events = [(event.stage, event.status) for event in client.events(job_id)]

        assert events == [
            ("upload", "started"),
            ("upload", "done"),
            ("analysis", "started"),
            ("analysis", "done"),
            ("retrieval", "started"),
            ("retrieval", "done"),
            ("generation", "started"),
            ("generation", "done"),
            ("job", "succeeded"),
        ]

    def test_should_show_live_progress_on_a_terminal_only(self, stack):
        env, _, _ = stack
        command = [
            sys.executable,
            "-m",
            "recycle_workers",
            "ask",
            "-q",
            "종이컵 버리는 법",
            "--lang",
            "en",
        ]
        environment = {**os.environ, **env}

        on_terminal = run_on_terminal(command, environment)
        piped = subprocess.run(
            command, env=environment, capture_output=True, text=True, timeout=60
        )

        assert "item analysed" in on_terminal and "answer written" in on_terminal
        assert on_terminal.index("photo uploaded") < on_terminal.index("answer written")
        assert piped.returncode == 0
        assert "item analysed" not in piped.stdout + piped.stderr


class TestLogs:
    def test_should_log_json_lines_with_the_job_id_and_never_the_question(
        self, stack, finished_job
    ):
        _, root, _ = stack
        _, job_id = finished_job
        lines = [
            line
            for role in ("uploader", "analyzer", "retriever", "generator")
            for line in (root / f"{role}.log").read_text("utf-8").splitlines()
        ]

        job_lines = [json.loads(line) for line in lines if job_id in line]

        assert len(job_lines) >= 8
        assert all(line["job_id"] == job_id for line in job_lines)
        assert {line["role"] for line in job_lines} == {
            "uploader",
            "analyzer",
            "retriever",
            "generator",
        }
        assert {"stage_done", "job_finished"} <= {
            line.get("event") for line in job_lines
        }
        assert not any("비밀문구" in line for line in lines)


def run_on_terminal(command: list[str], env: dict, timeout: float = 60) -> str:
    """Run ``command`` on a pseudo-terminal and return what it printed."""
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        command,
        env=env,
        stdin=follower,
        stdout=follower,
        stderr=follower,
        close_fds=True,
    )
    os.close(follower)
    output = b""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        ready, _, _ = select.select([leader], [], [], 0.5)
        if ready:
            try:
                chunk = os.read(leader, 4096)
            except OSError:
                break
            if not chunk:
                break
            output += chunk
        elif process.poll() is not None:
            break
    process.wait(timeout=10)
    os.close(leader)
    return output.decode("utf-8", "replace")


class TestScheduleMetrics:
    def test_should_export_the_last_success_noted_by_each_job(self):
        import redis
        from prometheus_client import CollectorRegistry, generate_latest

        from recycle_workers.metrics import ScheduleCollector, last_success_key

        from services import REDIS_TEST_DB

        client = redis.Redis(db=REDIS_TEST_DB)
        client.set(last_success_key("purge_images"), 1_796_000_000.5)
        client.delete(last_success_key("daily_stats"))
        registry = CollectorRegistry()
        registry.register(ScheduleCollector(client, ("purge_images", "daily_stats")))

        text = generate_latest(registry).decode()

        name = "recycle_schedule_last_success_timestamp_seconds"
        assert sample(text, name, schedule="purge_images") == 1_796_000_000.5
        assert f'{name}{{schedule="daily_stats"}}' not in text
