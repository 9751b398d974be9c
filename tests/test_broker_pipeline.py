"""The four roles as real `recycle-workers run` processes on RabbitMQ and Redis.

Each test module run gets its own RabbitMQ virtual host and Redis database, so a
developer's own workers on the same servers neither steal nor feed these jobs.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from recycle_workers.client import BrokerClient
from recycle_workers.models import JobMessage
from recycle_workers.roles import ANALYSIS

from images import photo
from services import (
    broker_vhost,
    running_roles,
    settings_from_env,
    stack_environment,
    start_role,
    stop,
    wait_until_ready,
)

pytestmark = pytest.mark.services

ROLES = {
    "uploader": {"RECYCLE_POOL": "prefork", "RECYCLE_CONCURRENCY": "2"},
    "analyzer": {"RECYCLE_POOL": "gevent", "RECYCLE_CONCURRENCY": "10"},
    "retriever": {"RECYCLE_POOL": "threads", "RECYCLE_CONCURRENCY": "2"},
    "generator": {"RECYCLE_POOL": "gevent", "RECYCLE_CONCURRENCY": "5"},
}


@pytest.fixture(scope="module")
def stack_env(tmp_path_factory):
    with broker_vhost() as vhost:
        yield stack_environment(vhost, tmp_path_factory.mktemp("stack"))


@pytest.fixture(scope="module")
def workers(stack_env):
    env, root = stack_env
    with running_roles(env, root, ROLES) as processes:
        yield processes


@pytest.fixture
def client(stack_env, workers):
    env, _ = stack_env
    broker_client = BrokerClient(settings_from_env(env))
    yield broker_client
    broker_client.close()


class TestBrokerPipeline:
    def test_should_run_a_job_through_all_four_queues(self, client):
        job_id = client.submit(
            image=photo(size=(800, 600)), question="생수병 어떻게 버려요?"
        )

        result = client.wait(job_id, timeout=60)

        assert result.status == "succeeded", result.error
        assert result.job_id == job_id
        assert result.item.id == "clear_pet_bottle"
        assert not result.cached
        timings = result.timings_ms.model_dump()
        assert all(timings[stage] is not None for stage in timings), timings
        assert client.state(job_id).phase == "succeeded"

    def test_should_answer_a_repeated_job_from_the_cache(self, client):
        image = photo(size=(900, 600))
        first = client.wait(
            client.submit(image=image, question="물병 버리는 법"), timeout=60
        )

        second = client.wait(
            client.submit(image=image, question="물병  버리는 법!"), timeout=60
        )

        assert (first.cached, second.cached) == (False, True)
        assert second.guidance == first.guidance
        assert second.timings_ms.analysis is None

    def test_should_end_a_bad_photo_as_failed_with_its_reason(self, client):
        job_id = client.submit(image=photo()[:1200], question=None)

        result = client.wait(job_id, timeout=60)

        assert result.status == "failed"
        assert result.error.code == "image_unreadable"

    def test_should_finish_every_job_of_a_burst(self, client):
        questions = [f"생수병 {number}개 어떻게 버려요?" for number in range(30)]

        job_ids = [
            client.submit(question=question, lang="en") for question in questions
        ]
        results = [client.wait(job_id, timeout=90) for job_id in job_ids]

        assert [result.status for result in results] == ["succeeded"] * len(questions)
        assert len({result.job_id for result in results}) == len(questions)

    def test_should_not_redo_a_finished_job_when_a_message_is_delivered_again(
        self, client
    ):
        job_id = client.submit(question="water bottle", lang="en")
        finished = client.wait(job_id, timeout=60)
        stale = JobMessage(
            job_id=job_id, question="종이컵", lang="ko", submitted_at=time.time()
        )

        client.app.send_task(
            ANALYSIS.task,
            args=[stale.model_dump(mode="json")],
            task_id=job_id,
            queue=ANALYSIS.queue,
            routing_key=ANALYSIS.queue,
        )
        # A later job through the same queues proves the stale message was consumed.
        client.wait(client.submit(question="water bottle"), timeout=60)

        assert client.wait(job_id, timeout=5) == finished

    def test_should_run_celery_itself_so_signals_reach_it(self, workers):
        for process in workers.values():
            command_line = (
                Path(f"/proc/{process.pid}/cmdline").read_bytes().split(b"\0")
            )
            assert b"celery" in command_line


class TestLifecycle:
    def test_should_shut_down_warmly_on_sigterm(self, stack_env):
        env, root = stack_env
        process = start_role("retriever", env, root, name="sigterm-retriever")
        wait_until_ready(process)

        assert stop(process) == 0

    def test_should_start_beat_for_the_scheduler_and_keep_its_heartbeat(
        self, stack_env
    ):
        env, root = stack_env
        process = start_role("scheduler", env, root)
        try:
            wait_until_ready(process)
            time.sleep(2.5)
            liveness = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "recycle_workers",
                    "probe",
                    "liveness",
                    "--max-age",
                    "2",
                ],
                env=process.probe_env,
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert liveness.returncode == 0, liveness.stdout
        finally:
            assert stop(process) == 0
