"""The ``recycle-workers`` command.

Exit codes: 0 done, 1 the job (or the probe) failed, 2 the command was misused
or a setting is invalid. Every error is one line, ``recycle-workers: CODE:
sentence``, on standard error; no traceback reaches the terminal.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from importlib import resources
from pathlib import Path
from typing import NoReturn, Sequence

from recycle_workers.errors import ErrorCode, JobError
from recycle_workers.settings import Pool, Role, Settings, SettingsError, load_settings

logger = logging.getLogger(__name__)

PROG = "recycle-workers"
EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """The command line asks for something the command cannot do."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog=PROG, description="Recycling guidance pipeline workers.")
    commands = parser.add_subparsers(
        dest="command", required=True, parser_class=_Parser
    )

    run = commands.add_parser("run", help="start this process's role (exec's Celery)")
    run.add_argument("--role", choices=[role.value for role in Role])

    ask = commands.add_parser("ask", help="ask how to dispose of an item")
    ask.add_argument(
        "image", nargs="?", type=Path, help="photo of the item (JPEG, PNG, WebP, HEIC)"
    )
    ask.add_argument("--question", "-q", help="the question, in Korean or English")
    ask.add_argument(
        "--lang", choices=["ko", "en"], help="answer language (default ko)"
    )
    ask.add_argument("--json", action="store_true", help="print one JSON object")
    ask.add_argument(
        "--embedded", action="store_true", help="run all stages in this process"
    )
    ask.add_argument(
        "--timeout", type=_positive_float, default=60.0, help="seconds to wait"
    )

    demo = commands.add_parser(
        "demo", help="the embedded pipeline on the bundled sample"
    )
    demo.add_argument(
        "--lang", choices=["ko", "en"], help="answer language (default ko)"
    )
    demo.add_argument("--json", action="store_true", help="print one JSON object")

    probe = commands.add_parser("probe", help="Kubernetes probe: exit 0 when healthy")
    probe.add_argument("kind", choices=["liveness", "readiness"])
    probe.add_argument(
        "--max-age", type=_positive_float, help="heartbeat age limit, seconds"
    )

    rules = commands.add_parser("rules", help="browse the rule catalog")
    rule_commands = rules.add_subparsers(
        dest="rules_command", required=True, parser_class=_Parser
    )
    rules_list = rule_commands.add_parser("list", help="every item")
    rules_list.add_argument("--json", action="store_true")
    rules_show = rule_commands.add_parser("show", help="one item's rules")
    rules_show.add_argument("item_id")
    rules_search = rule_commands.add_parser("search", help="items matching a text")
    rules_search.add_argument("text")
    rules_search.add_argument("--json", action="store_true")

    stats = commands.add_parser(
        "stats", help="one day's job statistics (default yesterday)"
    )
    stats.add_argument(
        "--day", type=_day, help="the day, YYYY-MM-DD, in RECYCLE_TIMEZONE"
    )
    stats.add_argument("--json", action="store_true", help="print one JSON object")

    capacity = commands.add_parser(
        "capacity", help="jobs/s, bottleneck and node fit of a release"
    )
    capacity.add_argument(
        "-f",
        "--values",
        dest="values_files",
        type=Path,
        action="append",
        required=True,
        help="values file, merged like helm (repeatable)",
    )
    capacity.add_argument(
        "--chart", type=Path, help="the chart's values.yaml (default: found)"
    )
    for stage in ("upload", "analysis", "retrieval", "generation"):
        capacity.add_argument(
            f"--{stage}-latency",
            type=_positive_float,
            metavar="S",
            help=f"seconds per {stage} task (default: measured)",
        )
    capacity.add_argument(
        "--node-cpu",
        type=_positive_float,
        metavar="MILLICORES",
        help="allocatable CPU of one node (default t3.medium)",
    )
    capacity.add_argument(
        "--node-memory",
        type=_positive_float,
        metavar="MIB",
        help="allocatable memory of one node (default t3.medium)",
    )
    capacity.add_argument("--json", action="store_true", help="print one JSON object")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except UsageError as exc:
        return _fail(ErrorCode.USAGE.value, str(exc), EXIT_USAGE)
    except SettingsError as exc:
        return _fail(ErrorCode.INVALID_SETTING.value, str(exc), EXIT_USAGE)
    except KeyboardInterrupt:
        return _fail("interrupted", "Stopped by the user.", EXIT_FAILED)
    except Exception as exc:  # the last line of defence: one line, never a traceback
        logger.debug("unexpected error", exc_info=True)
        return _fail("internal_error", f"{type(exc).__name__}: {exc}", EXIT_FAILED)


def cmd_run(args: argparse.Namespace) -> int:
    settings = load_settings()
    role = Role(args.role) if args.role else settings.role
    if role is None:
        raise UsageError(
            "no role given: set RECYCLE_ROLE or pass --role "
            f"({', '.join(role.value for role in Role)})"
        )
    from recycle_workers import probes

    argv = celery_argv(role, settings)
    probes.clear(settings)
    os.environ["RECYCLE_ROLE"] = role.value
    if settings.metrics_port:
        from recycle_workers.metrics import prepare_multiprocess_dir

        # Read by prometheus_client at import, in Celery and in every child it forks;
        # beside the probe files, so processes sharing a host keep their own.
        metrics_dir = str(Path(settings.heartbeat_file).parent / "metrics")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir
        prepare_multiprocess_dir(metrics_dir)
    sys.stdout.flush()
    os.execv(sys.executable, argv)
    return EXIT_OK  # not reached: exec replaces this process


def celery_argv(role: Role, settings: Settings) -> list[str]:
    """The Celery command line that ``run`` execs for ``role``."""
    from recycle_workers.roles import queues_for

    base = [sys.executable, "-m", "celery", "--app", "recycle_workers.app:app"]
    if role == Role.SCHEDULER:
        return [*base, "beat", "--loglevel", settings.log_level]

    queues = settings.queues or ",".join(queues_for(role))
    concurrency = 1 if settings.pool == Pool.SOLO else settings.concurrency
    return [
        *base,
        "worker",
        "--queues",
        queues,
        "--pool",
        settings.pool.value,
        "--concurrency",
        str(concurrency),
        # The pid keeps node names apart when replicas share a host (their pidbox
        # queues are exclusive); exec keeps the pid, so it names the worker itself.
        "--hostname",
        f"{role.value}-{os.getpid()}@%h",
        "--loglevel",
        settings.log_level,
        # Gossip and mingle make every worker talk to every other at start and
        # on each event; this pipeline uses neither, and they cost at scale.
        "--without-gossip",
        "--without-mingle",
    ]


def cmd_ask(args: argparse.Namespace) -> int:
    if args.image is None and not args.question:
        raise UsageError("give a photo, --question TEXT, or both")
    image = _read_image(args.image) if args.image is not None else None
    overrides = {"mode": "embedded"} if args.embedded else {}
    settings = load_settings(**overrides)
    return _ask(settings, image=image, question=args.question, args=args)


def cmd_demo(args: argparse.Namespace) -> int:
    settings = load_settings(mode="embedded", openai_api_key=None)
    samples = resources.files("recycle_workers").joinpath("samples")
    image = samples.joinpath(DEMO_IMAGE).read_bytes()
    args.timeout = 30.0
    return _ask(
        settings, image=image, question=DEMO_QUESTION, args=args, show_timings=True
    )


def cmd_probe(args: argparse.Namespace) -> int:
    from recycle_workers import probes

    settings = load_settings()
    if args.kind == "liveness":
        healthy, detail = probes.check_liveness(settings, max_age_s=args.max_age)
    else:
        healthy, detail = probes.check_readiness(settings)
    print(f"{args.kind}: {'ok' if healthy else 'failing'}: {detail}")
    return EXIT_OK if healthy else EXIT_FAILED


def cmd_rules(args: argparse.Namespace) -> int:
    from recycle_workers.catalog import default_catalog
    from recycle_workers.matcher import match

    catalog = default_catalog()
    if args.rules_command == "list":
        rows = [
            _item_row(item) for item in sorted(catalog.items.values(), key=_by_stream)
        ]
        if args.json:
            print(json.dumps(rows, ensure_ascii=False))
        else:
            for row in rows:
                print(
                    f"{row['id']:<32} {row['stream']:<16} "
                    f"{row['name_ko']} / {row['name_en']}"
                )
        return EXIT_OK

    if args.rules_command == "show":
        item = catalog.get(args.item_id)
        if item is None:
            raise UsageError(f"no catalog item {args.item_id!r} (see 'rules list')")
        print(_describe_item(item, catalog))
        return EXIT_OK

    candidates = match(args.text, catalog, limit=5)
    if args.json:
        print(
            json.dumps(
                [{**_item_row(c.item), "score": c.score} for c in candidates],
                ensure_ascii=False,
            )
        )
    elif not candidates:
        print("no matching items")
    for candidate in candidates if not args.json else ():
        item = candidate.item
        print(
            f"{candidate.score:5.2f}  {item.item_id:<32} {item.stream:<16} "
            f"{item.name.ko}"
        )
    return EXIT_OK


def cmd_capacity(args: argparse.Namespace) -> int:
    from recycle_workers import capacity

    chart = (
        args.chart
        or capacity.find_chart_values(Path.cwd())
        or capacity.find_chart_values(Path(__file__).resolve().parent)
    )
    if chart is None:
        raise UsageError(
            "cannot find charts/recycle-pipeline/values.yaml; pass --chart PATH"
        )
    latencies = {
        stage: getattr(args, f"{stage}_latency")
        for stage in ("upload", "analysis", "retrieval", "generation")
        if getattr(args, f"{stage}_latency") is not None
    }
    try:
        release = capacity.load_release(args.values_files, chart_values=chart)
        plan = capacity.plan(
            release,
            latencies_s=latencies,
            node_cpu_m=int(args.node_cpu) if args.node_cpu else None,
            node_memory_mi=int(args.node_memory) if args.node_memory else None,
        )
    except capacity.CapacityError as exc:
        raise UsageError(str(exc)) from None
    print(json.dumps(plan.to_json()) if args.json else capacity.render_table(plan))
    return EXIT_OK


def cmd_stats(args: argparse.Namespace) -> int:
    from datetime import datetime, timezone

    from recycle_workers import stats
    from recycle_workers.storage import storage_from_settings

    settings = load_settings()
    day = args.day or stats.previous_day(datetime.now(timezone.utc), settings.timezone)
    daily = stats.load_daily_stats(storage_from_settings(settings), day)
    if daily is None:
        return _fail(
            "no_statistics",
            f"No statistics stored for {day.isoformat()}; the daily job writes them "
            "for the day before, after its schedule (RECYCLE_SCHEDULE_DAILY_STATS).",
            EXIT_FAILED,
        )
    print(daily.model_dump_json() if args.json else stats.render_table(daily))
    return EXIT_OK


COMMANDS = {
    "run": cmd_run,
    "ask": cmd_ask,
    "demo": cmd_demo,
    "probe": cmd_probe,
    "rules": cmd_rules,
    "stats": cmd_stats,
    "capacity": cmd_capacity,
}


def _ask(
    settings: Settings, *, image, question, args, show_timings: bool = False
) -> int:
    from recycle_workers.client import client_from_settings
    from recycle_workers.pipeline import failed_result, new_job_id

    lang = args.lang or settings.default_lang
    client = client_from_settings(settings)
    live = not args.json and sys.stderr.isatty() and hasattr(client, "events")
    try:
        job_id = client.submit(image=image, question=question, lang=lang)
        if live:
            result = _wait_showing_progress(
                client, job_id, timeout=args.timeout, lang=lang
            )
        else:
            result = client.wait(job_id, timeout=args.timeout)
    except JobError as exc:
        result = failed_result(new_job_id(), exc.code, exc.message)
    finally:
        client.close()

    if args.json:
        print(json.dumps(result.model_dump(mode="json"), ensure_ascii=False))
    elif result.status == "succeeded":
        print(_render_guidance(result, lang=lang, show_timings=show_timings))
    if result.status != "succeeded":
        if not args.json:
            _fail(result.error.code, result.error.message, EXIT_FAILED)
        return EXIT_FAILED
    return EXIT_OK


def _wait_showing_progress(client, job_id: str, *, timeout: float, lang: str):
    """Wait for the job, printing each finished stage with the time since submission."""
    import time

    labels = PROGRESS_LABELS["en" if lang == "en" else "ko"]
    started = time.monotonic()
    seen = 0
    while True:
        for event in client.events(job_id, start=seen):
            seen += 1
            label = labels.get((event.stage, event.status))
            if label:
                print(
                    f"[{time.monotonic() - started:5.1f}s] {label}",
                    file=sys.stderr,
                    flush=True,
                )
        result = client.result(job_id)
        if result is not None:
            return result
        if time.monotonic() - started > timeout:
            raise JobError(
                ErrorCode.WAIT_TIMEOUT,
                f"Job {job_id} did not finish within {timeout:g} s; "
                "it may still finish.",
            )
        time.sleep(PROGRESS_POLL_S)


def _render_guidance(result, *, lang: str, show_timings: bool) -> str:
    lines = [result.guidance]
    lines += [
        f"  {number}. {step}" for number, step in enumerate(result.steps, start=1)
    ]
    if result.degraded:
        lines.append(
            "(answered from the rules alone, without the AI model)"
            if lang == "en"
            else "(AI 모델 없이 규칙만으로 답했습니다)"
        )
    if show_timings:
        timings = result.timings_ms.model_dump()
        lines.append(
            "timings: "
            + ", ".join(
                f"{stage} {value:.1f} ms"
                for stage, value in timings.items()
                if value is not None
            )
        )
    return "\n".join(lines)


def _read_image(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise UsageError(f"no such file: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{path} is a folder, not a photo") from None
    except PermissionError:
        raise UsageError(f"cannot read {path}: permission denied") from None


def _item_row(item) -> dict:
    return {
        "id": item.item_id,
        "name_ko": item.name.ko,
        "name_en": item.name.en,
        "stream": item.stream,
    }


def _by_stream(item) -> tuple[str, str]:
    return item.stream, item.item_id


def _describe_item(item, catalog) -> str:
    stream = catalog.streams[item.stream]
    lines = [
        f"{item.item_id}: {item.name.ko} / {item.name.en}",
        f"stream: {item.stream} ({stream.ko} / {stream.en})",
        f"materials: {', '.join(item.materials)}",
        "steps:",
        *(f"  - {step.ko} / {step.en}" for step in item.steps),
    ]
    if item.conditional_steps:
        lines.append("when:")
        lines += [
            f"  - [{step.when}] {step.text.ko} / {step.text.en}"
            for step in item.conditional_steps
        ]
    if item.not_accepted:
        lines.append(
            f"otherwise ({item.not_accepted.stream}): {item.not_accepted.text.ko}"
        )
    lines.append(f"source: {item.source}")
    return "\n".join(lines)


def _day(text: str):
    from datetime import date

    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a day as YYYY-MM-DD"
        ) from None


def _positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be greater than 0")
    return value


def _fail(code: str, message: str, exit_code: int) -> int:
    print(f"{PROG}: {code}: {message}", file=sys.stderr)
    return exit_code


PROGRESS_POLL_S = 0.1
PROGRESS_LABELS = {
    "ko": {
        ("upload", "done"): "사진 업로드 완료",
        ("analysis", "done"): "물건 분석 완료",
        ("retrieval", "done"): "배출 규칙 확인",
        ("generation", "done"): "답변 작성 완료",
    },
    "en": {
        ("upload", "done"): "photo uploaded",
        ("analysis", "done"): "item analysed",
        ("retrieval", "done"): "rules found",
        ("generation", "done"): "answer written",
    },
}
DEMO_IMAGE = "cup-noodle.jpg"
DEMO_QUESTION = "이 컵라면 용기 어떻게 버려요?"
