"""Real worker processes for the benchmarks, on their own RabbitMQ vhost and Redis db.

:class:`Stack` makes a throwaway virtual host and a storage folder, starts
``recycle-workers run`` for a role with a given pool and concurrency, waits for
its readiness probe, and measures the proportional set size (PSS) of the whole
process tree of a role. Redis database 13 is the benchmarks' own; the tests use
14 and 15 and flush them.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import redis

from recycle_workers import pipeline
from recycle_workers.cache import RedisCache
from recycle_workers.catalog import default_catalog
from recycle_workers.llm import adapter_from_settings
from recycle_workers.settings import Settings, load_settings
from recycle_workers.storage import FileStorage

REDIS_DB = 13
RABBITMQ_URL = "amqp://guest:guest@127.0.0.1:5672/{vhost}"
REDIS_URL = f"redis://127.0.0.1:6379/{REDIS_DB}"


@dataclass
class Worker:
    """One ``recycle-workers run`` process and where its probe files live."""

    role: str
    pool: str
    concurrency: int
    process: subprocess.Popen
    env: dict[str, str]

    @property
    def pid(self) -> int:
        return self.process.pid

    def pss_mib(self) -> float:
        """PSS of this worker and every process under it, in MiB."""
        return sum(_pss_kib(pid) for pid in _tree(self.pid)) / 1024

    def processes(self) -> int:
        return len(_tree(self.pid))


@dataclass
class Stack:
    """A vhost, a Redis db and a storage folder that exist only for one benchmark."""

    openai_base_url: str | None = None
    root: Path = field(
        default_factory=lambda: Path(tempfile.mkdtemp(prefix="recycle-bench-"))
    )
    vhost: str = field(default_factory=lambda: f"recycle-bench-{uuid.uuid4().hex[:8]}")
    workers: list[Worker] = field(default_factory=list)

    def __enter__(self) -> "Stack":
        _rabbitmqctl("add_vhost", self.vhost)
        _rabbitmqctl("set_permissions", "-p", self.vhost, "guest", ".*", ".*", ".*")
        redis.Redis.from_url(REDIS_URL).flushdb()
        return self

    def __exit__(self, *_) -> None:
        for worker in self.workers:
            self.stop(worker)
        _rabbitmqctl("delete_vhost", self.vhost)
        redis.Redis.from_url(REDIS_URL).flushdb()
        shutil.rmtree(self.root, ignore_errors=True)

    @property
    def env(self) -> dict[str, str]:
        """The settings every process of this stack shares, as RECYCLE_* variables."""
        env = {
            "RECYCLE_BROKER_URL": RABBITMQ_URL.format(vhost=self.vhost),
            "RECYCLE_REDIS_URL": REDIS_URL,
            "RECYCLE_STORAGE_URL": f"file://{self.root}/storage",
            "RECYCLE_LOG_LEVEL": "WARNING",
            "RECYCLE_HEARTBEAT_INTERVAL_S": "1",
            # The benchmarks measure the pods, not the account's model quota.
            "RECYCLE_ANALYSIS_RPM": "0",
            "RECYCLE_ANALYSIS_TPM": "0",
            "RECYCLE_GENERATION_RPM": "0",
            "RECYCLE_GENERATION_TPM": "0",
        }
        if self.openai_base_url:
            env["RECYCLE_OPENAI_API_KEY"] = "sk-bench"
            env["RECYCLE_OPENAI_BASE_URL"] = self.openai_base_url
        return env

    def settings(self) -> Settings:
        overrides = {
            key.removeprefix("RECYCLE_").lower(): value
            for key, value in self.env.items()
        }
        return load_settings(**overrides)

    def services(self) -> pipeline.Services:
        """The services a worker of this stack builds, for running stages in-process."""
        settings = self.settings()
        return pipeline.Services(
            settings=settings,
            storage=FileStorage(self.root / "storage"),
            cache=RedisCache.from_url(REDIS_URL),
            catalog=default_catalog(),
            adapter=adapter_from_settings(settings),
        )

    def start(
        self, role: str, *, pool: str = "prefork", concurrency: int = 1
    ) -> Worker:
        """Start one worker of ``role`` and return once its readiness probe passes."""
        name = f"{role}-{len(self.workers)}"
        env = {
            **os.environ,
            **self.env,
            "RECYCLE_POOL": pool,
            "RECYCLE_CONCURRENCY": str(concurrency),
            "RECYCLE_HEARTBEAT_FILE": str(self.root / name / "heartbeat"),
            "RECYCLE_READY_FILE": str(self.root / name / "ready"),
        }
        log = open(self.root / f"{name}.log", "ab")
        process = subprocess.Popen(
            [sys.executable, "-m", "recycle_workers", "run", "--role", role],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        worker = Worker(role, pool, concurrency, process, env)
        self.workers.append(worker)
        if role == "scheduler":
            time.sleep(SCHEDULER_SETTLE_S)
        else:
            _wait_until_ready(worker)
        return worker

    def stop(self, worker: Worker) -> None:
        if worker.process.poll() is None:
            worker.process.send_signal(signal.SIGTERM)
            try:
                worker.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.process.kill()
                worker.process.wait()


def _wait_until_ready(worker: Worker, timeout: float = 90) -> None:
    ready = Path(worker.env["RECYCLE_READY_FILE"])
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if ready.exists():
            return
        if worker.process.poll() is not None:
            raise RuntimeError(
                f"{worker.role} worker exited with {worker.process.returncode}"
            )
        time.sleep(0.2)
    raise RuntimeError(f"{worker.role} worker was not ready after {timeout:g} s")


def _tree(pid: int) -> list[int]:
    """``pid`` and all its descendants, from the kernel's children lists."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        for task in Path(f"/proc/{current}/task").glob("*/children"):
            try:
                pending += [int(child) for child in task.read_text().split()]
            except OSError:
                continue
    return found


def _pss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Pss:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(
        ["rabbitmqctl", "-q", *args], check=True, capture_output=True, timeout=60
    )


SCHEDULER_SETTLE_S = 4.0


class Feeder:
    """Puts jobs straight onto one stage's queue and sees when that stage has done them.

    The message for a stage is made by running the stages before it in this process,
    so a single role can be loaded without the others running. A stage's checkpoint
    in Redis marks the job done there.
    """

    def __init__(self, stack: Stack, *, image: bytes) -> None:
        from recycle_workers.app import create_app

        self.stack = stack
        self.app = create_app(stack.settings())
        self.redis = redis.Redis.from_url(REDIS_URL)
        offline = stack.services()
        offline.adapter = None
        self._offline = offline
        self.image = image

    def message(self, stage: str, number: int) -> tuple[str, dict]:
        """A job id and the payload for ``stage``; each job asks its own question."""
        request = pipeline.new_request(
            image=self.image,
            question=f"생수병 어떻게 버려요? ({number})",
            lang="ko",
            settings=self._offline.settings,
        )
        if stage == "upload":
            return request.job_id, request.model_dump(mode="json")
        message = pipeline.run_upload(request, self._offline)
        for earlier, run in (
            ("analysis", pipeline.run_analysis),
            ("retrieval", pipeline.run_retrieval),
        ):
            if stage == earlier:
                break
            message = run(message, self._offline)
        return request.job_id, message.model_dump(mode="json")

    def send(self, stage: str, job_id: str, payload: dict) -> None:
        from recycle_workers.roles import STAGES

        spec = next(spec for spec in STAGES if spec.name == stage)
        self.app.send_task(
            spec.task,
            args=[payload],
            task_id=job_id,
            queue=spec.queue,
            routing_key=spec.queue,
        )

    def done(self, stage: str, job_ids: list[str]) -> list[bool]:
        from recycle_workers.cache import checkpoint_key

        pipe = self.redis.pipeline()
        for job_id in job_ids:
            pipe.exists(checkpoint_key(job_id, stage))
        return [bool(found) for found in pipe.execute()]

    def close(self) -> None:
        self.app.close()
