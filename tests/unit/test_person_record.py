"""``person_record``: the JSON view ``read_person.lua`` gives of a person record."""

from __future__ import annotations

import json
from typing import Any

import pytest

from worker.identity.model import PropertyOp, PropertyState
from worker.store import codec, person_record


def _view(**overrides: Any) -> str:
    fields: dict[str, Any] = {
        "root": "a",
        "person_id": "p",
        "created_at": -5,
        "last_seen": 12,
        "identified": True,
        "version": 3,
        "ids": ["a", "b"],
        "meta": {},
        "vals": {},
    }
    return json.dumps(fields | overrides)


def test_a_view_is_its_person() -> None:
    ord_set, ord_unset = codec.order_key(10, "e1"), codec.order_key(12, "e2")
    meta = {"a": "s" + ord_set, "b": "u" + ord_unset, "c|é": "o" + ord_set}
    vals = {"a": '"x|"', "c|é": "[1]"}
    root, person = person_record.root_and_person(_view(meta=meta, vals=vals).encode())
    assert root == "a"
    assert person.person_id == "p"
    assert (person.created_at_ms, person.last_seen_ms, person.version) == (-5, 12, 3)
    assert person.is_identified
    assert person.distinct_ids == frozenset({"a", "b"})
    assert person.properties == {
        "a": PropertyState(PropertyOp.SET, "x|", 10, "e1"),
        "b": PropertyState(PropertyOp.UNSET, None, 12, "e2"),
        "c|é": PropertyState(PropertyOp.SET_ONCE, [1], 10, "e1"),
    }
    assert person.visible_properties == {"a": "x|", "c|é": [1]}


def test_empty_tables_may_be_arrays() -> None:  # cjson writes an empty table as {} or []
    person = person_record.person_of(_view(root="r|x", ids=["r|x"], meta=[], vals=[]))
    assert person.distinct_ids == frozenset({"r|x"})
    assert person.properties == {}


@pytest.mark.parametrize(
    "view",
    [
        _view(ids=[]),
        _view(ids=["b"]),  # the root is not among its ids
        _view(ids=["a", "a"]),
        _view(vals={"a": "1"}),  # a text without a state
        _view(version="3"),
        _view(identified=1),
        "not json",
    ],
)
def test_a_malformed_view_is_refused(view: str) -> None:
    with pytest.raises((ValueError, KeyError)):
        person_record.person_of(view)
