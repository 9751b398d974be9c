"""Daily statistics: recording per job, summing a day up, storing it, showing it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import date, datetime, timezone

import pytest

from recycle_workers import pipeline, stats
from recycle_workers.maintenance import write_yesterday_stats
from recycle_workers.models import (
    ItemSummary,
    JobFailure,
    JobResult,
    Timings,
    TokenUsage,
)
from recycle_workers.storage import FileStorage

# 15:30 UTC on 1 May is 00:30 on 2 May in Seoul.
LATE_UTC = datetime(2024, 5, 1, 15, 30, tzinfo=timezone.utc).timestamp()


def result(
    job_id: str,
    *,
    item=("clear_pet_bottle", "clear_pet"),
    error=None,
    cached=False,
    degraded=False,
    total=100.0,
) -> JobResult:
    return JobResult(
        job_id=job_id,
        status="failed" if error else "succeeded",
        item=ItemSummary(id=item[0], name_ko="-", name_en="-", stream=item[1])
        if item
        else None,
        cached=cached,
        degraded=degraded,
        timings_ms=Timings(upload=10.0, total=total),
        error=JobFailure(code=error, message="-") if error else None,
    )


class TestSummarise:
    def test_should_count_outcomes_codes_and_cache_hits(self):
        jobs = [
            {
                "status": "succeeded",
                "item": "a",
                "stream": "glass",
                "cached": True,
                "degraded": False,
                "error": None,
                "timings_ms": {"total": 10},
            },
            {
                "status": "succeeded",
                "item": "a",
                "stream": "glass",
                "cached": False,
                "degraded": True,
                "error": None,
                "timings_ms": {"total": 20},
            },
            {
                "status": "failed",
                "item": None,
                "stream": None,
                "cached": False,
                "degraded": False,
                "error": "stage_timeout",
                "timings_ms": {},
            },
            {
                "status": "failed",
                "item": "b",
                "stream": "metal",
                "cached": False,
                "degraded": False,
                "error": "image_unreadable",
                "timings_ms": {},
            },
        ]
        usage = [
            {
                "analysis": {
                    "model": "gpt-5",
                    "input_tokens": 100,
                    "output_tokens": 50,
                },
                "generation": {
                    "model": "gpt-4o-mini",
                    "input_tokens": 10,
                    "output_tokens": 5,
                },
            },
            {"analysis": {"model": "gpt-5", "input_tokens": 1, "output_tokens": 2}},
        ]

        daily = stats.summarise(
            date(2024, 5, 1),
            jobs,
            usage,
            tz="Asia/Seoul",
            generated_at=datetime(2024, 5, 2, tzinfo=timezone.utc),
        )

        assert (daily.jobs, daily.succeeded, daily.failed) == (4, 2, 2)
        assert daily.failures_by_code == {"image_unreadable": 1, "stage_timeout": 1}
        assert (daily.degraded, daily.cached, daily.cache_hit_rate) == (1, 1, 0.25)
        assert daily.top_items == [("a", 2), ("b", 1)]
        assert daily.streams == [("glass", 2), ("metal", 1)]
        assert daily.tokens_by_model["gpt-5"] == stats.ModelTokens(
            calls=2, input_tokens=101, output_tokens=52
        )
        assert daily.tokens_by_model["gpt-4o-mini"].calls == 1

    def test_should_take_percentiles_by_nearest_rank(self):
        latency = stats.percentiles([float(value) for value in range(1, 101)])

        assert (latency.count, latency.p50, latency.p95, latency.p99) == (
            100,
            50,
            95,
            99,
        )
        assert stats.percentiles([7.0]).p99 == 7.0

    def test_should_summarise_an_empty_day(self):
        daily = stats.summarise(
            date(2024, 5, 1),
            [],
            [],
            tz="Asia/Seoul",
            generated_at=datetime(2024, 5, 2, tzinfo=timezone.utc),
        )

        assert daily.jobs == 0 and daily.cache_hit_rate == 0.0
        assert "jobs" in stats.render_table(daily)


class TestRecordingAndDailyFile:
    def test_should_file_a_job_under_the_local_day_it_finished(self, redis_client):
        recorder = stats.RedisStatsRecorder(
            redis_client, tz="Asia/Seoul", clock=lambda: LATE_UTC
        )

        recorder.record_job(result("job-1"))
        recorder.record_job(result("job-1"))  # a second finish changes nothing
        recorder.record_usage(
            "job-1", {"analysis": TokenUsage(model="gpt-5", input_tokens=3)}
        )

        assert redis_client.hlen(stats.jobs_key(date(2024, 5, 2))) == 1
        assert redis_client.hlen(stats.usage_key(date(2024, 5, 2))) == 1
        assert redis_client.ttl(stats.jobs_key(date(2024, 5, 2))) > 0

    def test_should_write_yesterday_once_and_keep_it_when_the_records_are_gone(
        self, redis_client, tmp_path
    ):
        storage = FileStorage(tmp_path)
        recorder = stats.RedisStatsRecorder(
            redis_client, tz="Asia/Seoul", clock=lambda: LATE_UTC
        )
        recorder.record_job(result("job-1", total=100.0))
        recorder.record_job(
            result("job-2", error="stage_timeout", item=None, total=300.0)
        )
        recorder.record_job(result("job-3", cached=True, total=5.0))
        next_day = datetime(
            2024, 5, 2, 17, 5, tzinfo=timezone.utc
        )  # 02:05 on 3 May, Seoul

        first = write_yesterday_stats(
            redis_client, storage, tz="Asia/Seoul", now=next_day
        )
        second = write_yesterday_stats(
            redis_client, storage, tz="Asia/Seoul", now=next_day
        )
        redis_client.flushdb()
        kept = write_yesterday_stats(
            redis_client, storage, tz="Asia/Seoul", now=next_day
        )

        assert first == second and kept is None
        stored = stats.load_daily_stats(storage, date(2024, 5, 2))
        assert stored == first
        assert (stored.jobs, stored.failed, stored.cached) == (3, 1, 1)
        assert stored.latency_ms["total"].p50 == 100.0
        assert stored.latency_ms["total"].p99 == 300.0
        assert list(stored.latency_ms) == ["upload", "total"]
        assert (tmp_path / "stats/daily/2024-05-02.json").exists()

    def test_should_record_usage_from_the_pipeline_through_services(
        self, services, settings
    ):
        seen = []

        class Recorder(stats.NullStatsRecorder):
            def record_usage(self, job_id, usage):
                seen.append(job_id)

        services.stats = Recorder()
        request = pipeline.new_request(
            image=None, question="유리병 버리는 법", lang="ko", settings=settings
        )

        pipeline.run_embedded(request, services)

        assert seen == [request.job_id]


class TestStatsCommand:
    @pytest.fixture
    def stored_day(self, tmp_path):
        storage = FileStorage(tmp_path / "storage")
        daily = stats.summarise(
            date(2024, 5, 2),
            [
                {
                    "status": "succeeded",
                    "item": "glass_bottle",
                    "stream": "glass",
                    "cached": False,
                    "degraded": False,
                    "error": None,
                    "timings_ms": {"analysis": 12.5, "total": 40},
                }
            ],
            [
                {
                    "analysis": {
                        "model": "gpt-5",
                        "input_tokens": 900,
                        "output_tokens": 120,
                    }
                }
            ],
            tz="Asia/Seoul",
            generated_at=datetime(2024, 5, 3, tzinfo=timezone.utc),
        )
        storage.put(
            stats.stats_key(daily.day),
            daily.model_dump_json().encode(),
            content_type="application/json",
        )
        return {**os.environ, "RECYCLE_STORAGE_URL": f"file://{tmp_path}/storage"}

    def run(self, env, *args):
        return subprocess.run(
            [sys.executable, "-m", "recycle_workers", "stats", *args],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )

    def test_should_show_a_day_as_a_table(self, stored_day):
        done = self.run(stored_day, "--day", "2024-05-02")

        assert done.returncode == 0, done.stderr
        assert "statistics for 2024-05-02 (Asia/Seoul)" in done.stdout
        assert "glass_bottle" in done.stdout
        assert "gpt-5" in done.stdout and "900" in done.stdout

    def test_should_print_one_json_object(self, stored_day):
        done = self.run(stored_day, "--day", "2024-05-02", "--json")

        printed = json.loads(done.stdout)
        assert printed["jobs"] == 1
        assert printed["latency_ms"]["analysis"]["p50"] == 12.5

    def test_should_fail_in_one_line_for_a_day_without_statistics(self, stored_day):
        done = self.run(stored_day, "--day", "2024-05-01")

        assert done.returncode == 1
        assert done.stderr.startswith(
            "recycle-workers: no_statistics: No statistics stored"
        )
        assert len(done.stderr.strip().splitlines()) == 1
