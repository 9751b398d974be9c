"""The ConfigMap and the Secret, and their contract with the package's settings."""

from __future__ import annotations

import base64

import jmespath
import pytest

from recycle_workers.roles import STAGE_BY_ROLE, queues_for
from recycle_workers.settings import ENV_PREFIX, Role, Settings, load_settings

from helm_template import ChartRenderError, by_component, render_chart

CONFIG_MAP = ["templates/configmap.yaml"]
SECRET = ["templates/secret.yaml"]

SECRET_VARIABLES = {
    "RECYCLE_BROKER_URL",
    "RECYCLE_REDIS_URL",
    "RECYCLE_OPENAI_API_KEY",
    "RECYCLE_S3_ACCESS_KEY_ID",
    "RECYCLE_S3_SECRET_ACCESS_KEY",
}
ROLE_VARIABLES = {
    "RECYCLE_ROLE",
    "RECYCLE_POOL",
    "RECYCLE_CONCURRENCY",
    "RECYCLE_QUEUES",
}


def config_data(values: dict | None = None) -> dict[str, str]:
    (config_map,) = render_chart(values, show_only=CONFIG_MAP)
    return config_map["data"]


def secret_data(values: dict | None = None, **kwargs) -> dict[str, str] | None:
    rendered = render_chart(values, show_only=SECRET, **kwargs)
    if not rendered:
        return None
    return {
        key: base64.b64decode(value).decode()
        for key, value in rendered[0]["data"].items()
    }


class TestConfigMap:
    def test_should_always_run_the_workers_in_broker_mode(self):
        assert config_data()["RECYCLE_MODE"] == "broker"

    def test_should_hold_every_non_secret_setting_by_default(self):
        data = config_data()

        assert data["RECYCLE_STORAGE_URL"] == "file:///tmp/recycle-workers/storage"
        assert data["RECYCLE_HEARTBEAT_FILE"] == "/tmp/recycle-workers/heartbeat"
        assert data["RECYCLE_READY_FILE"] == "/tmp/recycle-workers/ready"
        assert data["RECYCLE_S3_PATH_STYLE"] == "false"

    def test_should_leave_out_empty_settings_so_the_worker_keeps_its_default(self):
        data = config_data()

        assert not {
            "RECYCLE_S3_ENDPOINT_URL",
            "RECYCLE_S3_REGION",
            "RECYCLE_OPENAI_BASE_URL",
        } & set(data)

    @pytest.mark.parametrize(
        ("key", "value", "variable", "text"),
        [
            ("maxImageBytes", 10485760, "RECYCLE_MAX_IMAGE_BYTES", "10485760"),
            ("maxImagePixels", 50000000, "RECYCLE_MAX_IMAGE_PIXELS", "50000000"),
            ("openaiTimeoutS", 7.5, "RECYCLE_OPENAI_TIMEOUT_S", "7.5"),
            ("s3PathStyle", True, "RECYCLE_S3_PATH_STYLE", "true"),
            (
                "s3EndpointUrl",
                "http://minio:9000",
                "RECYCLE_S3_ENDPOINT_URL",
                "http://minio:9000",
            ),
            ("defaultLang", "en", "RECYCLE_DEFAULT_LANG", "en"),
            (
                "schedulePurgeImages",
                "30 4 * * *",
                "RECYCLE_SCHEDULE_PURGE_IMAGES",
                "30 4 * * *",
            ),
            ("schedulerLeaseS", 20, "RECYCLE_SCHEDULER_LEASE_S", "20"),
        ],
    )
    def test_should_write_a_setting_as_the_worker_reads_it(
        self, key, value, variable, text
    ):
        assert config_data({"config": {key: value}})[variable] == text

    def test_should_hold_the_scheduler_defaults_the_package_declares(self):
        data = config_data()
        defaults = load_settings()

        for variable in (
            "RECYCLE_SCHEDULE_PURGE_IMAGES",
            "RECYCLE_SCHEDULE_CACHE_CLEANUP",
            "RECYCLE_SCHEDULE_DAILY_STATS",
        ):
            field = variable.removeprefix(ENV_PREFIX).lower()
            assert data[variable] == getattr(defaults, field)

    @pytest.mark.parametrize("schedule", ["0 3 * *", "daily", "every s"])
    def test_should_refuse_a_schedule_that_is_not_cron_or_every(self, schedule):
        with pytest.raises(ChartRenderError, match="schedulePurgeImages"):
            config_data({"config": {"schedulePurgeImages": schedule}})

    def test_should_never_hold_a_secret(self):
        data = config_data({"secrets": {"openaiApiKey": "sk-test"}})

        assert not SECRET_VARIABLES & set(data)
        assert not any(
            "guest:guest" in value or "sk-test" in value for value in data.values()
        )


class TestSecret:
    def test_should_hold_the_connection_urls_under_the_default_keys(self):
        data = secret_data()

        assert data == {
            "RECYCLE_BROKER_URL": "amqp://guest:guest@rabbitmq:5672//",
            "RECYCLE_REDIS_URL": "redis://redis:6379/0",
        }

    def test_should_add_optional_entries_only_when_given(self):
        data = secret_data(
            {
                "secrets": {
                    "openaiApiKey": "sk-test",
                    "s3AccessKeyId": "AKIA",
                    "s3SecretAccessKey": "shh",
                }
            }
        )

        assert data["RECYCLE_OPENAI_API_KEY"] == "sk-test"
        assert data["RECYCLE_S3_ACCESS_KEY_ID"] == "AKIA"
        assert data["RECYCLE_S3_SECRET_ACCESS_KEY"] == "shh"

    def test_should_use_the_configured_key_names(self):
        data = secret_data({"secrets": {"keys": {"brokerUrl": "amqp-url"}}})

        assert "amqp-url" in data
        assert "RECYCLE_BROKER_URL" not in data

    def test_should_make_no_secret_when_an_existing_one_is_named(self):
        assert (
            secret_data(
                {"secrets": {"existingSecret": "ops-managed"}}, with_test_secrets=False
            )
            is None
        )

    @pytest.mark.parametrize("missing", ["brokerUrl", "redisUrl"])
    def test_should_require_the_connection_urls_without_an_existing_secret(
        self, missing
    ):
        given = {"brokerUrl": "amqp://rabbitmq//", "redisUrl": "redis://redis/0"}
        del given[missing]

        with pytest.raises(ChartRenderError, match=f"secrets.{missing} is required"):
            render_chart({"secrets": given}, with_test_secrets=False)


class TestSettingsContract:
    """The chart sets exactly the variables the package declares, by their names."""

    def test_should_only_set_variables_the_settings_declare(self):
        declared = {f"{ENV_PREFIX}{field.upper()}" for field in Settings.model_fields}
        rendered = render_chart()
        deployments = [doc for doc in rendered if doc["kind"] == "Deployment"]
        config_map = next(doc for doc in rendered if doc["kind"] == "ConfigMap")

        env_names = set(
            jmespath.search(
                "[].spec.template.spec.containers[].env[].name", deployments
            )
        )
        assert set(config_map["data"]) - declared == set()
        assert env_names - declared == set()

    def test_should_set_every_declared_variable(self):
        declared = {f"{ENV_PREFIX}{field.upper()}" for field in Settings.model_fields}
        every_optional_setting = {
            "s3EndpointUrl": "http://minio:9000",
            "s3Region": "ap-northeast-2",
            "s3Sse": "aws:kms",
            "s3SseKmsKeyId": "alias/recycle",
            "openaiBaseUrl": "http://llm:8000/v1",
        }
        rendered = render_chart({"config": every_optional_setting})
        config_map = next(doc for doc in rendered if doc["kind"] == "ConfigMap")

        covered = set(config_map["data"]) | SECRET_VARIABLES | ROLE_VARIABLES
        assert declared - covered == set()

    @pytest.mark.parametrize(
        "role", [role for role in Role if role is not Role.SCHEDULER]
    )
    def test_should_consume_the_queue_the_package_assigns_to_the_role(self, role):
        deployments = by_component(
            render_chart(show_only=["templates/deployment.yaml"])
        )
        env = jmespath.search(
            "spec.template.spec.containers[0].env", deployments[role.value]
        )

        queues = next(
            entry["value"] for entry in env if entry["name"] == "RECYCLE_QUEUES"
        )
        assert queues == ",".join(queues_for(role))

    @pytest.mark.parametrize(
        "role", [role for role in Role if role is not Role.SCHEDULER]
    )
    def test_should_outlast_the_package_task_time_limit(self, role):
        deployments = by_component(
            render_chart(show_only=["templates/deployment.yaml"])
        )
        grace = deployments[role.value]["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"
        ]

        assert grace > STAGE_BY_ROLE[role].time_limit_s
