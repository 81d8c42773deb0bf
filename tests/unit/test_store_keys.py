"""The Redis key schema: hash tags, escaping, patterns (no Redis needed)."""

from __future__ import annotations

import fnmatch

import pytest
from hypothesis import given
from hypothesis import strategies as st
from redis.crc import key_slot

from worker.store.keys import (
    TenantKeys,
    escape_tenant,
    glob_escape,
    unescape_tenant,
    validate_prefix,
)


def _tag(key: str) -> str:
    """The hash tag Redis Cluster would hash (the whole key when there is none)."""
    start = key.find("{")
    if start >= 0:
        end = key.find("}", start + 1)
        if end > start + 1:
            return key[start + 1 : end]
    return key


@pytest.mark.parametrize(
    ("tenant", "escaped"),
    [
        ("team-1", "team-1"),
        ("a{b}c", "a%7Bb%7Dc"),
        ("env:prod", "env%3Aprod"),
        ("100%", "100%25"),
        ("%7B", "%257B"),
        ("", ""),
    ],
)
def test_escape_tenant(tenant: str, escaped: str) -> None:
    assert escape_tenant(tenant) == escaped
    assert unescape_tenant(escaped) == tenant


@given(st.text())
def test_escape_is_injective_and_brace_free(tenant: str) -> None:
    escaped = escape_tenant(tenant)
    assert not set(escaped) & set("{}:")
    assert unescape_tenant(escaped) == tenant


@given(st.text(), st.text())
def test_tenants_never_share_a_tag(a: str, b: str) -> None:
    ka, kb = TenantKeys.of("iw", a), TenantKeys.of("iw", b)
    assert (_tag(ka.ids) == _tag(kb.ids)) == (a == b)


@given(st.text(min_size=1), st.text())
def test_every_key_of_a_tenant_is_in_one_slot(tenant: str, root: str) -> None:
    keys = TenantKeys.of("iw", tenant)
    slot = key_slot(keys.ids.encode())
    for key in (keys.members(root), keys.reply("t"), keys.members_prefix):
        assert _tag(key) == escape_tenant(tenant)
        assert key_slot(key.encode()) == slot


def test_layout() -> None:
    keys = TenantKeys.of("iw", "t:1")
    assert keys.ids == "iw:{t%3A1}:ids"
    assert keys.members("a:b{c}") == "iw:{t%3A1}:members:a:b{c}"
    assert keys.reply("tok") == "iw:{t%3A1}:reply:tok"
    assert keys.root_of_members_key("iw:{t%3A1}:members:a:b") == "a:b"
    with pytest.raises(ValueError, match="not a members key"):
        keys.root_of_members_key("iw:{t%3A1}:reply:a")


def test_script_keys_without_previous_reply_repeat_the_current_one() -> None:
    keys = TenantKeys.of("p", "t")
    assert keys.script_keys("new", None) == [
        "p:{t}:ids",
        "p:{t}:members:",
        "p:{t}:reply:new",
        "p:{t}:reply:new",
        "p:{t}:buf:",
        "p:{t}:rcpt:",
        "p:{t}:g:",
        "p:{t}:fold",
        "p:{t}:deleted",
    ]
    assert keys.script_keys("new", "old")[2:4] == ["p:{t}:reply:new", "p:{t}:reply:old"]


def test_delete_keys_in_the_order_of_delete_person_lua() -> None:
    keys = TenantKeys.of("p", "t")
    assert keys.delete_keys() == [
        "p:{t}:ids",
        "p:{t}:members:",
        "p:{t}:buf:",
        "p:{t}:g:",
        "p:{t}:fold",
        "p:{t}:deleted",
    ]


@pytest.mark.parametrize("prefix", ["", "a{b", "a}b"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        validate_prefix(prefix)


@given(st.text(alphabet="ab*?[]\\^:{}%", max_size=8), st.text(alphabet="ab*?[]", max_size=5))
def test_glob_patterns_match_only_their_tenant(tenant: str, other: str) -> None:
    keys = TenantKeys.of("iw", tenant)
    pattern = keys.members_pattern()
    # fnmatch has no backslash escapes; translate Redis' escaped pattern into fnmatch's.
    translated = (
        "".join(f"[{c}]" if escaped else c for c, escaped in _unescape_glob(pattern[:-1])) + "*"
    )
    assert fnmatch.fnmatchcase(keys.members("root*"), translated)
    assert glob_escape("a*b") == "a\\*b"
    if other != tenant:
        assert not fnmatch.fnmatchcase(TenantKeys.of("iw", other).members("r"), translated)


def _unescape_glob(pattern: str) -> list[tuple[str, bool]]:
    out: list[tuple[str, bool]] = []
    i = 0
    while i < len(pattern):
        if pattern[i] == "\\":
            out.append((pattern[i + 1], True))
            i += 2
        else:
            out.append((pattern[i], False))
            i += 1
    return out


def test_receipts_of_one_partition_and_offset_range_share_a_hash() -> None:
    keys = TenantKeys.of("p", "t")
    assert keys.receipts("in/3/4095") == keys.receipts("in/3/0#2") == "p:{t}:rcpt:in/3/0"
    assert keys.receipts("in/3/4096") == "p:{t}:rcpt:in/3/1"
    assert keys.receipts("in/4/1") != keys.receipts("in/3/1")
    assert keys.receipts("not a position") == "p:{t}:rcpt:not a position"
