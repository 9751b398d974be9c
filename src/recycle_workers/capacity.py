"""How many jobs a release of the chart can take, and whether its pods fit their nodes.

:func:`load_release` merges values files the way Helm and the chart do (the chart's
``values.yaml`` first, each ``-f`` file over it, then ``workerDefaults`` under each
``workers.<role>``). :func:`plan` turns the merged roles into a :class:`Plan`: jobs
per second of each stage (replicas x concurrency / latency, capped by the model
rate limits for the AI stages), the bottleneck, the requests of each node group
against a node's allocatable, and warnings for memory requests below what the
role was measured to use. Every measured number lives in the constants at the
bottom, with the benchmark it comes from.
"""

from __future__ import annotations

import copy
from collections import defaultdict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


class CapacityError(Exception):
    """A values file is missing or unreadable, or names a role this tool cannot size."""


@dataclass(frozen=True, slots=True)
class RoleLayout:
    """One role's pods as the chart renders them."""

    role: str
    replicas: int
    pool: str
    concurrency: int
    cpu_m: int
    memory_mi: int
    node_group: str
    autoscaled: bool


@dataclass(frozen=True, slots=True)
class Release:
    """The enabled roles of a merged release and its shared ``config`` values."""

    roles: list[RoleLayout]
    config: dict


@dataclass(frozen=True, slots=True)
class StageCapacity:
    stage: str
    role: str
    replicas: int
    concurrency: int
    latency_s: float
    pods_jobs_per_s: float
    cap_jobs_per_s: float | None
    cap: str | None
    jobs_per_s: float


@dataclass(frozen=True, slots=True)
class NodeGroupLoad:
    node_group: str
    roles: list[str]
    pods: int
    cpu_m: int
    memory_mi: int
    node_cpu_m: int
    node_memory_mi: int
    nodes_needed: int


@dataclass
class Plan:
    stages: list[StageCapacity]
    bottleneck: str
    jobs_per_s: float
    node_groups: list[NodeGroupLoad]
    warnings: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return asdict(self)


def load_release(values_files: list[Path], *, chart_values: Path) -> Release:
    """The enabled roles of a release made from ``chart_values`` and ``values_files``.

    Raises :class:`CapacityError` for a missing or malformed file.
    """
    values = _read_yaml(chart_values)
    for path in values_files:
        values = deep_merge(values, _read_yaml(path))

    defaults = values.get("workerDefaults") or {}
    config = values.get("config") or {}
    layouts = []
    for role, own in (values.get("workers") or {}).items():
        if role not in ROLES:
            raise CapacityError(
                f"unknown role workers.{role} (known: {', '.join(ROLES)})"
            )
        worker = deep_merge(defaults, own or {})
        if not worker.get("enabled", True):
            continue
        layouts.append(_layout(role, worker))
    if not layouts:
        raise CapacityError("no enabled roles in the merged values")
    return Release(layouts, config)


def deep_merge(base: dict, over: dict) -> dict:
    """Maps merge key by key; other values of ``over`` replace those of ``base``."""
    merged = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def plan(
    release: Release,
    *,
    latencies_s: dict[str, float] | None = None,
    node_cpu_m: int | None = None,
    node_memory_mi: int | None = None,
) -> Plan:
    """Throughput per stage, the bottleneck, node-group totals and memory warnings."""
    latencies = {**STAGE_LATENCY_S, **(latencies_s or {})}
    node_cpu_m = node_cpu_m or T3_MEDIUM_ALLOCATABLE_CPU_M
    node_memory_mi = node_memory_mi or T3_MEDIUM_ALLOCATABLE_MEMORY_MI
    layouts, config = release.roles, release.config
    by_role = {layout.role: layout for layout in layouts}

    groups: dict[str, list[RoleLayout]] = defaultdict(list)
    for layout in layouts:
        groups[layout.node_group].append(layout)
    loads = []
    for name, members in groups.items():
        cpu = sum(member.replicas * member.cpu_m for member in members)
        memory = sum(member.replicas * member.memory_mi for member in members)
        nodes = max(-(-cpu // node_cpu_m), -(-memory // node_memory_mi), 1)
        loads.append(
            NodeGroupLoad(
                name,
                [member.role for member in members],
                sum(member.replicas for member in members),
                cpu,
                memory,
                node_cpu_m,
                node_memory_mi,
                nodes,
            )
        )

    nodes_of_group = {load.node_group: load.nodes_needed for load in loads}
    stages = []
    for stage, role in STAGE_ROLES.items():
        layout = by_role.get(role)
        if layout is None:
            continue
        pods = layout.replicas * layout.concurrency / latencies[stage]
        cap, reason = _rate_limit_jobs_per_s(stage, config), "model rate limit"
        if stage in CPU_BOUND_STAGES:
            # A CPU-bound slot needs a core: the group's cores cap it, whatever the
            # pool.
            cores = nodes_of_group[layout.node_group] * node_cpu_m / 1000
            cap, reason = cores / latencies[stage], "node group cores"
        jobs = pods if cap is None else min(pods, cap)
        stages.append(
            StageCapacity(
                stage,
                role,
                layout.replicas,
                layout.concurrency,
                latencies[stage],
                round(pods, 2),
                None if cap is None else round(cap, 2),
                reason if cap is not None and cap < pods else None,
                round(jobs, 2),
            )
        )
    if not stages:
        raise CapacityError("no queue worker roles are enabled")
    slowest = min(stages, key=lambda stage: stage.jobs_per_s)

    warnings = []
    for layout in layouts:
        footprint = measured_footprint_mi(layout.role, layout.pool, layout.concurrency)
        if footprint is not None and layout.memory_mi < footprint:
            warnings.append(
                f"{layout.role}: memory request {layout.memory_mi}Mi is below the "
                f"measured footprint {footprint}Mi of {layout.pool} x "
                f"{layout.concurrency} under load"
            )
    for load in loads:
        if load.nodes_needed > 1:
            warnings.append(
                f"node group {load.node_group}: requests "
                f"{load.cpu_m}m/{load.memory_mi}Mi "
                f"need {load.nodes_needed} nodes of {node_cpu_m}m/{node_memory_mi}Mi"
            )
    return Plan(stages, slowest.stage, slowest.jobs_per_s, loads, warnings)


def measured_footprint_mi(role: str, pool: str, concurrency: int) -> int | None:
    """PSS of one pod under load from the fitted measurements; None if unmeasured."""
    fit = MEASURED_FOOTPRINT_MIB.get((role, pool))
    if fit is None:
        return None
    base, per_slot = fit
    slots = 1 if pool == "solo" else concurrency
    return round(base + per_slot * slots)


def render_table(plan_: Plan) -> str:
    """The plan as plain text columns."""
    lines = [
        f"{'stage':<11} {'role':<10} {'pods':>4} {'conc':>4} {'latency_s':>9} "
        f"{'pods_jobs/s':>11} {'jobs/s':>7}  limited by"
    ]
    for stage in plan_.stages:
        lines.append(
            f"{stage.stage:<11} {stage.role:<10} {stage.replicas:>4} "
            f"{stage.concurrency:>4} "
            f"{stage.latency_s:>9.3f} {stage.pods_jobs_per_s:>11.2f} "
            f"{stage.jobs_per_s:>7.2f}"
            f"  {stage.cap or 'pods'}"
        )
    lines.append(f"bottleneck: {plan_.bottleneck} at {plan_.jobs_per_s:.2f} jobs/s")
    lines.append("")
    lines.append(
        f"{'node group':<14} {'pods':>4} {'cpu':>7} {'memory':>8} {'node':>14} "
        f"{'nodes':>5}  roles"
    )
    for load in plan_.node_groups:
        lines.append(
            f"{load.node_group:<14} {load.pods:>4} {load.cpu_m:>6}m "
            f"{load.memory_mi:>6}Mi "
            f"{load.node_cpu_m:>6}m/{load.node_memory_mi}Mi {load.nodes_needed:>5}  "
            f"{', '.join(load.roles)}"
        )
    lines += [f"warning: {warning}" for warning in plan_.warnings]
    return "\n".join(lines)


def find_chart_values(start: Path) -> Path | None:
    """The chart's values.yaml in ``start`` or a folder above it."""
    for folder in (start, *start.parents):
        candidate = folder / CHART_VALUES
        if candidate.is_file():
            return candidate
    return None


def parse_cpu_m(quantity: Any) -> int:
    text = str(quantity).strip()
    try:
        return int(float(text[:-1])) if text.endswith("m") else int(float(text) * 1000)
    except ValueError:
        raise CapacityError(f"cannot read CPU quantity {quantity!r}") from None


def parse_memory_mi(quantity: Any) -> int:
    text = str(quantity).strip()
    for suffix, factor in MEMORY_UNITS_MI.items():
        if text.endswith(suffix):
            try:
                return round(float(text[: -len(suffix)]) * factor)
            except ValueError:
                break
    try:
        return round(float(text) / (1024 * 1024))
    except ValueError:
        raise CapacityError(f"cannot read memory quantity {quantity!r}") from None


def _layout(role: str, worker: dict) -> RoleLayout:
    requests = ((worker.get("resources") or {}).get("requests")) or {}
    autoscaling = worker.get("autoscaling") or {}
    scaler = next(
        (
            autoscaling[kind]
            for kind in ("keda", "hpa")
            if (autoscaling.get(kind) or {}).get("enabled") and role != "scheduler"
        ),
        None,
    )
    replicas = (
        int(scaler.get("maxReplicas", 1)) if scaler else int(worker.get("replicas", 1))
    )
    selector = worker.get("nodeSelector") or {}
    group = str(
        selector.get("node-group")
        or ",".join(f"{key}={value}" for key, value in sorted(selector.items()))
        or "(any node)"
    )
    return RoleLayout(
        role=role,
        replicas=1 if role == "scheduler" else replicas,
        pool="beat" if role == "scheduler" else str(worker.get("pool", "prefork")),
        concurrency=1 if role == "scheduler" else int(worker.get("concurrency", 1)),
        cpu_m=parse_cpu_m(requests.get("cpu", "0")),
        memory_mi=parse_memory_mi(requests.get("memory", "0")),
        node_group=group,
        autoscaled=scaler is not None,
    )


def _rate_limit_jobs_per_s(stage: str, config: dict) -> float | None:
    key = RATE_LIMIT_KEYS.get(stage)
    if key is None:
        return None
    per_minute = config.get(key, 0)
    return float(per_minute) / 60 if per_minute else None


def _read_yaml(path: Path) -> dict:
    try:
        import yaml
    except ImportError:
        raise CapacityError(
            "reading values files needs PyYAML (pip install pyyaml)"
        ) from None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CapacityError(f"no such values file: {path}") from None
    except OSError as exc:
        raise CapacityError(f"cannot read {path}: {exc.strerror}") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        problem = str(exc).splitlines()[0]
        raise CapacityError(f"{path} is not valid YAML ({problem})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise CapacityError(
            f"{path} must hold a map of values, not {type(loaded).__name__}"
        )
    return loaded


ROLES = ("uploader", "analyzer", "retriever", "generator", "scheduler")
STAGE_ROLES = {
    "upload": "uploader",
    "analysis": "analyzer",
    "retrieval": "retriever",
    "generation": "generator",
}
CPU_BOUND_STAGES = {"upload"}
RATE_LIMIT_KEYS = {"analysis": "analysisRpm", "generation": "generationRpm"}
CHART_VALUES = Path("charts/recycle-pipeline/values.yaml")
MEMORY_UNITS_MI = {
    "Ki": 1 / 1024,
    "Mi": 1,
    "Gi": 1024,
    "K": 1000 / 1024 / 1024,
    "M": 1000 * 1000 / 1024 / 1024,
    "G": 1000**3 / 1024 / 1024,
}

# A t3.medium has 2 vCPU and 4 GiB. What the kubelet offers pods, with the EKS AMI's
# reservations: CPU 2000m less 70m kube-reserved (6% of the first core, 1% of the
# second); memory about 3862Mi seen by the kernel, less 442Mi kube-reserved (255Mi +
# 11Mi for each of the 17 pods its network interfaces allow) and 100Mi for eviction.
# DaemonSets (CNI, kube-proxy) take their own requests out of this; pass --node-cpu and
# --node-memory for other nodes or to leave room for them.
T3_MEDIUM_ALLOCATABLE_CPU_M = 1930
T3_MEDIUM_ALLOCATABLE_MEMORY_MI = 3320

# Seconds one slot spends on one task, measured by `make bench` (docs/performance.md)
# on a 2-core machine. Analysis and generation: one gevent pod's sustained rate with the
# fake model adding 3 s and 1.5 s (standing for gpt-5 with a photo and gpt-4o-mini), so
# 3.057 s and 1.529 s are the model plus the stage around it. Upload: a threads x 2 pod
# took 12-megapixel phone JPEGs at 8.6/s, 0.23 s of one core each. Retrieval: threads
# x 2 at 64 jobs/s. Replace the model latencies with your own (--analysis-latency, ...).
STAGE_LATENCY_S = {
    "upload": 0.23,
    "analysis": 3.057,
    "retrieval": 0.031,
    "generation": 1.529,
}

# PSS of one pod under load in MiB, as base + per-slot x concurrency: a straight line
# fitted per role and pool to bench/memory.py's measurements (docs/performance.md,
# "Memory"; no point is off it by more than 2 MiB). A prefork child holds its own job,
# a 12-megapixel photo's message and pixels for the uploader; threads and green threads
# share one interpreter. The scheduler is not measured yet, so it gets no warning.
MEASURED_FOOTPRINT_MIB: dict[tuple[str, str], tuple[float, float]] = {
    ("uploader", "prefork"): (58.6, 109.1),
    ("uploader", "threads"): (86.1, 36.4),
    ("retriever", "prefork"): (40.7, 54.7),
    ("retriever", "threads"): (70.0, 1.8),
    ("analyzer", "gevent"): (77.2, 0.8),
    ("generator", "gevent"): (75.6, 0.2),
}
