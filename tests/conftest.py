"""Shared fixtures: settings for a test, the embedded services, the local servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from recycle_workers import pipeline
from recycle_workers.cache import MemoryCache
from recycle_workers.catalog import default_catalog
from recycle_workers.settings import load_settings
from recycle_workers.storage import FileStorage

REPO_ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch):
    """No RECYCLE_* variable of the developer's shell leaks into a test."""
    import os

    for name in list(os.environ):
        if name.startswith("RECYCLE_"):
            monkeypatch.delenv(name)


@pytest.fixture
def settings(tmp_path):
    return load_settings(storage_url=f"file://{tmp_path}/storage", mode="embedded")


@pytest.fixture
def services(settings, tmp_path) -> pipeline.Services:
    return pipeline.Services(
        settings=settings,
        storage=FileStorage(tmp_path / "storage"),
        cache=MemoryCache(),
        catalog=default_catalog(),
        adapter=None,
    )
