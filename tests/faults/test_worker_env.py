"""What each worker subprocess of the fault suite is given (no services): in exactly-once mode
every member has ``delivery.exactly_once`` and a ``transactional.id`` of its own, stable across
its restarts, as ``worker.app.transactional_id`` derives it from the environment; with a build
directory (``--build``) the members run that directory's ``worker`` package."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import settings_env
from tests.faults.workers import WorkerPool, member_env
from worker.app import transactional_id
from worker.config import Settings, load_settings

MEMBERS = (("w0", True), ("w0", False), ("w1", False), ("w2", False))
"""The suite's members: w0 static, then w0 replaced by a dynamic member, w1 and w2 dynamic."""


def _settings(*, exactly_once: bool) -> Settings:
    return load_settings(
        kafka={"bootstrap_servers": "127.0.0.1:9", "group_id": "faults-x"},
        delivery={"exactly_once": exactly_once},
    )


def _as_worker_sees_it(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Settings:
    with monkeypatch.context() as patch:
        for name, value in env.items():
            if name.startswith("IDENTITY_WORKER_"):
                patch.setenv(name, value)
        return load_settings()


def test_exactly_once_members_get_the_setting_and_distinct_transactional_ids(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = _settings(exactly_once=True)
    base = settings_env(settings)
    assert base["IDENTITY_WORKER_DELIVERY__EXACTLY_ONCE"] == "true"
    ids = []
    for name, static in MEMBERS:
        seen = _as_worker_sees_it(member_env(base, settings, name, static=static), monkeypatch)
        assert seen.delivery.exactly_once
        ids.append(transactional_id(seen))
    assert len(set(ids)) == len(MEMBERS), ids
    restarted = _as_worker_sees_it(member_env(base, settings, "w1", static=False), monkeypatch)
    assert transactional_id(restarted) == ids[2]


def test_at_least_once_members_get_no_transactional_id() -> None:
    settings = _settings(exactly_once=False)
    base = settings_env(settings)
    assert base["IDENTITY_WORKER_DELIVERY__EXACTLY_ONCE"] == "false"
    for name, static in MEMBERS:
        env = member_env(base, settings, name, static=static)
        assert "IDENTITY_WORKER_DELIVERY__TRANSACTIONAL_ID" not in env
        assert ("IDENTITY_WORKER_KAFKA__GROUP_INSTANCE_ID" in env) == static


def test_members_run_the_worker_package_of_the_build_directory(tmp_path: Path) -> None:
    build = tmp_path / "build"
    (build / "worker").mkdir(parents=True)
    (build / "worker" / "__init__.py").write_text("")
    ran = tmp_path / "ran.txt"
    # stands in for ``worker run`` of a build: says which package ran, then exits
    (build / "worker" / "__main__.py").write_text(
        f"import sys\nopen({str(ran)!r}, 'w').write(__file__ + ' ' + ' '.join(sys.argv[1:]))\n"
    )
    (tmp_path / "logs").mkdir()
    pool = WorkerPool(_settings(exactly_once=False), tmp_path / "logs", build)
    try:
        member = pool.start("w0", static=False)
        assert member.proc.wait(60) == 0
    finally:
        pool.close()
    assert ran.read_text() == f"{build / 'worker' / '__main__.py'} run"
