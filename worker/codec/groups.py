"""Group data of the input dialects (contract A9; docs/IDENTITY.md "Groups", docs/FORMATS.md):
what each product's payload says about groups, as ``GroupInput`` values. Nothing here decides a
rule: the identity layer (``worker.identity.groups``) does.

- PostHog: ``properties.$groups`` (``{group_type: group_key}``) attaches the event to those
  groups; a ``$groupidentify`` event names one group (``$group_type``, ``$group_key``) and sets
  its properties (``$group_set``). A key may be a string or a number (as PostHog's SDKs send).
- Segment: a ``group`` call (``groupId``, ``traits``) attaches the call to the group of the
  configured type (``formats.segment_group_type``, default ``company``), remembers it on the
  person and sets the group's properties from ``traits``.
- Ours (native): the optional ``event_groups`` field, a list of ``{group_type, group_key,
  attach (default true), remember (default false), set, set_once, unset}`` (``native.py``; in
  Avro ``set``/``set_once`` are JSON text, as the event's own).
- Schematic (``schematic.py``): an identify carrying ``company: {keys, name, traits}`` becomes
  one ``GroupInput`` of type ``company`` with ``remember=True`` and ``set`` = traits plus
  ``name`` (``schematic_company``), keyed by the company's first key in name order as
  ``company:<name>:<value>`` (contract A11: key name and entity kind included); a track's
  ``company`` is attached only; an ``upsert_company`` is a personless group-only event.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from worker.codec.envelope import InputEvent
from worker.codec.errors import DecodeError
from worker.codec.fields import (
    MAX_PROPERTY_OPERATIONS,
    as_bool,
    check_values,
    dumps_json,
    loads_json,
    opt_object,
    property_updates,
    unset_keys,
)
from worker.identity.model import GroupInput, JsonValue, PropertyUpdates

GROUPIDENTIFY_EVENT: Final = "$groupidentify"
SEGMENT_GROUP_CALL: Final = "group"
"""The Segment call type (and the emitted event name) of a group call."""
DEFAULT_SEGMENT_GROUP_TYPE: Final = "company"


def _key(value: object, field: str) -> str:
    """A group key: a non-empty string, or an integer (as text)."""
    if isinstance(value, str) and value:
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    raise DecodeError(
        "invalid_field", f"{field} must be a non-empty string or an integer", field=field
    )


def posthog_groups(event: str, properties: Mapping[str, JsonValue]) -> tuple[GroupInput, ...]:
    """The groups of a PostHog event: a ``$groupidentify``'s group first (it wins over the same
    type in ``$groups``), then ``$groups`` in their order (entries whose key is neither a string
    nor an integer are ignored, as PostHog does)."""
    out: list[GroupInput] = []
    if event == GROUPIDENTIFY_EVENT:
        group_type = properties.get("$group_type")
        if not isinstance(group_type, str) or not group_type:
            raise DecodeError(
                "missing_field", "$groupidentify needs $group_type", field="properties.$group_type"
            )
        key = _key(properties.get("$group_key"), "properties.$group_key")
        group_set = opt_object(properties.get("$group_set"), "properties.$group_set")
        check_values(group_set, "properties.$group_set")
        out.append(GroupInput(group_type, key, updates=property_updates(group_set, None, ())))
    raw = opt_object(properties.get("$groups"), "properties.$groups") or {}
    for group_type, value in raw.items():
        if (isinstance(value, str) and value) or (
            isinstance(value, int) and not isinstance(value, bool)
        ):
            out.append(GroupInput(group_type, str(value)))
    return tuple(out)


def segment_group(obj: Mapping[str, Any], group_type: str) -> GroupInput:
    """The group of a Segment ``group`` call: attached, remembered, traits set."""
    group_id = _key(obj.get("groupId"), "groupId")
    traits = opt_object(obj.get("traits"), "traits")
    check_values(traits, "traits")
    return GroupInput(
        group_type, group_id, remember=True, updates=property_updates(traits, None, ())
    )


def schematic_company(
    group_type: str, key: str, name: JsonValue, traits: Mapping[str, JsonValue] | None
) -> GroupInput:
    """Schematic's ``company`` on an identify (module docstring): remembered, attached, its
    traits and name set."""
    updates: dict[str, JsonValue] = dict(traits or {})
    if name is not None:
        updates["name"] = name
    return GroupInput(
        group_type,
        key,
        remember=True,
        updates=property_updates(updates, None, ()) if updates else PropertyUpdates(),
    )


# -- ours (native): the optional ``event_groups`` field ----------------------------------------


def _native_group(item: Mapping[str, Any], field: str, *, text_objects: bool) -> GroupInput:
    """One entry of ``event_groups``; in Avro ``set``/``set_once`` are JSON text."""

    def updates_object(name: str) -> dict[str, JsonValue] | None:
        value = item.get(name)
        if text_objects and isinstance(value, str):
            value = loads_json(value, reason="invalid_field", field=f"{field}.{name}")
        obj = opt_object(value, f"{field}.{name}")
        check_values(obj, f"{field}.{name}")
        return obj

    group_type = item.get("group_type")
    if not isinstance(group_type, str) or not group_type:
        raise DecodeError(
            "invalid_field", f"{field}.group_type must be a non-empty string", field=field
        )
    unset = item.get("unset")
    if unset is not None and not isinstance(unset, list):
        raise DecodeError("invalid_field", f"{field}.unset must be a list", field=field)
    return GroupInput(
        group_type,
        _key(item.get("group_key"), f"{field}.group_key"),
        attach=as_bool(item.get("attach"), f"{field}.attach", True),
        remember=as_bool(item.get("remember"), f"{field}.remember", False),
        updates=property_updates(
            updates_object("set"), updates_object("set_once"), unset_keys(unset, f"{field}.unset")
        ),
    )


def native_groups(value: Any, *, text_objects: bool = False) -> tuple[GroupInput, ...]:
    """``event_groups`` of our JSON shape (``text_objects``: of our Avro record)."""
    if value is None:
        return ()
    if not isinstance(value, list):
        raise DecodeError("invalid_field", "event_groups must be a list", field="event_groups")
    out = []
    for n, item in enumerate(value):
        field = f"event_groups[{n}]"
        if not isinstance(item, dict):
            raise DecodeError("invalid_field", f"{field} must be an object", field=field)
        out.append(_native_group(item, field, text_objects=text_objects))
    return tuple(out)


def native_groups_out(groups: tuple[GroupInput, ...], *, text_objects: bool) -> list[Any]:
    """``event_groups`` of ``groups`` for our JSON shape (``text_objects``: our Avro record)."""

    def obj(pairs: tuple[tuple[str, JsonValue], ...]) -> Any:
        if not pairs:
            return None
        return dumps_json(dict(pairs)) if text_objects else dict(pairs)

    return [
        {
            "group_type": g.group_type,
            "group_key": g.key,
            "attach": g.attach,
            "remember": g.remember,
            "set": obj(g.updates.set),
            "set_once": obj(g.updates.set_once),
            "unset": list(g.updates.unset),
        }
        for g in groups
    ]


MAX_GROUPS: Final = 100
"""Groups one event may name."""


def check_group_load(e: InputEvent) -> InputEvent:
    """Refuse (``too_many_properties``) an event naming more than ``MAX_GROUPS`` groups, or
    whose person and group property operations together exceed ``MAX_PROPERTY_OPERATIONS``:
    the Redis script unpacks a buffered event's fields in one call (docs/FORMATS.md)."""
    if not e.groups:  # the common case: the person's operations alone
        count = _operations(e.updates)
    elif len(e.groups) > MAX_GROUPS:
        raise DecodeError(
            "too_many_properties",
            f"{len(e.groups)} groups (at most {MAX_GROUPS})",
            field="groups",
        )
    else:
        count = sum(_operations(u) for u in (e.updates, *(g.updates for g in e.groups)))
    if count > MAX_PROPERTY_OPERATIONS:
        raise DecodeError(
            "too_many_properties",
            f"{count} person and group property operations (at most {MAX_PROPERTY_OPERATIONS})",
            field="groups",
        )
    return e


def _operations(updates: PropertyUpdates) -> int:
    return len(updates.set) + len(updates.set_once) + len(updates.unset)
