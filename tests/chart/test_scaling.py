"""KEDA ScaledObjects, HorizontalPodAutoscalers and PodDisruptionBudgets per role."""

from __future__ import annotations

import jmespath
import pytest

from helm_template import (
    ChartRenderError,
    by_component,
    documents_of_kind,
    render_chart,
)

MANAGEMENT_URL = {
    "secrets": {"rabbitmqManagementUrl": "http://guest:guest@rabbitmq:15672/"}
}
QUEUE_WORKERS = ["uploader", "analyzer", "retriever", "generator"]


def with_role(role: str, settings: dict, **extra) -> dict:
    return {**MANAGEMENT_URL, **extra, "workers": {role: settings}}


class TestScaledObject:
    @pytest.mark.parametrize(
        ("role", "deployment", "queue"),
        [
            ("uploader", "image-uploader", "q.image_upload"),
            ("analyzer", "gpt5-analyzer", "q.gpt5_analysis"),
            ("retriever", "rule-retriever", "q.rule_retrieval"),
            ("generator", "response-generator", "q.response_generation"),
        ],
    )
    def test_should_scale_a_role_on_its_queue_over_http(self, role, deployment, queue):
        values = with_role(
            role, {"autoscaling": {"keda": {"enabled": True, "maxReplicas": 12}}}
        )
        (scaled,) = render_chart(values, show_only=["templates/scaledobject.yaml"])

        assert scaled["spec"]["scaleTargetRef"] == {"name": deployment}
        assert scaled["spec"]["maxReplicaCount"] == 12
        assert jmespath.search("spec.triggers[0]", scaled) == {
            "type": "rabbitmq",
            "metadata": {
                "protocol": "http",
                "mode": "QueueLength",
                "queueName": queue,
                "value": "20",
            },
            "authenticationRef": {"name": "recycle-pipeline-rabbitmq"},
        }

    def test_should_add_one_trigger_per_queue(self):
        values = with_role(
            "uploader",
            {"queues": ["q.a", "q.b"], "autoscaling": {"keda": {"enabled": True}}},
        )
        (scaled,) = render_chart(values, show_only=["templates/scaledobject.yaml"])

        assert jmespath.search("spec.triggers[].metadata.queueName", scaled) == [
            "q.a",
            "q.b",
        ]

    def test_should_make_one_trigger_authentication_from_the_secret(self):
        values = {
            **MANAGEMENT_URL,
            "workerDefaults": {"autoscaling": {"keda": {"enabled": True}}},
        }
        rendered = render_chart(values)

        (authentication,) = documents_of_kind(rendered, "TriggerAuthentication")
        assert authentication["spec"]["secretTargetRef"] == [
            {
                "parameter": "host",
                "name": "recycle-pipeline-secrets",
                "key": "RABBITMQ_MANAGEMENT_URL",
            }
        ]
        assert sorted(
            by_component(documents_of_kind(rendered, "ScaledObject"))
        ) == sorted(QUEUE_WORKERS)

    def test_should_use_an_existing_trigger_authentication(self):
        values = {
            "keda": {"authenticationRef": "shared-rabbitmq"},
            "workers": {"analyzer": {"autoscaling": {"keda": {"enabled": True}}}},
        }
        rendered = render_chart(values)

        assert documents_of_kind(rendered, "TriggerAuthentication") == []
        (scaled,) = documents_of_kind(rendered, "ScaledObject")
        assert scaled["spec"]["triggers"][0]["authenticationRef"] == {
            "name": "shared-rabbitmq"
        }

    def test_should_require_the_management_url_for_a_chart_made_authentication(self):
        with pytest.raises(
            ChartRenderError, match="secrets.rabbitmqManagementUrl is required"
        ):
            render_chart(
                {"workers": {"analyzer": {"autoscaling": {"keda": {"enabled": True}}}}}
            )

    def test_should_render_nothing_by_default(self):
        rendered = render_chart()

        assert documents_of_kind(rendered, "ScaledObject") == []
        assert documents_of_kind(rendered, "TriggerAuthentication") == []


class TestHorizontalPodAutoscaler:
    def test_should_scale_a_role_on_cpu(self):
        values = with_role(
            "uploader",
            {
                "autoscaling": {
                    "hpa": {
                        "enabled": True,
                        "minReplicas": 2,
                        "maxReplicas": 6,
                        "targetCPUUtilizationPercentage": 60,
                    }
                }
            },
        )
        (hpa,) = render_chart(values, show_only=["templates/hpa.yaml"])

        assert hpa["spec"]["scaleTargetRef"] == {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "name": "image-uploader",
        }
        assert (hpa["spec"]["minReplicas"], hpa["spec"]["maxReplicas"]) == (2, 6)
        assert (
            jmespath.search("spec.metrics[0].resource.target.averageUtilization", hpa)
            == 60
        )

    def test_should_refuse_keda_and_an_hpa_on_one_role(self):
        values = with_role(
            "analyzer",
            {"autoscaling": {"keda": {"enabled": True}, "hpa": {"enabled": True}}},
        )

        with pytest.raises(
            ChartRenderError,
            match="workers.analyzer.autoscaling: keda.enabled and hpa.enabled",
        ):
            render_chart(values)

    def test_should_never_scale_the_scheduler_from_the_defaults(self):
        values = {"workerDefaults": {"autoscaling": {"hpa": {"enabled": True}}}}
        rendered = render_chart(values)

        hpas = by_component(documents_of_kind(rendered, "HorizontalPodAutoscaler"))
        assert sorted(hpas) == sorted(QUEUE_WORKERS)


class TestPodDisruptionBudget:
    @pytest.mark.parametrize(
        ("pdb", "expected"),
        [
            ({}, {"maxUnavailable": 1}),
            ({"maxUnavailable": 2}, {"maxUnavailable": 2}),
            ({"minAvailable": 1}, {"minAvailable": 1}),
            ({"minAvailable": "50%"}, {"minAvailable": "50%"}),
        ],
    )
    def test_should_budget_one_of_min_available_or_max_unavailable(self, pdb, expected):
        values = {"workers": {"retriever": {"pdb": {"enabled": True, **pdb}}}}
        (budget,) = render_chart(values, show_only=["templates/pdb.yaml"])

        assert budget["metadata"]["name"] == "rule-retriever"
        assert {
            key: budget["spec"][key] for key in budget["spec"] if key != "selector"
        } == expected
        assert (
            budget["spec"]["selector"]["matchLabels"]["app.kubernetes.io/component"]
            == "retriever"
        )

    def test_should_refuse_both_min_available_and_max_unavailable(self):
        values = {
            "workers": {
                "retriever": {
                    "pdb": {"enabled": True, "minAvailable": 1, "maxUnavailable": 1}
                }
            }
        }

        with pytest.raises(
            ChartRenderError,
            match="workers.retriever.pdb: set minAvailable or maxUnavailable, not both",
        ):
            render_chart(values)

    def test_should_never_budget_the_scheduler(self):
        rendered = render_chart(
            {"workerDefaults": {"pdb": {"enabled": True}}},
            show_only=["templates/pdb.yaml"],
        )

        assert sorted(by_component(rendered)) == sorted(QUEUE_WORKERS)

    def test_should_render_nothing_by_default(self):
        assert render_chart(show_only=["templates/pdb.yaml"]) == []
