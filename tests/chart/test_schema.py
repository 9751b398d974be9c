"""values.schema.json: invalid values fail `helm template`, naming the key."""

from __future__ import annotations

import pytest

from helm_template import ChartRenderError, render_chart


class TestValuesSchema:
    @pytest.mark.parametrize(
        ("values", "path", "reason"),
        [
            (
                {"workers": {"uploader": {"replica": 3}}},
                "/workers/uploader",
                "'replica' not allowed",
            ),
            (
                {"workerDefaults": {"colour": "red"}},
                "/workerDefaults",
                "'colour' not allowed",
            ),
            (
                {"workers": {"analyzer": {"pool": "eventlet"}}},
                "/workers/analyzer/pool",
                "'prefork', 'threads', 'gevent', 'solo'",
            ),
            (
                {"workers": {"generator": {"concurrency": 0}}},
                "/workers/generator/concurrency",
                "got 0, want 1",
            ),
            (
                {
                    "workers": {
                        "uploader": {"resources": {"requests": {"cpu": "300 m"}}}
                    }
                },
                "/workers/uploader/resources/requests/cpu",
                "does not match pattern",
            ),
            (
                {
                    "workers": {
                        "uploader": {"resources": {"requests": {"memory": "256MB"}}}
                    }
                },
                "/workers/uploader/resources/requests/memory",
                "does not match pattern",
            ),
            (
                {"workerDefaults": {"resources": {"limits": {"memory": "lots"}}}},
                "/workerDefaults/resources/limits/memory",
                "does not match pattern",
            ),
            (
                {"workers": {"scheduler": {"replicas": 2}}},
                "/workers/scheduler/replicas",
                "must be 1",
            ),
            (
                {"workers": {"scheduler": {"replicas": 0}}},
                "/workers/scheduler/replicas",
                "must be 1",
            ),
            (
                {
                    "workers": {
                        "scheduler": {"autoscaling": {"keda": {"enabled": True}}}
                    }
                },
                "/workers/scheduler/autoscaling/keda/enabled",
                "must be false",
            ),
            (
                {"workers": {"scheduler": {"autoscaling": {"hpa": {"enabled": True}}}}},
                "/workers/scheduler/autoscaling/hpa/enabled",
                "must be false",
            ),
            (
                {"workers": {"scheduler": {"pdb": {"enabled": True}}}},
                "/workers/scheduler/pdb/enabled",
                "must be false",
            ),
            ({"workers": {"indexer": {}}}, "/workers", "'indexer' not allowed"),
            ({"replicas": 3}, "", "'replicas' not allowed"),
            (
                {"image": {"digest": "latest"}},
                "/image/digest",
                "does not match pattern",
            ),
            (
                {"config": {"storageUrl": "/data"}},
                "/config/storageUrl",
                "does not match pattern",
            ),
            ({"config": {"defaultLang": "fr"}}, "/config/defaultLang", "'ko', 'en'"),
            (
                {"config": {"heartbeatFile": "/var/run/heartbeat"}},
                "/config/heartbeatFile",
                "does not match pattern",
            ),
            (
                {"workers": {"analyzer": {"pdb": {"minAvailable": "half"}}}},
                "/workers/analyzer/pdb/minAvailable",
                "'oneOf' failed",
            ),
            ({"metrics": {"scrape": True}}, "/metrics", "'scrape' not allowed"),
            ({"metrics": {"port": 0}}, "/metrics/port", "got 0, want 1"),
            (
                {"metrics": {"serviceMonitor": {"interval": "30 seconds"}}},
                "/metrics/serviceMonitor/interval",
                "does not match pattern",
            ),
            (
                {"metrics": {"prometheusRule": {"failureRate": {"ratio": 5}}}},
                "/metrics/prometheusRule/failureRate/ratio",
                "want 1",
            ),
            (
                {"metrics": {"prometheusRule": {"schedules": {"purge_images": "1d"}}}},
                "/metrics/prometheusRule/schedules/purge_images",
                "got string, want integer",
            ),
            ({"flower": {"basicAuth": "a:b"}}, "/flower", "'basicAuth' not allowed"),
            (
                {"flower": {"auth": {"username": "ops:admin"}}},
                "/flower/auth/username",
                "does not match pattern",
            ),
            (
                {"networkPolicy": {"metricsFrom": {"podSelector": {}}}},
                "/networkPolicy/metricsFrom",
                "got object, want array",
            ),
        ],
    )
    def test_should_reject_invalid_values_naming_the_key(self, values, path, reason):
        with pytest.raises(ChartRenderError) as error:
            render_chart(values)

        assert f"at '{path}" in str(error.value)
        assert reason in str(error.value)

    @pytest.mark.parametrize(
        "values",
        [
            {"workers": {"scheduler": {"replicas": 1}}},
            {
                "workers": {
                    "analyzer": {
                        "resources": {"requests": {"cpu": 0.5, "memory": "1.5Gi"}}
                    }
                }
            },
            {"workers": {"uploader": {"replicas": 0}}},
            {
                "workers": {
                    "retriever": {"pdb": {"enabled": True, "maxUnavailable": "25%"}}
                }
            },
            {"image": {"digest": "sha256:" + "0" * 64}},
        ],
    )
    def test_should_accept_valid_values(self, values):
        assert render_chart(values)
