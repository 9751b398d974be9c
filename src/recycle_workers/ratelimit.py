"""A request and token budget per model and minute, shared by every pod through Redis.

Before a model call a worker takes one request and its estimated tokens from the
current minute's budget; when the budget is spent it sleeps until the next
minute, up to a limit. After the call the estimate is corrected with the tokens
really used. An unreachable Redis lets calls through: the limiter protects the
API quota, it must not stop the pipeline.
"""

from __future__ import annotations

import logging
import random
import time
from typing import Callable

from recycle_workers.cache import tolerate_redis
from recycle_workers.logs import log_event

logger = logging.getLogger(__name__)


class RateLimitExceeded(Exception):
    """The model's budget stayed spent for longer than the caller may wait."""


class RateLimiter:
    """Fixed one-minute windows per model, counted atomically in Redis."""

    def __init__(
        self,
        client,
        *,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.clock = clock
        self.sleep = sleep
        self._take = client.register_script(_TAKE_SCRIPT)

    def acquire(
        self, model: str, *, tokens: int, rpm: int, tpm: int, max_wait_s: float
    ) -> float:
        """Take a request and ``tokens`` from ``model``'s budget; return seconds waited.

        Raises :class:`RateLimitExceeded` when no budget frees up within ``max_wait_s``.
        """
        if rpm == 0 and tpm == 0:
            return 0.0
        waited = 0.0
        while True:
            now = self.clock()
            window = int(now // WINDOW_S)
            if self._try_take(model, window, tokens=tokens, rpm=rpm, tpm=tpm):
                return waited
            wait = (window + 1) * WINDOW_S - now + random.uniform(0, 1)
            if waited + wait > max_wait_s:
                raise RateLimitExceeded(
                    f"Budget of {model} stayed spent for more than {max_wait_s:g} s"
                )
            log_event(logger, "rate_limit_wait", model=model, wait_s=round(wait, 1))
            self.sleep(wait)
            waited += wait

    def correct(self, model: str, *, estimated: int, used: int) -> None:
        """Replace a call's estimated tokens with the tokens it really used."""
        key = _tokens_key(model, int(self.clock() // WINDOW_S))
        tolerate_redis(
            "rate_limit_unavailable",
            "correct",
            lambda: self.client.incrby(key, used - estimated),
            None,
        )

    def _try_take(
        self, model: str, window: int, *, tokens: int, rpm: int, tpm: int
    ) -> bool:
        taken = tolerate_redis(
            "rate_limit_unavailable",
            "take",
            lambda: self._take(
                keys=[_requests_key(model, window), _tokens_key(model, window)],
                args=[rpm, tpm, tokens, int(WINDOW_S * 2)],
            ),
            True,
        )
        return bool(taken)


def _requests_key(model: str, window: int) -> str:
    return f"recycle:ratelimit:{model}:{window}:requests"


def _tokens_key(model: str, window: int) -> str:
    return f"recycle:ratelimit:{model}:{window}:tokens"


# A limit of 0 means no limit. Both counters move together or not at all.
_TAKE_SCRIPT = """
local rpm, tpm = tonumber(ARGV[1]), tonumber(ARGV[2])
local tokens, ttl = tonumber(ARGV[3]), ARGV[4]
local requests = tonumber(redis.call('GET', KEYS[1]) or '0')
local used = tonumber(redis.call('GET', KEYS[2]) or '0')
if rpm > 0 and requests + 1 > rpm then return 0 end
if tpm > 0 and used > 0 and used + tokens > tpm then return 0 end
redis.call('INCR', KEYS[1])
redis.call('INCRBY', KEYS[2], tokens)
redis.call('EXPIRE', KEYS[1], ttl)
redis.call('EXPIRE', KEYS[2], ttl)
return 1
"""

WINDOW_S = 60.0
