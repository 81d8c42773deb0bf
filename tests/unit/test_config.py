"""Settings: sources and their priority, validation, secrets never printed."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from worker.cli import main
from worker.config import LUA_UNPACK_BOUND, Settings, load_settings
from worker.identity.model import OrderingMode


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    for name in list(os.environ):
        if name.startswith("IDENTITY_WORKER_"):
            monkeypatch.delenv(name)


def test_defaults_match_the_local_services() -> None:
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "127.0.0.1:19092"
    assert settings.redis.url.get_secret_value() == "redis://127.0.0.1:16379/0"
    assert settings.buffer.delay_seconds == 60
    assert settings.identity.ordering is OrderingMode.TIMESTAMP
    assert settings.topics.inputs == ("identity.identify", "identity.alias", "identity.track")


def test_env_vars_are_nested_with_double_underscore(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_WORKER_KAFKA__BOOTSTRAP_SERVERS", "broker:9092")
    monkeypatch.setenv("IDENTITY_WORKER_IDENTITY__ORDERING", "arrival")
    monkeypatch.setenv("IDENTITY_WORKER_KAFKA__CONSUMER", '{"fetch.min.bytes": 65536}')
    settings = load_settings()
    assert settings.kafka.bootstrap_servers == "broker:9092"
    assert settings.identity.ordering is OrderingMode.ARRIVAL
    assert settings.kafka.consumer == {"fetch.min.bytes": 65536}


def test_env_wins_over_the_config_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "worker.toml"
    config.write_text('[kafka]\ngroup_id = "from-file"\nclient_id = "file-client"\n')
    monkeypatch.setenv("IDENTITY_WORKER_KAFKA__GROUP_ID", "from-env")
    settings = load_settings(config)
    assert settings.kafka.group_id == "from-env"
    assert settings.kafka.client_id == "file-client"


def test_missing_config_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="config file not found"):
        load_settings(tmp_path / "nope.toml")


def test_unknown_and_invalid_settings_are_rejected() -> None:
    with pytest.raises(ValidationError):
        Settings(kafka={"bootstrap_server": "typo"})  # type: ignore[arg-type]
    with pytest.raises(ValidationError):
        Settings(batch={"max_messages": 0})  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="sasl_mechanism"):
        Settings(kafka={"security_protocol": "SASL_SSL"})  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["max_events_per_id", "release_batch_size"])
def test_buffer_counts_the_script_unpacks_are_bounded(name: str) -> None:
    assert getattr(Settings(buffer={name: LUA_UNPACK_BOUND}).buffer, name) == LUA_UNPACK_BOUND  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match=f"buffer.{name}") as info:
        Settings(buffer={name: LUA_UNPACK_BOUND + 1})  # type: ignore[arg-type]
    assert info.value.errors()[0]["type"] == "less_than_equal"


def test_bounds_apply_to_environment_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IDENTITY_WORKER_BUFFER__MAX_EVENTS_PER_ID", "8000")
    with pytest.raises(ValidationError, match="max_events_per_id"):
        load_settings()


@pytest.mark.parametrize("tenant", ["a:b", ":", ""])
def test_default_tenant_must_fit_the_keys(tenant: str) -> None:
    with pytest.raises(ValidationError, match="must not contain ':'"):
        Settings(formats={"default_tenant": tenant})  # type: ignore[arg-type]


def test_a_plain_default_tenant_is_kept() -> None:
    assert Settings(formats={"default_tenant": "team-1"}).formats.default_tenant == "team-1"  # type: ignore[arg-type]


def test_identity_settings_become_the_pure_config() -> None:
    config = Settings(identity={"force_upgrade_after_seconds": 1.5}).identity.to_config()  # type: ignore[arg-type]
    assert config.force_upgrade_after_ms == 1500
    assert config.max_distinct_ids_per_person == 10_000


def test_check_config_hides_secrets(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_WORKER_REDIS__URL", "redis://:hunter2@redis:6379/0")
    monkeypatch.setenv("IDENTITY_WORKER_KAFKA__SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("IDENTITY_WORKER_KAFKA__SASL_MECHANISM", "PLAIN")
    monkeypatch.setenv("IDENTITY_WORKER_KAFKA__SASL_PASSWORD", "s3cret-pw")
    assert main(["check-config"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out
    assert "s3cret-pw" not in out
    assert json.loads(out)["kafka"]["sasl_password"] == "**********"


def test_check_config_reports_invalid_settings(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("IDENTITY_WORKER_BATCH__MAX_MESSAGES", "-3")
    with pytest.raises(SystemExit) as exit_info:
        main(["check-config"])
    assert exit_info.value.code == 2
    assert "batch.max_messages" in capsys.readouterr().err


def test_kafka_common_passes_credentials_to_librdkafka() -> None:
    settings = Settings(
        kafka={
            "security_protocol": "SASL_SSL",
            "sasl_mechanism": "SCRAM-SHA-512",  # type: ignore[arg-type]
            "sasl_username": "u",
            "sasl_password": "p",
        }
    )
    conf = settings.kafka.common()
    assert conf["sasl.password"] == "p"
    assert conf["security.protocol"] == "SASL_SSL"
