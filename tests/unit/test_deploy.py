"""The operations artifacts agree with the code they describe.

``deploy/`` (Dockerfile, compose, Kubernetes, Prometheus, Grafana) and ``docs/OPERATIONS.md`` name
settings, ports, paths, commands and metrics of the worker. Nothing here can be built or started
on a machine without Docker, so these tests parse the files and check every such name against
the code: a renamed setting, a typo in a metric, a port or probe path that moved, a grace period
shorter than the shutdown timeout all fail here instead of in production.
"""

from __future__ import annotations

import importlib
import json
import re
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from fnmatch import fnmatch
from pathlib import Path, PurePosixPath
from typing import Any

import pytest
from pydantic import BaseModel, SecretStr

from worker.cli import build_parser
from worker.config import (
    OTHER_ENV_NAMES,
    BatchSettings,
    BufferSettings,
    ObservabilitySettings,
    Settings,
    TopicSettings,
)
from worker.observability.http import OpsServer
from worker.observability.metrics import WorkerMetrics, exported_names

# PyYAML ships no type hints and types-PyYAML is not a dependency: the module is typed as Any.
yaml: Any = importlib.import_module("yaml")

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKERFILE = DEPLOY / "Dockerfile"
DOCKERIGNORE = ROOT / ".dockerignore"
COMPOSE = DEPLOY / "docker-compose.yml"
K8S = DEPLOY / "k8s"
PROMETHEUS = DEPLOY / "prometheus" / "prometheus.yml"
ALERTS = DEPLOY / "prometheus" / "alerts.yml"
GRAFANA = DEPLOY / "grafana"
DASHBOARD = GRAFANA / "dashboards" / "identity-worker.json"
OPERATIONS = ROOT / "docs" / "OPERATIONS.md"

JOB = "identity-worker"
"""The scrape job (compose) and Service (Kubernetes) name that the alerts match on."""

ENV_NAME = re.compile(r"\bIDENTITY_WORKER_[A-Z0-9_]+")
METRIC_NAME = re.compile(r"\bidentity_worker_[a-z_]+")
SEVERITIES = {"critical", "warning", "info"}

METRICS_PORT_DEFAULT: int = ObservabilitySettings.model_fields["metrics_port"].default
SHUTDOWN_TIMEOUT_DEFAULT: float = BatchSettings.model_fields["shutdown_timeout_seconds"].default
BUFFER_DELAY_DEFAULT: float = BufferSettings.model_fields["delay_seconds"].default
PARTITIONS_DEFAULT: int = TopicSettings.model_fields["partitions"].default


# --- helpers ---------------------------------------------------------------------------------


def _load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def _env_name(section: str, field: str) -> str:
    return f"IDENTITY_WORKER_{section.upper()}__{field.upper()}"


def _sections() -> Iterator[tuple[str, type[BaseModel]]]:
    for section, info in Settings.model_fields.items():
        model = info.annotation
        assert isinstance(model, type)
        assert issubclass(model, BaseModel), section
        yield section, model


def valid_env_names() -> set[str]:
    """Every environment variable the settings read: IDENTITY_WORKER_<SECTION>__<FIELD>."""
    names = set(OTHER_ENV_NAMES)
    for section, model in _sections():
        names.update(_env_name(section, field) for field in model.model_fields)
    return names


def secret_env_names() -> set[str]:
    """The settings typed ``SecretStr`` (or ``SecretStr | None``)."""
    names = set()
    for section, model in _sections():
        for field, info in model.model_fields.items():
            annotation = info.annotation
            args = getattr(annotation, "__args__", ())
            if annotation is SecretStr or SecretStr in args:
                names.add(_env_name(section, field))
    return names


def settings_from_env(monkeypatch: pytest.MonkeyPatch, env: Mapping[str, object]) -> Settings:
    """Validate ``env`` as the worker would at start-up (nothing else from the environment)."""
    import os

    for name in list(os.environ):
        if name.startswith("IDENTITY_WORKER_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if name.startswith("IDENTITY_WORKER_"):
            monkeypatch.setenv(name, str(value))
    return Settings()


def k8s(kind: str, name: str = JOB) -> dict[str, Any]:
    """The one object of ``kind`` in deploy/k8s/*.yaml (named ``name`` when there are several:
    the worker's Secret beside KEDA's)."""
    found = [
        doc
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if doc and doc.get("kind") == kind
    ]
    if len(found) > 1:
        found = [doc for doc in found if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} in {K8S}, found {len(found)}"
    obj: dict[str, Any] = found[0]
    return obj


def compose() -> dict[str, Any]:
    doc: dict[str, Any] = _load_yaml(COMPOSE)
    return doc


def compose_service(name: str) -> dict[str, Any]:
    services: dict[str, Any] = compose()["services"]
    assert name in services, f"compose has no service {name!r}"
    service: dict[str, Any] = services[name]
    return service


def compose_env(service: Mapping[str, Any]) -> dict[str, str]:
    raw = service.get("environment") or {}
    if isinstance(raw, list):
        raw = dict(item.split("=", 1) for item in raw)
    return {str(k): str(v) for k, v in raw.items()}


def as_command(value: str | list[str]) -> list[str]:
    return value.split() if isinstance(value, str) else [str(v) for v in value]


def duration_seconds(text: str | int) -> float:
    """A compose duration ("45s", "1m30s", "500ms") or a plain number of seconds."""
    if isinstance(text, int):
        return float(text)
    units = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001, "us": 1e-6}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", text)
    assert parts, f"not a duration: {text!r}"
    assert "".join(n + u for n, u in parts) == text, f"not a duration: {text!r}"
    return sum(float(n) * units[u] for n, u in parts)


def dockerfile_instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with line continuations joined and comments dropped."""
    out: list[tuple[str, str]] = []
    pending = ""
    for raw in DOCKERFILE.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        instruction, _, args = (pending + line).partition(" ")
        out.append((instruction.upper(), args.strip()))
        pending = ""
    return out


def final_stage() -> list[tuple[str, str]]:
    instructions = dockerfile_instructions()
    last_from = max(i for i, (name, _) in enumerate(instructions) if name == "FROM")
    return instructions[last_from:]


def healthcheck_command() -> str:
    checks = [args for name, args in final_stage() if name == "HEALTHCHECK"]
    assert len(checks) == 1, "the runtime stage needs exactly one HEALTHCHECK"
    _options, cmd, command = checks[0].partition("CMD ")
    assert cmd, f"HEALTHCHECK without CMD: {checks[0]}"
    command = command.strip()
    return " ".join(json.loads(command)) if command.startswith("[") else command


def dashboard() -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(DASHBOARD.read_text(encoding="utf-8"))
    return doc


def dashboard_panels() -> list[dict[str, Any]]:
    """Every panel, including those nested in collapsed rows."""

    def walk(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        for panel in panels:
            yield panel
            yield from walk(panel.get("panels", []))

    return list(walk(dashboard()["panels"]))


def panel_exprs(panel: Mapping[str, Any]) -> list[str]:
    return [str(t["expr"]) for t in panel.get("targets", []) if t.get("expr")]


def dashboard_exprs() -> list[str]:
    exprs = [e for panel in dashboard_panels() for e in panel_exprs(panel)]
    for variable in dashboard()["templating"]["list"]:
        query = variable.get("query")
        if isinstance(query, dict):
            query = query.get("query")
        if variable.get("type") == "query" and query:
            exprs.append(str(query))
    return exprs


def alert_rules() -> list[dict[str, Any]]:
    groups = _load_yaml(ALERTS)["groups"]
    return [rule for group in groups for rule in group["rules"]]


def metric_names(exprs: list[str]) -> set[str]:
    return {name for expr in exprs for name in METRIC_NAME.findall(expr)}


@pytest.fixture(scope="module")
def registry_names() -> set[str]:
    return exported_names(WorkerMetrics.create().registry)


@pytest.fixture(scope="module")
def families() -> dict[str, str]:
    """Metric family name -> type (counter, gauge, histogram, info)."""
    return {f.name: f.type for f in WorkerMetrics.create().registry.collect()}


def family_of(name: str, families: Mapping[str, str]) -> str:
    candidates = [f for f in families if name == f or name.startswith(f + "_")]
    assert candidates, f"{name} belongs to no metric family"
    return max(candidates, key=len)


def configured(env: Mapping[str, str], name: str, default: float) -> float:
    return float(env[name]) if name in env else float(default)


def configmap_env() -> dict[str, str]:
    return {str(k): str(v) for k, v in k8s("ConfigMap")["data"].items()}


def secret_env() -> dict[str, str]:
    return {str(k): str(v) for k, v in k8s("Secret")["stringData"].items()}


def worker_container() -> dict[str, Any]:
    containers = k8s("StatefulSet")["spec"]["template"]["spec"]["containers"]
    assert len(containers) == 1
    container: dict[str, Any] = containers[0]
    return container


def resolve_container_port(port: int | str) -> int:
    if isinstance(port, int):
        return port
    named = {p["name"]: p["containerPort"] for p in worker_container()["ports"]}
    assert port in named, f"no container port named {port!r}"
    return int(named[port])


def served_paths() -> set[str]:
    """The paths the ops server answers 200 on (404 for the others), asked from the server."""
    server = OpsServer(
        "127.0.0.1",
        0,
        WorkerMetrics.create().registry,
        healthz=lambda: (True, {}),
        readyz=lambda: (True, {}),
    )
    server.start()
    statuses: dict[str, int] = {}
    try:
        for path in ("/metrics", "/healthz", "/readyz", "/livez", "/health", "/ready", "/"):
            url = f"http://127.0.0.1:{server.port}{path}"
            try:
                with urllib.request.urlopen(url, timeout=5) as response:
                    statuses[path] = response.status
            except urllib.error.HTTPError as exc:
                statuses[path] = exc.code
    finally:
        server.close()
    assert set(statuses.values()) <= {200, 404}, statuses
    return {path for path, status in statuses.items() if status == 200}


# --- (1) every IDENTITY_WORKER_* name is a real setting --------------------------------------


def test_the_set_of_valid_names_is_built_from_the_settings() -> None:
    names = valid_env_names()
    assert "IDENTITY_WORKER_REDIS__URL" in names
    assert "IDENTITY_WORKER_OBSERVABILITY__METRICS_PORT" in names
    assert "IDENTITY_WORKER_BATCH__SHUTDOWN_TIMEOUT_SECONDS" in names
    assert "IDENTITY_WORKER_REDIS__URI" not in names
    assert "IDENTITY_WORKER_REDIS_URL" not in names
    assert {"IDENTITY_WORKER_REDIS__URL", "IDENTITY_WORKER_KAFKA__SASL_PASSWORD"} <= (
        secret_env_names()
    )


@pytest.mark.parametrize(
    "path",
    [
        COMPOSE,
        DOCKERFILE,
        *sorted(K8S.glob("*.yaml")),
        K8S / "README.md",
        OPERATIONS,
    ],
    ids=lambda p: str(p.relative_to(ROOT)),
)
def test_every_env_var_named_is_a_setting(path: Path) -> None:
    unknown = set(ENV_NAME.findall(path.read_text(encoding="utf-8"))) - valid_env_names()
    assert not unknown, f"{path.relative_to(ROOT)} names settings that do not exist: {unknown}"


def test_configmap_and_secret_are_a_valid_configuration(monkeypatch: pytest.MonkeyPatch) -> None:
    config, secret = configmap_env(), secret_env()
    assert set(config) | set(secret) <= valid_env_names()
    leaked = set(config) & secret_env_names()
    assert not leaked, f"secret settings belong in secret.yaml, not the ConfigMap: {leaked}"
    assert "IDENTITY_WORKER_REDIS__URL" in secret
    assert "IDENTITY_WORKER_KAFKA__SASL_PASSWORD" in secret
    settings = settings_from_env(monkeypatch, {**config, **secret})
    assert settings.redis.url.get_secret_value() == secret["IDENTITY_WORKER_REDIS__URL"]


def test_deployment_loads_the_configmap_and_the_secret() -> None:
    sources = worker_container()["envFrom"]
    assert {"configMapRef": {"name": k8s("ConfigMap")["metadata"]["name"]}} in sources
    assert {"secretRef": {"name": k8s("Secret")["metadata"]["name"]}} in sources


@pytest.mark.parametrize("service", ["worker", "create-topics"])
def test_compose_env_is_a_valid_configuration(
    monkeypatch: pytest.MonkeyPatch, service: str
) -> None:
    env = compose_env(compose_service(service))
    assert env, f"{service} sets no IDENTITY_WORKER_* variable"
    assert set(env) <= valid_env_names()
    settings = settings_from_env(monkeypatch, env)
    assert settings.kafka.bootstrap_servers.split(":")[0] in compose()["services"]
    redis_host = settings.redis.url.get_secret_value().split("//")[1].split(":")[0]
    assert redis_host in compose()["services"]


# --- (2) ports and probe paths ---------------------------------------------------------------


def test_probe_paths_are_served_by_the_ops_server() -> None:
    served = served_paths()
    assert {"/metrics", "/healthz", "/readyz"} <= served
    container = worker_container()
    used = {
        *re.findall(r"'(/[\w-]*)'", healthcheck_command()),
        container["livenessProbe"]["httpGet"]["path"],
        container["readinessProbe"]["httpGet"]["path"],
        container["startupProbe"]["httpGet"]["path"],
        k8s("ServiceMonitor")["spec"]["endpoints"][0].get("path", "/metrics"),
        *(job.get("metrics_path", "/metrics") for job in _load_yaml(PROMETHEUS)["scrape_configs"]),
    }
    assert used <= served, f"paths nothing answers: {used - served}"


def test_dockerfile_exposes_and_checks_the_metrics_port() -> None:
    exposed = {
        int(port.split("/")[0])
        for name, args in final_stage()
        if name == "EXPOSE"
        for port in args.split()
    }
    assert exposed == {METRICS_PORT_DEFAULT}
    check = healthcheck_command()
    assert "/healthz" in check
    without_addresses = re.sub(r"\b\d+(?:\.\d+){3}\b", "", check)
    ports = {int(p) for p in re.findall(r"\b(\d{2,5})\b", without_addresses)}
    assert ports == {METRICS_PORT_DEFAULT}, f"HEALTHCHECK ports {ports}"
    assert "IDENTITY_WORKER_OBSERVABILITY__METRICS_PORT" in check, "must follow the setting"


def test_compose_ports_match_the_metrics_port() -> None:
    worker = compose_service("worker")
    port = configured(
        compose_env(worker), "IDENTITY_WORKER_OBSERVABILITY__METRICS_PORT", METRICS_PORT_DEFAULT
    )
    assert {int(str(p).split(":")[-1]) for p in worker.get("expose", [])} <= {port}
    jobs = {job["job_name"]: job for job in _load_yaml(PROMETHEUS)["scrape_configs"]}
    assert JOB in jobs, f"prometheus.yml has no job {JOB!r}"
    job = jobs[JOB]
    scraped = [int(sd["port"]) for sd in job.get("dns_sd_configs", [])]
    scraped += [
        int(target.rsplit(":", 1)[1])
        for static in job.get("static_configs", [])
        for target in static["targets"]
    ]
    assert scraped, "the worker job scrapes nothing"
    assert set(scraped) == {port}
    names = [name for sd in job.get("dns_sd_configs", []) for name in sd["names"]]
    assert all(name in compose()["services"] for name in names), names


def test_k8s_ports_and_probes_match_the_metrics_port() -> None:
    port = configured(
        configmap_env(), "IDENTITY_WORKER_OBSERVABILITY__METRICS_PORT", METRICS_PORT_DEFAULT
    )
    container = worker_container()
    assert resolve_container_port("metrics") == port
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
        assert resolve_container_port(container[probe]["httpGet"]["port"]) == port, probe
    service = k8s("Service")
    deployment = k8s("StatefulSet")
    labels = deployment["spec"]["template"]["metadata"]["labels"]
    assert service["spec"]["selector"].items() <= labels.items()
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    (service_port,) = service["spec"]["ports"]
    assert resolve_container_port(service_port["targetPort"]) == port
    monitor = k8s("ServiceMonitor")
    assert (
        monitor["spec"]["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items()
    )
    assert [e["port"] for e in monitor["spec"]["endpoints"]] == [service_port["name"]]


# --- (3) metrics in the dashboard and the alerts ---------------------------------------------


def test_dashboard_names_only_exported_metrics(registry_names: set[str]) -> None:
    used = metric_names(dashboard_exprs())
    assert used, "the dashboard queries no identity_worker metric"
    unknown = used - registry_names
    assert not unknown, f"the dashboard queries metrics the worker does not export: {unknown}"


def test_alerts_name_only_exported_metrics(registry_names: set[str]) -> None:
    used = metric_names([str(rule["expr"]) for rule in alert_rules()])
    assert used
    unknown = used - registry_names
    assert not unknown, f"alerts use metrics the worker does not export: {unknown}"


def test_dashboard_has_a_panel_for_every_metric_family(families: dict[str, str]) -> None:
    covered: set[str] = set()
    for panel in dashboard_panels():
        covered.update(family_of(name, families) for name in metric_names(panel_exprs(panel)))
    missing = set(families) - covered
    assert not missing, f"no dashboard panel shows {sorted(missing)}"


def test_histograms_are_shown_as_quantiles(families: dict[str, str]) -> None:
    exprs = dashboard_exprs()
    for family, kind in families.items():
        if kind != "histogram":
            continue
        quantiles = [e for e in exprs if "histogram_quantile(" in e and f"{family}_bucket" in e]
        assert quantiles, f"{family}: no histogram_quantile over {family}_bucket"
        assert all("le" in re.findall(r"by \(([^)]*)\)", e)[0] for e in quantiles), family


def test_dashboard_structure() -> None:
    board = dashboard()
    assert board["uid"]
    assert board["title"]
    assert 36 <= board["schemaVersion"] <= 41
    variables = {v["name"]: v for v in board["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids = [panel["id"] for panel in dashboard_panels()]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in dashboard_panels():
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        assert panel_exprs(panel), f"panel {panel['title']!r} has no query"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs)), panel["title"]


def test_alert_rules_are_complete() -> None:
    rules = alert_rules()
    names = [rule["alert"] for rule in rules]
    assert len(names) == len(set(names))
    for rule in rules:
        assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
        assert rule["annotations"]["summary"].strip(), rule["alert"]
        assert rule["annotations"]["description"].strip(), rule["alert"]
    used = metric_names([str(rule["expr"]) for rule in rules])
    assert {
        "identity_worker_consumer_lag_messages",
        "identity_worker_dead_letters_total",
        "identity_worker_buffer_oldest_age_seconds",
        "identity_worker_assigned_partitions",
        "identity_worker_errors_total",
    } <= used
    assert any(re.search(r"\bup\{[^}]*\}\s*==\s*0", str(rule["expr"])) for rule in rules)


def test_alerts_match_the_scrape_job() -> None:
    jobs = re.findall(r'job="([^"]*)"', "\n".join(str(rule["expr"]) for rule in alert_rules()))
    assert jobs, "alerts should be scoped to the worker's job"
    assert set(jobs) == {JOB}
    assert JOB in {job["job_name"] for job in _load_yaml(PROMETHEUS)["scrape_configs"]}
    # the Prometheus Operator names the job after the Service, unless jobLabel says otherwise
    assert k8s("Service")["metadata"]["name"] == JOB
    assert "jobLabel" not in k8s("ServiceMonitor")["spec"]


def test_buffer_alert_fires_only_past_the_buffer_delay() -> None:
    (rule,) = [r for r in alert_rules() if "buffer_oldest_age_seconds" in str(r["expr"])]
    threshold = float(re.findall(r">\s*(\d+(?:\.\d+)?)", str(rule["expr"]))[-1])
    for env in (configmap_env(), compose_env(compose_service("worker"))):
        delay = configured(env, "IDENTITY_WORKER_BUFFER__DELAY_SECONDS", BUFFER_DELAY_DEFAULT)
        assert threshold > delay, f"buffer alert at {threshold}s, delay {delay}s"


def test_quantile_alerts_are_below_the_largest_bucket(families: dict[str, str]) -> None:
    """A quantile in the +Inf bucket reads as the largest finite bound: a higher threshold
    could never fire."""
    registry = WorkerMetrics.create().registry
    bounds: dict[str, float] = {}
    for family in registry.collect():
        if family.type == "histogram":
            # an unlabelled histogram exports its buckets before the first observation
            les = [float(s.labels["le"]) for s in family.samples if s.name.endswith("_bucket")]
            bounds[family.name] = max(le for le in les if le != float("inf"))
    checked = 0
    for rule in alert_rules():
        expr = str(rule["expr"])
        if "histogram_quantile(" not in expr:
            continue
        (name,) = {family_of(n, families) for n in metric_names([expr])}
        threshold = float(re.findall(r">\s*(\d+(?:\.\d+)?)\s*$", expr.strip())[0])
        assert threshold < bounds[name], f"{rule['alert']}: {threshold} >= {bounds[name]}"
        checked += 1
    assert checked


# --- (4) graceful shutdown fits in the grace period ------------------------------------------


def test_k8s_grace_period_exceeds_the_shutdown_timeout(monkeypatch: pytest.MonkeyPatch) -> None:
    timeout = settings_from_env(
        monkeypatch, {**configmap_env(), **secret_env()}
    ).batch.shutdown_timeout_seconds
    grace = k8s("StatefulSet")["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace > timeout, f"terminationGracePeriodSeconds {grace} <= shutdown timeout {timeout}"


def test_compose_grace_period_exceeds_the_shutdown_timeout(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    worker = compose_service("worker")
    timeout = settings_from_env(monkeypatch, compose_env(worker)).batch.shutdown_timeout_seconds
    # docker's default is 10 s, shorter than the default shutdown timeout
    grace = duration_seconds(worker.get("stop_grace_period", "10s"))
    assert grace > timeout, f"stop_grace_period {grace}s <= shutdown timeout {timeout}s"


# --- (5) the image ---------------------------------------------------------------------------


def test_dockerfile_is_multi_stage_and_runs_as_non_root() -> None:
    instructions = dockerfile_instructions()
    froms = [args for name, args in instructions if name == "FROM"]
    assert len(froms) >= 2, "builder and runtime stages"
    stage_names = {args.split()[-1] for args in froms if " AS " in args.upper()}
    stage = final_stage()
    copies_from = [a for n, a in stage if n == "COPY" and a.startswith("--from=")]
    assert copies_from, "the runtime stage copies the venv from the builder"
    assert all(a.split()[0].removeprefix("--from=") in stage_names for a in copies_from)
    users = [args for name, args in stage if name == "USER"]
    assert users, "the runtime stage needs a USER"
    user = users[-1].split(":")[0]
    # numeric, so Kubernetes' runAsNonRoot can check it
    assert user.isdigit(), f"USER {users[-1]!r} should be a numeric uid"
    assert int(user) != 0
    pod = k8s("StatefulSet")["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsUser"] == int(user)


def test_dockerfile_entrypoint_and_signals() -> None:
    stage = dict(final_stage())
    assert json.loads(stage["ENTRYPOINT"]) == ["identity-worker"]
    assert json.loads(stage["CMD"]) == ["run"]
    assert stage["STOPSIGNAL"] == "SIGTERM"
    assert "HEALTHCHECK" in stage
    assert not stage["HEALTHCHECK"].upper().startswith("NONE")
    build_parser().parse_args(json.loads(stage["CMD"]))


def test_dockerfile_copies_what_exists_and_is_not_ignored() -> None:
    ignored = [
        line.strip()
        for line in DOCKERIGNORE.read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    sources = [
        src
        for name, args in dockerfile_instructions()
        if name == "COPY" and not args.startswith("--from=")
        for src in args.split()[:-1]
        if not src.startswith("--")
    ]
    assert {"worker", "schemas", "pyproject.toml"} <= {PurePosixPath(s).parts[0] for s in sources}
    for src in sources:
        assert (ROOT / src).exists(), f"COPY {src}: no such file in the build context"
        top = PurePosixPath(src).parts[0]
        assert not any(fnmatch(top, pattern) for pattern in ignored), f"{src} is dockerignored"
    # the wheel carries the schemas: nothing copies them into the venv by hand, and the runtime
    # stage checks that the installed package finds them
    runs = [args for name, args in dockerfile_instructions() if name == "RUN"]
    assert not any(".avsc" in args for args in runs)
    assert any("AvroCodec()" in args for name, args in final_stage() if name == "RUN")


# --- (6) compose -----------------------------------------------------------------------------


def test_compose_runs_two_workers_within_the_partitions(monkeypatch: pytest.MonkeyPatch) -> None:
    worker = compose_service("worker")
    replicas = worker.get("deploy", {}).get("replicas", 1)
    assert replicas == 2
    partitions = settings_from_env(monkeypatch, compose_env(worker)).topics.partitions
    assert replicas <= partitions
    build_parser().parse_args(as_command(worker["command"]))
    build = worker["build"]
    assert (COMPOSE.parent / build["context"] / build["dockerfile"]).resolve() == DOCKERFILE


def test_compose_creates_the_topics_before_the_workers_start() -> None:
    job = compose_service("create-topics")
    assert as_command(job["command"]) == ["create-topics"]
    build_parser().parse_args(as_command(job["command"]))
    depends = compose_service("worker")["depends_on"]
    assert depends["create-topics"]["condition"] == "service_completed_successfully"
    assert job["depends_on"]["kafka"]["condition"] == "service_healthy"


def test_compose_kafka_is_kraft_and_redis_has_aof() -> None:
    kafka = compose_service("kafka")
    assert kafka["image"].startswith("apache/kafka:")
    env = compose_env(kafka)
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    assert "CLUSTER_ID" in env
    redis = compose_service("redis")
    assert redis["image"].startswith("redis:7")
    command = as_command(redis["command"])
    assert command[command.index("--appendonly") + 1] == "yes"
    assert command[command.index("--maxmemory-policy") + 1] == "noeviction"


def _mounts(service: Mapping[str, Any]) -> dict[str, Path]:
    """Bind mounts of a compose service: container path -> host path (must exist)."""
    mounts: dict[str, Path] = {}
    for volume in service.get("volumes", []):
        source, target = str(volume).split(":")[:2]
        if source.startswith((".", "/")):
            host = (COMPOSE.parent / source).resolve()
            assert host.exists(), f"bind mount source {source} does not exist"
            mounts[target] = host
    return mounts


def test_compose_prometheus_loads_the_config_and_the_alerts() -> None:
    mounts = _mounts(compose_service("prometheus"))
    config_target = "/etc/prometheus/prometheus.yml"
    assert mounts[config_target] == PROMETHEUS
    for rule_file in _load_yaml(PROMETHEUS)["rule_files"]:
        target = str(PurePosixPath(config_target).parent / rule_file)
        assert target in mounts, f"rule file {target} is not mounted"
        assert mounts[target] == ALERTS


def test_compose_grafana_provisions_the_datasource_and_the_dashboard() -> None:
    mounts = _mounts(compose_service("grafana"))
    provisioning = "/etc/grafana/provisioning"
    datasources = mounts[f"{provisioning}/datasources"]
    (source,) = _load_yaml(datasources / "prometheus.yml")["datasources"]
    assert source["type"] == "prometheus"
    host = source["url"].split("//")[1].split(":")[0]
    assert host in compose()["services"]
    providers = _load_yaml(mounts[f"{provisioning}/dashboards"] / "dashboards.yml")["providers"]
    paths = [provider["options"]["path"] for provider in providers]
    assert any(
        path in mounts and (mounts[path] / DASHBOARD.name).resolve() == DASHBOARD.resolve()
        for path in paths
    ), f"the dashboard is not mounted at a provisioned path {paths}"


# --- Kubernetes ------------------------------------------------------------------------------


def test_k8s_worker_is_locked_down_and_sized() -> None:
    container = worker_container()
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True
    assert context["allowPrivilegeEscalation"] is False
    pod = k8s("StatefulSet")["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    for kind in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][kind]), kind
    build_parser().parse_args(container["args"])
    assert k8s("StatefulSet")["spec"]["replicas"] == 3


HPA_DIR = K8S / "alternatives" / "hpa"


def _manifest(path: Path, kind: str) -> dict[str, Any]:
    (doc,) = [
        d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d and d["kind"] == kind
    ]
    found: dict[str, Any] = doc
    return found


def test_keda_scales_the_statefulset_within_the_partitions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = settings_from_env(monkeypatch, {**configmap_env(), **secret_env()})
    statefulset, scaled = k8s("StatefulSet"), k8s("ScaledObject")
    assert scaled["apiVersion"] == "keda.sh/v1alpha1"
    target = scaled["spec"]["scaleTargetRef"]
    assert (target["kind"], target["name"]) == ("StatefulSet", statefulset["metadata"]["name"])
    low, high = scaled["spec"]["minReplicaCount"], scaled["spec"]["maxReplicaCount"]
    assert low <= statefulset["spec"]["replicas"] <= high <= settings.topics.partitions
    triggers = scaled["spec"]["triggers"]
    assert {t["metadata"]["topic"] for t in triggers} == set(settings.topics.inputs)
    auth = k8s("TriggerAuthentication")
    for trigger in triggers:
        meta = trigger["metadata"]
        assert trigger["type"] == "kafka"
        assert meta["consumerGroup"] == settings.kafka.group_id
        assert meta["bootstrapServers"] == settings.kafka.bootstrap_servers
        # never more consumers than partitions
        assert meta["allowIdleConsumers"] == "false"
        assert trigger["authenticationRef"]["name"] == auth["metadata"]["name"]
    secret_keys = {
        ref["key"] for ref in auth["spec"]["secretTargetRef"] if ref["name"] == "identity-worker"
    }
    assert secret_keys <= set(secret_env())


def test_the_hpa_alternative_scales_on_the_exported_lag(
    monkeypatch: pytest.MonkeyPatch, registry_names: set[str]
) -> None:
    partitions = settings_from_env(
        monkeypatch, {**configmap_env(), **secret_env()}
    ).topics.partitions
    hpa = _manifest(HPA_DIR / "hpa-lag.yaml", "HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "StatefulSet"
    assert hpa["spec"]["scaleTargetRef"]["name"] == k8s("StatefulSet")["metadata"]["name"]
    assert hpa["spec"]["maxReplicas"] <= partitions
    names = [
        metric[metric["type"].lower()]["metric"]["name"]
        for metric in hpa["spec"]["metrics"]
        if metric["type"] in ("External", "Pods")
    ]
    assert names == ["identity_worker_consumer_lag_messages"]
    # the adapter's rule is a real manifest serving that same, exported, metric
    adapter = _manifest(HPA_DIR / "prometheus-adapter-rules.yaml", "ConfigMap")
    config = yaml.safe_load(adapter["data"]["config.yaml"])
    (rule,) = config["externalRules"]
    assert rule["name"]["as"] == names[0]
    assert metric_names([rule["seriesQuery"], rule["metricsQuery"]]) == {names[0]}
    assert set(names) <= registry_names
    kustomization = _load_yaml(HPA_DIR / "kustomization.yaml")
    assert kustomization["resources"] == ["hpa-lag.yaml", "prometheus-adapter-rules.yaml"]


def test_no_hpa_next_to_the_scaled_object() -> None:
    kinds = [
        doc["kind"]
        for path in sorted(K8S.glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8"))
        if doc
    ]
    assert "HorizontalPodAutoscaler" not in kinds


def test_prometheus_rule_carries_the_alert_rules() -> None:
    rule = k8s("PrometheusRule")
    assert rule["spec"]["groups"] == _load_yaml(ALERTS)["groups"]


def test_every_alert_has_a_runbook_anchor_in_the_operations_doc() -> None:
    doc = OPERATIONS.read_text(encoding="utf-8")
    anchors = {
        re.sub(r"[^a-z0-9 -]", "", line.lstrip("#").strip().lower()).replace(" ", "-")
        for line in doc.splitlines()
        if line.startswith("#")
    }
    for rule in alert_rules():
        url = rule["annotations"]["runbook_url"]
        path, _, anchor = url.partition("#")
        assert path == "docs/OPERATIONS.md", rule["alert"]
        assert anchor == rule["alert"].lower(), rule["alert"]
        assert anchor in anchors, f"no heading for {rule['alert']} in docs/OPERATIONS.md"


def test_dead_letter_alert_ignores_the_zeros_of_a_new_deployment() -> None:
    (rule,) = [r for r in alert_rules() if r["alert"] == "IdentityWorkerDeadLetters"]
    expr = str(rule["expr"])
    # the branch for a reason's first dead letters only keeps series above 0
    assert re.search(r"identity_worker_dead_letters_total\{[^}]*\}\)\s*>\s*0\s*unless", expr)
    assert "for" in rule


def test_create_topics_job_runs_the_command_with_the_settings() -> None:
    job = k8s("Job")
    (container,) = job["spec"]["template"]["spec"]["containers"]
    args = build_parser().parse_args(container["args"])
    assert args.command == "create-topics"
    sources = container["envFrom"]
    assert {"configMapRef": {"name": k8s("ConfigMap")["metadata"]["name"]}} in sources
    assert {"secretRef": {"name": k8s("Secret")["metadata"]["name"]}} in sources
    image = k8s("StatefulSet")["spec"]["template"]["spec"]["containers"][0]["image"]
    assert container["image"] == image


def test_kustomization_lists_every_manifest() -> None:
    kustomization = _load_yaml(K8S / "kustomization.yaml")
    manifests = sorted(p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
    assert sorted(kustomization["resources"]) == manifests


def test_configmap_output_format_needs_no_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    settings = settings_from_env(monkeypatch, {**configmap_env(), **secret_env()})
    assert settings.formats.output == "json" or settings.formats.schema_registry_url is not None


def test_k8s_pdb_selects_the_workers() -> None:
    pdb = k8s("PodDisruptionBudget")
    labels = k8s("StatefulSet")["spec"]["template"]["metadata"]["labels"]
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    assert "maxUnavailable" in pdb["spec"] or "minAvailable" in pdb["spec"]


def test_k8s_readme_describes_every_manifest() -> None:
    readme = (K8S / "README.md").read_text(encoding="utf-8")
    missing = [str(p.relative_to(K8S)) for p in sorted(K8S.rglob("*.yaml")) if p.name not in readme]
    assert not missing, f"deploy/k8s/README.md does not mention {missing}"


# --- docs/OPERATIONS.md ----------------------------------------------------------------------


def test_operations_doc_lists_every_metric_and_alert(
    registry_names: set[str], families: dict[str, str]
) -> None:
    doc = OPERATIONS.read_text(encoding="utf-8")
    named = metric_names([doc])
    # a histogram is documented by its family name (its series add _bucket, _sum, _count)
    known = registry_names | {name for name, kind in families.items() if kind == "histogram"}
    assert not named - known, f"unknown metrics in the doc: {named - known}"
    documented = {family_of(name, families) for name in named}
    assert not set(families) - documented, f"undocumented: {set(families) - documented}"
    missing = [rule["alert"] for rule in alert_rules() if rule["alert"] not in doc]
    assert not missing, f"alerts without a runbook entry: {missing}"
