"""The capacity tool: merged values, jobs per second, node groups, memory warnings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from recycle_workers import capacity
from recycle_workers.cli import main

REPO_ROOT = Path(__file__).resolve().parent.parent
VALUES_DIR = REPO_ROOT / "values"
CHART_VALUES = REPO_ROOT / "charts/recycle-pipeline/values.yaml"


def plan_of(*names: str, **options) -> capacity.Plan:
    release = capacity.load_release(
        [VALUES_DIR / f"{name}.yaml" for name in names], chart_values=CHART_VALUES
    )
    return capacity.plan(release, **options)


def groups(plan: capacity.Plan) -> dict[str, tuple[int, int, int]]:
    return {
        load.node_group: (load.cpu_m, load.memory_mi, load.pods)
        for load in plan.node_groups
    }


class TestCapacity:
    def test_should_total_the_reference_layout_per_node_group(self):
        plan = plan_of("reference-layout")

        assert groups(plan) == {"worker-1": (1350, 1408, 6), "worker-2": (800, 2048, 8)}

    def test_should_compute_jobs_per_second_as_replicas_times_concurrency_over_latency(
        self,
    ):
        plan = plan_of(
            "reference-layout", latencies_s={"analysis": 4.0, "generation": 2.0}
        )

        stages = {stage.stage: stage for stage in plan.stages}
        assert stages["analysis"].pods_jobs_per_s == pytest.approx(5 * 20 / 4.0)
        assert stages["generation"].pods_jobs_per_s == pytest.approx(3 * 10 / 2.0)

    def test_should_name_the_model_rate_limit_as_the_bottleneck_of_the_reference_layout(
        self,
    ):
        plan = plan_of("reference-layout")

        assert plan.bottleneck == "analysis"
        assert plan.jobs_per_s == pytest.approx(500 / 60, abs=0.01)
        assert {stage.stage: stage.cap for stage in plan.stages}[
            "analysis"
        ] == "model rate limit"

    def test_should_find_the_slowest_pods_when_no_rate_limit_applies(self, tmp_path):
        unlimited = tmp_path / "unlimited.yaml"
        unlimited.write_text("config:\n  analysisRpm: 0\n  generationRpm: 0\n")

        plan = capacity.plan(
            capacity.load_release(
                [VALUES_DIR / "reference-layout.yaml", unlimited],
                chart_values=CHART_VALUES,
            ),
            latencies_s={"analysis": 3.0, "generation": 6.0},
        )

        assert plan.bottleneck == "generation"
        assert plan.jobs_per_s == pytest.approx(3 * 10 / 6.0)

    def test_should_let_later_files_win_and_merge_worker_defaults_under_each_role(
        self, tmp_path
    ):
        override = tmp_path / "more.yaml"
        override.write_text(
            "workerDefaults:\n  resources:\n    requests:\n      cpu: 10m\n"
            "workers:\n  analyzer:\n    replicas: 2\n"
        )

        release = capacity.load_release(
            [VALUES_DIR / "dev.yaml", override], chart_values=CHART_VALUES
        )

        roles = {role.role: role for role in release.roles}
        assert roles["analyzer"].replicas == 2
        assert roles["analyzer"].pool == "gevent"
        assert roles["retriever"].cpu_m == 10
        assert roles["retriever"].memory_mi == 128

    def test_should_warn_when_a_memory_request_is_below_the_measured_footprint(self):
        plan = plan_of("reference-layout")

        assert any(
            warning.startswith("uploader: memory request 256Mi")
            for warning in plan.warnings
        )
        assert not any(
            warning.startswith("uploader") for warning in plan_of("prod").warnings
        )

    def test_should_size_node_groups_against_the_given_node(self):
        plan = plan_of("reference-layout", node_cpu_m=1000, node_memory_mi=1024)

        nodes = {load.node_group: load.nodes_needed for load in plan.node_groups}
        assert nodes == {"worker-1": 2, "worker-2": 2}
        assert any("need 2 nodes" in warning for warning in plan.warnings)


class TestCapacityCommand:
    def test_should_print_a_table(self, capsys):
        assert main(["capacity", "-f", str(VALUES_DIR / "reference-layout.yaml")]) == 0

        out = capsys.readouterr().out
        assert "bottleneck: analysis" in out
        assert "1350m" in out and "1408Mi" in out and "2048Mi" in out

    def test_should_print_one_json_object(self, capsys):
        argv = [
            "capacity",
            "-f",
            str(VALUES_DIR / "reference-layout.yaml"),
            "--json",
            "--analysis-latency",
            "2",
        ]

        assert main(argv) == 0

        plan = json.loads(capsys.readouterr().out)
        assert plan["bottleneck"] == "analysis"
        assert [stage["latency_s"] for stage in plan["stages"]][1] == 2.0

    @pytest.mark.parametrize(
        ("content", "role"),
        [
            (None, None),
            ("workers: [unclosed", None),
            ("workers:\n  cook: {}\n", "cook"),
        ],
        ids=["missing", "bad-yaml", "unknown-role"],
    )
    def test_should_exit_2_with_one_usage_line_on_misuse(
        self, tmp_path, capsys, content, role
    ):
        path = tmp_path / "values.yaml"
        if content is not None:
            path.write_text(content)

        assert main(["capacity", "-f", str(path)]) == 2

        err = capsys.readouterr().err
        assert err.startswith("recycle-workers: usage: ")
        assert err.count("\n") == 1
        if role:
            assert role in err
