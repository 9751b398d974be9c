"""Schedules from settings, firing windows, the Redis lease, beat on a test clock."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
import redis

from recycle_workers import scheduler
from recycle_workers.app import beat_schedule, create_app
from recycle_workers.roles import MAINTENANCE_QUEUE, PERIODIC_JOBS, queues_for
from recycle_workers.scheduler import BeatLease, claim_window, schedule_of, window_of
from recycle_workers.settings import Role, SettingsError, get_settings, load_settings

SEOUL = ZoneInfo("Asia/Seoul")


class FakeClock:
    """A clock that moves only when the test says so."""

    def __init__(self, start: datetime) -> None:
        self.now = start

    def __call__(self) -> datetime:
        return self.now

    def advance(self, **delta) -> None:
        self.now += timedelta(**delta)


# Beat pickles its schedule, so the schedule's clock is a module-level function.
BEAT_CLOCK = FakeClock(datetime(2024, 5, 2, 9, 30, tzinfo=timezone.utc))


def beat_now() -> datetime:
    return BEAT_CLOCK.now


class TestScheduleSettings:
    def test_should_default_to_the_three_daily_and_hourly_times(self):
        settings = load_settings()

        assert settings.schedule_purge_images == "0 3 * * *"
        assert settings.schedule_cache_cleanup == "0 * * * *"
        assert settings.schedule_daily_stats == "0 2 * * *"
        assert settings.timezone == "Asia/Seoul"

    @pytest.mark.parametrize(
        ("value", "message"),
        [
            ("0 3 * *", "five fields"),
            ("61 * * * *", "not a valid cron expression"),
            ("0 3 * * someday", "not a valid cron expression"),
            ("every 0s", "five fields"),
            ("hourly", "five fields"),
        ],
    )
    def test_should_refuse_a_schedule_it_cannot_read(self, value, message):
        with pytest.raises(SettingsError) as caught:
            load_settings(schedule_purge_images=value)

        assert caught.value.variable == "RECYCLE_SCHEDULE_PURGE_IMAGES"
        assert message in caught.value.message

    def test_should_refuse_an_unknown_time_zone(self):
        with pytest.raises(SettingsError, match="RECYCLE_TIMEZONE"):
            load_settings(timezone="Mars/Olympus")

    def test_should_put_every_periodic_job_in_beat_schedule(self):
        schedule = beat_schedule(load_settings(schedule_daily_stats="30 1 * * *"))

        assert {entry["task"] for entry in schedule.values()} == {
            job.task for job in PERIODIC_JOBS
        }
        assert schedule["daily_stats"]["schedule"].hour == {1}
        assert schedule["daily_stats"]["schedule"].minute == {30}

    def test_should_route_the_jobs_to_the_maintenance_queue_the_uploader_consumes(self):
        app = create_app(load_settings())

        for job in PERIODIC_JOBS:
            assert (
                app.amqp.router.route({}, job.task)["queue"].name == MAINTENANCE_QUEUE
            )
        assert MAINTENANCE_QUEUE in queues_for(Role.UPLOADER)
        assert queues_for(Role.SCHEDULER) == []

    def test_should_renew_the_lease_well_within_its_length(self):
        settings = load_settings(scheduler_lease_s=6, heartbeat_interval_s=10)

        assert scheduler.poll_interval_s(settings) == 2
        assert create_app(settings).conf.beat_max_loop_interval == 2


class TestWindow:
    @pytest.mark.parametrize(
        ("expression", "local_now", "window"),
        [
            ("0 3 * * *", datetime(2024, 5, 2, 3, 0, 30), "2024-05-02T03:00:00"),
            ("0 3 * * *", datetime(2024, 5, 2, 2, 59, 59), "2024-05-01T03:00:00"),
            ("0 * * * *", datetime(2024, 5, 2, 10, 42), "2024-05-02T10:00:00"),
            ("0 2 * * *", datetime(2024, 1, 1, 0, 5), "2023-12-31T02:00:00"),
            ("*/15 9-17 * * 1-5", datetime(2024, 5, 4, 12, 0), "2024-05-03T17:45:00"),
        ],
    )
    def test_should_name_the_latest_cron_time_in_the_scheduler_zone(
        self, expression, local_now, window
    ):
        app = create_app(load_settings())
        cron = schedule_of(expression)
        cron.app = app

        assert window_of(cron, local_now.replace(tzinfo=SEOUL)) == window

    def test_should_align_a_fixed_period_on_the_epoch(self):
        every = schedule_of("every 5s")
        at = datetime(2024, 5, 2, 0, 0, 7, tzinfo=timezone.utc)

        assert window_of(every, at) == window_of(every, at + timedelta(seconds=2))
        assert window_of(every, at) != window_of(every, at + timedelta(seconds=3))


class TestLease:
    def test_should_let_only_one_beat_hold_it(self, redis_client):
        first = BeatLease(redis_client, lease_s=30, token="a")
        second = BeatLease(redis_client, lease_s=30, token="b")

        assert first.hold()
        assert not second.hold()
        assert first.hold()
        assert first.holder() == "a"

    def test_should_pass_to_the_standby_once_the_holder_lets_it_lapse(
        self, redis_client
    ):
        first = BeatLease(redis_client, lease_s=30, token="a")
        second = BeatLease(redis_client, lease_s=30, token="b")
        first.hold()

        redis_client.delete(scheduler.LEASE_KEY)  # what its expiry does

        assert second.hold()
        assert not first.hold()

    def test_should_release_only_its_own_lease(self, redis_client):
        first = BeatLease(redis_client, lease_s=30, token="a")
        second = BeatLease(redis_client, lease_s=30, token="b")
        first.hold()

        second.release()
        assert first.holder() == "a"
        first.release()
        assert first.holder() is None

    def test_should_expire_on_its_own(self, redis_client):
        lease = BeatLease(redis_client, lease_s=30, token="a")
        lease.hold()

        assert 29_000 < redis_client.pttl(scheduler.LEASE_KEY) <= 30_000

    def test_should_answer_no_when_redis_is_unreachable(self):
        unreachable = redis.Redis(port=1, socket_connect_timeout=0.2)

        assert not BeatLease(unreachable, lease_s=30).hold()

    def test_should_claim_a_window_once(self, redis_client):
        assert claim_window(redis_client, "recycle.purge_images", "2024-05-02T03:00:00")
        assert not claim_window(
            redis_client, "recycle.purge_images", "2024-05-02T03:00:00"
        )
        assert claim_window(redis_client, "recycle.purge_images", "2024-05-03T03:00:00")


@pytest.fixture
def beat_env(monkeypatch, tmp_path):
    monkeypatch.setenv("RECYCLE_HEARTBEAT_FILE", str(tmp_path / "heartbeat"))
    monkeypatch.setenv("RECYCLE_READY_FILE", str(tmp_path / "ready"))
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def recording_beat(app, client, schedule_file, sent: list):
    class RecordingScheduler(scheduler.HeartbeatScheduler):
        redis_client = client

        def apply_async(self, entry, producer=None, advance=True, **kwargs):
            sent.append((self.lease.token, entry.options["task_id"]))

    return RecordingScheduler(app=app, schedule_filename=str(schedule_file))


class TestBeatOnATestClock:
    """Two beats in this process, ticked by hand while a fake clock moves by hours."""

    def test_should_send_each_hour_once_and_hand_over_when_the_holder_stops(
        self, redis_client, beat_env, tmp_path
    ):
        clock = BEAT_CLOCK
        clock.now = datetime(2024, 5, 2, 9, 30, tzinfo=timezone.utc)
        app = create_app(load_settings())
        app.conf.beat_schedule = {
            "cache_cleanup": {
                "task": "recycle.clean_cache",
                "schedule": schedule_of("0 * * * *", nowfun=beat_now),
            }
        }
        sent: list[tuple[str, str]] = []
        holder = recording_beat(app, redis_client, tmp_path / "a", sent)
        standby = recording_beat(app, redis_client, tmp_path / "b", sent)

        def tick_both(beats) -> None:
            for _ in range(3):
                for beat in beats:
                    beat.tick()

        tick_both([holder, standby])
        for _ in range(3):
            clock.advance(hours=1)
            tick_both([holder, standby])

        # The holder dies; its lease lapses while the clock passes one more hour.
        redis_client.delete(scheduler.LEASE_KEY)
        clock.advance(hours=1, minutes=10)
        tick_both([standby])
        clock.advance(hours=1)
        tick_both([standby])

        task_ids = [task_id for _, task_id in sent]
        assert len(task_ids) == len(set(task_ids)), sent
        # 09:30 UTC is 18:30 in Seoul; the standby catches up the hour missed while it
        # waited.
        assert task_ids == [
            f"cache_cleanup@2024-05-02T{hour}:00:00" for hour in (19, 20, 21, 22, 23)
        ]
        senders = [token for token, _ in sent]
        assert set(senders[:3]) == {holder.lease.token}
        assert set(senders[3:]) == {standby.lease.token}
