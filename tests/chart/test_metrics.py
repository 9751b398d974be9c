"""Metrics: the port on every pod, the monitors, the Grafana dashboard and the alerts.

The dashboard and the alerts may only name metrics the package exports
(``recycle_workers.metrics``) or that RabbitMQ's Prometheus plugin serves per queue.
"""

from __future__ import annotations

import json
import re

import jmespath
import pytest

from recycle_workers import metrics

from helm_template import (
    ChartRenderError,
    by_component,
    documents_of_kind,
    render_chart,
)

DEPLOYMENT = ["templates/deployment.yaml"]
CONFIG_MAP = ["templates/configmap.yaml"]
METRICS_SERVICE = ["templates/metrics-service.yaml"]
SERVICE_MONITOR = ["templates/servicemonitor.yaml"]
POD_MONITOR = ["templates/podmonitor.yaml"]
DASHBOARD = ["templates/dashboard-configmap.yaml"]
PROMETHEUS_RULE = ["templates/prometheusrule.yaml"]

ROLES = ["uploader", "analyzer", "retriever", "generator", "scheduler"]
# Per-object queue metrics of the RabbitMQ Prometheus plugin that the chart reads.
RABBITMQ_METRICS = {"rabbitmq_queue_messages_ready", "rabbitmq_queue_messages_unacked"}
# Prometheus's own health series of every scrape target.
SCRAPE_METRICS = {"up"}

PROMQL_KEYWORDS = {"and", "or", "unless", "bool", "offset"}
GROUPING = re.compile(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)")


def promql_metric_names(expr: str) -> set[str]:
    """The metric names an expression selects (Grafana's $variables allowed)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", " ", text)
    text = re.sub(r"\[[^\]]*\]", " ", text)
    text = GROUPING.sub(" ", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        is_function = text[match.end() :].lstrip().startswith("(")
        if not is_function and match.group() not in PROMQL_KEYWORDS:
            names.add(match.group())
    return names


def label_values_metric(query: str) -> str:
    """The metric of a Grafana ``label_values(metric, label)`` variable query."""
    found = re.fullmatch(r"label_values\((\w+),\s*\w+\)", query)
    assert found, f"unexpected variable query {query!r}"
    return found.group(1)


def rendered_dashboard(values: dict | None = None) -> dict:
    (config_map,) = render_chart(
        {"metrics": {"dashboard": {"enabled": True}}} | (values or {}),
        show_only=DASHBOARD,
    )
    (document,) = config_map["data"].values()
    return json.loads(document)


def dashboard_exprs(dashboard: dict) -> list[str]:
    return jmespath.search("panels[].targets[].expr", dashboard)


def rule_exprs(rule: dict) -> list[str]:
    return jmespath.search("spec.groups[].rules[].expr", rule)


def rules_by_alert(rule: dict) -> dict[str, list[dict]]:
    alerts: dict[str, list[dict]] = {}
    for entry in jmespath.search("spec.groups[].rules[]", rule):
        alerts.setdefault(entry["alert"], []).append(entry)
    return alerts


def prometheus_rule(values: dict | None = None) -> dict:
    (rule,) = render_chart(
        {"metrics": {"prometheusRule": {"enabled": True}}} | (values or {}),
        show_only=PROMETHEUS_RULE,
    )
    return rule


class TestPromqlMetricNames:
    @pytest.mark.parametrize(
        ("expr", "names"),
        [
            (
                "sum by (status) "
                '(rate(recycle_jobs_finished_total{namespace="$ns"}[5m]))',
                {"recycle_jobs_finished_total"},
            ),
            (
                "histogram_quantile(0.95, sum by (le, stage) "
                "(rate(recycle_stage_duration_seconds_bucket[$__rate_interval])))",
                {"recycle_stage_duration_seconds_bucket"},
            ),
            (
                'sum(rate(a_total{x="1"}[1m])) / on() group_left() sum(b_total) > 0.5',
                {"a_total", "b_total"},
            ),
            ('absent(up{pod=~"task-scheduler-.+"} == 1)', {"up"}),
        ],
    )
    def test_should_read_the_metric_names_of_an_expression(self, expr, names):
        assert promql_metric_names(expr) == names


class TestMetricsPort:
    @pytest.mark.parametrize("role", ROLES)
    def test_should_name_the_metrics_port_on_every_deployment(self, role):
        deployment = by_component(render_chart(show_only=DEPLOYMENT))[role]

        ports = jmespath.search("spec.template.spec.containers[0].ports", deployment)
        assert ports == [{"name": "metrics", "containerPort": 9808, "protocol": "TCP"}]

    def test_should_pass_the_port_to_every_role_through_the_config_map(self):
        rendered = render_chart({"metrics": {"port": 9100}})
        (config_map,) = documents_of_kind(rendered, "ConfigMap")
        deployments = documents_of_kind(rendered, "Deployment")

        assert config_map["data"]["RECYCLE_METRICS_PORT"] == "9100"
        assert set(
            jmespath.search(
                "[].spec.template.spec.containers[0].ports[0].containerPort",
                deployments,
            )
        ) == {9100}
        assert set(
            jmespath.search(
                "[].spec.template.spec.containers[0].envFrom[0].configMapRef.name",
                deployments,
            )
        ) == {config_map["metadata"]["name"]}

    def test_should_turn_metrics_off_with_port_zero_and_no_container_port(self):
        values = {"metrics": {"enabled": False}}
        (config_map,) = render_chart(values, show_only=CONFIG_MAP)
        deployments = render_chart(values, show_only=DEPLOYMENT)

        assert config_map["data"]["RECYCLE_METRICS_PORT"] == "0"
        assert (
            jmespath.search("[].spec.template.spec.containers[0].ports", deployments)
            == []
        )

    def test_should_leave_pod_labels_and_annotations_alone(self):
        deployment = by_component(render_chart(show_only=DEPLOYMENT))["analyzer"]

        annotations = deployment["spec"]["template"]["metadata"]["annotations"]
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert set(annotations) == {"checksum/config", "checksum/secret"}
        assert not [key for key in labels if "prometheus" in key]


class TestServiceMonitor:
    def test_should_render_nothing_by_default(self):
        assert (
            render_chart(show_only=SERVICE_MONITOR + METRICS_SERVICE + POD_MONITOR)
            == []
        )

    def test_should_scrape_the_metrics_port_of_the_roles_services(self):
        values = {
            "metrics": {
                "serviceMonitor": {
                    "enabled": True,
                    "interval": "15s",
                    "labels": {"release": "kube-prometheus-stack"},
                }
            }
        }
        (monitor,) = render_chart(values, show_only=SERVICE_MONITOR)

        assert monitor["kind"] == "ServiceMonitor"
        assert monitor["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert monitor["spec"]["selector"] == {
            "matchLabels": {
                "app.kubernetes.io/name": "recycle-pipeline",
                "app.kubernetes.io/instance": "recycle",
            },
            "matchExpressions": [
                {
                    "key": "app.kubernetes.io/component",
                    "operator": "In",
                    "values": ROLES,
                }
            ],
        }
        assert monitor["spec"]["namespaceSelector"] == {"matchNames": ["workers"]}
        assert jmespath.search("spec.endpoints[0]", monitor) == {
            "port": "metrics",
            "path": "/metrics",
            "interval": "15s",
            "scrapeTimeout": "10s",
        }

    def test_should_make_a_headless_service_per_enabled_role(self):
        values = {
            "metrics": {"serviceMonitor": {"enabled": True}},
            "workers": {"retriever": {"enabled": False}},
        }
        services = by_component(render_chart(values, show_only=METRICS_SERVICE))
        (monitor,) = render_chart(values, show_only=SERVICE_MONITOR)

        assert sorted(services) == sorted(set(ROLES) - {"retriever"})
        analyzer = services["analyzer"]
        assert analyzer["metadata"]["name"] == "gpt5-analyzer-metrics"
        assert analyzer["spec"]["clusterIP"] == "None"
        assert analyzer["spec"]["selector"]["app.kubernetes.io/component"] == "analyzer"
        assert analyzer["spec"]["ports"] == [
            {
                "name": "metrics",
                "port": 9808,
                "targetPort": "metrics",
                "protocol": "TCP",
            }
        ]
        assert "retriever" not in jmespath.search(
            "spec.selector.matchExpressions[0].values", monitor
        )

    @pytest.mark.parametrize(
        ("values", "message"),
        [
            (
                {
                    "metrics": {
                        "serviceMonitor": {"enabled": True},
                        "podMonitor": {"enabled": True},
                    }
                },
                "serviceMonitor.enabled and podMonitor.enabled are both true",
            ),
            (
                {"metrics": {"enabled": False, "serviceMonitor": {"enabled": True}}},
                "needs metrics.enabled: true",
            ),
        ],
    )
    def test_should_refuse_a_monitor_that_cannot_work(self, values, message):
        with pytest.raises(ChartRenderError, match=message):
            render_chart(values)


class TestPodMonitor:
    def test_should_scrape_the_metrics_port_of_the_role_pods_without_a_service(self):
        values = {"metrics": {"podMonitor": {"enabled": True, "interval": ""}}}
        rendered = render_chart(values)
        (monitor,) = documents_of_kind(rendered, "PodMonitor")

        assert documents_of_kind(rendered, "Service") == []
        assert documents_of_kind(rendered, "ServiceMonitor") == []
        assert jmespath.search("spec.podMetricsEndpoints[0]", monitor) == {
            "port": "metrics",
            "path": "/metrics",
            "scrapeTimeout": "10s",
        }
        assert monitor["spec"]["selector"]["matchLabels"] == {
            "app.kubernetes.io/name": "recycle-pipeline",
            "app.kubernetes.io/instance": "recycle",
        }
        assert (
            jmespath.search("spec.selector.matchExpressions[0].values", monitor)
            == ROLES
        )

    def test_should_pass_relabelings_through(self):
        relabeling = {
            "sourceLabels": ["__meta_kubernetes_pod_node_name"],
            "targetLabel": "node",
        }
        values = {
            "metrics": {"podMonitor": {"enabled": True, "relabelings": [relabeling]}}
        }
        (monitor,) = render_chart(values, show_only=POD_MONITOR)

        assert jmespath.search("spec.podMetricsEndpoints[0].relabelings", monitor) == [
            relabeling
        ]


class TestDashboard:
    def test_should_render_nothing_by_default(self):
        assert render_chart(show_only=DASHBOARD) == []

    def test_should_carry_the_grafana_sidecar_label_by_default(self):
        (config_map,) = render_chart(
            {"metrics": {"dashboard": {"enabled": True}}}, show_only=DASHBOARD
        )

        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["namespace"] == "workers"
        assert list(config_map["data"]) == ["recycle-pipeline.json"]

    def test_should_go_to_the_grafana_namespace_with_its_labels_and_annotations(self):
        values = {
            "metrics": {
                "dashboard": {
                    "enabled": True,
                    "namespace": "grafana",
                    "labels": {"dashboards": "recycling"},
                    "annotations": {"grafana_folder": "Recycling"},
                }
            }
        }
        (config_map,) = render_chart(values, show_only=DASHBOARD)

        assert config_map["metadata"]["namespace"] == "grafana"
        assert config_map["metadata"]["labels"]["dashboards"] == "recycling"
        # Helm merges maps, so the sidecar's default label stays unless set to null.
        assert config_map["metadata"]["labels"]["grafana_dashboard"] == "1"
        assert config_map["metadata"]["annotations"] == {"grafana_folder": "Recycling"}

    def test_should_ship_a_dashboard_with_a_datasource_variable(self):
        dashboard = rendered_dashboard()

        variables = {entry["name"]: entry for entry in dashboard["templating"]["list"]}
        assert variables["datasource"]["type"] == "datasource"
        assert variables["datasource"]["query"] == "prometheus"
        assert set(jmespath.search("panels[].datasource.uid", dashboard)) == {
            "${datasource}"
        }
        assert set(jmespath.search("panels[].targets[].datasource.uid", dashboard)) == {
            "${datasource}"
        }

    def test_should_give_every_panel_a_unique_id_and_a_place(self):
        panels = rendered_dashboard()["panels"]

        ids = [panel["id"] for panel in panels]
        assert len(ids) == len(set(ids))
        assert all({"h", "w", "x", "y"} <= set(panel["gridPos"]) for panel in panels)

    def test_should_reference_only_metrics_that_exist(self):
        dashboard = rendered_dashboard()
        variable_queries = jmespath.search(
            "templating.list[?type=='query'].query.query", dashboard
        )

        referenced = set().union(*map(promql_metric_names, dashboard_exprs(dashboard)))
        referenced |= {label_values_metric(query) for query in variable_queries}
        allowed = metrics.exported_names() | RABBITMQ_METRICS
        assert referenced - allowed == set()

    def test_should_chart_every_metric_the_workers_export_and_the_queue_depth(self):
        dashboard = rendered_dashboard()
        referenced = set().union(*map(promql_metric_names, dashboard_exprs(dashboard)))

        families = {
            family.name
            for metric in metrics.ALL_METRICS
            for family in metric.describe()
        }
        charted = {
            family
            for family in families
            if any(name.startswith(family) for name in referenced)
        }
        assert charted == families
        assert RABBITMQ_METRICS <= referenced


class TestPrometheusRule:
    def test_should_render_nothing_by_default(self):
        assert render_chart(show_only=PROMETHEUS_RULE) == []

    def test_should_alert_on_the_backlog_failures_degraded_answers_and_the_scheduler(
        self,
    ):
        alerts = rules_by_alert(prometheus_rule())

        assert set(alerts) == {
            "RecycleQueueBackingUp",
            "RecycleJobFailureRateHigh",
            "RecycleDegradedRateHigh",
            "RecycleSchedulerDown",
            "RecycleScheduleLate",
            "RecycleScheduleNeverSucceeded",
        }

    def test_should_reference_only_metrics_that_exist(self):
        referenced = set().union(
            *map(promql_metric_names, rule_exprs(prometheus_rule()))
        )

        allowed = metrics.exported_names() | RABBITMQ_METRICS | SCRAPE_METRICS
        assert referenced - allowed == set()

    def test_should_watch_the_queues_of_the_enabled_roles_with_the_threshold(self):
        values = {
            "metrics": {
                "prometheusRule": {
                    "enabled": True,
                    "queueBacklog": {"readyMessages": 50, "for": "5m"},
                    "rabbitmqSelector": 'vhost="/"',
                }
            },
            "workers": {"generator": {"enabled": False}},
        }
        (backlog,) = rules_by_alert(prometheus_rule(values))["RecycleQueueBackingUp"]

        assert backlog["for"] == "5m"
        assert backlog["expr"].endswith("> 50")
        assert "max by (queue) (rabbitmq_queue_messages_ready{" in backlog["expr"]
        assert r"q\\.gpt5_analysis|q\\.rule_retrieval" in backlog["expr"]
        assert "response_generation" not in backlog["expr"]
        assert 'vhost="/"' in backlog["expr"]

    def test_should_use_the_configured_ratios_windows_and_hold_times(self):
        values = {
            "metrics": {
                "prometheusRule": {
                    "enabled": True,
                    "failureRate": {"ratio": 0.1, "window": "30m", "for": "20m"},
                    "degradedRate": {"ratio": 0.5},
                }
            }
        }
        alerts = rules_by_alert(prometheus_rule(values))
        (failure,) = alerts["RecycleJobFailureRateHigh"]
        (degraded,) = alerts["RecycleDegradedRateHigh"]

        assert failure["expr"].endswith("> 0.1")
        assert "[30m]" in failure["expr"]
        assert failure["for"] == "20m"
        assert 'status="failed"' in failure["expr"]
        assert degraded["expr"].endswith("> 0.5")

    def test_should_give_each_schedule_its_own_deadline(self):
        values = {
            "metrics": {
                "prometheusRule": {
                    "enabled": True,
                    "schedules": {"cache_cleanup": 7200},
                }
            }
        }
        alerts = rules_by_alert(prometheus_rule(values))
        late = {
            rule["labels"]["schedule"]: rule for rule in alerts["RecycleScheduleLate"]
        }
        never = {
            rule["labels"]["schedule"]: rule
            for rule in alerts["RecycleScheduleNeverSucceeded"]
        }

        assert sorted(late) == ["cache_cleanup", "daily_stats", "purge_images"]
        assert late["cache_cleanup"]["expr"].endswith("> 7200")
        assert 'schedule="cache_cleanup"' in late["cache_cleanup"]["expr"]
        assert never["purge_images"]["for"] == "91800s"
        assert never["cache_cleanup"]["expr"].startswith("absent(")

    def test_should_watch_the_scheduler_pods_of_this_namespace(self):
        (down,) = rules_by_alert(prometheus_rule({"namePrefix": "blue"}))[
            "RecycleSchedulerDown"
        ]

        assert down["expr"] == (
            'absent(up{namespace="workers", pod=~"blue-task-scheduler-.+"} == 1)'
        )
        assert down["labels"] == {"namespace": "workers", "severity": "warning"}

    def test_should_leave_out_the_scheduler_alerts_without_a_scheduler(self):
        values = {
            "metrics": {"prometheusRule": {"enabled": True}},
            "workers": {"scheduler": {"enabled": False}},
        }
        alerts = rules_by_alert(prometheus_rule(values))

        assert "RecycleSchedulerDown" not in alerts
        assert "RecycleScheduleLate" not in alerts

    def test_should_match_the_series_of_the_release_namespace(self):
        exprs = rule_exprs(prometheus_rule({"namespaceOverride": "elsewhere"}))

        recycle_exprs = [expr for expr in exprs if "recycle_" in expr]
        assert recycle_exprs
        assert all('namespace="elsewhere"' in expr for expr in recycle_exprs)
