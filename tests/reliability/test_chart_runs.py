"""The chart runs: what `helm template` renders for CI, started as local processes.

Every Deployment of the rendered ``values/ci.yaml`` release becomes one process,
started the way the kubelet would start its container: the image's entrypoint
with the container's args, and an environment made only from the container's
``envFrom`` and ``env`` (values, and ``secretKeyRef``/``configMapKeyRef`` looked
up in the rendered Secret and ConfigMap). Only what must differ on one machine
is changed, and it is changed in the rendered Secret and ConfigMap, never in the
Deployments: the RabbitMQ virtual host, the Redis database, the bucket on moto,
the fake OpenAI server, and each pod's private ``/tmp``. So a variable the chart
names differently from the package, a queue nobody consumes or a pool Celery
does not know fails these tests.
"""

from __future__ import annotations

import base64
import copy
import json
import os
import re
import socket
import subprocess
import sys
import tempfile
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

import jmespath
import pytest
from stack import account_for

from recycle_workers.client import BrokerClient
from recycle_workers.testing.fake_openai import FakeOpenAI

from helm_template import REPO_ROOT, VALUES_DIR, documents_of_kind, render_chart
from images import photo
from services import REDIS_TEST_DB, broker_vhost, new_bucket, settings_from_env

pytestmark = pytest.mark.services

VENV_BIN = Path(sys.executable).parent


class PodStartError(Exception):
    """A container failed to start or never became ready, as the kubelet would say."""


def render_ci() -> list[dict]:
    return render_chart(values_files=[VALUES_DIR / "ci.yaml"], with_test_secrets=False)


def entrypoint() -> list[str]:
    """The image's ENTRYPOINT, read from the Dockerfile that builds it."""
    text = (REPO_ROOT / "Dockerfile").read_text()
    return json.loads(
        re.search(r"^ENTRYPOINT\s+(\[.*\])\s*$", text, re.MULTILINE).group(1)
    )


def localise(documents: list[dict], *, secret: dict, config: dict) -> list[dict]:
    """A copy of ``documents`` whose Secret and ConfigMap also hold these entries."""
    documents = copy.deepcopy(documents)
    (rendered_secret,) = documents_of_kind(documents, "Secret")
    (rendered_config,) = documents_of_kind(documents, "ConfigMap")
    for key, value in secret.items():
        rendered_secret["data"][key] = base64.b64encode(value.encode()).decode()
    rendered_config["data"].update(config)
    return documents


def container_env(container: dict, documents: list[dict], tmp: Path) -> dict[str, str]:
    """The container's environment as the kubelet builds it, with /tmp made local."""
    config_maps = {
        doc["metadata"]["name"]: doc.get("data", {})
        for doc in documents_of_kind(documents, "ConfigMap")
    }
    secrets = {
        doc["metadata"]["name"]: {
            key: base64.b64decode(value).decode()
            for key, value in doc.get("data", {}).items()
        }
        for doc in documents_of_kind(documents, "Secret")
    }
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        reference = source.get("configMapRef") or source.get("secretRef")
        store = config_maps if "configMapRef" in source else secrets
        if reference["name"] not in store:
            raise PodStartError(
                f"envFrom names {reference['name']!r}, which was not rendered"
            )
        env.update(store[reference["name"]])
    for variable in container.get("env", []):
        if "value" in variable:
            env[variable["name"]] = str(variable["value"])
            continue
        source = variable["valueFrom"]
        kind = "secretKeyRef" if "secretKeyRef" in source else "configMapKeyRef"
        reference = source[kind]
        store = (secrets if kind == "secretKeyRef" else config_maps).get(
            reference["name"]
        )
        if store is None or reference["key"] not in store:
            if reference.get("optional"):
                continue
            raise PodStartError(
                f"{variable['name']}: {kind} {reference} was not rendered"
            )
        env[variable["name"]] = store[reference["key"]]
    # Each pod has /tmp of its own (an emptyDir); here each process gets a folder.
    return {
        name: value.replace("/tmp/", f"{tmp}/", 1)
        if value.startswith("/tmp/")
        else value
        for name, value in env.items()
    }


class LocalPod:
    """One Deployment's container as a local process."""

    def __init__(self, deployment: dict, documents: list[dict], root: Path) -> None:
        self.name = deployment["metadata"]["name"]
        self.container = deployment["spec"]["template"]["spec"]["containers"][0]
        self.tmp = root / self.name
        self.tmp.mkdir(parents=True, exist_ok=True)
        self.env = {
            "PATH": f"{VENV_BIN}{os.pathsep}{os.environ.get('PATH', '/usr/bin:/bin')}",
            "HOME": str(self.tmp),
            "LANG": "C.UTF-8",
            **container_env(self.container, documents, self.tmp),
            # Pods have a network of their own; on one machine each needs its own port.
            "RECYCLE_METRICS_PORT": str(free_port()),
        }
        self.process: subprocess.Popen | None = None

    def start(self) -> None:
        command = self.container.get("command") or entrypoint()
        log = open(self.tmp.parent / f"{self.name}.log", "ab")
        self.process = subprocess.Popen(
            [*command, *self.container.get("args", [])],
            env=self.env,
            cwd=self.tmp,
            stdout=log,
            stderr=subprocess.STDOUT,
        )

    def probe(self, kind: str) -> bool:
        """Run the container's own probe command once."""
        command = self.container[f"{kind}Probe"]["exec"]["command"]
        return (
            subprocess.run(
                command, env=self.env, cwd=self.tmp, capture_output=True, timeout=30
            ).returncode
            == 0
        )

    def wait_started(self, *, timeout: float) -> None:
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise PodStartError(
                    f"{self.name} exited with {self.process.returncode}"
                )
            if self.probe("startup"):
                return
            time.sleep(0.5)
        raise PodStartError(
            f"{self.name} did not pass its startup probe in {timeout:g} s"
        )

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def fake():
    with FakeOpenAI() as server:
        yield server


@pytest.fixture(scope="module")
def bucket(moto_endpoint):
    return new_bucket(moto_endpoint, prefix="chart")


@pytest.fixture
def release(workdir, moto_endpoint, bucket, fake):
    """Start a rendered release: ``release(documents)`` yields a client on its vhost."""

    @contextmanager
    def run(documents: list[dict]) -> Iterator[BrokerClient]:
        with broker_vhost() as vhost:
            # Keys of the Secret as values.yaml's secrets.keys names them.
            secret = {
                "RECYCLE_BROKER_URL": f"amqp://guest:guest@127.0.0.1:5672/{vhost}",
                "RECYCLE_REDIS_URL": f"redis://127.0.0.1:6379/{REDIS_TEST_DB}",
                "RECYCLE_OPENAI_API_KEY": "sk-test",
                "RECYCLE_S3_ACCESS_KEY_ID": "test",
                "RECYCLE_S3_SECRET_ACCESS_KEY": "test",
            }
            config = {
                "RECYCLE_STORAGE_URL": f"s3://{bucket[1]}/recycle",
                "RECYCLE_S3_ENDPOINT_URL": moto_endpoint,
                "RECYCLE_S3_REGION": "us-east-1",
                "RECYCLE_S3_PATH_STYLE": "true",
                "RECYCLE_OPENAI_BASE_URL": fake.base_url,
            }
            localised = localise(documents, secret=secret, config=config)
            root = Path(tempfile.mkdtemp(dir=workdir))
            pods = [
                LocalPod(deployment, localised, root)
                for deployment in documents_of_kind(localised, "Deployment")
            ]
            client = BrokerClient(settings_from_env({**secret, **config}))
            try:
                for pod in pods:
                    pod.start()
                for pod in pods:
                    pod.wait_started(timeout=60)
                run.pods = pods
                yield client
            finally:
                client.close()
                for pod in pods:
                    pod.stop()

    return run


def check_jobs(
    client: BrokerClient, fake: FakeOpenAI, s3, bucket_name: str, *, timeout: float
) -> dict:
    """Submit a mix of jobs and check every answer came through every backend."""
    fake.reset()
    tag = uuid.uuid4().hex[:6]
    jobs = [
        client.submit(
            image=photo(size=(640 + number, 480)), question=f"생수병 {tag} {number}"
        )
        for number in range(3)
    ] + [
        client.submit(question=f"종이컵 {tag} {number}", lang="en")
        for number in range(3)
    ]

    results = account_for(client, jobs, timeout=timeout)

    assert [result.status for result in results.values()] == ["succeeded"] * len(jobs)
    assert not any(result.degraded for result in results.values())
    assert len(fake.calls("analysis")) == len(fake.calls("generation")) == len(jobs)
    keys = [
        entry["Key"] for entry in s3.list_objects_v2(Bucket=bucket_name)["Contents"]
    ]
    assert sum(key.startswith("recycle/originals/") for key in keys) >= 3
    return results


def test_should_run_every_rendered_deployment_and_answer_through_all_backends(
    release, fake, bucket, record
):
    documents = render_ci()
    roles = jmespath.search(
        "[?kind=='Deployment'].metadata.labels.\"app.kubernetes.io/component\"",
        documents,
    )

    with release(documents) as client:
        results = check_jobs(client, fake, *bucket, timeout=60)
        live = {pod.name: pod.probe("liveness") for pod in release.pods}

    assert sorted(roles) == [
        "analyzer",
        "generator",
        "retriever",
        "scheduler",
        "uploader",
    ]
    assert all(live.values()), live
    record.update(
        scenario="the chart runs: values/ci.yaml rendered by helm, "
        "five Deployments as processes",
        expected="every pod passes its probes; "
        "jobs through RabbitMQ, Redis, moto S3, fake AI",
        observed=f"{len(results)}/{len(results)} succeeded, none degraded; "
        f"{len(live)} pods live",
    )


def rename_env(role: str, old: str, new: str) -> Callable[[list[dict]], None]:
    def mutate(documents: list[dict]) -> None:
        for variable in container_of(documents, role)["env"]:
            if variable["name"] == old:
                variable["name"] = new
                return
        raise AssertionError(f"{role} has no {old} to rename")

    return mutate


def set_env(role: str, name: str, value: str) -> Callable[[list[dict]], None]:
    def mutate(documents: list[dict]) -> None:
        (variable,) = [
            v for v in container_of(documents, role)["env"] if v["name"] == name
        ]
        variable["value"] = value

    return mutate


def container_of(documents: list[dict], role: str) -> dict:
    (deployment,) = [
        doc
        for doc in documents_of_kind(documents, "Deployment")
        if doc["metadata"]["labels"]["app.kubernetes.io/component"] == role
    ]
    return deployment["spec"]["template"]["spec"]["containers"][0]


MISMATCHES = {
    "a Secret variable the package does not read": rename_env(
        "analyzer", "RECYCLE_OPENAI_API_KEY", "RECYCLE_OPENAI_KEY"
    ),
    "a queue no stage publishes to": set_env(
        "uploader", "RECYCLE_QUEUES", "q.image_uploads"
    ),
    "a pool Celery does not know": set_env("generator", "RECYCLE_POOL", "gevnet"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", MISMATCHES)
def test_should_fail_when_the_chart_and_the_package_disagree(
    release, fake, bucket, name, record
):
    documents = copy.deepcopy(render_ci())
    MISMATCHES[name](documents)

    with pytest.raises((AssertionError, PodStartError)) as caught:
        with release(documents) as client:
            check_jobs(client, fake, *bucket, timeout=20)

    record.update(
        scenario=f"the chart runs, with {name} in the rendered Deployment",
        expected="the chart-run check fails",
        observed=f"failed: {str(caught.value).splitlines()[0][:100]}",
    )
