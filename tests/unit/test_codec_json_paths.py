"""The fast JSON path (orjson) and the standard library's path decide alike.

``loads_json`` and ``dumps_json`` read and write with ``orjson`` when it gives what the standard
library gives, and fall back to the standard path otherwise: these tests hold the two paths to
the same values and the same errors, on hand-picked edge cases and on generated values, and
hold both ways of ``may_hold_long_integer`` (the compiled build's and the interpreted one's) to
what the fast path relies on.
"""

from __future__ import annotations

import json
import math
from enum import Enum
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker import build
from worker.codec import fields
from worker.codec.errors import DecodeError, EncodeError
from worker.codec.fields import _dumps_standard, _loads_standard, dumps_json, dumps_json_bytes
from worker.codec.fields import loads_json as loads

EDGE_TEXTS = [
    b'{"a":NaN}',
    b'{"a":Infinity}',
    b'{"a":-Infinity}',
    b'{"a":1e400}',
    b'{"a":-1e400}',
    b'{"a":"\\ud800"}',
    b'{"a":"\\udc00x"}',
    b'{"a":"\\ud83d\\ude00"}',
    b'{"a":18446744073709551616}',
    b'{"a":-9223372036854775809}',
    b'{"a":9223372036854775808}',
    b'{"distinct_id":123456789012345678901234567890}',
    b'{"a":1000000000000000000.5}',
    b'{"a":[{"b":[123456789012345678901234567890]}],"c":"x"}',
    b'{"a":1.5,"b":18446744073709551616}',
    b'{"a":[1.5],"b":{"c":-18446744073709551617}}',
    b'{"a":1234567890123456789,"b":[0.5]}',
    b'{"a":"12345678901234567890123","b":0.5}',
    b"[" * 900 + b"18446744073709551616" + b"]" * 900,
    b'{"a":' * 900 + b"1.5" + b"}" * 900,
    b"\xff",
    b'"\xed\xa0\x80"',
    b"\xef\xbb\xbf{}",
    b'{"a":1,"a":2}',
    b'{"a":1,}',
    b"[1,]",
    b"01",
    b'"a\x01b"',
    b" \n[1]\n ",
    b"[1] x",
    b"[" * 2000 + b"]" * 2000,
    b'{"a":-0}',
    b'{"a":-0.0}',
    b'{"\\u00e9":"\\u0000"}',
    b"",
]


def _outcome(read: Any, data: bytes | str) -> tuple[str, Any]:
    try:
        value = read(data)
    except DecodeError as exc:
        return "error", (exc.reason, exc.message, exc.field)
    return "value", json.dumps(value, sort_keys=True, allow_nan=True)


def _fast(data: bytes | str) -> Any:
    return loads(data, reason="json_invalid", field="f")


def _standard(data: bytes | str) -> Any:
    return _loads_standard(data, reason="json_invalid", field="f")


@pytest.mark.parametrize("text", EDGE_TEXTS, ids=range(len(EDGE_TEXTS)))
def test_loads_edge_cases_decide_as_the_standard_path(text: bytes) -> None:
    assert _outcome(_fast, text) == _outcome(_standard, text)
    try:
        as_str = text.decode("utf-8")
    except UnicodeDecodeError:
        return
    assert _outcome(_fast, as_str) == _outcome(_standard, as_str)


def test_big_integers_stay_integers() -> None:
    value = _fast(b'{"a":123456789012345678901234567890,"b":-9223372036854775809}')
    assert value == {"a": 123456789012345678901234567890, "b": -9223372036854775809}
    assert all(type(v) is int for v in value.values())


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@given(json_values)
def test_generated_values_read_back_alike(value: Any) -> None:
    for text in (
        json.dumps(value, ensure_ascii=False),
        json.dumps(value, ensure_ascii=True),
        json.dumps({"nested": [value]}, ensure_ascii=False),
    ):
        assert _outcome(_fast, text) == _outcome(_standard, text)
        try:
            data = text.encode("utf-8")
        except UnicodeEncodeError:
            continue
        assert _outcome(_fast, data) == _outcome(_standard, data)


def _orjson_agrees_unless_a_long_integer_may_be_there(text: bytes, walk: bool) -> None:
    """Where ``may_hold_long_integer`` (walking ``orjson``'s value first or not) says no long
    integer, ``orjson``'s value is the standard path's: ``loads_json`` may return it."""
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return
    if not fields.may_hold_long_integer(text, value, walk=walk):
        assert _outcome(lambda _: value, text) == _outcome(_standard, text)


@pytest.mark.parametrize("walk", [True, False], ids=["walk", "search"])
@pytest.mark.parametrize("text", EDGE_TEXTS, ids=range(len(EDGE_TEXTS)))
def test_either_long_integer_check_leaves_orjson_only_values_it_reads_alike(
    text: bytes, walk: bool
) -> None:
    _orjson_agrees_unless_a_long_integer_may_be_there(text, walk)


@given(json_values, st.booleans())
def test_either_long_integer_check_leaves_orjson_only_generated_values_it_reads_alike(
    value: Any, walk: bool
) -> None:
    for text in (json.dumps(value), json.dumps({"nested": [value, 0.5]})):
        _orjson_agrees_unless_a_long_integer_may_be_there(text.encode("utf-8"), walk)


def test_the_walk_skips_the_search_only_where_no_float_was_read() -> None:
    long_integer = b'{"a":[1,{"b":18446744073709551616}]}'
    digits_in_a_string = b'{"a":"12345678901234567890123"}'
    for walk in (True, False):
        assert fields.may_hold_long_integer(long_integer, orjson.loads(long_integer), walk=walk)
        assert not fields.may_hold_long_integer(b'{"a":1.5}', {"a": 1.5}, walk=walk)
    value = orjson.loads(digits_in_a_string)
    assert not fields.may_hold_long_integer(digits_in_a_string, value, walk=True)
    assert fields.may_hold_long_integer(digits_in_a_string, value, walk=False)


def test_the_check_walks_exactly_when_its_module_is_compiled() -> None:
    assert ("worker.codec.fields" in build.compiled_modules()) == fields._WALK


def _dump_outcome(write: Any, value: Any) -> tuple[str, Any]:
    try:
        text = write(value)
    except EncodeError as exc:
        return "error", str(exc)
    except UnicodeEncodeError:
        return "unicode", None
    return "value", json.dumps(json.loads(text), sort_keys=True)


@given(json_values)
def test_generated_values_are_written_as_the_same_json(value: Any) -> None:
    assert _dump_outcome(dumps_json, value) == _dump_outcome(_dumps_standard, value)
    standard = _dump_outcome(lambda v: _dumps_standard(v).encode("utf-8"), value)
    assert _dump_outcome(dumps_json_bytes, value) == standard


class _Color(Enum):
    RED = 1


@pytest.mark.parametrize(
    "value",
    [
        {"a": math.nan},
        [math.inf],
        {"a": [{"b": -math.inf}]},
        {"a": _Color.RED},
        {1: "int key"},
        {"a": 2**64},
        {"a": "\ud800"},
        ("a", 1.5, None),
    ],
    ids=range(8),
)
def test_values_orjson_would_write_differently_take_the_standard_path(value: Any) -> None:
    assert _dump_outcome(dumps_json, value) == _dump_outcome(_dumps_standard, value)
