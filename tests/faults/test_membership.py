"""Static membership settings (no services): what the consumer is given, and where Kubernetes
takes the instance id from. The fault run measures what it changes."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from worker.config import KafkaSettings, load_settings

yaml: Any = importlib.import_module("yaml")  # no type stubs
K8S = Path(__file__).resolve().parents[2] / "deploy" / "k8s"


def test_without_an_instance_id_membership_is_dynamic() -> None:
    assert KafkaSettings(group_id="g").membership() == {"group.id": "g"}


def test_an_instance_id_brings_the_static_session_timeout() -> None:
    conf = KafkaSettings(group_id="g", group_instance_id="worker-0").membership()
    assert conf == {"group.id": "g", "group.instance.id": "worker-0", "session.timeout.ms": 30_000}


def test_the_instance_id_and_timeout_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("IDENTITY_WORKER_KAFKA__GROUP_INSTANCE_ID", "identity-worker-2")
    monkeypatch.setenv("IDENTITY_WORKER_KAFKA__STATIC_SESSION_TIMEOUT_SECONDS", "12.5")
    conf = load_settings().kafka.membership()
    assert conf["group.instance.id"] == "identity-worker-2"
    assert conf["session.timeout.ms"] == 12_500


@pytest.mark.parametrize("value", ["", "x" * 250])
def test_an_empty_or_overlong_instance_id_is_refused(value: str) -> None:
    with pytest.raises(ValidationError):
        KafkaSettings(group_instance_id=value)


def test_the_session_timeout_stays_within_the_brokers_default_bounds() -> None:
    for seconds in (5.9, 1801):
        with pytest.raises(ValidationError):
            KafkaSettings(static_session_timeout_seconds=seconds)


def _workload() -> dict[str, Any]:
    docs = [d for d in yaml.safe_load_all((K8S / "deployment.yaml").read_text()) if d]
    assert len(docs) == 1
    workload: dict[str, Any] = docs[0]
    return workload


def test_kubernetes_gives_each_pod_its_stable_name_as_instance_id() -> None:
    workload = _workload()
    assert workload["kind"] == "StatefulSet"  # stable names, at most one pod per name
    (container,) = workload["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e for e in container.get("env", [])}
    source = env["IDENTITY_WORKER_KAFKA__GROUP_INSTANCE_ID"]["valueFrom"]["fieldRef"]
    assert source["fieldPath"] == "metadata.name"
