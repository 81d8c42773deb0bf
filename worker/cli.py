"""Command line: ``identity-worker run | check-config | create-topics | demo``.

A thin layer: it resolves settings, builds the worker through ``worker.app`` and wires signals.
Every option falls back to the settings (env ``IDENTITY_WORKER_*`` or the ``--config`` file).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from types import FrameType

from pydantic import ValidationError

from worker.config import CONFIG_FILE_ENV, Settings, load_settings

log = logging.getLogger("worker.cli")

EXIT_CONFIG = 2
EXIT_FORCED = 130
EXIT_SHUTDOWN_TIMEOUT = 3


def _settings(args: argparse.Namespace) -> Settings:
    try:
        return load_settings(args.config)
    except ValidationError as exc:
        print(f"invalid configuration:\n{exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    except FileNotFoundError as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    print(json.dumps(settings.redacted(), indent=2, sort_keys=True))
    return 0


def cmd_create_topics(args: argparse.Namespace) -> int:
    from worker.kafka.admin import create_topics, topic_specs

    settings = _settings(args)
    specs = topic_specs(settings)
    result = create_topics({**settings.kafka.common()}, specs)
    for spec in specs:
        kind = "compacted" if spec.compacted else "delete"
        print(
            f"{spec.name:40s} {result.get(spec.name, '?'):8s} partitions={spec.partitions} {kind}"
        )
    return 0


def install_signal_handlers(request_shutdown: Callable[[], None], timeout_seconds: float) -> None:
    """First SIGTERM/SIGINT: finish the batch, commit, close, within ``timeout_seconds``.
    Second signal, or the timeout: exit at once (nothing uncommitted is lost: it is re-read)."""
    state = {"signalled": False}

    def force_exit(code: int, why: str) -> None:
        log.error("exiting without finishing the batch: %s", why)
        logging.shutdown()
        os._exit(code)

    def handler(signum: int, _frame: FrameType | None) -> None:
        if state["signalled"]:
            force_exit(EXIT_FORCED, f"second signal {signal.Signals(signum).name}")
        state["signalled"] = True
        log.info("shutting down: finishing the current batch (signal %s)", signum)
        request_shutdown()
        timer = threading.Timer(
            timeout_seconds,
            force_exit,
            args=(EXIT_SHUTDOWN_TIMEOUT, f"shutdown took longer than {timeout_seconds:.0f}s"),
        )
        timer.daemon = True
        timer.start()

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def cmd_run(args: argparse.Namespace) -> int:
    from worker.app import build_ops_server, build_worker
    from worker.observability.logging import configure_logging

    settings = _settings(args)
    configure_logging(settings.observability.log_format, settings.observability.log_level)
    worker = build_worker(settings)
    ops = build_ops_server(settings, worker)
    ops.start()
    install_signal_handlers(worker.runner.request_shutdown, settings.batch.shutdown_timeout_seconds)
    log.info(
        "identity-worker starting",
        extra={
            "group": settings.kafka.group_id,
            "topics": list(settings.topics.inputs),
            "metrics_port": ops.port,
        },
    )
    try:
        worker.runner.run()
    finally:
        try:
            worker.close()
        finally:
            ops.close()
    log.info("identity-worker stopped")
    return 0


def cmd_inspect(args: argparse.Namespace) -> int:
    """The person holding a distinct id, as JSON (property values are the operator's ask)."""
    from worker.app import build_store, redis_client

    settings = _settings(args)
    client = redis_client(settings)
    try:
        store = build_store(settings, client)
        person = store.person_for(args.tenant, args.distinct_id)
        if person is None:
            print(
                json.dumps({"tenant": args.tenant, "distinct_id": args.distinct_id, "person": None})
            )
            return 1
        print(
            json.dumps(
                {
                    "tenant": args.tenant,
                    "distinct_id": args.distinct_id,
                    "person": {
                        "person_id": person.person_id,
                        "created_at_ms": person.created_at_ms,
                        "last_seen_ms": person.last_seen_ms,
                        "is_identified": person.is_identified,
                        "version": person.version,
                        "distinct_id_count": len(person.distinct_ids),
                        "distinct_ids": sorted(person.distinct_ids)[: args.max_ids],
                        "properties": person.visible_properties,
                    },
                },
                indent=2,
                sort_keys=True,
                default=str,
            )
        )
        return 0
    finally:
        client.close()


def cmd_replay(args: argparse.Namespace) -> int:
    from worker.ops.replay import ReplayFilter, replay_dead_letters

    settings = _settings(args)
    replay_dead_letters(
        settings.kafka.common(),
        settings.topics.dead_letters,
        ReplayFilter(frozenset(args.reason), frozenset(args.source_topic)),
        to_topic=args.to,
        dry_run=not args.execute,
    )
    if not args.execute:
        print("dry run: nothing was produced; add --execute to replay", file=sys.stderr)
    return 0


def cmd_buffer_stats(args: argparse.Namespace) -> int:
    """Per buffered tenant: events waiting, ids, leased entries, oldest wait."""
    from worker.app import build_store, redis_client
    from worker.clock import SystemClock

    settings = _settings(args)
    client = redis_client(settings)
    try:
        store = build_store(settings, client)
        now_ms = SystemClock().now_ms()
        tenants = [args.tenant] if args.tenant else store.buffered_tenants()
        rows = []
        for i, tenant in enumerate(tenants, 1):
            stats = store.buffer_stats(tenant, now_ms)
            rows.append(
                {
                    "tenant": tenant,
                    "events": stats.events,
                    "ids": stats.ids,
                    "leased": stats.leased,
                    "oldest_age_seconds": None
                    if stats.oldest_age_ms is None
                    else round(stats.oldest_age_ms / 1000, 1),
                }
            )
            if len(tenants) > 50 and i % 50 == 0:
                print(f"  {i}/{len(tenants)} tenants read", file=sys.stderr)
        if args.json:
            print(json.dumps(rows, indent=2))
        else:
            print(f"{'tenant':30s} {'events':>8s} {'ids':>8s} {'leased':>8s} {'oldest_s':>9s}")
            for row in rows:
                age = row["oldest_age_seconds"]
                print(
                    f"{row['tenant']!s:30s} {row['events']:>8} {row['ids']:>8} "
                    f"{row['leased']:>8} {'-' if age is None else age:>9}"
                )
            total = sum(int(str(r["events"])) for r in rows)
            print(f"{len(rows)} tenants, {total} events waiting")
        return 0
    finally:
        client.close()


def cmd_demo(args: argparse.Namespace) -> int:
    from worker.demo import run_demo

    return run_demo(_settings(args), events=args.events)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="identity-worker",
        description="Resolve distinct ids to persons: Kafka in, Redis union-find, Kafka out.",
    )
    parser.add_argument(
        "--config",
        default=os.environ.get(CONFIG_FILE_ENV),
        help=f"TOML settings file [env: {CONFIG_FILE_ENV}]; env vars IDENTITY_WORKER_* win over it",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="run the worker (a consumer-group member)").set_defaults(
        func=cmd_run
    )
    sub.add_parser(
        "check-config", help="validate the settings and print them, secrets hidden"
    ).set_defaults(func=cmd_check_config)
    sub.add_parser(
        "create-topics", help="create the input and output topics that do not exist"
    ).set_defaults(func=cmd_create_topics)
    inspect = sub.add_parser("inspect", help="show the person that holds a distinct id")
    inspect.add_argument("--tenant", required=True)
    inspect.add_argument("--distinct-id", required=True)
    inspect.add_argument("--max-ids", type=int, default=100, help="distinct ids to list")
    inspect.set_defaults(func=cmd_inspect)
    dead = sub.add_parser("dead-letters", help="work with the dead-letter topic")
    dead_sub = dead.add_subparsers(dest="dead_command", required=True)
    replay = dead_sub.add_parser(
        "replay", help="send dead letters back to their source topic (dry run by default)"
    )
    replay.add_argument("--reason", action="append", default=[], help="only this reason")
    replay.add_argument(
        "--source-topic", action="append", default=[], help="only letters from this topic"
    )
    replay.add_argument("--to", help="produce to this topic instead of the source topic")
    replay.add_argument("--execute", action="store_true", help="really produce (default: dry run)")
    replay.set_defaults(func=cmd_replay)
    buffer = sub.add_parser("buffer", help="the 60-second buffer")
    buffer_sub = buffer.add_subparsers(dest="buffer_command", required=True)
    stats = buffer_sub.add_parser("stats", help="events waiting per tenant")
    stats.add_argument("--tenant", help="only this tenant")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(func=cmd_buffer_stats)
    demo = sub.add_parser(
        "demo", help="create topics, start a worker, feed it a demo stream, print the output"
    )
    demo.add_argument("--events", type=int, default=0, help="extra random track events")
    demo.set_defaults(func=cmd_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    code: int = args.func(args)
    return code
