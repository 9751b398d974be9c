"""The Deployment template: a Deployment per role, workers.<role> over the defaults."""

from __future__ import annotations

import jmespath
import pytest

from helm_template import ChartRenderError, by_component, render_chart

DEPLOYMENT = ["templates/deployment.yaml"]

ROLE_NAMES = {
    "uploader": "image-uploader",
    "analyzer": "gpt5-analyzer",
    "retriever": "rule-retriever",
    "generator": "response-generator",
    "scheduler": "task-scheduler",
}
QUEUE_WORKERS = ["uploader", "analyzer", "retriever", "generator"]


def deployments(values: dict | None = None, **kwargs) -> dict[str, dict]:
    return by_component(render_chart(values, show_only=DEPLOYMENT, **kwargs))


def container_env(deployment: dict) -> dict[str, dict]:
    env = jmespath.search("spec.template.spec.containers[0].env", deployment)
    return {entry["name"]: entry for entry in env}


class TestDeployment:
    def test_should_render_one_deployment_per_role_with_its_usual_name(self):
        rendered = deployments()

        assert {
            role: doc["metadata"]["name"] for role, doc in rendered.items()
        } == ROLE_NAMES

    @pytest.mark.parametrize("role", list(ROLE_NAMES))
    def test_should_leave_out_a_disabled_role(self, role):
        rendered = deployments({"workers": {role: {"enabled": False}}})

        assert role not in rendered
        assert len(rendered) == 4

    def test_should_leave_out_every_role_disabled_in_the_defaults(self):
        rendered = deployments(
            {
                "workerDefaults": {"enabled": False},
                "workers": {"analyzer": {"enabled": True}},
            }
        )

        assert list(rendered) == ["analyzer"]

    @pytest.mark.parametrize(
        ("role", "pool", "concurrency", "queues"),
        [
            ("uploader", "prefork", "4", "q.image_upload,q.maintenance"),
            ("analyzer", "gevent", "20", "q.gpt5_analysis"),
            ("retriever", "prefork", "4", "q.rule_retrieval"),
            ("generator", "gevent", "10", "q.response_generation"),
        ],
    )
    def test_should_give_each_queue_worker_its_role_pool_concurrency_and_queue(
        self, role, pool, concurrency, queues
    ):
        env = container_env(deployments()[role])

        assert env["RECYCLE_ROLE"]["value"] == role
        assert env["RECYCLE_POOL"]["value"] == pool
        assert env["RECYCLE_CONCURRENCY"]["value"] == concurrency
        assert env["RECYCLE_QUEUES"]["value"] == queues

    def test_should_join_several_queues_with_commas(self):
        rendered = deployments({"workers": {"uploader": {"queues": ["q.a", "q.b"]}}})

        assert (
            container_env(rendered["uploader"])["RECYCLE_QUEUES"]["value"] == "q.a,q.b"
        )

    def test_should_give_the_scheduler_its_role_and_no_pool_concurrency_or_queue(self):
        env = container_env(deployments()["scheduler"])

        assert env["RECYCLE_ROLE"]["value"] == "scheduler"
        assert not {"RECYCLE_POOL", "RECYCLE_CONCURRENCY", "RECYCLE_QUEUES"} & set(env)

    @pytest.mark.parametrize("role", list(ROLE_NAMES))
    def test_should_run_the_image_entrypoint_with_run(self, role):
        container = jmespath.search(
            "spec.template.spec.containers[0]", deployments()[role]
        )

        assert container["args"] == ["run"]
        assert "command" not in container

    def test_should_merge_a_role_over_the_defaults_key_by_key(self):
        rendered = deployments(
            {
                "workerDefaults": {"resources": {"requests": {"cpu": "150m"}}},
                "workers": {"uploader": {"resources": {"requests": {"cpu": "300m"}}}},
            }
        )

        uploader = jmespath.search(
            "spec.template.spec.containers[0].resources", rendered["uploader"]
        )
        retriever = jmespath.search(
            "spec.template.spec.containers[0].resources", rendered["retriever"]
        )
        assert uploader == {
            "requests": {"cpu": "300m", "memory": "256Mi"},
            "limits": {"memory": "1Gi"},
        }
        assert retriever["requests"]["cpu"] == "150m"

    def test_should_let_a_role_set_false_and_zero_over_the_defaults(self):
        rendered = deployments(
            {
                "workerDefaults": {"replicas": 2},
                "workers": {
                    "analyzer": {"replicas": 0},
                    "generator": {"enabled": False},
                },
            }
        )

        assert rendered["analyzer"]["spec"]["replicas"] == 0
        assert rendered["uploader"]["spec"]["replicas"] == 2
        assert "generator" not in rendered

    def test_should_replace_lists_rather_than_merge_them(self):
        rendered = deployments(
            {
                "workerDefaults": {"tolerations": [{"key": "a", "operator": "Exists"}]},
                "workers": {
                    "analyzer": {"tolerations": [{"key": "b", "operator": "Exists"}]}
                },
            }
        )

        tolerations = jmespath.search(
            "spec.template.spec.tolerations[].key", rendered["analyzer"]
        )
        assert tolerations == ["b"]

    def test_should_prefix_every_name_with_name_prefix(self):
        rendered = deployments({"namePrefix": "blue"})

        assert {doc["metadata"]["name"] for doc in rendered.values()} == {
            f"blue-{name}" for name in ROLE_NAMES.values()
        }
        env_from = jmespath.search(
            "spec.template.spec.containers[0].envFrom[0].configMapRef.name",
            rendered["uploader"],
        )
        assert env_from == "blue-recycle-pipeline-config"

    def test_should_rename_one_role(self):
        rendered = deployments({"workers": {"analyzer": {"name": "vision-analyzer"}}})

        assert rendered["analyzer"]["metadata"]["name"] == "vision-analyzer"

    def test_should_put_every_deployment_in_the_override_namespace(self):
        rendered = deployments({"namespaceOverride": "elsewhere"})

        assert {doc["metadata"]["namespace"] for doc in rendered.values()} == {
            "elsewhere"
        }

    def test_should_select_pods_by_release_and_role(self):
        selector = deployments()["analyzer"]["spec"]["selector"]["matchLabels"]

        assert selector == {
            "app.kubernetes.io/name": "recycle-pipeline",
            "app.kubernetes.io/instance": "recycle",
            "app.kubernetes.io/component": "analyzer",
        }

    def test_should_carry_the_standard_labels(self):
        labels = deployments()["uploader"]["metadata"]["labels"]

        assert labels["app.kubernetes.io/managed-by"] == "Helm"
        assert labels["helm.sh/chart"].startswith("recycle-pipeline-")
        assert labels["app.kubernetes.io/component"] == "uploader"

    @pytest.mark.parametrize(
        ("key", "value", "path"),
        [
            ("nodeSelector", {"workload": "async-workers"}, "nodeSelector"),
            ("affinity", {"podAntiAffinity": {}}, "affinity"),
            ("tolerations", [{"key": "k", "operator": "Exists"}], "tolerations"),
            ("priorityClassName", "recycle-high", "priorityClassName"),
            ("terminationGracePeriodSeconds", 200, "terminationGracePeriodSeconds"),
        ],
    )
    def test_should_apply_a_role_scheduling_key(self, key, value, path):
        rendered = deployments({"workers": {"analyzer": {key: value}}})

        assert (
            jmespath.search(f"spec.template.spec.{path}", rendered["analyzer"]) == value
        )
        assert (
            jmespath.search(f"spec.template.spec.{path}", rendered["generator"])
            != value
        )

    def test_should_fill_in_the_role_selector_of_a_topology_spread_constraint(self):
        constraint = {
            "maxSkew": 1,
            "topologyKey": "kubernetes.io/hostname",
            "whenUnsatisfiable": "ScheduleAnyway",
        }
        rendered = deployments(
            {"workerDefaults": {"topologySpreadConstraints": [constraint]}}
        )

        spread = jmespath.search(
            "spec.template.spec.topologySpreadConstraints[0]", rendered["retriever"]
        )
        assert spread["topologyKey"] == "kubernetes.io/hostname"
        assert (
            spread["labelSelector"]["matchLabels"]["app.kubernetes.io/component"]
            == "retriever"
        )

    def test_should_keep_a_topology_spread_constraint_own_selector(self):
        constraint = {
            "maxSkew": 1,
            "topologyKey": "zone",
            "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"tier": "workers"}},
        }
        rendered = deployments(
            {"workers": {"uploader": {"topologySpreadConstraints": [constraint]}}}
        )

        spread = jmespath.search(
            "spec.template.spec.topologySpreadConstraints[0]", rendered["uploader"]
        )
        assert spread["labelSelector"] == {"matchLabels": {"tier": "workers"}}

    def test_should_add_extra_env_values_and_value_from(self):
        rendered = deployments(
            {
                "workers": {
                    "generator": {
                        "env": {
                            "FEATURE": True,
                            "NODE": {"fieldRef": {"fieldPath": "spec.nodeName"}},
                        }
                    }
                }
            }
        )

        env = container_env(rendered["generator"])
        assert env["FEATURE"] == {"name": "FEATURE", "value": "true"}
        assert env["NODE"]["valueFrom"] == {"fieldRef": {"fieldPath": "spec.nodeName"}}

    @pytest.mark.parametrize(
        "variable",
        ["RECYCLE_ROLE", "RECYCLE_POOL", "RECYCLE_CONCURRENCY", "RECYCLE_QUEUES"],
    )
    def test_should_refuse_env_that_the_chart_sets(self, variable):
        with pytest.raises(ChartRenderError, match=f"workers.uploader.env.{variable}"):
            render_chart(
                {"workers": {"uploader": {"env": {variable: "x"}}}},
                show_only=DEPLOYMENT,
            )

    def test_should_mount_extra_volumes_beside_tmp(self):
        rendered = deployments(
            {
                "workers": {
                    "uploader": {
                        "extraVolumes": [
                            {
                                "name": "shared",
                                "persistentVolumeClaim": {"claimName": "images"},
                            }
                        ],
                        "extraVolumeMounts": [
                            {"name": "shared", "mountPath": "/srv/images"}
                        ],
                    }
                }
            }
        )

        pod = rendered["uploader"]["spec"]["template"]["spec"]
        assert jmespath.search("volumes[].name", pod) == ["tmp", "shared"]
        assert jmespath.search("containers[0].volumeMounts[].mountPath", pod) == [
            "/tmp",
            "/srv/images",
        ]


class TestImage:
    @pytest.mark.parametrize(
        ("image", "expected"),
        [
            ({}, "recycle-workers:0.1.0"),
            ({"tag": "1.2.3"}, "recycle-workers:1.2.3"),
            (
                {"registry": "registry.example.com", "tag": "1.2.3"},
                "registry.example.com/recycle-workers:1.2.3",
            ),
            (
                {"tag": "1.2.3", "digest": "sha256:" + "a" * 64},
                "recycle-workers@sha256:" + "a" * 64,
            ),
        ],
    )
    def test_should_reference_the_image_by_tag_or_digest(self, image, expected):
        rendered = deployments({"image": image})

        images = {
            jmespath.search("spec.template.spec.containers[0].image", doc)
            for doc in rendered.values()
        }
        assert images == {expected}


class TestProbesAndShutdown:
    @pytest.mark.parametrize("role", list(ROLE_NAMES))
    def test_should_probe_through_the_heartbeat_and_ready_files(self, role):
        container = jmespath.search(
            "spec.template.spec.containers[0]", deployments()[role]
        )

        assert container["livenessProbe"]["exec"]["command"] == [
            "recycle-workers",
            "probe",
            "liveness",
        ]
        assert container["readinessProbe"]["exec"]["command"] == [
            "recycle-workers",
            "probe",
            "readiness",
        ]
        assert container["startupProbe"]["exec"]["command"] == [
            "recycle-workers",
            "probe",
            "readiness",
        ]

    def test_should_never_ask_the_broker_from_a_probe(self):
        rendered = render_chart(show_only=DEPLOYMENT)

        commands = jmespath.search(
            "[].spec.template.spec.containers[].*.exec.command[]", rendered
        )
        assert commands
        words = [word for command in commands for word in command]
        assert not any("inspect" in word or "ping" in word for word in words)

    def test_should_take_probe_timings_from_values(self):
        rendered = deployments(
            {"workers": {"analyzer": {"probes": {"liveness": {"periodSeconds": 60}}}}}
        )

        liveness = jmespath.search(
            "spec.template.spec.containers[0].livenessProbe", rendered["analyzer"]
        )
        assert liveness["periodSeconds"] == 60
        assert liveness["failureThreshold"] == 3

    @pytest.mark.parametrize(
        ("role", "task_limit"),
        [("uploader", 30), ("analyzer", 120), ("retriever", 10), ("generator", 60)],
    )
    def test_should_give_a_grace_period_longer_than_the_role_longest_task(
        self, role, task_limit
    ):
        grace = deployments()[role]["spec"]["template"]["spec"][
            "terminationGracePeriodSeconds"
        ]

        assert grace > task_limit

    def test_should_refuse_a_grace_period_shorter_than_the_task_limit(self):
        with pytest.raises(
            ChartRenderError,
            match="workers.analyzer.terminationGracePeriodSeconds: 100",
        ):
            render_chart(
                {"workers": {"analyzer": {"terminationGracePeriodSeconds": 100}}}
            )

    def test_should_recreate_the_scheduler_and_roll_the_queue_workers(self):
        rendered = deployments(
            {"workerDefaults": {"strategy": {"type": "RollingUpdate"}}}
        )

        assert rendered["scheduler"]["spec"]["strategy"] == {"type": "Recreate"}
        assert {
            doc["spec"]["strategy"]["type"]
            for role, doc in rendered.items()
            if role != "scheduler"
        } == {"RollingUpdate"}


class TestSecurity:
    @pytest.mark.parametrize("role", list(ROLE_NAMES))
    def test_should_run_locked_down_by_default(self, role):
        pod = deployments()[role]["spec"]["template"]["spec"]
        container = pod["containers"][0]["securityContext"]

        assert pod["automountServiceAccountToken"] is False
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
        assert container["readOnlyRootFilesystem"] is True
        assert container["allowPrivilegeEscalation"] is False
        assert container["capabilities"] == {"drop": ["ALL"]}

    def test_should_keep_tmp_writable_on_an_empty_dir(self):
        pod = deployments()["analyzer"]["spec"]["template"]["spec"]

        assert jmespath.search("volumes[?name=='tmp'].emptyDir.sizeLimit", pod) == [
            "512Mi"
        ]
        assert jmespath.search(
            "containers[0].volumeMounts[?name=='tmp'].mountPath", pod
        ) == ["/tmp"]


class TestConfigurationWiring:
    def test_should_read_settings_from_the_config_map(self):
        pod = deployments()["uploader"]["spec"]["template"]["spec"]

        assert pod["containers"][0]["envFrom"] == [
            {"configMapRef": {"name": "recycle-pipeline-config"}}
        ]

    @pytest.mark.parametrize(
        ("variable", "key", "optional"),
        [
            ("RECYCLE_BROKER_URL", "brokerUrl", None),
            ("RECYCLE_REDIS_URL", "redisUrl", None),
            ("RECYCLE_OPENAI_API_KEY", "openaiApiKey", True),
            ("RECYCLE_S3_ACCESS_KEY_ID", "s3AccessKeyId", True),
            ("RECYCLE_S3_SECRET_ACCESS_KEY", "s3SecretAccessKey", True),
        ],
    )
    def test_should_read_each_secret_from_the_existing_secret_under_its_key(
        self, variable, key, optional
    ):
        rendered = deployments(
            {
                "secrets": {
                    "existingSecret": "ops-managed",
                    "keys": {key: f"custom-{key}"},
                }
            },
            with_test_secrets=False,
        )

        ref = container_env(rendered["generator"])[variable]["valueFrom"][
            "secretKeyRef"
        ]
        assert ref["name"] == "ops-managed"
        assert ref["key"] == f"custom-{key}"
        assert ref.get("optional") == optional

    def test_should_roll_the_pods_when_a_setting_changes(self):
        before = deployments()["uploader"]["spec"]["template"]["metadata"][
            "annotations"
        ]
        after = deployments({"config": {"logLevel": "DEBUG"}})["uploader"]["spec"][
            "template"
        ]["metadata"]["annotations"]

        assert before["checksum/config"] != after["checksum/config"]
        assert before["checksum/secret"] == after["checksum/secret"]

    def test_should_roll_the_pods_when_a_chart_made_secret_changes(self):
        before = deployments()["uploader"]["spec"]["template"]["metadata"][
            "annotations"
        ]
        after = deployments({"secrets": {"openaiApiKey": "sk-test"}})["uploader"][
            "spec"
        ]["template"]["metadata"]["annotations"]

        assert before["checksum/secret"] != after["checksum/secret"]


class TestReplicas:
    def test_should_set_replicas_without_an_autoscaler(self):
        rendered = deployments({"workers": {"analyzer": {"replicas": 5}}})

        assert rendered["analyzer"]["spec"]["replicas"] == 5

    @pytest.mark.parametrize("autoscaler", ["keda", "hpa"])
    def test_should_leave_replicas_to_an_autoscaler(self, autoscaler):
        rendered = deployments(
            {
                "secrets": {
                    "rabbitmqManagementUrl": "http://guest:guest@rabbitmq:15672/"
                },
                "workers": {
                    "analyzer": {
                        "replicas": 5,
                        "autoscaling": {autoscaler: {"enabled": True}},
                    }
                },
            }
        )

        assert "replicas" not in rendered["analyzer"]["spec"]
        assert rendered["generator"]["spec"]["replicas"] == 1

    def test_should_keep_the_scheduler_at_one_replica_when_the_defaults_autoscale(self):
        rendered = deployments(
            {
                "secrets": {
                    "rabbitmqManagementUrl": "http://guest:guest@rabbitmq:15672/"
                },
                "workerDefaults": {"autoscaling": {"keda": {"enabled": True}}},
            }
        )

        assert rendered["scheduler"]["spec"]["replicas"] == 1
        assert "replicas" not in rendered["uploader"]["spec"]
