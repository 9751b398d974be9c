"""Every setting of recycle-workers, declared once.

This is the only module that reads the environment. Each field below is one
``RECYCLE_*`` variable; its default and its allowed values live here and nowhere
else. :func:`load_settings` turns a bad value into :class:`SettingsError`, whose
message is one line naming the variable and what it accepts.
"""

from __future__ import annotations

import enum
import re
from functools import lru_cache
from typing import Annotated, Any
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

ENV_PREFIX = "RECYCLE_"


class Role(str, enum.Enum):
    """What one process of the image does."""

    UPLOADER = "uploader"
    ANALYZER = "analyzer"
    RETRIEVER = "retriever"
    GENERATOR = "generator"
    SCHEDULER = "scheduler"


class Pool(str, enum.Enum):
    """Celery execution pools a worker may run."""

    PREFORK = "prefork"
    THREADS = "threads"
    GEVENT = "gevent"
    SOLO = "solo"


class Mode(str, enum.Enum):
    """Where the stages run: behind RabbitMQ, or all in the calling process."""

    BROKER = "broker"
    EMBEDDED = "embedded"


class LogFormat(str, enum.Enum):
    JSON = "json"
    TEXT = "text"


PositiveInt = Annotated[int, Field(ge=1)]


class SettingsError(Exception):
    """A setting is missing or has a value the workers cannot use."""

    def __init__(self, variable: str, message: str) -> None:
        super().__init__(f"{variable}: {message}")
        self.variable = variable
        self.message = message


class Settings(BaseSettings):
    """The configuration of one recycle-workers process."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        case_sensitive=False,
        extra="ignore",
        frozen=True,
    )

    # Process
    role: Role | None = None
    mode: Mode = Mode.BROKER
    pool: Pool = Pool.PREFORK
    concurrency: PositiveInt = 4
    queues: str | None = None
    log_level: str = "INFO"
    log_format: LogFormat = LogFormat.JSON
    metrics_port: Annotated[int, Field(ge=0, le=65535)] = 9808

    # Outside systems (the URLs may carry credentials: they are secrets)
    broker_url: SecretStr = SecretStr("amqp://guest:guest@127.0.0.1:5672//")
    redis_url: SecretStr = SecretStr("redis://127.0.0.1:6379/0")
    storage_url: str = "file:///tmp/recycle-workers/storage"
    s3_endpoint_url: str | None = None
    s3_region: str | None = None
    s3_path_style: bool = False
    s3_access_key_id: SecretStr | None = None
    s3_secret_access_key: SecretStr | None = None
    s3_sse: Annotated[str, Field(pattern="^(|AES256|aws:kms)$")] = ""
    s3_sse_kms_key_id: str | None = None
    s3_presign_expiry_s: Annotated[int, Field(ge=1, le=7 * 24 * 3600)] = 900

    # AI stages. Per-call timeout x (retries + 1), plus the rate-limit wait, stays
    # under the analysis stage's soft time limit (100 s): 25 x 3 + 15 = 90 s.
    openai_api_key: SecretStr | None = None
    openai_base_url: str | None = None
    analysis_model: str = "gpt-5"
    generation_model: str = "gpt-4o-mini"
    openai_timeout_s: Annotated[float, Field(gt=0)] = 25.0
    openai_max_retries: Annotated[int, Field(ge=0, le=10)] = 2
    openai_image_detail: Annotated[str, Field(pattern="^(low|high|auto)$")] = "low"
    analysis_max_output_tokens: PositiveInt = 2000
    generation_max_output_tokens: PositiveInt = 800
    # Shared by every pod through Redis; 0 turns a limit off. Set them to the account's
    # tier.
    analysis_rpm: Annotated[int, Field(ge=0)] = 500
    analysis_tpm: Annotated[int, Field(ge=0)] = 500_000
    generation_rpm: Annotated[int, Field(ge=0)] = 500
    generation_tpm: Annotated[int, Field(ge=0)] = 200_000
    rate_limit_max_wait_s: Annotated[float, Field(ge=0)] = 15.0

    # Input limits and image preparation
    max_image_bytes: PositiveInt = 10 * 1024 * 1024
    max_image_pixels: PositiveInt = 50_000_000
    max_question_chars: PositiveInt = 1000
    resize_max_side: Annotated[int, Field(ge=64, le=4096)] = 1024
    resize_jpeg_quality: Annotated[int, Field(ge=30, le=95)] = 85

    # Answers
    default_lang: Annotated[str, Field(pattern="^(ko|en)$")] = "ko"
    cache_ttl_s: PositiveInt = 7 * 24 * 3600

    # Probes: the worker touches the heartbeat file; the probe command reads it.
    heartbeat_file: str = "/tmp/recycle-workers/heartbeat"
    ready_file: str = "/tmp/recycle-workers/ready"
    heartbeat_interval_s: PositiveInt = 10

    # Scheduler. A schedule is a five-field cron expression in ``timezone``, or
    # "every N s" for a fixed period (tests and drills).
    timezone: str = "Asia/Seoul"
    image_retention_days: PositiveInt = 30
    schedule_purge_images: str = "0 3 * * *"
    schedule_cache_cleanup: str = "0 * * * *"
    schedule_daily_stats: str = "0 2 * * *"
    # A standby beat takes over within the lease plus a third of it after the holder
    # dies.
    scheduler_lease_s: Annotated[float, Field(ge=1, le=45)] = 30.0
    purge_batch_size: Annotated[int, Field(ge=1, le=1000)] = 500
    cache_max_entries: PositiveInt = 200_000

    @field_validator("storage_url")
    @classmethod
    def _check_storage_url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme == "file" and parts.path:
            return value
        if parts.scheme == "s3" and parts.netloc:
            return value
        raise ValueError("must be file:///DIR or s3://BUCKET[/PREFIX]")

    @field_validator("timezone")
    @classmethod
    def _check_timezone(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError("must be an IANA time zone such as Asia/Seoul") from None
        return value

    @field_validator(
        "schedule_purge_images", "schedule_cache_cleanup", "schedule_daily_stats"
    )
    @classmethod
    def _check_schedule(cls, value: str) -> str:
        text = " ".join(value.split())
        every = EVERY_PATTERN.fullmatch(text)
        if every and float(every.group(1)) > 0:
            return text
        fields = text.split(" ")
        if len(fields) != 5:
            raise ValueError(
                "must be a cron expression of five fields "
                "(minute hour day month weekday) "
                "or 'every N s'"
            )
        from celery.schedules import crontab

        try:
            crontab(*fields)
        except ValueError as exc:
            raise ValueError(f"is not a valid cron expression: {exc}") from None
        return text

    @field_validator("log_level")
    @classmethod
    def _check_log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in LOG_LEVELS:
            raise ValueError(f"must be one of {', '.join(LOG_LEVELS)}")
        return level

    @field_validator("queues")
    @classmethod
    def _check_queues(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        names = [name.strip() for name in value.split(",")]
        if any(not name for name in names):
            raise ValueError("must be a comma-separated list of queue names")
        return ",".join(names)

    @property
    def has_openai_key(self) -> bool:
        return bool(self.openai_api_key and self.openai_api_key.get_secret_value())


def load_settings(**overrides: Any) -> Settings:
    """Read the settings from the environment, with ``overrides`` taking precedence.

    Raises :class:`SettingsError` for the first value that cannot be used.
    """
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        raise settings_error_from(exc) from None


def settings_error_from(exc: ValidationError) -> SettingsError:
    """Describe the first problem of a validation error as one line."""
    error = exc.errors()[0]
    field = str(error["loc"][0]) if error["loc"] else "settings"
    variable = f"{ENV_PREFIX}{field.upper()}"
    got = error.get("input")
    allowed = _allowed_values(field)
    if allowed:
        message = f"must be one of {', '.join(allowed)} (got {got!r})"
    else:
        reason = str(error["msg"]).removeprefix("Value error, ")
        message = f"{reason[:1].lower()}{reason[1:]} (got {got!r})"
    return SettingsError(variable, message)


def _allowed_values(field: str) -> list[str]:
    annotation = (
        Settings.model_fields[field].annotation
        if field in Settings.model_fields
        else None
    )
    for enum_type in (Role, Pool, Mode, LogFormat):
        if annotation in (enum_type, enum_type | None):
            return [member.value for member in enum_type]
    return []


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()


LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
EVERY_PATTERN = re.compile(r"every ([0-9]+(?:\.[0-9]+)?) ?s")
