import re
import subprocess
import sys
from pathlib import Path

import pytest

from recycle_workers.settings import Pool, Role, SettingsError, load_settings


class TestSettings:
    def test_should_have_documented_defaults(self):
        settings = load_settings()

        assert settings.analysis_model == "gpt-5"
        assert settings.generation_model == "gpt-4o-mini"
        assert settings.max_image_bytes == 10 * 1024 * 1024
        assert settings.pool == Pool.PREFORK
        assert settings.role is None
        assert not settings.has_openai_key

    def test_should_read_prefixed_environment(self, monkeypatch):
        monkeypatch.setenv("RECYCLE_ROLE", "analyzer")
        monkeypatch.setenv("RECYCLE_POOL", "gevent")
        monkeypatch.setenv("RECYCLE_CONCURRENCY", "20")
        monkeypatch.setenv("RECYCLE_STORAGE_URL", "s3://bucket/images")

        settings = load_settings()

        assert (settings.role, settings.pool, settings.concurrency) == (
            Role.ANALYZER,
            Pool.GEVENT,
            20,
        )
        assert settings.storage_url == "s3://bucket/images"

    @pytest.mark.parametrize(
        ("variable", "value", "expected"),
        [
            (
                "RECYCLE_POOL",
                "eventlet",
                "must be one of prefork, threads, gevent, solo",
            ),
            ("RECYCLE_ROLE", "janitor", "must be one of uploader, analyzer, retriever"),
            ("RECYCLE_CONCURRENCY", "0", "greater than or equal to 1"),
            ("RECYCLE_CONCURRENCY", "many", "valid integer"),
            ("RECYCLE_STORAGE_URL", "http://x", "must be file:///DIR or s3://BUCKET"),
            ("RECYCLE_MAX_IMAGE_BYTES", "-1", "greater than or equal to 1"),
            ("RECYCLE_LOG_LEVEL", "loud", "must be one of DEBUG, INFO"),
            ("RECYCLE_DEFAULT_LANG", "fr", "should match pattern"),
        ],
    )
    def test_should_name_variable_and_allowed_values(
        self, monkeypatch, variable, value, expected
    ):
        monkeypatch.setenv(variable, value)

        with pytest.raises(SettingsError) as caught:
            load_settings()

        assert caught.value.variable == variable
        assert expected in str(caught.value)
        assert "\n" not in str(caught.value)

    def test_should_stop_cli_with_one_line_and_exit_2(self, monkeypatch):
        monkeypatch.setenv("RECYCLE_POOL", "eventlet")

        done = subprocess.run(
            [sys.executable, "-m", "recycle_workers", "run", "--role", "uploader"],
            capture_output=True,
            text=True,
            timeout=60,
        )

        assert done.returncode == 2
        assert done.stderr.strip().splitlines() == [
            "recycle-workers: invalid_setting: RECYCLE_POOL: must be one of prefork, "
            "threads, gevent, solo (got 'eventlet')"
        ]
        assert "Traceback" not in done.stderr


def test_should_document_every_setting_in_the_readme():
    from recycle_workers.settings import ENV_PREFIX, Settings

    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text("utf-8")
    documented = set(re.findall(r"^\| `(RECYCLE_[A-Z0-9_]+)` \|", readme, re.MULTILINE))

    assert documented == {
        f"{ENV_PREFIX}{name.upper()}" for name in Settings.model_fields
    }
