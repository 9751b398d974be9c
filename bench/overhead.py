"""What the four queues add to one job, with a model that answers at once.

The same jobs run twice: through the four real worker roles (submit, then wait for
the result, as a client does), and as the four stage functions called one after
another in this process with the same Redis, storage and model. Jobs run one at a
time, each with its own question, so neither the answer cache nor the shared
analysis short-cuts them. The difference of the medians is the queues' cost.
"""

from __future__ import annotations

import statistics
import time

from photos import FOUR_MP, phone_jpeg
from stack import Stack

from recycle_workers import pipeline
from recycle_workers.client import BrokerClient

GOAL_ADDED_P50_MS = 40.0
ROLES = {
    "uploader": ("threads", 2),
    "analyzer": ("gevent", 10),
    "retriever": ("threads", 2),
    "generator": ("gevent", 10),
}


def run(*, openai_base_url: str, jobs: int = 60) -> dict:
    image = phone_jpeg(FOUR_MP)
    with Stack(openai_base_url=openai_base_url) as stack:
        for role, (pool, concurrency) in ROLES.items():
            stack.start(role, pool=pool, concurrency=concurrency)
        client = BrokerClient(stack.settings())
        services = stack.services()
        try:
            _queued(client, image, "warm-up", 3)
            _direct(services, image, "direct warm-up", 3)
            queued = _queued(client, image, "queued", jobs)
            direct = _direct(services, image, "direct", jobs)
        finally:
            client.close()

    added = statistics.median(queued) - statistics.median(direct)
    return {
        "jobs": jobs,
        "photo": "4 MP phone JPEG",
        "roles": {
            role: {"pool": pool, "concurrency": c} for role, (pool, c) in ROLES.items()
        },
        "queued_ms": _summary(queued),
        "direct_ms": _summary(direct),
        "added_p50_ms": round(added, 1),
        "added_p95_ms": round(_p95(queued) - _p95(direct), 1),
        "goal_added_p50_ms": GOAL_ADDED_P50_MS,
        "goal_met": added < GOAL_ADDED_P50_MS,
    }


def _queued(client: BrokerClient, image: bytes, tag: str, jobs: int) -> list[float]:
    times = []
    for number in range(jobs):
        started = time.perf_counter()
        job_id = client.submit(image=image, question=f"생수병 버리는 법 {tag} {number}")
        result = client.wait(job_id, timeout=60)
        times.append((time.perf_counter() - started) * 1000)
        if result.status != "succeeded" or result.cached:
            raise RuntimeError(
                f"queued job {job_id} ended {result.status}: {result.error}"
            )
    return times


def _direct(
    services: pipeline.Services, image: bytes, tag: str, jobs: int
) -> list[float]:
    times = []
    for number in range(jobs):
        started = time.perf_counter()
        request = pipeline.new_request(
            image=image,
            question=f"생수병 버리는 법 {tag} {number}",
            lang="ko",
            settings=services.settings,
        )
        result = pipeline.run_embedded(request, services)
        times.append((time.perf_counter() - started) * 1000)
        if result.status != "succeeded" or result.cached:
            raise RuntimeError(f"direct job ended {result.status}: {result.error}")
    return times


def _p95(values: list[float]) -> float:
    return statistics.quantiles(values, n=20)[-1]


def _summary(values: list[float]) -> dict:
    return {
        "p50": round(statistics.median(values), 1),
        "p95": round(_p95(values), 1),
        "min": round(min(values), 1),
        "max": round(max(values), 1),
    }
