"""The four roles as real processes on RabbitMQ, Redis, moto's S3 and the fake OpenAI
server, with the AI roles on the gevent pool as in production."""

from __future__ import annotations

import uuid

import pytest

from recycle_workers.client import BrokerClient
from recycle_workers.testing.fake_openai import FakeOpenAI, Fault

from images import photo
from services import (
    broker_vhost,
    new_bucket,
    running_roles,
    settings_from_env,
    stack_environment,
)

pytestmark = pytest.mark.services

ROLES = {
    "uploader": {"RECYCLE_POOL": "prefork", "RECYCLE_CONCURRENCY": "2"},
    "analyzer": {"RECYCLE_POOL": "gevent", "RECYCLE_CONCURRENCY": "20"},
    "retriever": {"RECYCLE_POOL": "prefork", "RECYCLE_CONCURRENCY": "2"},
    "generator": {"RECYCLE_POOL": "gevent", "RECYCLE_CONCURRENCY": "10"},
}


@pytest.fixture(scope="module")
def fake():
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def bucket(moto_endpoint):
    return new_bucket(moto_endpoint, prefix="photos")


@pytest.fixture(scope="module")
def stack(tmp_path_factory, moto_endpoint, bucket, fake):
    _, bucket_name = bucket
    with broker_vhost() as vhost:
        env, root = stack_environment(
            vhost,
            tmp_path_factory.mktemp("backends"),
            RECYCLE_STORAGE_URL=f"s3://{bucket_name}/recycle",
            RECYCLE_S3_ENDPOINT_URL=moto_endpoint,
            RECYCLE_S3_REGION="us-east-1",
            RECYCLE_S3_PATH_STYLE="true",
            RECYCLE_S3_ACCESS_KEY_ID="test",
            RECYCLE_S3_SECRET_ACCESS_KEY="test",
            RECYCLE_OPENAI_API_KEY="sk-test",
            RECYCLE_OPENAI_BASE_URL=fake.base_url,
        )
        with running_roles(env, root, ROLES):
            yield env


@pytest.fixture
def client(stack, fake):
    fake.reset()
    broker_client = BrokerClient(settings_from_env(stack))
    yield broker_client
    broker_client.close()


class TestBrokerWithBackends:
    def test_should_store_in_s3_and_answer_with_both_models(self, client, fake, bucket):
        s3, bucket_name = bucket
        job_id = client.submit(
            image=photo(size=(1200, 900)), question="생수병 버리는 법"
        )

        result = client.wait(job_id, timeout=60)

        assert result.status == "succeeded", result.error
        assert not result.degraded
        assert result.item.id == "clear_pet_bottle"
        assert result.guidance.startswith("투명 페트병")
        (analysis,) = fake.calls("analysis")
        assert analysis.has_image and analysis.model == "gpt-5"
        assert [call.model for call in fake.calls("generation")] == ["gpt-4o-mini"]
        keys = [
            entry["Key"] for entry in s3.list_objects_v2(Bucket=bucket_name)["Contents"]
        ]
        assert any(key.startswith("recycle/originals/") for key in keys)
        assert any(key.startswith("recycle/model/") for key in keys)

    def test_should_analyse_identical_jobs_sent_together_once(self, client, fake):
        fake.analysis_latency_s = 1.0
        image, question = photo(size=(640, 640)), f"물병 {uuid.uuid4().hex[:6]}"
        try:
            job_ids = [
                client.submit(image=image, question=question, lang=lang)
                for lang in ("ko", "en", "ko", "en", "ko")
            ]
            results = [client.wait(job_id, timeout=60) for job_id in job_ids]
        finally:
            fake.analysis_latency_s = 0.0

        assert all(result.status == "succeeded" for result in results)
        assert len(fake.calls("analysis")) == 1

    def test_should_answer_degraded_through_a_429_storm(self, client, fake):
        fake.add_faults(*[Fault(status=429, retry_after=0.2, kind="analysis")] * 3)

        result = client.wait(
            client.submit(question="종이컵 어떻게 버려요?"), timeout=60
        )

        assert result.status == "succeeded"
        assert result.degraded
        assert result.item is not None
        assert len(fake.calls("analysis")) == 3
