"""Fault hooks for the worker processes the reliability tests start; never shipped.

The tests put this folder on PYTHONPATH, so Python loads it at start-up in every
worker process (and in Celery's forked children). It waits until
``recycle_workers.pipeline`` is imported, without importing anything itself, so
gevent's monkey-patching still comes first, then wraps each ``run_*`` stage
function. The wrapper reads its orders from the environment at call time:

- ``RELIABILITY_HOOK_DIR``: append ``stage job_id pid`` to ``started.log`` there
  when a stage starts, so a test knows which process holds which job;
- ``RELIABILITY_HOLD_S`` and ``RELIABILITY_HOLD_STAGES`` (comma-separated):
  sleep that long before those stages work, holding them mid-task;
- ``RELIABILITY_CRASH_WORD``: a job whose question contains it kills the
  process running its stage (SIGKILL), as a crashing native library would.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.util
import os
import signal
import sys
import time

STAGES = ("upload", "analysis", "retrieval", "generation")


def _wrap(stage: str, run):
    @functools.wraps(run)
    def hooked(message, services):
        hook_dir = os.environ.get("RELIABILITY_HOOK_DIR")
        if hook_dir:
            with open(os.path.join(hook_dir, "started.log"), "a") as log:
                log.write(f"{stage} {message.job_id} {os.getpid()}\n")
        crash_word = os.environ.get("RELIABILITY_CRASH_WORD")
        if crash_word and crash_word in (message.question or ""):
            os.kill(os.getpid(), signal.SIGKILL)
        if stage in os.environ.get("RELIABILITY_HOLD_STAGES", "").split(","):
            time.sleep(float(os.environ.get("RELIABILITY_HOLD_S", "0")))
        return run(message, services)

    return hooked


class _PatchPipeline(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Loads ``recycle_workers.pipeline`` normally, then wraps its stage functions."""

    def find_spec(self, name, path, target=None):
        if name != "recycle_workers.pipeline":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        self._loader = spec.loader
        spec.loader = self
        return spec

    def create_module(self, spec):
        return self._loader.create_module(spec)

    def exec_module(self, module):
        self._loader.exec_module(module)
        for stage, function in zip(
            STAGES, ("run_upload", "run_analysis", "run_retrieval", "run_generation")
        ):
            setattr(module, function, _wrap(stage, getattr(module, function)))


sys.meta_path.insert(0, _PatchPipeline())
