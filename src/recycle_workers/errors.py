"""The error codes a job or a command can end with.

A code is stable: clients branch on it. The message is one sentence for a
person and may change wording between releases.
"""

from __future__ import annotations

import enum


class ErrorCode(str, enum.Enum):
    EMPTY_INPUT = "empty_input"
    QUESTION_TOO_LONG = "question_too_long"
    IMAGE_TOO_LARGE = "image_too_large"
    IMAGE_UNREADABLE = "image_unreadable"
    IMAGE_FORMAT_UNSUPPORTED = "image_format_unsupported"
    IMAGE_TOO_SMALL = "image_too_small"
    IMAGE_TOO_MANY_PIXELS = "image_too_many_pixels"
    UNSUPPORTED_LANGUAGE = "unsupported_language"
    STAGE_TIMEOUT = "stage_timeout"
    STAGE_FAILED = "stage_failed"
    POISON_MESSAGE = "poison_message"
    WAIT_TIMEOUT = "wait_timeout"
    BROKER_UNAVAILABLE = "broker_unavailable"
    USAGE = "usage"
    INVALID_SETTING = "invalid_setting"


class JobError(Exception):
    """A job cannot go on; ``code`` says why and ``message`` says it to a person."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(f"{code.value}: {message}")
        self.code = code
        self.message = message
