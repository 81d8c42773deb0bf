"""Deterministic ids: ``uuid5_text`` writes exactly what ``str(uuid.uuid5(...))`` writes."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from worker.codec.fields import EVENT_UUID_NAMESPACE, derive_uuid
from worker.identity.ids import PERSON_NAMESPACE, person_id_for, uuid5_text


@given(namespace=st.binary(min_size=16, max_size=16), name=st.text())
def test_uuid5_text_is_the_standard_uuid5(namespace: bytes, name: str) -> None:
    assert uuid5_text(namespace, name) == str(uuid.uuid5(uuid.UUID(bytes=namespace), name))


@given(tenant=st.text(), distinct_id=st.text(), epoch=st.integers(min_value=0))
def test_person_and_event_ids_are_the_standard_uuid5(
    tenant: str, distinct_id: str, epoch: int
) -> None:
    name = f"{tenant}:{distinct_id}:{epoch}" if epoch else f"{tenant}:{distinct_id}"
    assert person_id_for(tenant, distinct_id, epoch) == str(uuid.uuid5(PERSON_NAMESPACE, name))
    assert derive_uuid(name) == str(uuid.uuid5(EVENT_UUID_NAMESPACE, name))


def test_a_lone_surrogate_is_refused_as_uuid5_refuses_it() -> None:
    with pytest.raises(UnicodeEncodeError):
        uuid.uuid5(PERSON_NAMESPACE, "t:\ud800")
    with pytest.raises(UnicodeEncodeError):
        person_id_for("t", "\ud800")
