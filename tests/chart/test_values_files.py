"""The environment files in values/ and the reference layout's capacity."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import jmespath
import pytest

from helm_template import (
    REPO_ROOT,
    VALUES_DIR,
    by_component,
    documents_of_kind,
    render_chart,
)

VALUES_FILES = sorted(VALUES_DIR.glob("*.yaml")) + sorted(
    (REPO_ROOT / "tests/chart/values").glob("*.yaml")
)
ENVIRONMENTS = ["dev", "staging", "prod", "reference-layout", "ci"]


def render_file(name: str, values: dict | None = None) -> list[dict]:
    return render_chart(
        values, values_files=[VALUES_DIR / f"{name}.yaml"], with_test_secrets=False
    )


def cpu_millicores(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(float(quantity) * 1000)


def memory_mebibytes(quantity: str) -> int:
    units = {"Mi": 1, "Gi": 1024}
    return int(quantity[:-2]) * units[quantity[-2:]]


def node_group_totals(documents: list[dict]) -> dict[str, dict[str, int]]:
    """Requests and pod count per node-group label, over every Deployment's replicas."""
    totals: dict[str, dict[str, int]] = defaultdict(
        lambda: {"cpu": 0, "memory": 0, "pods": 0}
    )
    for deployment in documents_of_kind(documents, "Deployment"):
        pod = deployment["spec"]["template"]["spec"]
        group = pod["nodeSelector"]["node-group"]
        replicas = deployment["spec"]["replicas"]
        requests = pod["containers"][0]["resources"]["requests"]
        totals[group]["cpu"] += replicas * cpu_millicores(requests["cpu"])
        totals[group]["memory"] += replicas * memory_mebibytes(requests["memory"])
        totals[group]["pods"] += replicas
    return dict(totals)


class TestValuesFiles:
    def test_should_ship_exactly_the_environment_files(self):
        assert sorted(path.stem for path in VALUES_DIR.glob("*.yaml")) == sorted(
            ENVIRONMENTS
        )

    @pytest.mark.parametrize("path", VALUES_FILES, ids=lambda path: path.name)
    def test_should_render_every_values_file_into_well_formed_documents(
        self, path: Path
    ):
        documents = render_chart(values_files=[path], with_test_secrets=False)

        roles = by_component(documents_of_kind(documents, "Deployment"))
        assert len(set(roles) - {"flower"}) == 5
        for document in documents:
            assert {"apiVersion", "kind", "metadata"} <= set(document)
            assert document["metadata"]["name"]

    @pytest.mark.parametrize("name", ["dev", "staging", "prod", "reference-layout"])
    def test_should_take_secrets_from_an_existing_secret(self, name):
        documents = render_file(name)

        assert documents_of_kind(documents, "Secret") == []
        refs = jmespath.search(
            "[?kind=='Deployment'].spec.template.spec.containers[].env[]"
            ".valueFrom.secretKeyRef.name[]",
            documents,
        )
        assert set(refs) == {"recycle-pipeline-secrets"}

    @pytest.mark.parametrize("name", ["dev", "ci"])
    def test_should_run_one_pod_per_role(self, name):
        deployments = documents_of_kind(render_file(name), "Deployment")

        assert [deployment["spec"]["replicas"] for deployment in deployments] == [1] * 5

    def test_should_point_ci_at_the_local_servers(self):
        (secret,) = documents_of_kind(render_file("ci"), "Secret")

        assert secret["data"] == {
            "RECYCLE_BROKER_URL": "YW1xcDovL2d1ZXN0Omd1ZXN0QDEyNy4wLjAuMTo1NjcyLy8=",
            "RECYCLE_REDIS_URL": "cmVkaXM6Ly8xMjcuMC4wLjE6NjM3OS8w",
        }


class TestReferenceLayout:
    def test_should_total_the_requests_of_each_node_group(self):
        totals = node_group_totals(render_file("reference-layout"))

        assert totals == {
            "worker-1": {"cpu": 1350, "memory": 1408, "pods": 6},
            "worker-2": {"cpu": 800, "memory": 2048, "pods": 8},
        }
        assert sum(group["pods"] for group in totals.values()) == 14

    @pytest.mark.parametrize(
        ("role", "replicas", "pool", "concurrency", "group"),
        [
            ("uploader", 3, "prefork", "8", "worker-1"),
            ("retriever", 2, "prefork", "4", "worker-1"),
            ("scheduler", 1, None, None, "worker-1"),
            ("analyzer", 5, "gevent", "20", "worker-2"),
            ("generator", 3, "gevent", "10", "worker-2"),
        ],
    )
    def test_should_place_each_role_as_the_layout_says(
        self, role, replicas, pool, concurrency, group
    ):
        deployment = by_component(
            documents_of_kind(render_file("reference-layout"), "Deployment")
        )[role]
        pod = deployment["spec"]["template"]["spec"]
        env = {
            entry["name"]: entry.get("value") for entry in pod["containers"][0]["env"]
        }

        assert deployment["metadata"]["namespace"] == "workers"
        assert deployment["spec"]["replicas"] == replicas
        assert pod["nodeSelector"] == {"workload": "async-workers", "node-group": group}
        assert env.get("RECYCLE_POOL") == pool
        assert env.get("RECYCLE_CONCURRENCY") == concurrency

    def test_should_keep_prod_on_the_reference_layouts_pods_and_node_groups(self):
        def pods(name: str) -> dict:
            deployments = by_component(
                documents_of_kind(render_file(name), "Deployment")
            )
            return {
                role: (
                    doc["spec"]["replicas"],
                    doc["spec"]["template"]["spec"]["nodeSelector"],
                )
                for role, doc in deployments.items()
            }

        assert pods("prod") == pods("reference-layout")

    def test_should_fit_prods_measured_requests_on_one_node_per_group(self):
        totals = node_group_totals(render_file("prod"))

        assert totals == {
            "worker-1": {"cpu": 1350, "memory": 1152, "pods": 6},
            "worker-2": {"cpu": 800, "memory": 1024, "pods": 8},
        }

    @pytest.mark.parametrize(
        ("role", "pool", "concurrency"),
        [
            ("uploader", "threads", "2"),
            ("retriever", "threads", "2"),
            ("analyzer", "gevent", "20"),
            ("generator", "gevent", "10"),
        ],
    )
    def test_should_run_prod_on_the_measured_pools(self, role, pool, concurrency):
        deployment = by_component(documents_of_kind(render_file("prod"), "Deployment"))[
            role
        ]
        env = {
            entry["name"]: entry.get("value")
            for entry in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
        }

        assert (env["RECYCLE_POOL"], env["RECYCLE_CONCURRENCY"]) == (pool, concurrency)

    def test_should_budget_disruptions_in_prod_but_not_for_the_scheduler(self):
        budgets = by_component(
            documents_of_kind(render_file("prod"), "PodDisruptionBudget")
        )

        assert sorted(budgets) == ["analyzer", "generator", "retriever", "uploader"]
