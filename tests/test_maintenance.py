"""The periodic jobs on a test clock: image purge, cache clean-up, in-flight marks."""

from __future__ import annotations

import os
from datetime import datetime, timedelta, timezone

import pytest

from recycle_workers import maintenance
from recycle_workers.maintenance import InFlightImages, clean_cache, purge_images
from recycle_workers.storage import FileStorage

NOW = datetime(2024, 6, 1, 18, 0, tzinfo=timezone.utc)
OLD_SHA = "aa" + "1" * 62
FRESH_SHA = "bb" + "2" * 62
BUSY_SHA = "cc" + "3" * 62


@pytest.fixture
def storage(tmp_path):
    return FileStorage(tmp_path / "storage")


def store_photo(storage: FileStorage, sha: str, *, age_days: float) -> list[str]:
    keys = [f"originals/{sha[:2]}/{sha}.png", f"model/{sha[:2]}/{sha}.jpg"]
    written = (NOW - timedelta(days=age_days)).timestamp()
    for key in keys:
        storage.put(key, b"photo", content_type="image/jpeg")
        os.utime(storage.root / key, (written, written))
    return keys


def stored_keys(storage: FileStorage) -> set[str]:
    return {key for key, _ in storage.list()}


def run_purge(storage, client, *, batch_size: int = 500, in_flight=None):
    return purge_images(
        storage,
        client,
        retention_days=30,
        batch_size=batch_size,
        now=NOW,
        in_flight=in_flight or InFlightImages(client, clock=NOW.timestamp),
    )


class TestPurgeImages:
    def test_should_delete_only_photos_older_than_the_retention(
        self, storage, redis_client
    ):
        old = store_photo(storage, OLD_SHA, age_days=31)
        fresh = store_photo(storage, FRESH_SHA, age_days=29)

        report = run_purge(storage, redis_client)

        assert stored_keys(storage) == set(fresh)
        assert report.deleted == len(old)

    def test_should_keep_the_photo_of_a_job_in_flight(self, storage, redis_client):
        busy = store_photo(storage, BUSY_SHA, age_days=40)
        in_flight = InFlightImages(redis_client, clock=NOW.timestamp)
        in_flight.mark("job-1", BUSY_SHA)

        report = run_purge(storage, redis_client, in_flight=in_flight)

        assert stored_keys(storage) == set(busy)
        assert report.kept_in_flight == 2

    def test_should_delete_the_photo_once_its_job_finished(self, storage, redis_client):
        store_photo(storage, BUSY_SHA, age_days=40)
        in_flight = InFlightImages(redis_client, clock=NOW.timestamp)
        in_flight.mark("job-1", BUSY_SHA)
        in_flight.clear("job-1")

        run_purge(storage, redis_client, in_flight=in_flight)

        assert stored_keys(storage) == set()

    def test_should_give_the_same_result_when_run_twice(self, storage, redis_client):
        store_photo(storage, OLD_SHA, age_days=31)
        fresh = store_photo(storage, FRESH_SHA, age_days=1)

        run_purge(storage, redis_client)
        again = run_purge(storage, redis_client)

        assert stored_keys(storage) == set(fresh)
        assert again.deleted == 0
        assert redis_client.get(maintenance.PURGE_CURSOR_KEY) is None

    def test_should_resume_after_the_cursor_an_interrupted_run_left(
        self, storage, redis_client
    ):
        shas = [f"{index:02x}" + "4" * 62 for index in range(6)]
        for sha in shas:
            store_photo(storage, sha, age_days=60)
        in_order = sorted(stored_keys(storage))

        class DiesAfterThreeDeletes(FileStorage):
            deletes = 0

            def delete(self, key: str) -> None:
                if self.deletes == 3:
                    raise ConnectionError("worker lost")
                self.deletes += 1
                super().delete(key)

        with pytest.raises(ConnectionError):
            run_purge(DiesAfterThreeDeletes(storage.root), redis_client, batch_size=2)
        # The first batch of two was done; the second died after one delete.
        cursor = redis_client.get(maintenance.PURGE_CURSOR_KEY).decode()
        assert cursor == in_order[1]

        resumed = run_purge(storage, redis_client, batch_size=2)

        assert resumed.resumed_after == cursor
        assert resumed.scanned == len(in_order) - 3
        assert stored_keys(storage) == set()

    def test_should_not_run_beside_a_purge_already_running(self, storage, redis_client):
        store_photo(storage, OLD_SHA, age_days=31)
        redis_client.set(maintenance.PURGE_LOCK_KEY, "1", ex=60)

        report = run_purge(storage, redis_client)

        assert report.skipped
        assert len(stored_keys(storage)) == 2

    def test_should_never_touch_the_statistics(self, storage, redis_client):
        storage.put(
            "stats/daily/2024-01-01.json", b"{}", content_type="application/json"
        )
        os.utime(storage.root / "stats/daily/2024-01-01.json", (0, 0))

        run_purge(storage, redis_client)

        assert stored_keys(storage) == {"stats/daily/2024-01-01.json"}


class TestInFlightImages:
    def test_should_forget_a_mark_past_its_lifetime(self, redis_client):
        now = [1000.0]
        in_flight = InFlightImages(redis_client, clock=lambda: now[0], ttl_s=60)
        in_flight.mark("job-1", BUSY_SHA)

        assert in_flight.holds(BUSY_SHA)
        now[0] += 61
        assert not in_flight.holds(BUSY_SHA)

    def test_should_hold_a_photo_until_every_job_using_it_finished(self, redis_client):
        in_flight = InFlightImages(redis_client)
        in_flight.mark("job-1", BUSY_SHA)
        in_flight.mark("job-2", BUSY_SHA)

        in_flight.clear("job-1")
        assert in_flight.holds(BUSY_SHA)
        in_flight.clear("job-2")
        assert not in_flight.holds(BUSY_SHA)


class TestCleanCache:
    def test_should_restore_the_expiry_of_keys_that_lost_it(self, redis_client):
        redis_client.set("recycle:answer:one", "{}")
        redis_client.set("recycle:checkpoint:job:upload", "{}")
        redis_client.set("recycle:checkpoint:job:analysis", "{}", ex=50)

        report = clean_cache(redis_client, max_entries=100, cache_ttl_s=3600)

        assert report.expiry_restored == 2
        assert 0 < redis_client.ttl("recycle:answer:one") <= 3600
        assert redis_client.ttl("recycle:checkpoint:job:upload") > 3600
        assert redis_client.ttl("recycle:checkpoint:job:analysis") <= 50

    def test_should_drop_locks_no_live_worker_could_hold(self, redis_client):
        redis_client.set("recycle:inflight:analysis:dead", "1")
        redis_client.set("recycle:inflight:analysis:stuck", "1", ex=10_000)
        redis_client.set("recycle:inflight:analysis:live", "1", ex=100)

        report = clean_cache(redis_client, max_entries=100, cache_ttl_s=3600)

        assert report.locks_removed == 2
        assert redis_client.keys("recycle:inflight:*") == [
            b"recycle:inflight:analysis:live"
        ]

    def test_should_trim_the_answer_cache_to_its_cap_oldest_first(self, redis_client):
        for index in range(5):
            redis_client.set(f"recycle:answer:{index}", "{}", ex=1000 + index)

        report = clean_cache(redis_client, max_entries=3, cache_ttl_s=3600)
        again = clean_cache(redis_client, max_entries=3, cache_ttl_s=3600)

        assert report.evicted == 2 and again.evicted == 0
        assert sorted(redis_client.keys("recycle:answer:*")) == [
            b"recycle:answer:2",
            b"recycle:answer:3",
            b"recycle:answer:4",
        ]

    def test_should_leave_keys_it_does_not_know(self, redis_client):
        redis_client.set("recycle:future-feature:x", "1")
        redis_client.set("someone-else", "1")

        clean_cache(redis_client, max_entries=100, cache_ttl_s=3600)

        assert redis_client.ttl("recycle:future-feature:x") == -1
        assert redis_client.exists("someone-else")
