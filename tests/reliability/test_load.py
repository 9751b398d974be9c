"""Load: 500 jobs submitted at once through the broker, with a slow model."""

from __future__ import annotations

import statistics
import time
import uuid

import pytest
from stack import Stack, account_for, finished_once

from recycle_workers.testing.fake_openai import FakeOpenAI

from images import photo
from services import broker_vhost, stack_environment

pytestmark = [pytest.mark.services, pytest.mark.slow, pytest.mark.timeout(900)]

JOBS = 500
# Every tenth job carries a photo; the rest ask in words, as most chat traffic does.
PHOTO_EVERY = 10
ANALYSIS_LATENCY_S = 0.3
GENERATION_LATENCY_S = 0.2


def test_should_finish_500_jobs_submitted_at_once(workdir, record):
    with (
        FakeOpenAI(
            analysis_latency_s=ANALYSIS_LATENCY_S,
            generation_latency_s=GENERATION_LATENCY_S,
        ) as fake,
        broker_vhost() as vhost,
    ):
        env, root = stack_environment(
            vhost,
            workdir,
            RECYCLE_OPENAI_API_KEY="sk-test",
            RECYCLE_OPENAI_BASE_URL=fake.base_url,
            # The shared per-minute budgets would turn this into a rate-limit test.
            RECYCLE_ANALYSIS_RPM="0",
            RECYCLE_GENERATION_RPM="0",
            RECYCLE_ANALYSIS_TPM="0",
            RECYCLE_GENERATION_TPM="0",
        )
        stack = Stack(env, root)
        try:
            stack.start_all()
            client = stack.client()
            tag = uuid.uuid4().hex[:6]
            started = time.monotonic()
            job_ids = [
                client.submit(
                    image=photo(size=(640, 480 + number))
                    if number % PHOTO_EVERY == 0
                    else None,
                    question=f"생수병 {tag} {number}번 어떻게 버려요?",
                )
                for number in range(JOBS)
            ]
            submitted = time.monotonic() - started
            results = account_for(client, job_ids, timeout=600)
            elapsed = time.monotonic() - started
            client.close()
        finally:
            stack.stop_all()

    assert [result.status for result in results.values()] == ["succeeded"] * JOBS
    assert finished_once(stack, job_ids) == {}
    totals = sorted(result.timings_ms.total for result in results.values())
    p50 = statistics.median(totals) / 1000
    p95 = totals[int(0.95 * len(totals)) - 1] / 1000
    degraded = sum(result.degraded for result in results.values())
    record.update(
        scenario=f"load: {JOBS} jobs at once, model latency {ANALYSIS_LATENCY_S} s + "
        f"{GENERATION_LATENCY_S} s",
        expected="every job succeeds",
        observed=f"{JOBS}/{JOBS} succeeded ({degraded} degraded) in {elapsed:.1f} s: "
        f"{JOBS / elapsed:.1f} jobs/s; latency p50 {p50:.1f} s, p95 {p95:.1f} s",
        jobs=JOBS,
        seconds_total=round(elapsed, 1),
        submit_seconds=round(submitted, 1),
        throughput_per_s=round(JOBS / elapsed, 2),
        p50_s=round(p50, 2),
        p95_s=round(p95, 2),
    )
