"""The package as users install it: ``pip install .`` into a fresh venv, run from elsewhere.

One install per run (module fixture), with pip's cache; the tests then use only the installed
copy (``python -I`` from a directory outside the source tree, so the checkout is not on
``sys.path``). Slow: marked ``packaging``.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
import venv
from dataclasses import dataclass
from pathlib import Path

import pytest

from worker.codec.avro import SchemaName

pytestmark = pytest.mark.packaging

ROOT = Path(__file__).resolve().parents[2]
SOURCES = ("pyproject.toml", "setup.py", "README.md", "worker", "schemas")
"""What the package is built from (the Docker build context copies the same)."""


@dataclass(frozen=True)
class Installed:
    venv: Path
    elsewhere: Path
    """a working directory outside the source tree"""

    @property
    def python(self) -> Path:
        return self.venv / "bin" / "python"

    @property
    def cli(self) -> Path:
        return self.venv / "bin" / "identity-worker"

    def env(self, **extra: str) -> dict[str, str]:
        clean = {k: v for k, v in os.environ.items() if not k.startswith("IDENTITY_WORKER_")}
        clean.pop("PYTHONPATH", None)
        return {**clean, **extra}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Installed:
    base = tmp_path_factory.mktemp("wheel")
    src = base / "src"
    src.mkdir()
    for name in SOURCES:
        path = ROOT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    env_dir = base / "venv"
    venv.create(env_dir, with_pip=True)
    subprocess.run(
        [str(env_dir / "bin" / "python"), "-m", "pip", "install", "-q", str(src)],
        check=True,
        timeout=900,
    )
    shutil.rmtree(src)  # nothing may be read from the build tree afterwards
    elsewhere = base / "elsewhere"
    elsewhere.mkdir()
    return Installed(env_dir, elsewhere)


def test_the_installed_package_carries_the_schemas_of_the_schemas_folder(
    installed: Installed,
) -> None:
    script = """
import json, sys
import worker
from worker.codec.avro import SCHEMA_DIR, AvroCodec, SchemaName, load_schema_text
AvroCodec()
print(json.dumps({
    "package": worker.__file__,
    "schemas": {n.value: load_schema_text(n) for n in SchemaName},
    "files": sorted(p.name for p in SCHEMA_DIR.iterdir() if p.name.endswith(".avsc")),
}))
"""
    out = subprocess.run(
        [str(installed.python), "-I", "-c", script],
        cwd=installed.elsewhere,
        env=installed.env(),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    found = json.loads(out.stdout)
    assert Path(found["package"]).is_relative_to(installed.venv)
    assert found["files"] == sorted(p.name for p in (ROOT / "schemas").glob("*.avsc"))
    for name in SchemaName:
        source = (ROOT / "schemas" / f"{name.value}.avsc").read_text(encoding="utf-8")
        assert found["schemas"][name.value] == source


def test_check_config_runs_from_the_installed_script(installed: Installed) -> None:
    out = subprocess.run(
        [str(installed.cli), "check-config"],
        cwd=installed.elsewhere,
        env=installed.env(IDENTITY_WORKER_TOPICS__TRACK="wheel.track"),
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    assert json.loads(out.stdout)["topics"]["track"] == "wheel.track"


def test_run_starts_and_stops_cleanly_from_the_installed_script(
    installed: Installed, kafka_bootstrap: str, redis_url: str, unique_name: str
) -> None:
    """``run`` builds every part (the Avro codec reads the schemas), joins, and leaves on
    SIGTERM with exit code 0."""
    env = installed.env(
        IDENTITY_WORKER_KAFKA__BOOTSTRAP_SERVERS=kafka_bootstrap,
        IDENTITY_WORKER_KAFKA__GROUP_ID=unique_name,
        IDENTITY_WORKER_REDIS__URL=redis_url,
        IDENTITY_WORKER_REDIS__KEY_PREFIX=unique_name,
        IDENTITY_WORKER_TOPICS__TRACK=f"{unique_name}.track",
        IDENTITY_WORKER_OBSERVABILITY__METRICS_PORT="0",
        IDENTITY_WORKER_OBSERVABILITY__LOG_FORMAT="json",
    )
    process = subprocess.Popen(
        [str(installed.cli), "run"],
        cwd=installed.elsewhere,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    lines: list[str] = []
    try:
        assert process.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = process.stdout.readline()
            if not line:
                break  # exited
            lines.append(line)
            if "identity-worker starting" in line:
                break
        assert any("identity-worker starting" in line for line in lines), "".join(lines)
        process.send_signal(signal.SIGTERM)
        rest, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
    assert process.returncode == 0, "".join(lines) + rest


def test_a_non_dev_install_builds_the_registry_client(installed: Installed) -> None:
    """With ``formats.schema_registry_url`` set, ``build_avro`` imports confluent-kafka's
    registry client: its dependencies (certifi among them) come with a plain install. The
    registry itself is not reached here: an address nothing listens on is reported as the
    registry being unavailable, not as a missing module."""
    script = """
import sys
from worker.codec.schema_registry import ConfluentSchemaResolver
from worker.errors import TransientError
resolver = ConfluentSchemaResolver.from_config({"url": sys.argv[1]})
print(type(resolver.client).__name__)
try:
    resolver.get_schema(12345)
except TransientError as exc:
    print("unavailable", type(exc).__name__)
"""
    port = _free_port()
    out = subprocess.run(
        [str(installed.python), "-I", "-c", script, f"http://127.0.0.1:{port}"],
        cwd=installed.elsewhere,
        env=installed.env(),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines()[0] == "SchemaRegistryClient"
    assert out.stdout.splitlines()[1].startswith("unavailable")


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
