"""One line per event, as JSON or as key=value text.

:func:`log_event` logs an event name with its fields as keys of the line.
While a job is bound with :func:`bound_job`, every line logged in that thread
or greenlet, Celery's own included, carries the job's id; every line carries
the process's role.
"""

from __future__ import annotations

import json
import logging
import sys
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timezone
from typing import Iterator

from recycle_workers.settings import LogFormat


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = {
            "ts": datetime.fromtimestamp(record.created, tz=timezone.utc).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": record.getMessage(),
            **_extras(record),
        }
        if record.exc_info:
            line["exc"] = self.formatException(record.exc_info)
        return json.dumps(line, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extras = " ".join(
            f"{key}={value}" for key, value in _extras(record).items() if key != "event"
        )
        stamp = datetime.fromtimestamp(record.created, tz=timezone.utc).strftime(
            "%H:%M:%S"
        )
        line = f"{stamp} {record.levelname.lower()} {record.name} {record.getMessage()}"
        line = f"{line} {extras}" if extras else line
        if record.exc_info:
            line = f"{line}\n{self.formatException(record.exc_info)}"
        return line


class ContextFilter(logging.Filter):
    """Adds the bound job id and the process's role to every record."""

    def __init__(self, role: str | None) -> None:
        super().__init__()
        self.role = role

    def filter(self, record: logging.LogRecord) -> bool:
        job_id = _JOB_ID.get()
        data = getattr(record, "data", None)
        if job_id is None and isinstance(data, dict):
            # Celery's own task lines (received, succeeded) name the task id, which
            # is the job id, in the withheld "data" field.
            job_id = data.get("id")
        if job_id is not None and not hasattr(record, "job_id"):
            record.job_id = job_id
        if self.role and not hasattr(record, "role"):
            record.role = self.role
        return True


def configure_logging(
    *, level: str, log_format: LogFormat, role: str | None = None
) -> None:
    """Send every logger's records to stderr in the chosen format."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        JsonFormatter() if log_format == LogFormat.JSON else TextFormatter()
    )
    handler.addFilter(ContextFilter(role))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)


def log_event(
    logger: logging.Logger, event: str, *, level: int = logging.INFO, **fields
) -> None:
    """Log one event; fields that are ``None`` are left out of the line."""
    extra = {
        "event": event,
        **{key: value for key, value in fields.items() if value is not None},
    }
    logger.log(level, event, extra=extra)


@contextmanager
def bound_job(job_id: str) -> Iterator[None]:
    """Tag every line logged inside the block with ``job_id``."""
    token = _JOB_ID.set(job_id)
    try:
        yield
    finally:
        _JOB_ID.reset(token)


def _extras(record: logging.LogRecord) -> dict:
    return {
        key: value
        for key, value in record.__dict__.items()
        if key not in _STANDARD_FIELDS and key not in _WITHHELD_FIELDS
    }


_JOB_ID: ContextVar[str | None] = ContextVar("recycle_job_id", default=None)

# Celery attaches each task's arguments as "data": they hold questions and image bytes.
_WITHHELD_FIELDS = {"data"}
_STANDARD_FIELDS = set(vars(logging.makeLogRecord({}))) | {
    "message",
    "asctime",
    "taskName",
}
