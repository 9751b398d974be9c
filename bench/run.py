"""Run every benchmark, write bench/results/*.json, then docs/performance.md.

    python bench/run.py                 # everything (make bench)
    python bench/run.py image memory    # only these sections; the report uses the
                                        # latest results of the others

Needs the local RabbitMQ (with rabbitmqctl) and Redis; uses Redis database 13
and a throwaway RabbitMQ virtual host.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

BENCH_DIR = Path(__file__).resolve().parent
REPO_ROOT = BENCH_DIR.parent
RESULTS_DIR = BENCH_DIR / "results"
VALUES_FILES = ["prod", "reference-layout", "staging", "dev", "ci"]
SECTIONS = ("image", "memory", "overhead", "throughput")
# Configurations worth knowing besides the values files': the candidates for prod.
CANDIDATES = [
    ("uploader", "threads", 2),
    ("uploader", "threads", 4),
    ("retriever", "threads", 2),
    ("retriever", "threads", 4),
]


def main(argv: list[str]) -> int:
    sys.path.insert(0, str(BENCH_DIR))
    import image_stage
    import memory
    import overhead
    import report
    import throughput

    from recycle_workers.capacity import find_chart_values, load_release
    from recycle_workers.testing.fake_openai import FakeOpenAI

    sections = argv or list(SECTIONS)
    unknown = set(sections) - set(SECTIONS)
    if unknown:
        print(
            f"bench: unknown section {sorted(unknown)}; choose from {SECTIONS}",
            file=sys.stderr,
        )
        return 2
    RESULTS_DIR.mkdir(exist_ok=True)
    chart = find_chart_values(REPO_ROOT)
    releases = {
        name: load_release([REPO_ROOT / "values" / f"{name}.yaml"], chart_values=chart)
        for name in VALUES_FILES
    }

    for section in sections:
        started = time.monotonic()
        print(f"bench: {section} ...", flush=True)
        if section == "image":
            result = image_stage.run()
        elif section == "memory":
            configs = [
                (role.role, role.pool, role.concurrency)
                for release in releases.values()
                for role in release.roles
            ]
            with FakeOpenAI(analysis_latency_s=1.0, generation_latency_s=1.0) as fake:
                result = memory.run(configs + CANDIDATES, openai_base_url=fake.base_url)
            result["values_files"] = {
                name: [
                    {
                        "role": role.role,
                        "pool": role.pool,
                        "concurrency": role.concurrency,
                        "replicas": role.replicas,
                        "memory_mi": role.memory_mi,
                        "cpu_m": role.cpu_m,
                    }
                    for role in release.roles
                ]
                for name, release in releases.items()
            }
        elif section == "overhead":
            with FakeOpenAI() as fake:
                result = overhead.run(openai_base_url=fake.base_url)
        else:
            prod = {
                role.role: (role.pool, role.concurrency)
                for role in releases["prod"].roles
            }
            with FakeOpenAI(
                analysis_latency_s=throughput.ANALYSIS_LATENCY_S,
                generation_latency_s=throughput.GENERATION_LATENCY_S,
            ) as fake:
                result = throughput.run(
                    {role: prod[role] for role in ("analyzer", "generator")},
                    openai_base_url=fake.base_url,
                )
        result["seconds"] = round(time.monotonic() - started, 1)
        result["machine"] = machine()
        (RESULTS_DIR / f"{section}.json").write_text(
            json.dumps(result, indent=2) + "\n"
        )
        print(f"bench: {section} done in {result['seconds']} s", flush=True)

    report.write(RESULTS_DIR, REPO_ROOT / "docs")
    print("bench: wrote docs/performance.md", flush=True)
    return 0


def machine() -> dict:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    import os

    import PIL

    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": cpu,
        "cores": os.cpu_count(),
        "python": platform.python_version(),
        "pillow": PIL.__version__,
        "kernel": platform.release(),
    }


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
