"""Command line: ``identity-worker run | check-config | create-topics | inspect | delete |
dead-letters replay | buffer stats | tail | demo``.

A thin layer: it resolves settings, builds the worker through ``worker.app`` and wires signals.
Every option falls back to the settings (env ``IDENTITY_WORKER_*`` or the ``--config`` file).
Errors are one line on stderr, never a traceback (``--traceback`` shows it), with these exit
codes: 0 ok, 1 not found, 2 usage or configuration, 3 a dependency (Kafka, Redis, the schema
registry) unavailable, 4 an internal error (a bug); ``run`` also exits 3 when its graceful
shutdown overran ``batch.shutdown_timeout_seconds`` and 130 on a second signal.
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

from worker import __version__, build
from worker.config import CONFIG_FILE_ENV, Settings, load_settings, unknown_env_names
from worker.errors import ConfigError, TransientError
from worker.runtime import tune_gc

log = logging.getLogger("worker.cli")

EXIT_OK = 0
EXIT_NOT_FOUND = 1
EXIT_CONFIG = 2
EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_INTERNAL = 4
EXIT_FORCED = 130
EXIT_SHUTDOWN_TIMEOUT = 3

EXIT_CODES_HELP = """exit codes:
  0  success
  1  not found (inspect, delete: no such person; a topic that does not exist)
  2  usage or configuration error (bad option, invalid setting, missing config file)
  3  a dependency is unavailable (Kafka, Redis, the schema registry); for run, also a graceful
     shutdown that overran batch.shutdown_timeout_seconds
  4  internal error (a bug: rerun with --traceback and report it)
  130  run: a second SIGTERM/SIGINT forced the exit"""


class NotFoundError(LookupError):
    """What the command was asked about does not exist (exit code 1)."""


def _settings(args: argparse.Namespace, *, warn: bool = True) -> Settings:
    try:
        settings = load_settings(args.config)
    except ValidationError as exc:
        errors = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        print(f"identity-worker: invalid configuration: {errors}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    except FileNotFoundError as exc:
        print(f"identity-worker: {exc}", file=sys.stderr)
        raise SystemExit(EXIT_CONFIG) from None
    if warn:
        warn_unknown_env()
    return settings


def warn_unknown_env() -> list[str]:
    """Log a warning for each ``IDENTITY_WORKER_*`` variable that names no setting."""
    names = unknown_env_names()
    for name in names:
        log.warning(
            "%s names no setting and is ignored (sections: %s; nested names use '__')",
            name,
            ", ".join(Settings.model_fields),
        )
    return names


def cmd_check_config(args: argparse.Namespace) -> int:
    settings = _settings(args)
    print(json.dumps(settings.redacted(), indent=2, sort_keys=True))
    return 0


def cmd_create_topics(args: argparse.Namespace) -> int:
    from worker.kafka.admin import create_topics, topic_specs

    settings = _settings(args)
    specs = topic_specs(settings)
    result = create_topics(
        settings.kafka.admin_conf(), specs, timeout=args.timeout, leader_timeout=args.timeout
    )
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
    from worker.ops.deletions import DeletionConsumer

    settings = _settings(args, warn=False)
    configure_logging(settings.observability.log_format, settings.observability.log_level)
    warn_unknown_env()
    worker = build_worker(settings)
    ops = build_ops_server(settings, worker)
    ops.start()
    deletions = DeletionConsumer(settings, worker.store)
    deletions.start()
    install_signal_handlers(worker.runner.request_shutdown, settings.batch.shutdown_timeout_seconds)
    tune_gc(settings.batch.gc_threshold)  # last step of start-up: what it built is frozen
    log.info(
        "identity-worker starting",
        extra={
            "group": settings.kafka.group_id,
            "topics": list(settings.topics.inputs),
            "metrics_port": ops.port,
            "build": build.describe(),
        },
    )
    try:
        worker.runner.run()
    finally:
        try:
            deletions.close()
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
            print(
                f"identity-worker: not found: no person holds distinct id {args.distinct_id!r} "
                f"of tenant {args.tenant!r}",
                file=sys.stderr,
            )
            return EXIT_NOT_FOUND
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


def cmd_delete(args: argparse.Namespace) -> int:
    """Contract A10: delete a person, write its tombstones and an audit record."""
    import time

    from confluent_kafka import KafkaException, Producer

    from worker.app import build_store, redis_client
    from worker.errors import KafkaUnavailableError
    from worker.ops.deletion import DeletionRequest, execute

    settings = _settings(args)
    request = DeletionRequest(args.tenant, args.distinct_id, args.person, args.requested_by)
    producer = Producer({**settings.kafka.producer_conf(), "enable.idempotence": True})
    try:
        # Kafka first: never delete in Redis what no tombstone could then announce
        producer.list_topics(timeout=args.timeout)
    except KafkaException as exc:
        raise KafkaUnavailableError(f"Kafka: no metadata: {exc.args[0]}") from None
    client = redis_client(settings)
    try:
        store = build_store(settings, client)
        record = execute(
            store,
            producer,
            settings.topics,
            request,
            lambda: int(time.time() * 1000),
            flush_timeout_s=args.timeout,
        )
    finally:
        client.close()
    print(json.dumps(record, sort_keys=True))
    if record["person_id"] is None:
        asked = (
            f"distinct id {args.distinct_id!r}" if args.distinct_id else f"person {args.person!r}"
        )
        print(
            f"identity-worker: not found: no person for {asked} of tenant {args.tenant!r}",
            file=sys.stderr,
        )
        return EXIT_NOT_FOUND
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from worker.ops.replay import ReplayFilter, ReplayRange, replay_dead_letters

    settings = _settings(args)
    report = replay_dead_letters(
        settings.kafka.consumer_conf(),
        settings.topics.dead_letters,
        ReplayFilter(frozenset(args.reason), frozenset(args.source_topic)),
        to_topic=args.to,
        dry_run=not args.execute,
        producer_conf=settings.kafka.producer_conf(),
        span=ReplayRange(
            limit=args.limit,
            since_ms=args.since,
            until_ms=args.until,
            start_offset=args.start_offset,
            end_offset=args.end_offset,
            partitions=frozenset(args.partition),
        ),
        metadata_timeout_seconds=args.timeout,
    )
    print(json.dumps(report.summary(), sort_keys=True))
    if not args.execute:
        print("dry run: nothing was produced; add --execute to replay", file=sys.stderr)
    return 0


def cmd_tail(args: argparse.Namespace) -> int:
    from worker.app import build_avro
    from worker.ops.tail import (
        TailOptions,
        as_json,
        decode_value,
        headers_of,
        readable,
        schema_for_topic,
        tail,
    )

    settings = _settings(args)
    avro = build_avro(settings) if settings.formats.schema_registry_url else None
    if avro is None:
        from worker.codec.avro import AvroCodec

        avro = AvroCodec()
    schema = schema_for_topic(args.topic, settings.topics)
    offset = "beginning" if args.from_beginning else args.offset
    options = TailOptions(
        offset=offset,
        partitions=frozenset(args.partition),
        limit=args.limit,
        exit_at_end=args.exit,
        idle_seconds=args.idle,
        metadata_timeout_seconds=args.timeout,
    )
    for message in tail(settings.kafka.consumer_conf(), args.topic, options):
        fmt, value = decode_value(message.value(), schema, avro)
        if args.json:
            print(json.dumps(as_json(message, fmt, value), sort_keys=True, default=str))
        else:
            key = (message.key() or b"").decode("utf-8", errors="replace")
            print(
                f"{message.partition()}:{message.offset()} {key} "
                f"{readable(args.topic, fmt, value, headers_of(message))}"
            )
        sys.stdout.flush()
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

    settings = _settings(args)
    if args.config:
        # the worker the demo starts reads the same file
        os.environ[CONFIG_FILE_ENV] = str(args.config)
    return run_demo(settings, events=args.events)


def _time_ms(text: str) -> int:
    """A point in time: ms since the epoch, an ISO 8601 time (UTC unless it says), or an age
    such as ``90s``, ``15m``, ``2h``, ``1d`` (that long ago)."""
    import re
    import time
    from datetime import UTC, datetime

    text = text.strip()
    if text.isdigit():
        return int(text)
    age = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd])", text)
    if age:
        seconds = float(age.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[age.group(2)]
        return int((time.time() - seconds) * 1000)
    try:
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a time (ms since the epoch, ISO 8601, or an age like 2h)"
        ) from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return int(parsed.timestamp() * 1000)


def _non_negative(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 0:
        raise argparse.ArgumentTypeError(f"{text!r} is negative")
    return value


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive number of seconds")
    return value


def _offset(text: str) -> str:
    if text in ("beginning", "end"):
        return text
    try:
        int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r}: use beginning, end, an offset, or -N (the last N per partition)"
        ) from None
    return text


_FORMATTER = argparse.RawDescriptionHelpFormatter


def build_parser() -> argparse.ArgumentParser:
    # --config is accepted before and after the subcommand: the subcommands' copy defaults to
    # SUPPRESS so it never overwrites the value given before
    config_default = os.environ.get(CONFIG_FILE_ENV)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--config",
        default=argparse.SUPPRESS,
        metavar="FILE",
        help=f"TOML settings file [env: {CONFIG_FILE_ENV}]; env vars IDENTITY_WORKER_* win over it",
    )
    parser = argparse.ArgumentParser(
        prog="identity-worker",
        description="Resolve distinct ids to persons: Kafka in, Redis union-find, Kafka out.\n\n"
        "Settings come from IDENTITY_WORKER_* env vars (nested with '__', e.g.\n"
        "IDENTITY_WORKER_KAFKA__BOOTSTRAP_SERVERS) and an optional TOML file (--config).",
        epilog=EXIT_CODES_HELP,
        formatter_class=_FORMATTER,
    )
    parser.add_argument(
        "--config",
        default=config_default,
        metavar="FILE",
        help=f"TOML settings file [env: {CONFIG_FILE_ENV}]; env vars IDENTITY_WORKER_* win over it",
    )
    parser.add_argument(
        "--version", action="version", version=f"identity-worker {__version__} ({build.describe()})"
    )
    parser.add_argument(
        "--traceback", action="store_true", help="show the Python traceback of an error"
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name: str, help_text: str, description: str) -> argparse.ArgumentParser:
        return sub.add_parser(
            name,
            help=help_text,
            description=description,
            epilog=EXIT_CODES_HELP,
            formatter_class=_FORMATTER,
            parents=[common],
        )

    command(
        "run",
        "run the worker (a consumer-group member)",
        "Run the worker: join the consumer group kafka.group_id, read the input topics, resolve\n"
        "persons in Redis and write enriched events, overrides, person changes, warnings and\n"
        "dead letters. /metrics, /healthz and /readyz listen on observability.metrics_port.\n"
        "SIGTERM/SIGINT: finish the batch, commit, leave; a second signal exits at once.",
    ).set_defaults(func=cmd_run)
    command(
        "check-config",
        "validate the settings and print them, secrets hidden",
        "Validate the settings (env, --config file, defaults) and print them as JSON. Secrets\n"
        "(the Redis URL, the SASL password, the registry URL and every secret librdkafka\n"
        "property of kafka.consumer/kafka.producer) are printed as **********. Unknown\n"
        "IDENTITY_WORKER_* variables are reported on stderr.",
    ).set_defaults(func=cmd_check_config)
    create = command(
        "create-topics",
        "create the input and output topics that do not exist",
        "Create every input and output topic that does not exist yet (topics.partitions,\n"
        "topics.replication_factor; person changes and overrides compacted), then wait until\n"
        "each partition has a leader, so the next command does not race the broker.",
    )
    create.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="wait this long for the broker, then for the leaders (default 30)",
    )
    create.set_defaults(func=cmd_create_topics)
    inspect = command(
        "inspect",
        "show the person that holds a distinct id",
        "Print, as JSON, the person that holds a distinct id of a tenant: its id, version,\n"
        "distinct ids and properties. Exits 1 when no person holds the id.",
    )
    inspect.add_argument("--tenant", required=True, help="the tenant (team id, write key...)")
    inspect.add_argument("--distinct-id", required=True, help="the distinct id to look up")
    inspect.add_argument(
        "--max-ids", type=_non_negative, default=100, help="distinct ids to list (default 100)"
    )
    inspect.set_defaults(func=cmd_inspect)
    delete = command(
        "delete",
        "delete a person: its distinct ids, properties, memberships, buffered events",
        "Delete, atomically in Redis, the person that holds --distinct-id (or the person\n"
        "--person): all its distinct ids, its properties, its group memberships and the\n"
        "buffered events of its ids. Then write tombstones (null values) to the compacted\n"
        "person-changes (key tenant:person_id) and override (key tenant:distinct_id) topics and\n"
        "an audit record to topics.deletion_audit, and print that record as JSON. A later\n"
        "event of a deleted id starts a new person. Idempotent: exits 1 when no such person\n"
        "exists (nothing deleted; the audit record says not_found).",
    )
    delete.add_argument("--tenant", required=True, help="the tenant (team id, write key...)")
    target = delete.add_mutually_exclusive_group(required=True)
    target.add_argument("--distinct-id", help="delete the person holding this distinct id")
    target.add_argument("--person", metavar="PERSON_ID", help="delete the person with this id")
    delete.add_argument(
        "--requested-by",
        default=os.environ.get("USER") or "cli",
        help="who asked, for the audit record (default $USER)",
    )
    delete.add_argument(
        "--timeout",
        type=float,
        default=30.0,
        metavar="SECONDS",
        help="wait this long for Kafka (metadata, then the records' acknowledgements)",
    )
    delete.set_defaults(func=cmd_delete)
    dead = command(
        "dead-letters",
        "work with the dead-letter topic",
        "Work with the dead-letter topic (topics.dead_letters).",
    )
    dead_sub = dead.add_subparsers(dest="dead_command", required=True, metavar="ACTION")
    replay = dead_sub.add_parser(
        "replay",
        help="send dead letters back to their source topic (dry run by default)",
        description="Send dead letters back to the topic they came from (header\n"
        "iw.source.topic), or to --to, without the worker's iw.* headers. Reads a snapshot: from\n"
        "the start (or --since / --start-offset) to the current end (or --end-offset). A dry run\n"
        "unless --execute. Progress (rate, ETA) on stderr; a JSON summary on stdout.",
        epilog=EXIT_CODES_HELP,
        formatter_class=_FORMATTER,
        parents=[common],
    )
    replay.add_argument(
        "--reason", action="append", default=[], help="only this reason (repeatable)"
    )
    replay.add_argument(
        "--source-topic", action="append", default=[], help="only letters from this topic"
    )
    replay.add_argument("--to", help="produce to this topic instead of the source topic")
    replay.add_argument("--execute", action="store_true", help="really produce (default: dry run)")
    replay.add_argument("--limit", type=_non_negative, help="stop after this many matching letters")
    replay.add_argument(
        "--since",
        type=_time_ms,
        metavar="TIME",
        help="start at letters written at or after TIME (ms since the epoch, ISO 8601, or 2h)",
    )
    replay.add_argument(
        "--until", type=_time_ms, metavar="TIME", help="skip letters written after TIME"
    )
    replay.add_argument("--start-offset", type=_non_negative, metavar="N", help="start at offset N")
    replay.add_argument(
        "--end-offset", type=_non_negative, metavar="N", help="stop before offset N"
    )
    replay.add_argument(
        "--partition",
        type=_non_negative,
        action="append",
        default=[],
        help="only this partition (repeatable)",
    )
    replay.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the broker (default 10)",
    )
    replay.set_defaults(func=cmd_replay)
    buffer = command("buffer", "the 60-second buffer", "Look at the buffer of backend events.")
    buffer_sub = buffer.add_subparsers(dest="buffer_command", required=True, metavar="ACTION")
    stats = buffer_sub.add_parser(
        "stats",
        help="events waiting per tenant",
        description="Per buffered tenant: events waiting, ids, leased entries, oldest wait.",
        epilog=EXIT_CODES_HELP,
        formatter_class=_FORMATTER,
        parents=[common],
    )
    stats.add_argument("--tenant", help="only this tenant")
    stats.add_argument("--json", action="store_true", help="print JSON")
    stats.set_defaults(func=cmd_buffer_stats)
    tail_cmd = command(
        "tail",
        "print a topic's records decoded (enriched events, overrides, person changes...)",
        "Print the records of TOPIC decoded from JSON or Avro (local schema ids, or the\n"
        "registry's when formats.schema_registry_url is set): one readable line each, or one\n"
        "JSON object each with --json. Starts at the end (new records) unless told otherwise;\n"
        "joins no consumer group and commits nothing. Like kcat -C -t TOPIC.",
    )
    tail_cmd.add_argument("topic", metavar="TOPIC", help="the topic to read")
    tail_cmd.add_argument(
        "-o",
        "--offset",
        type=_offset,
        default="end",
        help="beginning, end (default), an offset, or -N (the last N of each partition)",
    )
    tail_cmd.add_argument(
        "--from-beginning", action="store_true", help="same as --offset beginning"
    )
    tail_cmd.add_argument(
        "-p",
        "--partition",
        type=_non_negative,
        action="append",
        default=[],
        help="only this partition (repeatable)",
    )
    tail_cmd.add_argument("-c", "--limit", type=_non_negative, help="stop after this many records")
    tail_cmd.add_argument(
        "-e", "--exit", action="store_true", help="stop at the end of every partition"
    )
    tail_cmd.add_argument(
        "--idle", type=float, metavar="SECONDS", help="stop after SECONDS with nothing new"
    )
    tail_cmd.add_argument("--json", action="store_true", help="one JSON object per record")
    tail_cmd.add_argument(
        "--timeout",
        type=_positive_seconds,
        default=10.0,
        metavar="SECONDS",
        help="how long to wait for the broker (default 10)",
    )
    tail_cmd.set_defaults(func=cmd_tail)
    demo = command(
        "demo",
        "create topics, start a worker, feed it a demo stream, print the output",
        "The main job in one command: create the topics, start `identity-worker run`, produce a\n"
        "small stream of PostHog, Segment and native events for a new tenant, and print the\n"
        "enriched events, overrides and warnings.",
    )
    demo.add_argument("--events", type=_non_negative, default=0, help="extra random track events")
    demo.set_defaults(func=cmd_demo)
    return parser


def _error_code(exc: BaseException) -> tuple[int, str] | None:
    """The exit code and the one-line message for an error a command may meet."""
    import redis
    from confluent_kafka import KafkaException

    from worker.ops.replay import TopicNotFoundError

    if isinstance(exc, NotFoundError | TopicNotFoundError):
        return EXIT_NOT_FOUND, f"not found: {exc}"
    if isinstance(exc, ConfigError):
        return EXIT_CONFIG, f"configuration: {exc}"
    if isinstance(exc, TransientError):
        return EXIT_UNAVAILABLE, f"{exc.component.value} unavailable: {exc}"
    if isinstance(exc, KafkaException):
        return EXIT_UNAVAILABLE, f"kafka unavailable: {exc.args[0] if exc.args else exc}"
    if isinstance(exc, redis.exceptions.ConnectionError | redis.exceptions.TimeoutError):
        return EXIT_UNAVAILABLE, f"redis unavailable: {exc}"
    if isinstance(exc, redis.exceptions.AuthenticationError):
        return EXIT_CONFIG, f"redis: {exc}"
    return None


def _stdout_closed() -> None:
    """The reader of stdout went away (``| head``): drop what is left, quietly."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):
        pass


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        # every command but `run` (which sets up its own): warnings, librdkafka's lines
        # included, as text on stderr, away from the output on stdout
        logging.basicConfig(
            level=logging.WARNING, format="identity-worker: %(levelname)s: %(name)s: %(message)s"
        )
        if not args.traceback:
            # a broker that does not answer is reported once, by the command's own error line,
            # not by librdkafka's every reconnect (--traceback shows them)
            logging.getLogger("librdkafka").setLevel(logging.CRITICAL)
    try:
        code: int = args.func(args)
        sys.stdout.flush()
        return code
    except BrokenPipeError:
        _stdout_closed()
        return EXIT_OK
    except KeyboardInterrupt:
        return EXIT_FORCED
    except Exception as exc:
        known = _error_code(exc)
        if args.traceback:
            log.error("%s failed", args.command, exc_info=exc)
        if known is not None:
            code, text = known
            print(f"identity-worker: error: {text}", file=sys.stderr)
            return code
        print(
            f"identity-worker: internal error: {type(exc).__name__}: {exc} "
            "(rerun with --traceback and report it)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL
