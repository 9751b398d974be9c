"""The command-line contract: output and exit codes, through the real entry point."""

import json
import os
import subprocess
import sys
import time

import pytest

from recycle_workers.cli import celery_argv
from recycle_workers.settings import Role, load_settings

from images import photo

RESULT_KEYS = {
    "job_id",
    "status",
    "item",
    "state",
    "guidance",
    "steps",
    "degraded",
    "cached",
    "timings_ms",
    "error",
}


def cli(*args, env=None, timeout=60):
    environment = {**os.environ, **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "recycle_workers", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=environment,
    )


@pytest.fixture
def embedded_env(tmp_path):
    return {
        "RECYCLE_MODE": "embedded",
        "RECYCLE_STORAGE_URL": f"file://{tmp_path}/store",
    }


class TestAsk:
    def test_should_print_exactly_one_json_object_with_the_contract_keys(
        self, embedded_env, tmp_path
    ):
        image = tmp_path / "bottle.jpg"
        image.write_bytes(photo())

        done = cli(
            "ask",
            str(image),
            "--question",
            "생수병 어떻게 버려요?",
            "--json",
            env=embedded_env,
        )

        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
        assert set(result) == RESULT_KEYS
        assert result["status"] == "succeeded"
        assert set(result["item"]) == {"id", "name_ko", "name_en", "stream"}
        assert result["item"]["stream"] == "clear_pet"
        assert set(result["state"]) == {"lid", "washed", "contamination", "label"}
        assert set(result["timings_ms"]) == {
            "upload",
            "analysis",
            "retrieval",
            "generation",
            "total",
        }
        assert result["error"] is None
        assert isinstance(result["steps"], list) and result["steps"]

    def test_should_answer_in_english_when_asked(self, embedded_env):
        done = cli(
            "ask",
            "--embedded",
            "-q",
            "how do I throw away a water bottle",
            "--lang",
            "en",
            env=embedded_env,
        )

        assert done.returncode == 0, done.stderr
        assert "clear PET bottles" in done.stdout

    def test_should_exit_1_with_the_reason_when_the_job_fails(
        self, embedded_env, tmp_path
    ):
        broken = tmp_path / "broken.jpg"
        broken.write_bytes(photo()[:1500])

        done = cli("ask", str(broken), "--json", env=embedded_env)
        plain = cli("ask", str(broken), env=embedded_env)

        assert done.returncode == 1
        result = json.loads(done.stdout)
        assert (result["status"], result["error"]["code"]) == (
            "failed",
            "image_unreadable",
        )
        assert plain.returncode == 1
        assert plain.stderr.startswith("recycle-workers: image_unreadable: ")
        assert "Traceback" not in plain.stderr

    def test_should_refuse_an_oversized_image_before_enqueue(self, tmp_path):
        image = tmp_path / "big.jpg"
        image.write_bytes(photo())
        # A broker that does not exist: the job must be refused before any connection.
        env = {
            "RECYCLE_MAX_IMAGE_BYTES": "1000",
            "RECYCLE_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//",
        }

        done = cli("ask", str(image), "--json", env=env, timeout=20)

        assert done.returncode == 1
        assert json.loads(done.stdout)["error"]["code"] == "image_too_large"

    @pytest.mark.parametrize(
        ("args", "message"),
        [
            (["ask"], "give a photo, --question TEXT, or both"),
            (["ask", "/no/such/photo.jpg"], "no such file: /no/such/photo.jpg"),
            (["ask", "-q", "x", "--timeout", "-1"], "must be greater than 0"),
            (["ask", "-q", "x", "--lang", "fr"], "invalid choice: 'fr'"),
            (["run", "--role", "janitor"], "invalid choice: 'janitor'"),
            (["probe", "startup"], "invalid choice: 'startup'"),
            ([], "the following arguments are required: command"),
        ],
    )
    def test_should_exit_2_with_one_line_on_misuse(self, args, message):
        done = cli(*args)

        assert done.returncode == 2
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1
        assert lines[0].startswith("recycle-workers: usage: ")
        assert message in lines[0]

    def test_should_report_an_unreachable_broker_as_a_failed_job(self):
        done = cli(
            "ask",
            "-q",
            "생수병",
            "--json",
            env={"RECYCLE_BROKER_URL": "amqp://guest:guest@127.0.0.1:1//"},
            timeout=90,
        )

        assert done.returncode == 1
        assert json.loads(done.stdout)["error"]["code"] == "broker_unavailable"


class TestDemo:
    def test_should_run_the_whole_pipeline_offline_in_under_10_seconds(self):
        started = time.monotonic()
        done = cli(
            "demo",
            env={
                "RECYCLE_OPENAI_API_KEY": "sk-not-used",
                "RECYCLE_BROKER_URL": "amqp://nobody@127.0.0.1:1//",
            },
        )
        elapsed = time.monotonic() - started

        assert done.returncode == 0, done.stderr
        assert "컵라면" in done.stdout
        assert "timings: upload" in done.stdout
        assert elapsed < 10

    def test_should_run_as_console_script_too(self):
        script = os.path.join(os.path.dirname(sys.executable), "recycle-workers")

        done = subprocess.run(
            [script, "demo", "--json"], capture_output=True, text=True, timeout=60
        )

        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["item"] is not None


class TestRunCommand:
    @pytest.mark.parametrize(
        ("role", "queue"),
        [
            (Role.UPLOADER, "q.image_upload,q.maintenance"),
            (Role.ANALYZER, "q.gpt5_analysis"),
            (Role.RETRIEVER, "q.rule_retrieval"),
            (Role.GENERATOR, "q.response_generation"),
        ],
    )
    def test_should_consume_exactly_the_role_queue(self, role, queue):
        argv = celery_argv(role, load_settings(pool="gevent", concurrency=20))

        assert argv[argv.index("--queues") + 1] == queue
        assert argv[argv.index("--pool") + 1] == "gevent"
        assert argv[argv.index("--concurrency") + 1] == "20"
        assert "worker" in argv

    def test_should_start_beat_for_the_scheduler(self):
        argv = celery_argv(Role.SCHEDULER, load_settings())

        assert "beat" in argv and "worker" not in argv

    def test_should_let_settings_override_the_queues(self):
        argv = celery_argv(
            Role.UPLOADER, load_settings(queues="q.image_upload, q.maintenance")
        )

        assert argv[argv.index("--queues") + 1] == "q.image_upload,q.maintenance"

    def test_should_need_a_role(self):
        done = cli("run")

        assert done.returncode == 2
        assert "set RECYCLE_ROLE or pass --role (uploader, analyzer" in done.stderr


class TestRules:
    def test_should_list_items_as_json(self):
        done = cli("rules", "list", "--json")

        rows = json.loads(done.stdout)
        assert {
            "id": "clear_pet_bottle",
            "name_ko": "투명 페트병",
            "name_en": "Clear PET bottle",
            "stream": "clear_pet",
        } in rows
        assert all(set(row) == {"id", "name_ko", "name_en", "stream"} for row in rows)

    def test_should_show_one_item(self):
        done = cli("rules", "show", "clear_pet_bottle")

        assert done.returncode == 0
        assert "stream: clear_pet" in done.stdout

    def test_should_refuse_an_unknown_item(self):
        done = cli("rules", "show", "unicorn")

        assert done.returncode == 2
        assert "no catalog item 'unicorn'" in done.stderr

    def test_should_rank_search_results(self):
        done = cli("rules", "search", "생수병", "--json")

        candidates = json.loads(done.stdout)
        assert candidates[0]["id"] == "clear_pet_bottle"
        assert candidates[0]["score"] == max(c["score"] for c in candidates)
