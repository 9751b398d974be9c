"""PSS of each role at a pool and concurrency, idle and under load, and its work rate.

A worker is started as ``recycle-workers run``; idle is its PSS a moment after it
became ready, under load the highest PSS seen while a backlog of jobs on its own
queue keeps every slot busy. The uploader's load is 12-megapixel phone JPEGs, so
the same run gives its images per second per pod; the AI roles wait on the fake
model (1 s per call) so every green thread holds a request open.
"""

from __future__ import annotations

import threading
import time

from photos import TWELVE_MP, phone_jpeg
from stack import Feeder, Stack

STAGE_OF_ROLE = {
    "uploader": "upload",
    "analyzer": "analysis",
    "retriever": "retrieval",
    "generator": "generation",
}
SETTLE_S = 2.0
SAMPLE_EVERY_S = 0.1


def measure(
    stack: Stack, feeder: Feeder, role: str, pool: str, concurrency: int
) -> dict:
    """Idle and loaded PSS of one worker; for queue roles also jobs/s under load."""
    worker = stack.start(role, pool=pool, concurrency=concurrency)
    time.sleep(SETTLE_S)
    idle = worker.pss_mib()
    result = {
        "role": role,
        "pool": pool,
        "concurrency": concurrency,
        "processes": worker.processes(),
        "idle_mib": round(idle, 1),
    }
    if worker.process.poll() is not None:
        log = (stack.root / f"{role}-{len(stack.workers) - 1}.log").read_text(
            errors="replace"
        )
        result.update(
            {
                "load_mib": None,
                "exited": worker.process.returncode,
                "log_tail": log.strip().splitlines()[-3:],
            }
        )
        return result
    if role == "scheduler":
        result["load_mib"] = result["idle_mib"]
        stack.stop(worker)
        return result

    stage = STAGE_OF_ROLE[role]
    jobs = _backlog(role, concurrency)
    payloads = [feeder.message(stage, feeder_number()) for _ in range(jobs)]
    peak = [idle]
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak[0] = max(peak[0], worker.pss_mib())
            time.sleep(SAMPLE_EVERY_S)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    started = time.monotonic()
    for job_id, payload in payloads:
        feeder.send(stage, job_id, payload)
    ids = [job_id for job_id, _ in payloads]
    while not all(feeder.done(stage, ids)):
        if time.monotonic() - started > LOAD_TIMEOUT_S:
            raise RuntimeError(f"{role} did not finish its {jobs} jobs")
        time.sleep(0.05)
    elapsed = time.monotonic() - started
    stop.set()
    sampler.join()
    stack.stop(worker)
    result.update(
        {
            "load_mib": round(peak[0], 1),
            "jobs": jobs,
            "jobs_per_s": round(jobs / elapsed, 2),
        }
    )
    return result


def _backlog(role: str, concurrency: int) -> int:
    if role == "uploader":
        return max(24, concurrency * 4)
    if role == "retriever":
        return max(40, concurrency * 10)
    return concurrency * 2


_numbers = iter(range(10**9))


def feeder_number() -> int:
    return next(_numbers)


def run(configs: list[tuple[str, str, int]], *, openai_base_url: str) -> dict:
    """Measure each distinct (role, pool, concurrency) in ``configs``, one at a time."""
    results = []
    with Stack(openai_base_url=openai_base_url) as stack:
        feeder = Feeder(stack, image=phone_jpeg(TWELVE_MP))
        try:
            for role, pool, concurrency in sorted(set(configs)):
                results.append(measure(stack, feeder, role, pool, concurrency))
                print(f"memory: {results[-1]}", flush=True)
        finally:
            feeder.close()
    return {"photo": "12 MP phone JPEG", "ai_latency_s": 1.0, "measurements": results}


LOAD_TIMEOUT_S = 120
