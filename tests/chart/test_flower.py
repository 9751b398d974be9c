"""The optional Flower: its Deployment, Service, auth Secret and NetworkPolicy."""

from __future__ import annotations

import base64

import jmespath
import pytest

from helm_template import ChartRenderError, documents_of_kind, render_chart

FLOWER = "flower"
WITH_PASSWORD = {
    "flower": {"enabled": True, "auth": {"username": "ops", "password": "s3cret"}}
}
WITH_EXISTING_SECRET = {
    "flower": {"enabled": True, "auth": {"existingSecret": "flower-basic-auth"}}
}


def flower_documents(values: dict | None = None) -> list[dict]:
    """Flower's objects: the documents of the whole render labelled as its component."""
    return [
        document
        for document in render_chart(values)
        if document["metadata"]["labels"].get("app.kubernetes.io/component") == FLOWER
    ]


def flower(values: dict, kind: str) -> dict:
    (document,) = documents_of_kind(flower_documents(values), kind)
    return document


def flower_env(values: dict) -> dict[str, dict]:
    env = jmespath.search(
        "spec.template.spec.containers[0].env", flower(values, "Deployment")
    )
    return {entry["name"]: entry for entry in env}


class TestFlower:
    def test_should_render_nothing_by_default(self):
        assert flower_documents() == []

    def test_should_refuse_to_render_without_authentication(self):
        with pytest.raises(ChartRenderError, match="Flower needs authentication"):
            render_chart({"flower": {"enabled": True}})

    def test_should_refuse_a_username_without_a_password(self):
        with pytest.raises(ChartRenderError, match="Flower needs authentication"):
            render_chart({"flower": {"enabled": True, "auth": {"username": "ops"}}})

    def test_should_make_the_basic_auth_secret_from_username_and_password(self):
        secret = flower(WITH_PASSWORD, "Secret")
        env = flower_env(WITH_PASSWORD)

        assert base64.b64decode(secret["data"]["basic-auth"]).decode() == "ops:s3cret"
        assert env["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"] == {
            "name": secret["metadata"]["name"],
            "key": "basic-auth",
        }

    def test_should_read_basic_auth_from_an_existing_secret(self):
        values = {
            "flower": {
                "enabled": True,
                "auth": {"existingSecret": "ops-auth", "existingSecretKey": "users"},
            }
        }
        rendered = flower_documents(values)
        env = flower_env(values)

        assert documents_of_kind(rendered, "Secret") == []
        assert env["FLOWER_BASIC_AUTH"]["valueFrom"]["secretKeyRef"] == {
            "name": "ops-auth",
            "key": "users",
        }

    def test_should_take_the_broker_url_from_the_workers_secret(self):
        values = WITH_EXISTING_SECRET | {
            "secrets": {"existingSecret": "recycle-secrets"}
        }
        env = flower_env(values)

        assert env["CELERY_BROKER_URL"]["valueFrom"]["secretKeyRef"] == {
            "name": "recycle-secrets",
            "key": "RECYCLE_BROKER_URL",
        }
        assert all(
            "value" not in entry or "://" not in entry["value"]
            for entry in env.values()
        )

    def test_should_run_locked_down_like_the_workers(self):
        pod = flower(WITH_EXISTING_SECRET, "Deployment")["spec"]["template"]["spec"]
        container = pod["containers"][0]

        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["securityContext"]["readOnlyRootFilesystem"] is True
        assert container["securityContext"]["allowPrivilegeEscalation"] is False
        assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
        assert {"name": "tmp", "mountPath": "/tmp"} in container["volumeMounts"]

    def test_should_use_its_own_pinned_image_resources_and_node_selector(self):
        values = {
            "flower": WITH_EXISTING_SECRET["flower"]
            | {
                "nodeSelector": {"workload": "tools"},
                "resources": {"requests": {"cpu": "20m"}},
            }
        }
        pod = flower(values, "Deployment")["spec"]["template"]["spec"]

        assert pod["containers"][0]["image"] == "mher/flower:2.0.1"
        assert pod["containers"][0]["resources"]["requests"]["cpu"] == "20m"
        assert pod["nodeSelector"] == {"workload": "tools"}

    def test_should_expose_its_port_on_a_cluster_ip_service(self):
        deployment = flower(WITH_EXISTING_SECRET, "Deployment")
        service = flower(WITH_EXISTING_SECRET, "Service")

        assert service["spec"]["type"] == "ClusterIP"
        assert service["spec"]["ports"] == [
            {"name": "http", "port": 5555, "targetPort": "http", "protocol": "TCP"}
        ]
        assert (
            service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
        )
        assert service["spec"]["selector"]["app.kubernetes.io/component"] == "flower"

    def test_should_stay_out_of_the_metrics_monitors(self):
        values = WITH_EXISTING_SECRET | {"metrics": {"podMonitor": {"enabled": True}}}
        (monitor,) = documents_of_kind(render_chart(values), "PodMonitor")

        assert "flower" not in jmespath.search(
            "spec.selector.matchExpressions[0].values", monitor
        )


class TestFlowerNetworkPolicy:
    def test_should_open_no_port_to_flower_without_peers(self):
        rendered = flower_documents(WITH_EXISTING_SECRET)

        assert documents_of_kind(rendered, "NetworkPolicy") == []

    def test_should_open_flower_port_to_the_configured_peers_only(self):
        peer = {"namespaceSelector": {"matchLabels": {"name": "ingress-nginx"}}}
        values = WITH_EXISTING_SECRET | {"networkPolicy": {"flowerFrom": [peer]}}
        policy = flower(values, "NetworkPolicy")

        assert (
            policy["spec"]["podSelector"]["matchLabels"]["app.kubernetes.io/component"]
            == "flower"
        )
        assert policy["spec"]["policyTypes"] == ["Ingress"]
        assert policy["spec"]["ingress"] == [
            {"ports": [{"port": "http", "protocol": "TCP"}], "from": [peer]}
        ]
