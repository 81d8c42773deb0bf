"""A fuzzer over the decoders: random objects built from each dialect's field names with random
typed values, random bytes, and mutations of valid messages. Each must end as a ``DecodeError``
with a known reason or as an event the rules and encoders handle (``harness.handle``)."""

from __future__ import annotations

import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from tests.hostile.corpus import (
    AVRO_RECORD,
    NATIVE,
    POSTHOG,
    SEGMENT,
    HostileMessage,
)
from tests.hostile.harness import decode, handle
from tests.hostile.strategies import mutations
from worker.codec import DECODE_REASONS, DecodeError

FIELD_NAMES = sorted(
    {
        *POSTHOG,
        *POSTHOG["properties"],
        *NATIVE,
        *SEGMENT,
        *AVRO_RECORD,
        "$set",
        "$set_once",
        "$distinct_id",
        "$anon_distinct_id",
        "$process_person_profile",
        "alias",
        "token",
        "api_key",
        "offset",
        "previousId",
        "projectId",
        "properties",
        "traits",
    }
)
EDGE_NUMBERS = st.sampled_from(
    [0, -1, 2**53 + 1, 2**63 - 1, 2**63, -(2**63), 10**30, 1e308, -1e308, 5e-324, float("inf")]
)
scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats()
    | EDGE_NUMBERS
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "",
            "null",
            "a:b",
            "\x00",
            "$identify",
            "$create_alias",
            "track",
            "identify",
            "alias",
            "backend",
        ]
    )
    | st.sampled_from(["2024-05-01T12:00:00Z", "10000-01-01", "0001-01-01T00:00:00+14:00"])
)
values = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), children, max_size=5)
    ),
    max_leaves=20,
)
events = st.dictionaries(st.sampled_from(FIELD_NAMES), values, max_size=12)


def _json_text(obj: Any) -> bytes:
    """``obj`` as JSON; infinities become ``1e400``, which Python's json reads back as one."""
    text = json.dumps(obj, allow_nan=True)
    return text.replace("-Infinity", "-1e400").replace("Infinity", "1e400").encode()


def _check(value: bytes | None, key: bytes | None = None, received: int | None = 1) -> None:
    message = HostileMessage("fuzz", value, "any", key=key, received_at_ms=received)
    result = decode(message)
    if isinstance(result, DecodeError):
        assert result.reason in DECODE_REASONS
        assert result.message
        return
    handle(result)


FUZZ = settings(max_examples=200)


@FUZZ
@given(
    events,
    st.sampled_from([None, b"team:u", b":x", b"\xff:y", b"a:b:c"]),
    st.none() | st.integers(),
)
def test_random_objects_of_dialect_fields(
    obj: dict[str, Any], key: bytes | None, received: int | None
) -> None:
    _check(_json_text(obj), key, received)


@FUZZ
@given(st.sampled_from([POSTHOG, NATIVE, SEGMENT]), events)
def test_valid_events_with_random_fields_overridden(
    base: dict[str, Any], changes: dict[str, Any]
) -> None:
    _check(_json_text({**base, **changes}), received=1_714_564_800_000)


@FUZZ
@given(st.binary(max_size=300))
def test_random_bytes(data: bytes) -> None:
    _check(data)
    _check(b"\x00" + data)
    _check(b"{" + data)


@FUZZ
@given(mutations())
def test_mutations_of_valid_messages(data: bytes) -> None:
    _check(data, received=1_714_564_800_000)


CARRIERS = {
    "posthog": (POSTHOG, ("properties", "$set", "$set_once")),
    "native": (NATIVE, ("properties", "set", "set_once")),
    "segment": (SEGMENT, ("traits", "properties")),
}


@FUZZ
@given(
    st.sampled_from(sorted(CARRIERS)),
    st.data(),
    st.dictionaries(st.text(max_size=8), values, max_size=6),
)
def test_valid_events_with_random_property_values(
    dialect: str, data: st.DataObject, props: dict[str, Any]
) -> None:
    base, carriers = CARRIERS[dialect]
    carrier = data.draw(st.sampled_from(carriers))
    _check(_json_text({**base, carrier: props}), received=1_714_564_800_000)
