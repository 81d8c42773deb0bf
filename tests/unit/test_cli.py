"""The command line without services: exit codes, one-line errors, help, version, --config
anywhere, redacted secrets, unknown settings, a closed pipe, librdkafka's lines as log records.

Dependencies "down" are addresses nothing listens on (a free port): a refused connection is a
real failure of the real clients, not a stand-in.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.faults.services import free_ports
from worker.cli import (
    EXIT_CONFIG,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_UNAVAILABLE,
    build_parser,
    main,
)
from worker.config import Settings, is_secret_property, unknown_env_names

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in list(os.environ):
        if name.startswith("IDENTITY_WORKER_"):
            monkeypatch.delenv(name)


@pytest.fixture
def dead_port() -> int:
    return free_ports(1)[0]


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    assert "Traceback" not in err
    return lines[0]


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["--version"])
    assert exit_info.value.code == EXIT_OK
    assert capsys.readouterr().out.startswith("identity-worker 0.")


def test_usage_error_exits_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["inspect", "--tenant", "t"])
    assert exit_info.value.code == EXIT_CONFIG
    assert "--distinct-id" in capsys.readouterr().err


def test_missing_config_file_exits_2(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["check-config", "--config", str(tmp_path / "nope.toml")])
    assert exit_info.value.code == EXIT_CONFIG
    assert "config file not found" in _one_error_line(capsys.readouterr().err)


def test_invalid_setting_is_one_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_WORKER_BATCH__MAX_MESSAGES", "0")
    with pytest.raises(SystemExit) as exit_info:
        main(["check-config"])
    assert exit_info.value.code == EXIT_CONFIG
    assert "batch.max_messages" in _one_error_line(capsys.readouterr().err)


def test_config_is_accepted_before_and_after_the_command(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "w.toml"
    config.write_text('[kafka]\ngroup_id = "from-file"\n')
    for argv in (
        ["--config", str(config), "check-config"],
        ["check-config", "--config", str(config)],
    ):
        assert main(argv) == EXIT_OK
        assert json.loads(capsys.readouterr().out)["kafka"]["group_id"] == "from-file"


def test_every_command_has_a_description_and_the_exit_codes() -> None:
    parser = build_parser()
    for argv in (
        ["run"],
        ["check-config"],
        ["create-topics"],
        ["inspect"],
        ["dead-letters", "replay"],
        ["buffer", "stats"],
        ["tail"],
        ["demo"],
    ):
        sub = parser
        for word in argv:
            action = next(
                a for a in sub._actions if a.dest in ("command", "dead_command", "buffer_command")
            )
            sub = action.choices[word]  # type: ignore[index]
        text = sub.format_help()
        assert sub.description, argv
        assert "exit codes:" in text, argv
        assert "3  a dependency is unavailable" in text, argv
        assert "--config" in text, argv


def test_check_config_hides_librdkafka_secrets(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    secrets = {
        "ssl.key.password": "s1",
        "sasl.oauthbearer.client.secret": "s2",
        "ssl.key.pem": "s3",
        "sasl.jaas.config": "s4",
        "ssl.keystore.password": "s5",
    }
    monkeypatch.setenv(
        "IDENTITY_WORKER_KAFKA__CONSUMER", json.dumps({**secrets, "fetch.min.bytes": 7})
    )
    monkeypatch.setenv("IDENTITY_WORKER_KAFKA__PRODUCER", json.dumps({"sasl.password": "s6"}))
    monkeypatch.setenv("IDENTITY_WORKER_KAFKA__SASL_PASSWORD", "s7")
    assert main(["check-config"]) == EXIT_OK
    out = capsys.readouterr().out
    for value in [*secrets.values(), "s6", "s7"]:
        assert f'"{value}"' not in out
    shown = json.loads(out)["kafka"]
    assert shown["consumer"]["ssl.key.password"] == "**********"
    assert shown["consumer"]["fetch.min.bytes"] == 7
    assert shown["producer"]["sasl.password"] == "**********"


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("ssl.key.password", True),
        ("sasl.oauthbearer.client.secret", True),
        ("SSL.KEY.PEM", True),
        ("sasl.jaas.config", True),
        ("ssl.truststore.password", True),
        ("sasl.username", False),
        ("ssl.ca.location", False),
        ("fetch.min.bytes", False),
    ],
)
def test_secret_properties(name: str, secret: bool) -> None:
    assert is_secret_property(name) is secret


def test_unknown_env_names_are_reported(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {
        "IDENTITY_WORKER_KAFAK__BOOTSTRAP_SERVERS": "x",
        "IDENTITY_WORKER_KAFKA__BOOTSTRAP_SERVER": "x",
        "IDENTITY_WORKER_KAFKA__BOOTSTRAP_SERVERS": "x",
        "IDENTITY_WORKER_REDIS": "{}",
        "IDENTITY_WORKER_CONFIG_FILE": "x",
        "IDENTITY_WORKER_LOCAL_DIR": "x",
        "OTHER": "x",
    }
    assert unknown_env_names(env) == [
        "IDENTITY_WORKER_KAFAK__BOOTSTRAP_SERVERS",
        "IDENTITY_WORKER_KAFKA__BOOTSTRAP_SERVER",
    ]
    monkeypatch.setenv("IDENTITY_WORKER_KAFAK__BOOTSTRAP_SERVERS", "x")
    result = subprocess.run(
        [sys.executable, "-m", "worker", "check-config"],
        env={**os.environ, "IDENTITY_WORKER_KAFAK__BOOTSTRAP_SERVERS": "x"},
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == EXIT_OK
    assert "IDENTITY_WORKER_KAFAK__BOOTSTRAP_SERVERS names no setting" in result.stderr


def test_closed_pipe_is_quiet() -> None:
    # `check-config | head`: the reader is gone before the command writes
    result = subprocess.run(
        ["bash", "-c", f"{sys.executable} -m worker check-config | true; echo ${{PIPESTATUS[0]}}"],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )
    assert "BrokenPipeError" not in result.stderr
    assert "Traceback" not in result.stderr
    assert result.stdout.strip() == "0"


def test_redis_down_exits_3(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], dead_port: int
) -> None:
    monkeypatch.setenv("IDENTITY_WORKER_REDIS__URL", f"redis://127.0.0.1:{dead_port}/0")
    monkeypatch.setenv("IDENTITY_WORKER_REDIS__RETRY_ATTEMPTS", "1")
    assert main(["inspect", "--tenant", "t", "--distinct-id", "d"]) == EXIT_UNAVAILABLE
    assert "redis unavailable" in _one_error_line(capsys.readouterr().err)
    assert main(["buffer", "stats"]) == EXIT_UNAVAILABLE
    assert "redis unavailable" in _one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize(
    "argv",
    [
        ["create-topics", "--timeout", "2"],
        ["dead-letters", "replay", "--timeout", "2"],
        ["tail", "identity.enriched", "-e", "--timeout", "2"],
    ],
)
def test_kafka_down_exits_3(
    argv: list[str],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    dead_port: int,
) -> None:
    monkeypatch.setenv("IDENTITY_WORKER_KAFKA__BOOTSTRAP_SERVERS", f"127.0.0.1:{dead_port}")
    assert main(argv) == EXIT_UNAVAILABLE
    assert "kafka unavailable" in _one_error_line(capsys.readouterr().err)


def test_an_unexpected_error_exits_4(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(_args: object) -> int:
        raise ZeroDivisionError("planted")

    monkeypatch.setattr("worker.cli.cmd_check_config", broken)
    assert main(["check-config"]) == EXIT_INTERNAL
    assert "internal error: ZeroDivisionError: planted" in _one_error_line(capsys.readouterr().err)


def test_librdkafka_lines_are_json_log_records(dead_port: int) -> None:
    """librdkafka's own lines (``%3|...|FAIL|...``) come out as JSON log records."""
    script = f"""
import logging, sys, time
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient
from worker.config import Settings
from worker.observability.logging import configure_logging

configure_logging("json", "INFO")
seen = set()
class Seen(logging.Handler):
    def emit(self, record):
        seen.add(record.getMessage().split("[")[1].split("#")[1].split("-")[0])
logging.getLogger("librdkafka").addHandler(Seen())
kafka = Settings(kafka={{"bootstrap_servers": "127.0.0.1:{dead_port}"}}).kafka
consumer = Consumer({{**kafka.consumer_conf(), "group.id": "g"}})
producer = Producer(kafka.producer_conf())
admin = AdminClient(kafka.admin_conf())
deadline = time.monotonic() + 60
while len(seen) < 2 and time.monotonic() < deadline:
    consumer.poll(0.2)
    producer.poll(0.2)
    admin.poll(0.2)
sys.exit(0 if {{"consumer", "producer"}} <= seen else 1)
"""
    result = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT,
    )
    assert result.returncode == 0, result.stderr
    lines = result.stderr.splitlines()
    assert lines
    records = [json.loads(line) for line in lines]  # every line is JSON, none raw
    assert any(r["logger"] == "librdkafka" and "FAIL" in r["msg"] for r in records)


def test_ops_clients_get_the_consumer_and_producer_options() -> None:
    kafka = Settings(
        kafka={  # type: ignore[arg-type]
            "security_protocol": "SSL",
            "consumer": {"ssl.ca.location": "/ca.pem", "fetch.min.bytes": 1},
            "producer": {"ssl.key.password": "k", "linger.ms": 3},
        }
    ).kafka
    assert kafka.consumer_conf()["ssl.ca.location"] == "/ca.pem"
    assert kafka.producer_conf()["ssl.key.password"] == "k"
    admin = kafka.admin_conf()
    assert admin["ssl.ca.location"] == "/ca.pem"
    assert admin["ssl.key.password"] == "k"
    assert "fetch.min.bytes" not in admin
    assert "linger.ms" not in admin
    assert admin["security.protocol"] == "SSL"


def test_replay_times_accept_epoch_iso_and_ages() -> None:
    import time

    from worker.cli import _time_ms

    assert _time_ms("1700000000000") == 1_700_000_000_000
    assert _time_ms("2023-11-14T22:13:20Z") == 1_700_000_000_000
    assert _time_ms("2023-11-14T22:13:20") == 1_700_000_000_000  # UTC unless it says
    two_hours_ago = _time_ms("2h")
    assert abs(two_hours_ago - (time.time() - 7200) * 1000) < 60_000
    with pytest.raises(argparse.ArgumentTypeError):
        _time_ms("yesterday")


def test_progress_line_has_rate_and_eta() -> None:
    import io

    from worker.ops.progress import Progress

    now = [100.0]
    out = io.StringIO()
    bar = Progress(out, 1000, "replay", clock=lambda: now[0], every_seconds=1.0)
    now[0] = 110.0
    bar.advance(250)  # 25/s, 750 left
    line = out.getvalue().strip()
    assert line.startswith("replay: 250/1000  25.0%")
    assert "25/s" in line
    assert "ETA 30s" in line
