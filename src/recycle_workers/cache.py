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
from typing import Callable, Protocol, TypeVar

from recycle_workers.logs import log_event
from recycle_workers.matcher import normalise
from recycle_workers.settings import Settings

logger = logging.getLogger(__name__)

T = TypeVar("T")


class Cache(Protocol):
    """A small key-value store with expiry, for JSON documents."""

    def get(self, key: str) -> dict | None: ...

    def set(self, key: str, value: dict, *, ttl_s: int) -> None: ...

    def claim(self, key: str, *, ttl_s: int) -> bool:
        """Take ``key`` if nobody holds it; it frees itself after ``ttl_s``."""
        ...

    def release(self, key: str) -> None: ...

    def exists(self, key: str) -> bool: ...

    def append(self, key: str, value: dict, *, ttl_s: int) -> None:
        """Add ``value`` at the end of the list at ``key``."""
        ...

    def read_list(self, key: str, *, start: int = 0) -> list[dict]: ...


def answer_key(
    *, image_sha256: str | None, question: str | None, catalog_version: str, lang: str
) -> str:
    """The key of an answer: same photo, question, rules version and language."""
    parts = (image_sha256 or "-", normalise(question or ""), catalog_version, lang)
    digest = hashlib.sha256("\0".join(parts).encode("utf-8")).hexdigest()
    return f"{KEY_PREFIX}answer:{digest}"


def analysis_key(
    *, image_sha256: str | None, question: str | None, catalog_version: str
) -> str:
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
        self._lists: dict[str, list[str]] = {}
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

    def append(self, key: str, value: dict, *, ttl_s: int) -> None:
        with self._lock:
            self._lists.setdefault(key, []).append(json.dumps(value))

    def read_list(self, key: str, *, start: int = 0) -> list[dict]:
        with self._lock:
            return [json.loads(entry) for entry in self._lists.get(key, [])[start:]]


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
        payload = self._tolerant("get", lambda: self.client.get(key), None)
        return json.loads(payload) if payload is not None else None

    def set(self, key: str, value: dict, *, ttl_s: int) -> None:
        self._tolerant(
            "set", lambda: self.client.set(key, json.dumps(value), ex=ttl_s), None
        )

    def claim(self, key: str, *, ttl_s: int) -> bool:
        # Without Redis nobody can coordinate: go ahead rather than wait.
        claimed = self._tolerant(
            "claim", lambda: self.client.set(key, "1", nx=True, ex=ttl_s), True
        )
        return bool(claimed)

    def release(self, key: str) -> None:
        self._tolerant("release", lambda: self.client.delete(key), None)

    def exists(self, key: str) -> bool:
        return bool(self._tolerant("exists", lambda: self.client.exists(key), False))

    def append(self, key: str, value: dict, *, ttl_s: int) -> None:
        def push() -> None:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.rpush(key, json.dumps(value))
                pipe.expire(key, ttl_s)
                pipe.execute()

        self._tolerant("append", push, None)

    def read_list(self, key: str, *, start: int = 0) -> list[dict]:
        entries = self._tolerant(
            "read_list", lambda: self.client.lrange(key, start, -1), []
        )
        return [json.loads(entry) for entry in entries]

    def _tolerant(self, op: str, call: Callable[[], T], fallback: T) -> T:
        return tolerate_redis("cache_unavailable", op, call, fallback)


def tolerate_redis(
    event: str, op: str, call: Callable[[], T], fallback: T, **fields
) -> T:
    """Run one Redis call; on a Redis error log ``event`` and return ``fallback``.

    For the steps that make the pipeline better but must not stop it: cache,
    locks, budgets, leases, progress and statistics.
    """
    import redis

    try:
        return call()
    except redis.RedisError as exc:
        log_event(
            logger,
            event,
            level=logging.WARNING,
            op=op,
            error=type(exc).__name__,
            **fields,
        )
        return fallback


def cache_from_settings(settings: Settings) -> Cache:
    return RedisCache.from_url(settings.redis_url.get_secret_value())


KEY_PREFIX = "recycle:"
REDIS_TIMEOUT_S = 2.0
