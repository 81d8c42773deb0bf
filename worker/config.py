"""Settings of the worker: pydantic-settings, env prefix ``IDENTITY_WORKER_``, nested with ``__``.

Sources, highest priority first: explicit arguments, environment variables, the TOML config file
(``--config`` or ``IDENTITY_WORKER_CONFIG_FILE``), defaults. Examples::

    IDENTITY_WORKER_KAFKA__BOOTSTRAP_SERVERS=broker:9092
    IDENTITY_WORKER_KAFKA__CONSUMER='{"fetch.min.bytes": "65536"}'   # any librdkafka option
    IDENTITY_WORKER_REDIS__URL=redis://:secret@redis:6379/0
    IDENTITY_WORKER_BUFFER__DELAY_SECONDS=60

Secrets (the Redis URL, the SASL password, the schema registry credentials) are ``SecretStr``:
``Settings.redacted()`` is what ``check-config`` prints, and they never reach a log line.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from worker.identity.config import (
    DEFAULT_ILLEGAL_IDS_CASE_INSENSITIVE,
    DEFAULT_ILLEGAL_IDS_CASE_SENSITIVE,
    IdentityConfig,
)
from worker.identity.model import OrderingMode
from worker.runtime import DEFAULT_GC_THRESHOLD

CONFIG_FILE_ENV = "IDENTITY_WORKER_CONFIG_FILE"
ENV_PREFIX = "IDENTITY_WORKER_"
OTHER_ENV_NAMES = frozenset(
    {
        CONFIG_FILE_ENV,
        "IDENTITY_WORKER_LOCAL_DIR",
        "IDENTITY_WORKER_COMPILE",
        "IDENTITY_WORKER_TEST_BUILD",
    }
)
"""``IDENTITY_WORKER_*`` names that are not settings: the config file, the local services' data
directory (``deploy/local``), the compiled build's switch (``setup.py``) and the build the tests
run against (``tests/conftest.py``)."""

REDACTED = "**********"

LIBRDKAFKA_LOGGER = logging.getLogger("librdkafka")
"""librdkafka's own log lines (``%4|...|GETPID|...``) go to this Python logger, never raw to
stderr: every client built from ``KafkaSettings`` carries it as confluent-kafka's ``logger``."""

_SECRET_SUFFIXES = (".password", ".secret", ".pem", ".jaas.config")
_SECRET_NAMES = frozenset(
    {
        "sasl.password",
        "sasl.oauthbearer.client.secret",
        "sasl.oauthbearer.config",
        "sasl.oauthbearer.assertion.private.key.passphrase",
        "ssl.key.password",
        "ssl.key.pem",
        "ssl_key",
        "ssl.keystore.password",
        "ssl.truststore.password",
        "sasl.jaas.config",
    }
)


def is_secret_property(name: str) -> bool:
    """True for a librdkafka (or Kafka client) property whose value is a secret: passwords,
    client secrets, private keys, JAAS configs, OAuth bearer configs."""
    key = name.strip().lower()
    return key in _SECRET_NAMES or key.endswith(_SECRET_SUFFIXES) or "password" in key


def redact_properties(conf: Mapping[str, Any]) -> dict[str, Any]:
    """``conf`` with the value of every secret property replaced by ``**********``."""
    return {k: REDACTED if is_secret_property(k) else v for k, v in conf.items()}


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class KafkaSettings(_Section):
    bootstrap_servers: str = "127.0.0.1:19092"
    group_id: str = "identity-worker"
    client_id: str = "identity-worker"
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    consumer: dict[str, str | int | float | bool] = Field(default_factory=dict)
    """librdkafka consumer options passed through unchanged (they win over ours)."""
    producer: dict[str, str | int | float | bool] = Field(default_factory=dict)
    """librdkafka producer options passed through unchanged (they win over ours)."""
    group_instance_id: str | None = Field(default=None, min_length=1, max_length=249)
    """Kafka static membership (``group.instance.id``): a member that restarts under the same
    id within the session timeout gets its partitions back at once, without a rebalance. Unset
    (the default): dynamic membership, and a restarted worker waits for the dead member's
    session to expire. It must be unique per running process: the broker fences the older of
    two members sharing one, so never take it from something two processes can share (a
    Deployment's template, a host name under ``hostNetwork``). ``deploy/k8s`` sets it to the
    StatefulSet pod's name through the downward API; nothing reads ``HOSTNAME`` implicitly."""
    static_session_timeout_seconds: float = Field(default=30.0, ge=6, le=1800)
    """``session.timeout.ms`` with static membership: how long the broker keeps a silent static
    member's partitions for it. Longer than a container restart (kubelet restarts a crashed
    container at once; the worker rejoins in a few seconds), so a crash costs no rebalance;
    shorter than librdkafka's 45 s default, since a member that is really gone stalls its
    partitions this long. Without static membership librdkafka's default applies.
    ``kafka.consumer`` still wins (``{"session.timeout.ms": ...}``)."""

    def common(self) -> dict[str, Any]:
        conf: dict[str, Any] = {
            "bootstrap.servers": self.bootstrap_servers,
            "client.id": self.client_id,
            "security.protocol": self.security_protocol,
            "logger": LIBRDKAFKA_LOGGER,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
        if self.sasl_username:
            conf["sasl.username"] = self.sasl_username
        if self.sasl_password is not None:
            conf["sasl.password"] = self.sasl_password.get_secret_value()
        return conf

    def consumer_conf(self) -> dict[str, Any]:
        """A consumer's options outside the group: ``common()`` and ``kafka.consumer``."""
        return {**self.common(), **self.consumer}

    def producer_conf(self) -> dict[str, Any]:
        """A producer's options: ``common()`` and ``kafka.producer``."""
        return {**self.common(), **self.producer}

    def admin_conf(self) -> dict[str, Any]:
        """An admin client's options: ``common()`` and the connection options (``ssl.*``,
        ``sasl.*``, ``security.*``, ``socket.*``...) of ``kafka.consumer`` and ``kafka.producer``
        (an admin client is neither, so their other options would only draw warnings)."""
        shared = ("ssl", "sasl", "security", "socket", "broker", "client", "metadata", "debug")
        picked = {
            k: v
            for k, v in {**self.consumer, **self.producer}.items()
            if k.split(".", 1)[0] in shared
        }
        return {**self.common(), **picked}

    def membership(self) -> dict[str, Any]:
        """The consumer's group options: ``group.id``, and with static membership
        ``group.instance.id`` and its ``session.timeout.ms``."""
        conf: dict[str, Any] = {"group.id": self.group_id}
        if self.group_instance_id is not None:
            conf["group.instance.id"] = self.group_instance_id
            conf["session.timeout.ms"] = round(self.static_session_timeout_seconds * 1000)
        return conf


class TopicSettings(_Section):
    identify: str = "identity.identify"
    alias: str = "identity.alias"
    track: str = "identity.track"
    extra_inputs: tuple[str, ...] = ()
    """More input topics (any kind of event may arrive on any input topic)."""
    enriched: str = "identity.enriched"
    person_changes: str = "identity.person_changes"
    overrides: str = "identity.distinct_id_overrides"
    warnings: str = "identity.warnings"
    dead_letters: str = "identity.dead_letters"
    group_changes: str = "identity.group_changes"
    """Compacted: a group's state each time it changes, keyed ``tenant:type:key``."""
    deletions: str = "identity.deletions"
    """Input: person deletion requests (contract A10), JSON ``{"tenant", "distinct_id" |
    "person_id", "requested_by"}``, read by ``run`` in the consumer group
    ``<kafka.group_id>.deletions``."""
    deletion_audit: str = "identity.deletion_audit"
    """Output: one audit record per deletion request (never a property value)."""
    partitions: int = Field(default=6, ge=1)
    """Partitions used by ``create-topics`` for topics it creates."""
    replication_factor: int = Field(default=1, ge=1)

    @property
    def inputs(self) -> tuple[str, ...]:
        return (self.identify, self.alias, self.track, *self.extra_inputs)

    @property
    def compacted(self) -> tuple[str, ...]:
        return (self.person_changes, self.overrides, self.group_changes)

    @property
    def outputs(self) -> tuple[str, ...]:
        return (
            self.enriched,
            self.person_changes,
            self.overrides,
            self.warnings,
            self.dead_letters,
            self.group_changes,
        )


class RedisSettings(_Section):
    url: SecretStr = SecretStr("redis://127.0.0.1:16379/0")
    cluster: bool = False
    """``url`` names a node of a Redis Cluster: use a cluster client (each tenant's keys share
    a hash slot, so every script call goes to one node)."""
    key_prefix: str = "iw"
    max_ops_per_call: int = Field(default=64, ge=1)
    """Operations per Lua call: keeps each script short so Redis is never blocked for long."""
    max_call_cost: int = Field(default=96, ge=1)
    """Cost of one Lua call's operations in plain-track units (a track of a known id without
    property operations 1; property or group operations +2, a merge +1, +1 per 8 property
    operations): a batch of heavy events is cut into shorter calls
    (``worker/store/call_cost.py``)."""
    script_command: Literal["auto", "fcall", "evalsha"] = "auto"
    """How the resolve script is called: ``fcall`` as a function library loaded once (its
    modules are not defined anew on every call), ``evalsha`` as a script; ``auto``
    calls the library where Redis takes ``FUNCTION LOAD`` and is not a cluster, else
    ``EVALSHA`` (``worker/store/script_call.py``)."""
    rules: Literal["script", "worker"] = "worker"
    """Where the identity rules run: ``worker`` (the default) in the worker, which reads a
    call's data, applies the rules and sends their writes to ``commit_batch.lua``, applied only
    if nothing it read changed (docs/ARCHITECTURE.md, *Rules in the worker*); ``script`` in
    Redis (the resolve script; the default before 2026-11-30). The worker's way costs Redis
    about a third of the time per event and the worker about 1.5 times the CPU: Redis, shared
    by every worker and one core per tenant, is the part that does not scale out."""
    retry_attempts: int = Field(default=8, ge=1)
    retry_backoff_seconds: float = Field(default=0.05, gt=0)
    retry_backoff_max_seconds: float = Field(default=2.0, gt=0)
    socket_timeout_seconds: float = Field(default=5.0, gt=0)
    receipt_ttl_seconds: float = Field(default=3600.0, ge=1)
    """Replay receipts never forgotten (a crash after the offsets were committed) expire this
    long after the last write to their hash."""


class IdentitySettings(_Section):
    ordering: OrderingMode = OrderingMode.TIMESTAMP
    max_distinct_ids_per_person: int = Field(default=10_000, ge=1)
    max_distinct_id_length: int = Field(default=400, ge=1)
    max_property_key_length: int = Field(default=1_024, ge=1)
    max_property_value_length: int = Field(default=1_024, ge=1)
    max_properties_bytes: int = Field(default=512 * 1024, ge=1)
    force_upgrade_after_seconds: float = Field(default=60.0, ge=0)
    future_timestamp_margin_seconds: float = Field(default=23 * 3600.0, ge=0)
    illegal_ids_case_insensitive: tuple[str, ...] = DEFAULT_ILLEGAL_IDS_CASE_INSENSITIVE
    illegal_ids_case_sensitive: tuple[str, ...] = DEFAULT_ILLEGAL_IDS_CASE_SENSITIVE
    max_group_types: int = Field(default=5, ge=1)
    """Group types per tenant (contract A9); a further type raises ``group_type_limit``."""
    last_seen_resolution_seconds: float = Field(default=60.0, ge=0)
    """A person's last-seen time is its latest event's rounded down to a multiple of this."""

    def to_config(self) -> IdentityConfig:
        return IdentityConfig(
            ordering=self.ordering,
            max_distinct_ids_per_person=self.max_distinct_ids_per_person,
            max_distinct_id_length=self.max_distinct_id_length,
            max_property_key_length=self.max_property_key_length,
            max_property_value_length=self.max_property_value_length,
            max_properties_bytes=self.max_properties_bytes,
            force_upgrade_after_ms=round(self.force_upgrade_after_seconds * 1000),
            future_timestamp_margin_ms=round(self.future_timestamp_margin_seconds * 1000),
            illegal_ids_case_insensitive=self.illegal_ids_case_insensitive,
            illegal_ids_case_sensitive=self.illegal_ids_case_sensitive,
            max_group_types=self.max_group_types,
            last_seen_resolution_ms=round(self.last_seen_resolution_seconds * 1000),
        )


LUA_UNPACK_BOUND = 5_000
"""Upper bound of the settings whose value is a count the Redis script unpacks in one call
(``buffer.max_events_per_id``: one id's queue; ``buffer.release_batch_size``: the expired leases
of one release). Lua 5.1 unpacks at most about 8,000 values; this leaves room for the command
name and key that go with them."""


class BufferSettings(_Section):
    enabled: bool = True
    delay_seconds: float = Field(default=60.0, ge=0)
    """How long a backend event for an unknown distinct id waits for an identify/alias."""
    max_events_per_id: int = Field(default=100, ge=1, le=LUA_UNPACK_BOUND)
    max_events_total: int = Field(default=1_000_000, ge=1)
    release_batch_size: int = Field(default=500, ge=1, le=LUA_UNPACK_BOUND)
    """Most ids (and most expired leases) one release call hands out per tenant."""
    release_interval_seconds: float = Field(default=0.2, gt=0)
    """How often a worker looks for events whose wait is over: the release is late by at
    most this much."""
    lease_seconds: float = Field(default=30.0, gt=0)
    """A worker that took due events and did not acknowledge them within this time is presumed
    dead; another worker releases them again (at least once)."""


DialectName = Literal[
    "auto", "native", "posthog", "segment", "altertable", "seerstack", "logrocket", "schematic"
]
"""The JSON dialects (``worker.codec.json_formats.JsonDialect``)."""


class FormatSettings(_Section):
    output: Literal["avro", "json"] = "json"
    tenant_fields: tuple[str, ...] | None = None
    """Fields naming the tenant, tried in order (``a.b`` = nested), for every JSON dialect.
    Unset: each dialect's own list (docs/FORMATS.md)."""
    default_tenant: str | None = None
    """Tenant for events that name none (else they are dead letters). Not empty, no ``:``."""
    schema_registry_url: SecretStr | None = None
    topic_dialects: dict[str, DialectName] = Field(default_factory=dict)
    """The JSON dialect of each listed input topic (docs/FORMATS.md); a message's
    ``event-format`` header overrides it; unlisted topics detect the dialect per message."""
    posthog_person_properties: tuple[str, ...] | None = None
    """Event properties the PostHog dialect copies onto the person (``$set``, and ``$initial_*``
    with ``$set_once``). Unset: PostHog's ``eventToPersonProperties`` list; empty: off."""
    segment_group_type: str = Field(default="company", min_length=1)
    """The group type of a Segment ``group`` call (docs/IDENTITY.md, "Groups")."""

    @field_validator("default_tenant")
    @classmethod
    def _tenant_fits_keys(cls, value: str | None) -> str | None:
        if value is not None and (not value or ":" in value):
            raise ValueError(
                "formats.default_tenant must be non-empty and must not contain ':' (output keys "
                "and person ids join tenant and id with ':')"
            )
        return value


class BatchSettings(_Section):
    max_messages: int = Field(default=1_000, ge=1)
    max_wait_seconds: float = Field(default=0.1, gt=0)
    shutdown_timeout_seconds: float = Field(default=30.0, gt=0)
    max_in_flight: int = Field(default=3, ge=1, le=32)
    """At-least-once outputs: batches whose outputs are produced but not all acknowledged yet
    while the worker reads and resolves the next one. Their offsets are committed, in order,
    once Kafka acknowledged everything they cover; with more than one, a batch's Redis round
    also runs while the next batch is read and decoded. ``1``: one batch at a time, its Redis
    round read and its acknowledgements waited for before the next poll. Exactly-once outputs
    keep one batch (one transaction) in flight; with more than 1 here, the next batch's Redis
    round runs while that transaction commits."""
    gc_threshold: int = Field(default=DEFAULT_GC_THRESHOLD, ge=0)
    """Python's cyclic garbage collector: net allocations between two collections of its young
    generation; objects alive once start-up is done are frozen out of collections
    (``worker.runtime``). ``0`` leaves the interpreter's defaults (700)."""


class DeliverySettings(_Section):
    exactly_once: bool = False
    """Write each batch's outputs and its input offsets in one Kafka transaction: consumers
    reading with ``isolation.level=read_committed`` see every output once, even across a crash
    (docs/RELIABILITY.md). Off: at-least-once (outputs may repeat after a crash or a retry)."""
    transactional_id: str | None = Field(default=None, min_length=1, max_length=249)
    """The producer's ``transactional.id`` with ``exactly_once``: unique per running worker and
    stable across its restarts (a restarted worker then aborts what its previous run left open
    at once). Unset: ``<group id>-<group instance id>``, else ``<group id>-<host name>``."""


class ObservabilitySettings(_Section):
    metrics_host: str = "0.0.0.0"  # noqa: S104 - the metrics endpoint is scraped from outside
    metrics_port: int = Field(default=9400, ge=0, le=65535)
    log_format: Literal["json", "text", "auto"] = "auto"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_personal_data: bool = False
    """Allow property values and distinct ids in debug logs. Off by default."""


class Settings(BaseSettings):
    """All settings. ``load_settings`` builds one from the environment and an optional file."""

    model_config = SettingsConfigDict(
        env_prefix="IDENTITY_WORKER_",
        env_nested_delimiter="__",
        frozen=True,
        extra="forbid",
    )

    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    redis: RedisSettings = RedisSettings()
    identity: IdentitySettings = IdentitySettings()
    buffer: BufferSettings = BufferSettings()
    formats: FormatSettings = FormatSettings()
    batch: BatchSettings = BatchSettings()
    observability: ObservabilitySettings = ObservabilitySettings()
    delivery: DeliverySettings = DeliverySettings()

    @field_validator("kafka")
    @classmethod
    def _sasl_needs_credentials(cls, value: KafkaSettings) -> KafkaSettings:
        if value.security_protocol.startswith("SASL") and not value.sasl_mechanism:
            raise ValueError("kafka.sasl_mechanism is required with a SASL security_protocol")
        return value

    def redacted(self) -> dict[str, Any]:
        """The settings as plain data with every secret replaced by ``**********``: the
        ``SecretStr`` settings and every secret librdkafka property of ``kafka.consumer`` and
        ``kafka.producer`` (``*.password``, ``sasl.oauthbearer.client.secret``, ``ssl.key.pem``,
        ``sasl.jaas.config``...)."""
        data = self.model_dump(mode="json")
        for name in ("consumer", "producer"):
            data["kafka"][name] = redact_properties(data["kafka"][name])
        return data


def unknown_env_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """``IDENTITY_WORKER_*`` variables that name no setting (a misspelt section or field, such
    as ``IDENTITY_WORKER_KAFAK__BOOTSTRAP_SERVERS``): pydantic-settings ignores them silently."""
    env = os.environ if environ is None else environ
    unknown = []
    for name in sorted(env):
        upper = name.upper()
        if not upper.startswith(ENV_PREFIX) or upper in OTHER_ENV_NAMES:
            continue
        path = upper[len(ENV_PREFIX) :].lower().split("__")
        section = Settings.model_fields.get(path[0])
        if section is None:
            unknown.append(name)
            continue
        if len(path) == 1:
            continue
        model = section.annotation
        fields = (
            model.model_fields if isinstance(model, type) and issubclass(model, BaseModel) else {}
        )
        if path[1] not in fields:
            unknown.append(name)
    return unknown


def load_settings(config_file: str | Path | None = None, **overrides: Any) -> Settings:
    """Build the settings: ``overrides`` > environment > TOML ``config_file`` > defaults."""
    path = config_file or os.environ.get(CONFIG_FILE_ENV)
    if not path:
        return Settings(**overrides)
    toml_path = Path(path)
    if not toml_path.is_file():
        raise FileNotFoundError(f"config file not found: {toml_path}")

    class _FileSettings(Settings):
        @classmethod
        def settings_customise_sources(
            cls,
            settings_cls: type[BaseSettings],
            init_settings: PydanticBaseSettingsSource,
            env_settings: PydanticBaseSettingsSource,
            dotenv_settings: PydanticBaseSettingsSource,
            file_secret_settings: PydanticBaseSettingsSource,
        ) -> tuple[PydanticBaseSettingsSource, ...]:
            toml = TomlConfigSettingsSource(settings_cls, toml_file=toml_path)
            return (init_settings, env_settings, toml, file_secret_settings)

    return _FileSettings(**overrides)
