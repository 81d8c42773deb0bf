"""Group data of the input dialects (contract A9; docs/IDENTITY.md "Groups", docs/FORMATS.md):
what each product's payload says about groups, as ``GroupInput`` values. Nothing here decides a
rule: the identity layer (``worker.identity.groups``) does.

- PostHog: ``properties.$groups`` (``{group_type: group_key}``) attaches the event to those
  groups; a ``$groupidentify`` event names one group (``$group_type``, ``$group_key``) and sets
  its properties (``$group_set``). A key may be a string or a number (as PostHog's SDKs send).
- Segment: a ``group`` call (``groupId``, ``traits``) attaches the call to the group of the
  configured type (``formats.segment_group_type``, default ``company``), remembers it on the
  person and sets the group's properties from ``traits``.
- Ours (native): the optional ``groups`` field, a list of ``{group_type, group_key, remember,
  set, set_once, unset}`` (``native.py``).
- Schematic (hook): an identify carrying ``company: {keys, name, traits}`` becomes one
  ``GroupInput`` per company with ``remember=True`` and ``set`` = traits plus ``name``, keyed by
  the company's key distinct id (contract A11: key name and entity kind included). Use
  ``schematic_company`` from the Schematic dialect.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from worker.codec.errors import DecodeError
from worker.codec.fields import check_values, opt_object, property_updates
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
        if (
            isinstance(value, str)
            and value
            or isinstance(value, int)
            and not isinstance(value, bool)
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
    """The hook for Schematic's ``company`` on an identify (module docstring): remembered,
    attached, its traits and name set."""
    updates: dict[str, JsonValue] = dict(traits or {})
    if name is not None:
        updates["name"] = name
    return GroupInput(
        group_type,
        key,
        remember=True,
        updates=property_updates(updates, None, ()) if updates else PropertyUpdates(),
    )
