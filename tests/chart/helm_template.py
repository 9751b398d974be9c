"""Render the recycle-pipeline chart with the real ``helm template``.

Every chart test goes through :func:`render_chart`; it returns the rendered documents as
dicts so tests can query them with jmespath.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parents[2]
CHART_DIR = REPO_ROOT / "charts" / "recycle-pipeline"
VALUES_DIR = REPO_ROOT / "values"
RELEASE_NAME = "recycle"
NAMESPACE = "workers"

# The chart requires connection URLs when no existingSecret is named; tests get these
# unless they ask for none.
TEST_SECRETS = {
    "secrets": {
        "brokerUrl": "amqp://guest:guest@rabbitmq:5672//",
        "redisUrl": "redis://redis:6379/0",
    }
}


class ChartRenderError(Exception):
    """``helm template`` refused the values; the message is helm's error output."""


def find_helm() -> str | None:
    """The helm binary: $HELM, else the repository's .tools/bin/helm, else PATH's."""
    configured = os.environ.get("HELM")
    if configured:
        return shutil.which(configured)
    local = REPO_ROOT / ".tools" / "bin" / "helm"
    if local.exists():
        return str(local)
    return shutil.which("helm")


def render_chart(
    values: dict[str, Any] | None = None,
    *,
    show_only: list[str] | None = None,
    values_files: list[str | Path] | None = None,
    with_test_secrets: bool = True,
    namespace: str = NAMESPACE,
) -> list[dict[str, Any]]:
    """Render the chart and return its documents, in helm's order.

    ``show_only`` names templates such as ``templates/deployment.yaml``.
    ``values_files`` are applied first, then ``values``.
    Raises :class:`ChartRenderError` when helm fails.
    """
    layers = [yaml.safe_dump(TEST_SECRETS)] if with_test_secrets else []
    layers += [Path(path).read_text() for path in values_files or []]
    layers.append(yaml.safe_dump(values or {}))
    return list(_render(tuple(layers), tuple(show_only or ()), namespace))


@lru_cache(maxsize=256)
def _render(
    layers: tuple[str, ...], show_only: tuple[str, ...], namespace: str
) -> tuple[dict[str, Any], ...]:
    helm = find_helm()
    if helm is None:
        raise ChartRenderError(
            "helm not found: run `make helm` to put it in .tools/bin"
        )

    with tempfile.TemporaryDirectory() as scratch:
        command = [
            helm,
            "template",
            RELEASE_NAME,
            str(CHART_DIR),
            "--namespace",
            namespace,
        ]
        for index, layer in enumerate(layers):
            path = Path(scratch) / f"values-{index}.yaml"
            path.write_text(layer)
            command += ["--values", str(path)]
        for template in show_only:
            command += ["--show-only", template]
        result = subprocess.run(command, capture_output=True, text=True, check=False)

    if result.returncode != 0:
        # --show-only of a template that rendered nothing is not a failure of the chart.
        if show_only and "could not find template" in result.stderr:
            return ()
        raise ChartRenderError(result.stderr.strip())
    return tuple(doc for doc in yaml.safe_load_all(result.stdout) if doc)


def documents_of_kind(
    documents: list[dict[str, Any]], kind: str
) -> list[dict[str, Any]]:
    return [doc for doc in documents if doc["kind"] == kind]


def by_component(documents: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Key a role's documents (one per role) by their component label."""
    return {
        doc["metadata"]["labels"]["app.kubernetes.io/component"]: doc
        for doc in documents
    }
