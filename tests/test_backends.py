"""Redis-backed parts against the real Redis: the shared rate limit, the in-flight
dedupe of analyses, and what happens when Redis is gone."""

from __future__ import annotations

import threading
import uuid

import pytest
import redis

from recycle_workers import pipeline
from recycle_workers.cache import RedisCache
from recycle_workers.openai_adapter import OpenAIAdapter
from recycle_workers.ratelimit import RateLimiter, RateLimitExceeded
from recycle_workers.settings import load_settings

from images import photo
from services import REDIS_TEST_DB, require_port

pytestmark = pytest.mark.services


@pytest.fixture
def redis_client():
    require_port("Redis", 6379)
    return redis.Redis(db=REDIS_TEST_DB)


class FakeClock:
    """Time that moves only when the code under test sleeps."""

    def __init__(self, now: float) -> None:
        self.now = now
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


class TestRateLimiter:
    def test_should_wait_for_the_next_minute_when_requests_are_spent(
        self, redis_client
    ):
        clock = FakeClock(now=6_000_030.0)
        limiter = RateLimiter(redis_client, clock=clock, sleep=clock.sleep)
        model = f"model-{uuid.uuid4().hex}"

        waits = [
            limiter.acquire(model, tokens=10, rpm=2, tpm=0, max_wait_s=120)
            for _ in range(3)
        ]

        assert waits[:2] == [0.0, 0.0]
        assert 30 <= waits[2] <= 31
        assert len(clock.slept) == 1

    def test_should_count_tokens_and_correct_them_after_the_call(self, redis_client):
        clock = FakeClock(now=6_000_000.0)
        limiter = RateLimiter(redis_client, clock=clock, sleep=clock.sleep)
        model = f"model-{uuid.uuid4().hex}"

        limiter.acquire(model, tokens=900, rpm=0, tpm=1000, max_wait_s=0)
        limiter.correct(model, estimated=900, used=100)
        limiter.acquire(model, tokens=800, rpm=0, tpm=1000, max_wait_s=0)

        with pytest.raises(RateLimitExceeded):
            limiter.acquire(model, tokens=800, rpm=0, tpm=1000, max_wait_s=0)

    def test_should_share_the_budget_between_limiters(self, redis_client):
        clock = FakeClock(now=6_000_000.0)
        pods = [
            RateLimiter(redis_client, clock=clock, sleep=clock.sleep) for _ in range(3)
        ]
        model = f"model-{uuid.uuid4().hex}"

        for pod in pods:
            pod.acquire(model, tokens=1, rpm=3, tpm=0, max_wait_s=0)

        with pytest.raises(RateLimitExceeded):
            pods[0].acquire(model, tokens=1, rpm=3, tpm=0, max_wait_s=0)

    def test_should_let_calls_through_when_redis_is_down(self):
        limiter = RateLimiter(redis.Redis(port=1, socket_connect_timeout=0.2))

        assert limiter.acquire("gpt-5", tokens=1, rpm=1, tpm=1, max_wait_s=0) == 0.0


def redis_services(settings, storage_dir, adapter, cache) -> pipeline.Services:
    from recycle_workers.catalog import default_catalog
    from recycle_workers.storage import FileStorage

    return pipeline.Services(
        settings=settings,
        storage=FileStorage(storage_dir),
        cache=cache,
        catalog=default_catalog(),
        adapter=adapter,
    )


@pytest.fixture
def ai_settings(fake_openai, tmp_path):
    return load_settings(
        openai_api_key="sk-test",
        openai_base_url=fake_openai.base_url,
        redis_url=f"redis://127.0.0.1:6379/{REDIS_TEST_DB}",
        storage_url=f"file://{tmp_path}/storage",
    )


class TestInFlightDedupe:
    def test_should_analyse_identical_jobs_arriving_together_once(
        self, fake_openai, ai_settings, tmp_path, redis_client
    ):
        fake_openai.analysis_latency_s = 0.5
        services = redis_services(
            ai_settings,
            tmp_path / "storage",
            OpenAIAdapter.from_settings(ai_settings),
            RedisCache(redis_client),
        )
        image, question = photo(size=(300, 200)), f"생수병 {uuid.uuid4().hex}"
        uploads = [
            pipeline.run_upload(
                pipeline.new_request(
                    image=image, question=question, lang="ko", settings=ai_settings
                ),
                services,
            )
            for _ in range(5)
        ]
        analyses = [None] * 5

        def analyse(index):
            analyses[index] = pipeline.run_analysis(uploads[index], services).analysis

        threads = [
            threading.Thread(target=analyse, args=(index,)) for index in range(5)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=30)

        assert len(fake_openai.calls("analysis")) == 1
        assert {analysis.item_id for analysis in analyses} == {"clear_pet_bottle"}
        assert sum(analysis.usage is not None for analysis in analyses) == 1


class TestRedisOutage:
    def test_should_answer_without_cache_when_redis_is_unreachable(
        self, fake_openai, tmp_path
    ):
        settings = load_settings(
            openai_api_key="sk-test",
            openai_base_url=fake_openai.base_url,
            redis_url="redis://127.0.0.1:1/0",
            storage_url=f"file://{tmp_path}/storage",
        )
        dead = RedisCache(
            redis.Redis(port=1, socket_connect_timeout=0.2, socket_timeout=0.2)
        )
        services = redis_services(
            settings, tmp_path / "storage", OpenAIAdapter.from_settings(settings), dead
        )

        def ask():
            request = pipeline.new_request(
                image=photo(), question="생수병", lang="ko", settings=settings
            )
            return pipeline.run_embedded(request, services)

        first, second = ask(), ask()

        assert (first.status, second.status) == ("succeeded", "succeeded")
        assert not first.degraded
        assert not second.cached
        assert len(fake_openai.calls("analysis")) == 2
