"""Sustained jobs per second of one analyzer pod and one generator pod.

The fake model adds 3 s to every analysis and 1.5 s to every generation. Each pod
gets a backlog several times its concurrency on its own queue; jobs finished after
a warm-up window are counted over a fixed window, and the rate is compared with the
pod's bound, concurrency / latency. Both pods run at once, as they do on a node.
"""

from __future__ import annotations

import time

from photos import FOUR_MP, phone_jpeg
from stack import Feeder, Stack

ANALYSIS_LATENCY_S = 3.0
GENERATION_LATENCY_S = 1.5
GOAL_FRACTION = 0.9


def run(
    pods: dict[str, tuple[str, int]],
    *,
    openai_base_url: str,
    window_s: float = 24.0,
    warmup_s: float = 6.0,
) -> dict:
    """``pods`` maps a role to (pool, concurrency), as in the values file measured."""
    latency = {"analyzer": ANALYSIS_LATENCY_S, "generator": GENERATION_LATENCY_S}
    stage_of = {"analyzer": "analysis", "generator": "generation"}
    results = []
    with Stack(openai_base_url=openai_base_url) as stack:
        feeder = Feeder(stack, image=phone_jpeg(FOUR_MP))
        try:
            backlog = {}
            for role, (pool, concurrency) in pods.items():
                bound = concurrency / latency[role]
                count = int(bound * (warmup_s + window_s) * 1.5) + concurrency
                backlog[role] = [
                    feeder.message(stage_of[role], number) for number in range(count)
                ]
            for role, (pool, concurrency) in pods.items():
                stack.start(role, pool=pool, concurrency=concurrency)

            started = time.monotonic()
            for role, jobs in backlog.items():
                for job_id, payload in jobs:
                    feeder.send(stage_of[role], job_id, payload)
            time.sleep(warmup_s)
            before = {
                role: sum(feeder.done(stage_of[role], [j for j, _ in jobs]))
                for role, jobs in backlog.items()
            }
            time.sleep(window_s)
            after = {
                role: sum(feeder.done(stage_of[role], [j for j, _ in jobs]))
                for role, jobs in backlog.items()
            }
            elapsed = time.monotonic() - started
        finally:
            feeder.close()

    for role, (pool, concurrency) in pods.items():
        bound = concurrency / latency[role]
        rate = (after[role] - before[role]) / window_s
        results.append(
            {
                "role": role,
                "pool": pool,
                "concurrency": concurrency,
                "model_latency_s": latency[role],
                "bound_jobs_per_s": round(bound, 2),
                "jobs_per_s": round(rate, 2),
                "fraction": round(rate / bound, 3),
                "per_job_s": round(concurrency / rate, 3) if rate else None,
                "goal_met": rate / bound >= GOAL_FRACTION,
            }
        )
    return {
        "window_s": window_s,
        "warmup_s": warmup_s,
        "elapsed_s": round(elapsed, 1),
        "goal_fraction": GOAL_FRACTION,
        "pods": results,
    }
