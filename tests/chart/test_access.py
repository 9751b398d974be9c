"""The service account and the NetworkPolicy."""

from __future__ import annotations

import jmespath
import pytest

from helm_template import render_chart

NETWORK_POLICY = ["templates/networkpolicy.yaml"]
SERVICE_ACCOUNT = ["templates/serviceaccount.yaml"]


class TestNetworkPolicy:
    def test_should_allow_ingress_only_to_the_metrics_port_from_prometheus(self):
        (policy,) = render_chart(show_only=NETWORK_POLICY)

        assert policy["spec"]["policyTypes"] == ["Ingress", "Egress"]
        assert policy["spec"]["ingress"] == [
            {
                "ports": [{"port": "metrics", "protocol": "TCP"}],
                "from": [
                    {
                        "namespaceSelector": {
                            "matchLabels": {"kubernetes.io/metadata.name": "monitoring"}
                        },
                        "podSelector": {
                            "matchLabels": {"app.kubernetes.io/name": "prometheus"}
                        },
                    }
                ],
            }
        ]
        assert policy["spec"]["podSelector"]["matchLabels"] == {
            "app.kubernetes.io/name": "recycle-pipeline",
            "app.kubernetes.io/instance": "recycle",
        }

    @pytest.mark.parametrize(
        "values",
        [{"metrics": {"enabled": False}}, {"networkPolicy": {"metricsFrom": []}}],
        ids=["metrics-off", "no-scrapers"],
    )
    def test_should_deny_all_ingress_without_metrics_or_scrapers(self, values):
        (policy,) = render_chart(values, show_only=NETWORK_POLICY)

        assert "ingress" not in policy["spec"]

    @pytest.mark.parametrize(
        ("port", "protocol"),
        [(53, "UDP"), (53, "TCP"), (5672, "TCP"), (6379, "TCP"), (443, "TCP")],
    )
    def test_should_allow_egress_to_dns_broker_redis_and_https(self, port, protocol):
        (policy,) = render_chart(show_only=NETWORK_POLICY)

        ports = jmespath.search("spec.egress[].ports[]", policy)
        assert {"port": port, "protocol": protocol} in ports

    def test_should_narrow_a_destination_to_its_peers(self):
        peer = {"podSelector": {"matchLabels": {"app.kubernetes.io/name": "rabbitmq"}}}
        values = {
            "networkPolicy": {
                "egress": {"broker": {"to": [peer], "ports": [{"port": 5672}]}}
            }
        }
        (policy,) = render_chart(values, show_only=NETWORK_POLICY)

        rule = jmespath.search("spec.egress[?ports[0].port==`5672`] | [0]", policy)
        assert rule["to"] == [peer]

    def test_should_render_nothing_when_disabled(self):
        assert (
            render_chart(
                {"networkPolicy": {"enabled": False}}, show_only=NETWORK_POLICY
            )
            == []
        )


class TestServiceAccount:
    def test_should_mount_no_token(self):
        (account,) = render_chart(show_only=SERVICE_ACCOUNT)

        assert account["metadata"]["name"] == "recycle-pipeline"
        assert account["automountServiceAccountToken"] is False

    def test_should_carry_annotations_for_a_cloud_identity(self):
        values = {
            "serviceAccount": {
                "annotations": {"eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r"}
            },
            "commonAnnotations": {"owner": "recycling"},
        }
        (account,) = render_chart(values, show_only=SERVICE_ACCOUNT)

        assert account["metadata"]["annotations"] == {
            "eks.amazonaws.com/role-arn": "arn:aws:iam::1:role/r",
            "owner": "recycling",
        }

    @pytest.mark.parametrize(
        ("name", "expected"), [("", "default"), ("workers", "workers")]
    )
    def test_should_use_an_existing_account_when_told_not_to_create_one(
        self, name, expected
    ):
        values = {"serviceAccount": {"create": False, "name": name}}
        rendered = render_chart(values, show_only=["templates/deployment.yaml"])
        accounts = render_chart(values, show_only=SERVICE_ACCOUNT)

        assert accounts == []
        assert set(
            jmespath.search("[].spec.template.spec.serviceAccountName", rendered)
        ) == {expected}
