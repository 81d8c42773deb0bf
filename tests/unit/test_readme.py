"""The README documents every setting and every metric the worker has."""

from __future__ import annotations

from pathlib import Path

from worker.config import Settings
from worker.observability.metrics import WorkerMetrics

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def test_every_setting_is_in_the_readme() -> None:
    settings = Settings()
    for section in Settings.model_fields:
        for name in type(getattr(settings, section)).model_fields:
            env = f"IDENTITY_WORKER_{section.upper()}__{name.upper()}"
            assert f"`{env}`" in README, f"{env} is not documented in README.md"


def test_every_metric_is_in_the_readme() -> None:
    for family in WorkerMetrics.create().registry.collect():
        name = family.name + {"counter": "_total", "info": "_info"}.get(family.type, "")
        assert f"`{name}`" in README, f"{name} is not documented in README.md"


def test_the_readme_opens_with_the_two_commands() -> None:
    opening = README[:600]
    assert "make run" in opening
    assert "make test" in opening


def test_the_readme_gives_each_choice_setting_its_default() -> None:
    """A setting whose default is a word (a choice such as ``redis.rules``) shows that word in
    its row's default column: a changed default cannot leave the README behind."""
    rows = {
        cells[1].strip("` "): cells[2].strip()
        for line in README.splitlines()
        if line.startswith("| `IDENTITY_WORKER_")
        for cells in [line.split("|")]
    }
    settings = Settings()
    checked = 0
    for section in Settings.model_fields:
        values = getattr(settings, section)
        for name in type(values).model_fields:
            default = getattr(values, name)
            if not isinstance(default, str) or not default:
                continue
            env = f"IDENTITY_WORKER_{section.upper()}__{name.upper()}"
            assert rows.get(env) == f"`{default}`", f"{env}: README says {rows.get(env)}"
            checked += 1
    assert checked >= 5
