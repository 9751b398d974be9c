"""Reliability tests: the rendered chart run, faults, bad input and load.

Tests marked ``slow`` run only when ``RELIABILITY_FULL=1`` (``make reliability``
sets it); ``make test`` runs the rest. A test that takes the ``record`` fixture
adds one row to the JSON-lines file named by ``RELIABILITY_RECORDS``, with
whether it passed, and ``scripts/reliability-report`` turns the rows into
``docs/reliability.md``.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest

TESTS = Path(__file__).resolve().parent.parent
# The shared helpers live beside the other test folders, not in a package.
sys.path[:0] = [str(TESTS), str(TESTS / "chart")]

FULL_RUN = os.environ.get("RELIABILITY_FULL") == "1"


def pytest_configure(config) -> None:
    config.addinivalue_line(
        "markers", "slow: a long reliability test; make reliability runs it"
    )


def pytest_collection_modifyitems(config, items) -> None:
    if FULL_RUN:
        return
    skip = pytest.mark.skip(
        reason="slow: run with make reliability (RELIABILITY_FULL=1)"
    )
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if report.when == "call":
        item.reliability_passed = report.passed


@pytest.fixture(scope="module")
def workdir() -> Iterator[Path]:
    """A folder for one module's stack, outside pytest's own temporary folders.

    pytest keeps only its three newest base folders, so a second pytest run on the
    same machine would delete a running stack's storage, logs and probe files.
    """
    folder = Path(tempfile.mkdtemp(prefix="recycle-reliability-"))
    yield folder
    if (
        os.environ.get("RELIABILITY_KEEP") != "1"
    ):  # keep the logs to read after a failure
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def record(request):
    """A docs/reliability.md row: set scenario, expected and observed; add numbers."""
    row: dict = {}
    started = time.monotonic()
    yield row
    target = os.environ.get("RELIABILITY_RECORDS")
    if not target or not row:
        return
    row.setdefault("test", request.node.nodeid)
    row["passed"] = getattr(request.node, "reliability_passed", False)
    row["seconds"] = round(time.monotonic() - started, 1)
    with open(target, "a", encoding="utf-8") as records:
        records.write(json.dumps(row, ensure_ascii=False) + "\n")
