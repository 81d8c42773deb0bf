"""A corpus of hostile input messages: plain data, so any harness can replay it.

Each ``HostileMessage`` is the bytes of one Kafka message (value, key, headers, the broker's
receive time) and what must become of it: a dead letter with a given reason, an event (maybe
with a given warning), or either (``ANY``) for generated combinations. The decoder-level tests
in this package run every message through the codec, the identity rules and the encoders; a
whole-worker harness can produce the same messages to an input topic.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final

from worker.codec.avro import SCHEMA_IDS, AvroCodec, SchemaName
from worker.codec.wire import frame

RECEIVED_AT_MS: Final = 1_714_564_800_000
"""The Kafka timestamp of every corpus message (2024-05-01T12:00:00Z)."""
UUID: Final = "0190b8b6-7d6a-7a4e-8c1e-1a2b3c4d5e6f"
TEN_MB: Final = 10 * 1024 * 1024

ANY: Final = "any"
EVENT: Final = "event"


@dataclass(frozen=True, slots=True)
class HostileMessage:
    """One input message and its expected fate.

    ``expect``: a ``DecodeReason`` (a dead letter with that reason), ``EVENT`` (decoded; with
    ``warning``, the event time is replaced and that warning raised) or ``ANY``.
    """

    name: str
    value: bytes | None
    expect: str
    key: bytes | None = None
    headers: tuple[tuple[str, bytes], ...] = ()
    received_at_ms: int | None = RECEIVED_AT_MS
    warning: str | None = None


CODEC: Final = AvroCodec()

POSTHOG: Final[dict[str, Any]] = {
    "event": "pageview",
    "distinct_id": "user-1",
    "team_id": 2,
    "uuid": UUID,
    "timestamp": "2024-05-01T11:59:00Z",
    "sent_at": "2024-05-01T11:59:01Z",
    "properties": {"$lib": "posthog-python", "$set": {"plan": "pro"}, "$unset": ["old"]},
}
NATIVE: Final[dict[str, Any]] = {
    "type": "identify",
    "tenant": "t1",
    "distinct_id": "user-1",
    "other_id": "anon-1",
    "uuid": UUID,
    "timestamp": 1_714_564_740_000,
    "sent_at": None,
    "source": "backend",
    "properties": {"k": "v"},
    "set": {"plan": "pro"},
    "set_once": {"first": 1},
    "unset": ["old"],
    "merge_dangerously": False,
    "process_person": True,
}
SEGMENT: Final[dict[str, Any]] = {
    "type": "identify",
    "userId": "user-1",
    "anonymousId": "anon-1",
    "messageId": "m-1",
    "writeKey": "wk",
    "originalTimestamp": "2024-05-01T11:59:00Z",
    "sentAt": "2024-05-01T11:59:01Z",
    "traits": {"plan": "pro"},
    "context": {"library": {"name": "analytics-python"}},
}
AVRO_RECORD: Final[dict[str, Any]] = {
    "uuid": UUID,
    "type": "track",
    "tenant": "t1",
    "distinct_id": "user-1",
    "event": "pageview",
    "timestamp": 1_714_564_740_000,
    "sent_at": None,
    "other_id": None,
    "merge_dangerously": False,
    "process_person": True,
    "source": "backend",
    "properties": '{"k":"v"}',
    "set": '{"plan":"pro"}',
    "set_once": None,
    "unset": ["old"],
}

WRONG_VALUES: Final[tuple[Any, ...]] = (
    None,
    True,
    0,
    -1,
    1.5,
    2**64,
    -(2**64),
    "",
    "x",
    "\x00",
    "a:b",
    "null",
    [],
    [1, "a"],
    {},
    {"a": {"b": 1}},
)
"""Every field of every dialect is replaced by each of these in turn."""

ILLEGAL_IDS: Final = (
    "",
    " ",
    "null",
    "undefined",
    "anonymous",
    "0",
    "[object Object]",
    "NaN",
    "None",
    "distinct_id",
    "\x00",
    "a\x00b",
    "\u200b",
    "x" * 100_000,
)


def _json(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False).encode("utf-8")


def _avro(**changes: Any) -> bytes:
    return CODEC.encode(SchemaName.EVENT, {**AVRO_RECORD, **changes})


def _posthog(**changes: Any) -> dict[str, Any]:
    return {**POSTHOG, **changes}


def _nested(depth: int) -> dict[str, Any]:
    value: dict[str, Any] = {"leaf": 1}
    for _ in range(depth - 1):
        value = {"a": value}
    return value


def _issue_13() -> Iterator[HostileMessage]:
    """The three messages that used to stop the worker, and their relatives."""
    offset_only = {"event": "x", "distinct_id": "u", "team_id": 2}
    yield HostileMessage(
        "posthog offset 1e30",
        _json({**offset_only, "offset": 10**30}),
        EVENT,
        warning="ignored_invalid_timestamp",
    )
    for name, offset in (
        ("negative 1e30", -(10**30)),
        ("float", 1.5),
        ("bool", True),
        ("text", "100"),
        ("2^63", 2**63),
        ("before 1970", RECEIVED_AT_MS + 1),
        ("after 9999", -(300_000_000_000_000)),
    ):
        yield HostileMessage(
            f"posthog offset {name}",
            _json({**offset_only, "offset": offset}),
            EVENT,
            warning="ignored_invalid_timestamp",
        )
    yield HostileMessage("posthog offset sane", _json({**offset_only, "offset": 5_000}), EVENT)
    backend = _posthog()
    yield HostileMessage(
        "backend $set 1e400",
        _json(backend).replace(b'"pro"', b"1e400"),
        "value_out_of_range",
    )
    yield HostileMessage(
        "backend $set -1e400",
        _json(backend).replace(b'"pro"', b"-1e400"),
        "value_out_of_range",
    )
    yield HostileMessage(
        "backend 2,700 $unset keys",
        _json(
            _posthog(
                properties={"$lib": "posthog-python", "$unset": [f"k{i}" for i in range(2700)]}
            )
        ),
        "too_many_properties",
    )


def _values() -> Iterator[HostileMessage]:
    props = POSTHOG["properties"]
    for name, text, reason in (
        ("1e400 nested in a list", b'{"a": [1, [2, 1e400]]}', "value_out_of_range"),
        ("-1e999 deep", b'{"a": {"b": {"c": -1e999}}}', "value_out_of_range"),
        ("2^63", str({"a": 2**63}).replace("'", '"').encode(), "value_out_of_range"),
        ("-2^63", str({"a": -(2**63)}).replace("'", '"').encode(), "value_out_of_range"),
        ("2^63-1", str({"a": 2**63 - 1}).replace("'", '"').encode(), EVENT),
        ("1e308", b'{"a": 1e308}', EVENT),
        ("5e-324", b'{"a": 5e-324}', EVENT),
        ("4,000-digit integer", b'{"a": ' + b"9" * 4000 + b"}", "value_out_of_range"),
        ("5,000-digit integer", b'{"a": ' + b"9" * 5000 + b"}", "json_invalid"),
    ):
        body = _json(_posthog(properties={**props, "$set": "SET"}))
        yield HostileMessage(f"$set {name}", body.replace(b'"SET"', text), reason)
        native = _json({**NATIVE, "properties": "P"})
        yield HostileMessage(f"native properties {name}", native.replace(b'"P"', text), reason)
        segment = _json({**SEGMENT, "traits": "T"})
        yield HostileMessage(f"segment traits {name}", segment.replace(b'"T"', text), reason)
        avro_reason = "invalid_field" if reason == "json_invalid" else reason
        yield HostileMessage(f"avro set {name}", _avro(set=text.decode()), avro_reason)
    for depth, reason in ((64, EVENT), (65, "nesting_too_deep"), (900, "nesting_too_deep")):
        yield HostileMessage(
            f"properties nested {depth} levels",
            _json(_posthog(properties=_nested(depth))),
            reason,
        )
    yield HostileMessage("JSON nested 100,000 levels", b"[" * 100_000, "json_invalid")
    yield HostileMessage(
        "object nested 100,000 levels",
        b'{"event": "x", "distinct_id": "u", "team_id": 1, "properties": '
        + b'{"a": ' * 100_000
        + b"1"
        + b"}" * 100_001,
        "json_invalid",
    )
    for count, reason in ((1000, EVENT), (1001, "too_many_properties")):
        many = {f"k{i}": i for i in range(count)}
        yield HostileMessage(
            f"$set of {count} keys", _json(_posthog(properties={}, **{"$set": many})), reason
        )
        yield HostileMessage(
            f"properties of {count} keys", _json(_posthog(properties=many)), reason
        )
        yield HostileMessage(
            f"native set_once of {count} keys", _json({**NATIVE, "set_once": many}), reason
        )
    ops = {
        "$set": {f"s{i}": i for i in range(1000)},
        "$set_once": {f"o{i}": i for i in range(1000)},
        "properties": {"$lib": "posthog-node", "$unset": [f"u{i}" for i in range(1)]},
    }
    yield HostileMessage("2,001 property operations", _json(_posthog(**ops)), "too_many_properties")
    ops["properties"] = {"$lib": "posthog-node"}
    yield HostileMessage("2,000 property operations", _json(_posthog(**ops)), EVENT)


def _timestamps() -> Iterator[HostileMessage]:
    warn = "ignored_invalid_timestamp"
    for name, value in (
        ("text", "yesterday"),
        ("10^20 ms", 10**20),
        ("-10^20 ms", -(10**20)),
        ("year 10000", "10000-01-01T00:00:00Z"),
        ("bool", True),
        ("list", [1]),
        ("object", {"a": 1}),
        ("NUL", "\x00"),
        ("empty", ""),
    ):
        yield HostileMessage(
            f"posthog timestamp {name}", _json(_posthog(timestamp=value)), EVENT, warning=warn
        )
        yield HostileMessage(
            f"native timestamp {name}", _json({**NATIVE, "timestamp": value}), EVENT, warning=warn
        )
        yield HostileMessage(
            f"segment timestamp {name}",
            _json({**SEGMENT, "originalTimestamp": value}),
            EVENT,
            warning=warn,
        )
        yield HostileMessage(
            f"posthog timestamp {name}, no receive time",
            _json(_posthog(timestamp=value)),
            "invalid_field",
            received_at_ms=None,
        )
    yield HostileMessage(
        "year 1500",
        _json(_posthog(timestamp="1500-01-01T00:00:00Z", sent_at=None)),
        EVENT,
        warning=warn,
    )
    yield HostileMessage(
        "sent_at far ahead: corrected time before 1970",
        _json(_posthog(sent_at="9999-01-01T00:00:00Z")),
        EVENT,
        warning=warn,
    )
    yield HostileMessage(
        "sent_at far behind: corrected time after 9999",
        _json(_posthog(timestamp="9999-01-01T00:00:00Z", sent_at="0001-01-01T00:00:00Z")),
        EVENT,
        warning=warn,
    )
    yield HostileMessage("sent_at malformed", _json(_posthog(sent_at="soon")), "invalid_field")
    yield HostileMessage("avro timestamp 2^62", _avro(timestamp=2**62), EVENT, warning=warn)
    yield HostileMessage("avro timestamp -2^63", _avro(timestamp=-(2**63)), EVENT, warning=warn)
    yield HostileMessage(
        "avro timestamp 2^62, no receive time",
        _avro(timestamp=2**62),
        "invalid_field",
        received_at_ms=None,
    )
    yield HostileMessage("avro sent_at 2^62", _avro(sent_at=2**62), "invalid_field")


def _tenants() -> Iterator[HostileMessage]:
    yield HostileMessage("posthog team_id a:b", _json(_posthog(team_id="a:b")), "invalid_field")
    yield HostileMessage("native tenant :", _json({**NATIVE, "tenant": ":"}), "invalid_field")
    yield HostileMessage(
        "segment writeKey a:b", _json({**SEGMENT, "writeKey": "a:b"}), "invalid_field"
    )
    yield HostileMessage("avro tenant a:b", _avro(tenant="a:b"), "invalid_field")
    yield HostileMessage("avro tenant empty", _avro(tenant=""), "invalid_field")
    no_tenant = {k: v for k, v in POSTHOG.items() if k != "team_id"}
    yield HostileMessage("tenant from key a:b:c", _json(no_tenant), EVENT, key=b"a:b:c")
    yield HostileMessage("key ':x' has no tenant", _json(no_tenant), "missing_field", key=b":x")
    yield HostileMessage("key of invalid UTF-8", _json(no_tenant), "missing_field", key=b"\xff:x")


def _ids() -> Iterator[HostileMessage]:
    for index, bad in enumerate(ILLEGAL_IDS):
        yield HostileMessage(f"posthog illegal id {index}", _json(_posthog(distinct_id=bad)), EVENT)
        yield HostileMessage(
            f"posthog identify with illegal anon id {index}",
            _json(_posthog(event="$identify", properties={"$anon_distinct_id": bad})),
            EVENT,
        )
        yield HostileMessage(
            f"native alias of illegal id {index}",
            _json({**NATIVE, "type": "alias", "other_id": bad}),
            EVENT,
        )
        yield HostileMessage(f"avro illegal id {index}", _avro(distinct_id=bad), EVENT)
    yield HostileMessage("integer id 2^200", _json(_posthog(distinct_id=2**200)), EVENT)
    yield HostileMessage("10 MB distinct id", _json(_posthog(distinct_id="d" * TEN_MB)), EVENT)
    yield HostileMessage("10 MB event name", _json(_posthog(event="e" * TEN_MB)), EVENT)
    yield HostileMessage(
        "10 MB property value", _json(_posthog(**{"$set": {"big": "v" * TEN_MB}})), EVENT
    )
    yield HostileMessage(
        "NUL everywhere",
        _json(
            _posthog(
                event="\x00",
                distinct_id="\x00",
                properties={"\x00": "\x00", "$set": {"\x00": "\x00"}},
            )
        ),
        EVENT,
    )
    yield HostileMessage(
        "avro NUL everywhere",
        _avro(event="\x00", distinct_id="\x00", properties='{"\\u0000":"\\u0000"}'),
        EVENT,
    )


def _framing() -> Iterator[HostileMessage]:
    good = _avro()
    event_id = SCHEMA_IDS[SchemaName.EVENT]
    yield HostileMessage("tombstone", None, "empty_value")
    yield HostileMessage("empty", b"", "empty_value")
    yield HostileMessage("only magic byte", b"\x00", "invalid_frame")
    yield HostileMessage("schema id 999", frame(999, good[5:]), "unknown_schema_id")
    yield HostileMessage("schema id 0", frame(0, good[5:]), "unknown_schema_id")
    yield HostileMessage("schema id 2^32-1", b"\x00\xff\xff\xff\xff" + good[5:], "invalid_frame")
    for schema in (
        SchemaName.ENRICHED_EVENT,
        SchemaName.DISTINCT_ID_OVERRIDE,
        SchemaName.INGESTION_WARNING,
    ):
        yield HostileMessage(
            f"schema id of {schema.value}", frame(SCHEMA_IDS[schema], good[5:]), ANY
        )
    for cut in range(5, len(good), 7):
        yield HostileMessage(f"avro truncated at {cut}", good[:cut], ANY)
    yield HostileMessage("avro trailing bytes", good + b"\x00", "avro_invalid")
    yield HostileMessage("avro invalid UTF-8", frame(event_id, b"\x04\xff\xfe"), "avro_invalid")
    yield HostileMessage(
        "avro huge length", frame(event_id, b"\xfe\xff\xff\xff\x0f"), "avro_invalid"
    )
    yield HostileMessage("JSON array", b"[1, 2]", "json_invalid")
    # a JSON array is a batch (docs/FORMATS.md): one event in it is that event
    yield HostileMessage("JSON array of events", b"[" + _json(POSTHOG) + b"]", EVENT)
    yield HostileMessage("JSON string", b' "event"', "unknown_magic_byte")
    yield HostileMessage("empty object", b"{}", "unknown_format")
    yield HostileMessage(
        "empty object as posthog", b"{}", "missing_field", headers=(("event-format", b"posthog"),)
    )
    yield HostileMessage(
        "unknown dialect header",
        _json(POSTHOG),
        "invalid_field",
        headers=(("event-format", b"\xff"),),
    )
    yield HostileMessage("invalid UTF-8 in JSON", b'{"event": "\xc3\x28"}', "json_invalid")
    yield HostileMessage("UTF-16 JSON", _json(POSTHOG).decode().encode("utf-16"), ANY)
    yield HostileMessage(
        "lone surrogate", b'{"event": "x", "distinct_id": "\\udc00", "team_id": 1}', "json_invalid"
    )
    yield HostileMessage(
        "NaN",
        b'{"event": "x", "distinct_id": "u", "team_id": 1, "properties": {"a": NaN}}',
        "json_invalid",
    )
    yield HostileMessage(
        "duplicate keys", b'{"event": "x", "event": "y", "distinct_id": "u", "team_id": 1}', EVENT
    )
    rng = random.Random(13)
    for index in range(40):
        yield HostileMessage(f"random bytes {index}", rng.randbytes(rng.randrange(1, 200)), ANY)
        yield HostileMessage(
            f"random after magic byte {index}", b"\x00" + rng.randbytes(rng.randrange(0, 60)), ANY
        )


def _wrong_types() -> Iterator[HostileMessage]:
    bases: tuple[tuple[str, dict[str, Any], Callable[[dict[str, Any]], bytes]], ...] = (
        ("posthog", POSTHOG, _json),
        ("native", NATIVE, _json),
        ("segment", SEGMENT, _json),
        ("posthog properties", POSTHOG["properties"], lambda p: _json(_posthog(properties=p))),
    )
    for dialect, base, encode in bases:
        for name in base:
            for index, wrong in enumerate(WRONG_VALUES):
                changed = {**base, name: wrong}
                yield HostileMessage(
                    f"{dialect} {name} = wrong value {index}", encode(changed), ANY
                )
            yield HostileMessage(
                f"{dialect} without {name}",
                encode({k: v for k, v in base.items() if k != name}),
                ANY,
            )


# --- the Altertable, SeerStack, LogRocket and Schematic dialects, PostHog capture's envelope ---

ALTERTABLE: Final[dict[str, Any]] = {
    "tenant": "t1",
    "environment": "production",
    "distinct_id": "u_01",
    "anonymous_id": "anon_123",
    "traits": {"plan": "premium"},
    "timestamp": "2024-05-01T11:59:00Z",
}
SEERSTACK: Final[dict[str, Any]] = {
    "tenant": "t1",
    "user_id": "user_123",
    "email": "g@x.io",
    "name": "Grace Hopper",
    "attributes": {"plan": "enterprise"},
    "timestamp": "2024-05-01T11:59:00Z",
}
LOGROCKET: Final[dict[str, Any]] = {
    "tenant": "t1",
    "userID": "1234",
    "name": "John Smith",
    "email": "j@x.io",
    "traits": {"age": 43, "plan": "free"},
    "timestamp": "2024-05-01T11:59:00Z",
}
SCHEMATIC: Final[dict[str, Any]] = {
    "tenant": "t1",
    "keys": {"id": "demo-user", "email": "d@x.io"},
    "traits": {"role": "admin"},
    "name": "Demo",
    "company": {"keys": {"id": "demo-company"}, "name": "Demo", "traits": {"plan": "x"}},
    "timestamp": "2024-05-01T11:59:00Z",
}
DIALECT_BASES: Final = (
    ("altertable", ALTERTABLE),
    ("seerstack", SEERSTACK),
    ("logrocket", LOGROCKET),
    ("schematic", SCHEMATIC),
)


def _envelope(data: Any, **changes: Any) -> bytes:
    text = data if isinstance(data, str) else json.dumps(data)
    envelope = {
        "uuid": UUID,
        "distinct_id": "user-1",
        "ip": "1.2.3.4",
        "data": text,
        "now": "2024-05-01T12:00:00Z",
        "sent_at": "2024-05-01T11:59:59Z",
        "token": "phc_1",
        **changes,
    }
    return _json(envelope)


def _dialects() -> Iterator[HostileMessage]:
    for name, base in DIALECT_BASES:
        yield HostileMessage(f"{name} payload", _json(base), EVENT)
        header = (("event-format", name.encode()),)
        for field in base:
            for index, wrong in enumerate(WRONG_VALUES):
                yield HostileMessage(
                    f"{name} {field} = wrong value {index}",
                    _json({**base, field: wrong}),
                    ANY,
                    headers=header,
                )
    yield HostileMessage(
        "altertable environment with ':'",
        _json({**ALTERTABLE, "environment": "a:b"}),
        "invalid_field",
    )
    yield HostileMessage(
        "altertable unknown call type", _json({**ALTERTABLE, "type": "page"}), "unknown_event_type"
    )
    yield HostileMessage(
        "altertable traits nested too deep",
        _json({**ALTERTABLE, "traits": _nested(70)}),
        "nesting_too_deep",
    )
    yield HostileMessage("altertable batch of one", _json([ALTERTABLE]), EVENT)
    yield HostileMessage(
        "altertable batch, second element bad",
        _json([ALTERTABLE, {"environment": "p"}]),
        "missing_field",
    )
    yield HostileMessage("empty JSON array", b"[]", "missing_field")
    yield HostileMessage("array of arrays", _json([[ALTERTABLE]]), "json_invalid")
    yield HostileMessage("array of numbers", b"[1, 2, 3]", "json_invalid")
    yield HostileMessage("array of 10,000 bad elements", _json([None] * 10_000), "json_invalid")
    yield HostileMessage(
        "seerstack without email and name", _json({"tenant": "t", "user_id": "u"}), "missing_field"
    )
    yield HostileMessage(
        "seerstack blank email and name",
        _json({**SEERSTACK, "email": "", "name": ""}),
        "missing_field",
    )
    yield HostileMessage(
        "seerstack log",
        _json({"tenant": "t", "user_id": "u", "message": "m", "timestamp": 1}),
        EVENT,
    )
    yield HostileMessage(
        "logrocket name over 1,024", _json({**LOGROCKET, "name": "n" * 1025}), "value_out_of_range"
    )
    yield HostileMessage(
        "logrocket trait key over 1,024",
        _json({**LOGROCKET, "traits": {"k" * 1025: 1}}),
        "value_out_of_range",
    )
    yield HostileMessage(
        "logrocket trait value over 1,024",
        _json({**LOGROCKET, "traits": {"k": "v" * 1025}}),
        "value_out_of_range",
    )
    yield HostileMessage(
        "logrocket userID over 1,024",
        _json({**LOGROCKET, "userID": "1" * 1025}),
        "value_out_of_range",
    )
    yield HostileMessage(
        "logrocket trait value a list", _json({**LOGROCKET, "traits": {"k": [1]}}), "invalid_field"
    )
    yield HostileMessage(
        "logrocket blank traits",
        _json({**LOGROCKET, "traits": {"a": "", "b": None, "c": " "}}),
        EVENT,
    )
    yield HostileMessage(
        "logrocket userID with NUL", _json({**LOGROCKET, "userID": "a\x00b"}), EVENT
    )
    yield HostileMessage("schematic no keys", _json({**SCHEMATIC, "keys": {}}), "missing_field")
    yield HostileMessage(
        "schematic key value an object",
        _json({**SCHEMATIC, "keys": {"id": {"a": 1}}}),
        "invalid_field",
    )
    yield HostileMessage(
        "schematic upsert_company",
        _json({"tenant": "t", "type": "upsert_company", "body": {"keys": {"id": "c"}}}),
        EVENT,
    )
    yield HostileMessage(
        "schematic upsert_company without keys",
        _json({"tenant": "t", "type": "upsert_company", "body": {"name": "c"}}),
        "missing_field",
    )
    yield HostileMessage(
        "schematic upsert_company key with NUL",
        _json({"tenant": "t", "type": "company", "body": {"keys": {"id": "a\x00b"}}}),
        EVENT,
    )
    yield HostileMessage(
        "schematic company without keys",
        _json({**SCHEMATIC, "company": {"keys": {}, "name": "c"}}),
        "missing_field",
    )
    yield HostileMessage(
        "schematic company a string", _json({**SCHEMATIC, "company": "c"}), "invalid_field"
    )
    yield HostileMessage(
        "schematic track company key a list",
        _json({"tenant": "t", "event": "e", "user": {"id": "1"}, "company": {"id": [1]}}),
        "invalid_field",
    )
    yield HostileMessage(
        "schematic flag_check",
        _json({"event_type": "flag_check", "body": {"keys": {"id": "c"}}}),
        "unknown_event_type",
    )
    yield HostileMessage(
        "schematic envelope without a type",
        _json({"tenant": "t", "body": {"keys": {"id": "c"}}}),
        "missing_field",
    )
    yield HostileMessage(
        "schematic three keys (one derived merge)",
        _json({**SCHEMATIC, "keys": {"a": "1", "b": "2", "c": "3"}}),
        "invalid_field",
    )
    yield HostileMessage(
        "schematic key with ':' in its name", _json({**SCHEMATIC, "keys": {"a:b": "c:d"}}), EVENT
    )
    yield HostileMessage(
        "posthog capture envelope",
        _envelope({"event": "e", "timestamp": "2024-05-01T11:59:00Z"}),
        EVENT,
    )
    yield HostileMessage("posthog capture envelope, data not JSON", _envelope("{"), "json_invalid")
    yield HostileMessage("posthog capture envelope, data an array", _envelope([1]), "invalid_field")
    yield HostileMessage(
        "posthog capture envelope, data a lone surrogate",
        _envelope('{"event": "\\ud800"}'),
        "json_invalid",
    )
    yield HostileMessage(
        "posthog capture envelope, bad now",
        _envelope({"event": "e", "timestamp": "2024-05-01T11:59:00Z"}, now="soon"),
        EVENT,
    )
    yield HostileMessage(
        "posthog capture envelope, bad timestamp",
        _envelope({"event": "e", "timestamp": "soon"}),
        EVENT,
        warning="ignored_invalid_timestamp",
    )
    for index, wrong in enumerate(WRONG_VALUES):
        properties = {**POSTHOG["properties"], "$process_person_profile": wrong}
        too_big = isinstance(wrong, int) and abs(wrong) > 2**63 - 1
        yield HostileMessage(
            f"posthog $process_person_profile = wrong value {index}",
            _json(_posthog(properties=properties)),
            "value_out_of_range" if too_big else EVENT,
        )
    yield HostileMessage(
        "posthog $exception with updates", _json(_posthog(event="$exception")), EVENT
    )
    yield HostileMessage(
        "posthog $groupidentify without person processing",
        _json(_posthog(event="$groupidentify", properties={"$process_person_profile": False})),
        EVENT,
    )
    yield HostileMessage(
        "posthog person properties of every type",
        _json(_posthog(properties={"$browser": {"a": [1]}, "utm_source": None, "$os": 2**62})),
        EVENT,
    )
    yield HostileMessage(
        "segment without a timestamp",
        _json({k: v for k, v in SEGMENT.items() if k != "originalTimestamp"}),
        EVENT,
    )


def corpus() -> list[HostileMessage]:
    """Every hostile message, names unique."""
    messages = [
        *_issue_13(),
        *_values(),
        *_timestamps(),
        *_tenants(),
        *_ids(),
        *_framing(),
        *_wrong_types(),
        *_dialects(),
    ]
    names = [m.name for m in messages]
    assert len(names) == len(set(names)), "corpus names must be unique"
    return messages


GOOD_MESSAGES: Final = (
    _json(POSTHOG),
    _json(NATIVE),
    _json(SEGMENT),
    _avro(),
    *(_json(base) for _, base in DIALECT_BASES),
)
"""Valid messages of each format, the seeds of the fuzzer's mutations."""
