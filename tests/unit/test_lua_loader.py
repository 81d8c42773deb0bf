"""The joined ``resolve_batch.lua``: its ``PROTOCOL`` prelude holds ``protocol.py``'s values, its
header documents the KEYS, ARGV and reply the Python side uses, and each module's header names
exactly the functions the module defines (no Redis needed: the text is read)."""

from __future__ import annotations

import re
from importlib import resources

import pytest

from worker.identity.config import IdentityConfig
from worker.store import codec, protocol
from worker.store.keys import TenantKeys
from worker.store.lua_loader import LIBRARY_PREFIX, SCRIPTS, join, load_library, load_script

MODULES = (
    "argv",
    "ordering",
    "union_find",
    "records",
    "properties",
    "reply",
    "rules",
    "buffer",
    "write_back",
)

LuaValue = str | int | list[str] | dict[str, str | int]


def _prelude(script: str) -> dict[str, LuaValue]:
    """The PROTOCOL table of a joined script, read back from its text."""
    block = script[script.index("local PROTOCOL = {\n") :]
    block = block[: block.index("\n}\n")]
    table: dict[str, LuaValue] = {}
    nested: dict[str, str | int] | list[str] | None = None
    for line in block.splitlines()[1:]:
        if match := re.fullmatch(r"  (\w+) = \{", line):
            name, nested = match.group(1), None
            continue
        if line == "  },":
            table[name] = nested if nested is not None else []
            nested = None
            continue
        if match := re.fullmatch(r"    (\w+) = (.+),", line):
            nested = nested if isinstance(nested, dict) else {}
            nested[match.group(1)] = _value(match.group(2))
        elif match := re.fullmatch(r"    '(.*)',", line):
            nested = nested if isinstance(nested, list) else []
            nested.append(match.group(1))
        elif match := re.fullmatch(r"  (\w+) = (.+),", line):
            table[match.group(1)] = _value(match.group(2))
        else:
            raise AssertionError(f"unexpected prelude line {line!r}")
    return table


def _value(text: str) -> str | int:
    return text[1:-1] if text.startswith("'") else int(text)


def test_prelude_holds_protocol() -> None:
    assert _prelude(load_script("resolve_batch.lua")) == {
        "format_version": "9",
        "flag": {
            "process_person": 1,
            "merge_dangerously": 2,
            "merge_with_other": 4,
            "bufferable": 8,
        },
        "max_flags": 15,
        "members_inline": 8,
        "person_namespace": "6f1f2b8e-3c0f-5a8e-9d54-1d1b0c6a7e21",
        "reply_entry_fields": list(protocol.REPLY_ENTRY_FIELDS),
        "released_entry_fields": [
            "event_uuid",
            "reason",
            "ingested_ms",
            "entry",
            "released_ms",
            "entry_id",
        ],
        "code": {"set": "s", "set_once": "o", "unset": "u", "set_then_unset": "x"},
        "warning": {
            "merge_limit": "merge_limit_exceeded",
            "already_identified": "cannot_merge_already_identified",
            "properties_size": "person_properties_size_violation",
            "buffer_overflow": "buffer_overflow",
            "group_type_limit": "group_type_limit",
            "group_properties_size": "group_properties_size_violation",
            "case_collision": "distinct_id_case_collision",
        },
        "command": {"resolve": "resolve", "release": "release"},
        "person_mode": {
            "full": "full",
            "propertyless": "propertyless",
            "force_upgrade": "force_upgrade",
            "buffered": "buffered",
        },
        "ordering": {"timestamp": "timestamp", "arrival": "arrival"},
        "release_reason": {
            "merge": "merge",
            "timeout": "timeout",
            "overflow": "overflow",
            "redelivery": "redelivery",
        },
        "check": {
            "members": "m",
            "in_fold": "f",
            "deleted_person_id": "d",
            "group_types": "t",
            "group_record": "g",
            "group_members": "p",
            "has_queues": "q",
            "queue": "l",
            "waiting_count": "n",
            "buffered_entry": "e",
            "first_release": "o",
            "leased": "k",
            "expired_leases": "x",
            "due_ids": "y",
            "any_fold": "c",
            "any_deleted": "a",
        },
    }
    assert protocol.FORMAT_VERSION == codec.FORMAT_VERSION


def _main_header() -> str:
    script = load_script("resolve_batch.lua")
    assert script.startswith("#!lua\n--[==[\n")
    return script[: script.index("]==]")]


def test_header_documents_the_keys() -> None:
    header = _main_header()
    documented = re.findall(r"^  \[(\d)\] (<p>:\{t\}:\S+)", header, re.MULTILINE)
    keys = TenantKeys("<p>", "t").script_keys("<token>", "<prev>")
    assert [int(n) for n, _ in documented] == list(range(1, len(keys) + 1))
    assert [name for _, name in documented] == keys


def test_header_documents_argv_and_flags() -> None:
    header = _main_header()
    limits = codec.CallLimits.of(IdentityConfig(), 0)
    header_values = codec.encode_args([], limits)
    assert f"a header of {len(header_values)} values" in header
    argv = header[header.index("ARGV:") : header.index("Reply:")]
    numbered = [int(n) for n in re.findall(r"\[(\d+)\] [a-z]", argv)]
    assert numbered == list(range(1, len(header_values) + 1))
    for flag in protocol.OpFlag:
        assert f"{flag.value} {str(flag.name).lower().replace('_', ' ')}" in header


def test_header_documents_the_reply_entry_in_order() -> None:
    header = _main_header()
    reply = header[header.index("Reply:") : header.index("The same text is kept")]
    positions = [reply.index(name) for name in protocol.REPLY_ENTRY_FIELDS]
    assert positions == sorted(positions)


@pytest.mark.parametrize("module", MODULES)
def test_module_header_names_exactly_its_functions(module: str) -> None:
    path = resources.files("worker.store").joinpath("lua", "resolve", f"{module}.lua")
    text = path.read_text(encoding="utf-8")
    assert text.startswith(f"--[[\n{module}.lua: ")
    assert text.rstrip().endswith(f"return {module}")
    header = text[: text.index("]]")]
    defined = set(re.findall(rf"^function {module}\.(\w+)\(", text, re.MULTILINE))
    documented = set(re.findall(rf"^{module}\.(\w+)\(", header, re.MULTILINE))
    assert defined
    assert defined == documented


def test_every_module_is_joined_once() -> None:
    script = load_script("resolve_batch.lua")
    for module in MODULES:
        assert script.count(f"local {module} = (function()") == 1
    for name in SCRIPTS:
        assert not re.search(r"^--- @include", load_script(name), re.MULTILINE)


def test_join_refuses_a_module_included_twice() -> None:
    with pytest.raises(ValueError, match="twice"):
        join('--- @include "resolve/ordering"\n--- @include "resolve/ordering"\n')


def test_the_library_is_the_script_with_its_modules_defined_by_the_first_call() -> None:
    """``load_library``: the main script's text after its includes is the function's body,
    the modules are defined inside ``define`` (a library that loads gets no globals), and
    the library and function are named by the digest of the code."""
    library = load_library("resolve_batch.lua")
    script = load_script("resolve_batch.lua")
    digest = library.name.removeprefix(LIBRARY_PREFIX)
    assert re.fullmatch(r"[0-9a-f]{16}", digest)
    assert library.function == f"resolve_batch_{digest}"
    first, rest = library.code.split("\n", 1)
    assert first == f"#!lua name={library.name}"
    head, _, tail = rest.partition("local function define()\n")
    assert "local " not in head.replace("-- ", "")  # nothing runs at load but the registration
    body = script[script.index("-- A library loaded once (FCALL)") :]
    assert "\n".join(line.strip() for line in body.splitlines()) in "\n".join(
        line.strip() for line in tail.splitlines()
    )
    assert f"function_name = '{library.function}'" in tail
    assert "local record_codec = (function()" in tail.split("return function(KEYS, ARGV)")[0]
    assert load_library("resolve_batch.lua") is library  # built once


def test_a_change_of_the_code_renames_the_library(monkeypatch: pytest.MonkeyPatch) -> None:
    from worker.store import lua_loader

    before = load_library("resolve_batch.lua")
    real = lua_loader.module_source

    def changed(name: str) -> str:
        text = real(name)
        return text + "\n-- changed\n" if name == "resolve_batch" else text

    monkeypatch.setattr(lua_loader, "module_source", changed)
    after = lua_loader.load_library.__wrapped__("resolve_batch.lua")
    assert after.name != before.name
    assert after.function != before.function
