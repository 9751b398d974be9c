"""The answer cache and the stage checkpoints, in Redis or in this process.

A cache is an optimisation, never a dependency: every Redis error is logged and
read as a miss, so an outage costs AI calls but loses no job.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from typing import Protocol

from recycle_workers.matcher import normalise
from recycle_workers.settings import Settings

logger = logging.getLogger(__name__)


class Cache(Protocol):
    """A small key-value store with expiry, for JSON documents."""

    def get(self, key: str) -> dict | None: ...

    def set(self, key: str, value: dict, *, ttl_s: int) -> None: ...

    def claim(self, key: str, *, ttl_s: int) -> bool:
        """Take ``key`` if nobody holds it; it frees itself after ``ttl_s``."""
        ...

    def release(self, key: str) -> None: ...

    def exists(self, key: str) -> bool: ...


def answer_key(
    *, image_sha256: str | None, question: str | None, catalog_version: str, lang: str
) -> str:
    """The cache key of an answer: same photo, same question, same rules, same language."""
    parts = (image_sha256 or "-", normalise(question or ""), catalog_version, lang)
    digest = hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()
    return f"{KEY_PREFIX}answer:{digest}"


def analysis_key(*, image_sha256: str | None, question: str | None, catalog_version: str) -> str:
    """The cache key of an analysis, which does not depend on the answer's language."""
    parts = (image_sha256 or "-", normalise(question or ""), catalog_version)
    digest = hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()
    return f"{KEY_PREFIX}analysis:{digest}"


def inflight_key(key: str) -> str:
    """The lock held while one job computes what ``key`` will hold."""
    return f"{KEY_PREFIX}inflight:{key.removeprefix(KEY_PREFIX)}"


def checkpoint_key(job_id: str, stage: str) -> str:
    """Where a stage keeps its output so a redelivered message does not redo it."""
    return f"{KEY_PREFIX}checkpoint:{job_id}:{stage}"


class MemoryCache:
    """A cache that lives as long as this process; for embedded mode and tests."""

    def __init__(self, *, clock=time.monotonic) -> None:
        self._entries: dict[str, tuple[float, str]] = {}
        self._lock = threading.Lock()
        self._clock = clock

    def get(self, key: str) -> dict | None:
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            expires_at, payload = entry
            if expires_at <= self._clock():
                del self._entries[key]
                return None
        return json.loads(payload)

    def set(self, key: str, value: dict, *, ttl_s: int) -> None:
        with self._lock:
            self._entries[key] = (self._clock() + ttl_s, json.dumps(value))

    def claim(self, key: str, *, ttl_s: int) -> bool:
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > self._clock():
                return False
            self._entries[key] = (self._clock() + ttl_s, "{}")
            return True

    def release(self, key: str) -> None:
        with self._lock:
            self._entries.pop(key, None)

    def exists(self, key: str) -> bool:
        return self.get(key) is not None


class RedisCache:
    """A cache in Redis, shared by every pod; an unreachable Redis reads as empty."""

    def __init__(self, client) -> None:
        self.client = client

    @classmethod
    def from_url(cls, url: str) -> "RedisCache":
        import redis

        return cls(
            redis.Redis.from_url(
                url,
                socket_connect_timeout=REDIS_TIMEOUT_S,
                socket_timeout=REDIS_TIMEOUT_S,
                health_check_interval=30,
            )
        )

    def get(self, key: str) -> dict | None:
        import redis

        try:
            payload = self.client.get(key)
        except redis.RedisError as exc:
            logger.warning("event=cache_unavailable op=get error=%s", type(exc).__name__)
            return None
        return json.loads(payload) if payload is not None else None

    def set(self, key: str, value: dict, *, ttl_s: int) -> None:
        import redis

        try:
            self.client.set(key, json.dumps(value), ex=ttl_s)
        except redis.RedisError as exc:
            logger.warning("event=cache_unavailable op=set error=%s", type(exc).__name__)

    def claim(self, key: str, *, ttl_s: int) -> bool:
        import redis

        try:
            return bool(self.client.set(key, "1", nx=True, ex=ttl_s))
        except redis.RedisError as exc:
            # Without Redis nobody can coordinate: go ahead rather than wait.
            logger.warning("event=cache_unavailable op=claim error=%s", type(exc).__name__)
            return True

    def release(self, key: str) -> None:
        import redis

        try:
            self.client.delete(key)
        except redis.RedisError as exc:
            logger.warning("event=cache_unavailable op=release error=%s", type(exc).__name__)

    def exists(self, key: str) -> bool:
        import redis

        try:
            return bool(self.client.exists(key))
        except redis.RedisError:
            return False


def cache_from_settings(settings: Settings) -> Cache:
    return RedisCache.from_url(settings.redis_url.get_secret_value())


KEY_PREFIX = "recycle:"
REDIS_TIMEOUT_S = 2.0
