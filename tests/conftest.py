"""Shared fixtures: settings for a test, the embedded services, the local servers."""

from __future__ import annotations

from pathlib import Path

import pytest

from recycle_workers import pipeline
from recycle_workers.cache import MemoryCache
from recycle_workers.catalog import default_catalog
from recycle_workers.settings import load_settings
from recycle_workers.storage import FileStorage

from services import REDIS_STATE_DB, new_bucket, require_port

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


@pytest.fixture
def redis_client():
    """A client on the emptied Redis database of tests of Redis-backed state."""
    import redis

    require_port("Redis", 6379)
    client = redis.Redis(db=REDIS_STATE_DB)
    client.flushdb()
    yield client
    client.close()


@pytest.fixture(scope="session")
def moto_endpoint():
    """A real S3-protocol HTTP endpoint on loopback (moto's threaded server)."""
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def s3_settings(moto_endpoint, monkeypatch):
    """Settings for a fresh bucket on the moto server, with test credentials."""
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    _, bucket = new_bucket(moto_endpoint, prefix="photos")
    return load_settings(
        storage_url=f"s3://{bucket}/recycle",
        s3_endpoint_url=moto_endpoint,
        s3_region="us-east-1",
        s3_path_style=True,
        s3_access_key_id="test",
        s3_secret_access_key="test",
    )


@pytest.fixture
def fake_openai():
    from recycle_workers.testing.fake_openai import FakeOpenAI

    with FakeOpenAI() as fake:
        yield fake
