"""Deletion requests (contract A10): parsing, the audit record, the epoch person ids."""

from __future__ import annotations

import json
import uuid

import pytest

from worker.cli import build_parser
from worker.identity.deletion import Deletion
from worker.identity.ids import PERSON_NAMESPACE, person_id_for
from worker.ops.deletion import BadDeletionRequest, DeletionRequest, audit_record


def test_a_request_by_distinct_id_or_by_person_id() -> None:
    by_id = DeletionRequest.parse(b'{"tenant": "t", "distinct_id": "d", "requested_by": "me"}')
    assert by_id == DeletionRequest("t", "d", None, "me")
    by_person = DeletionRequest.parse(
        json.dumps({"tenant": "t", "person_id": "p", "requested_by": "me"}).encode()
    )
    assert by_person == DeletionRequest("t", None, "p", "me")


@pytest.mark.parametrize(
    ("value", "why"),
    [
        (b"{not json", "not JSON"),
        (None, "not JSON"),
        (b"[1]", "not a JSON object"),
        (b'{"distinct_id": "d", "requested_by": "me"}', "tenant"),
        (b'{"tenant": "t", "distinct_id": "d"}', "requested_by"),
        (b'{"tenant": "t", "requested_by": "me"}', "exactly one"),
        (b'{"tenant": "t", "distinct_id": "d", "person_id": "p", "requested_by": "me"}', "one"),
        (b'{"tenant": "t", "distinct_id": 5, "requested_by": "me"}', "distinct_id"),
        (b'{"tenant": "t", "person_id": "", "requested_by": "me"}', "person_id"),
    ],
)
def test_a_bad_request_is_refused(value: bytes | None, why: str) -> None:
    with pytest.raises(BadDeletionRequest, match=why) as refused:
        DeletionRequest.parse(value)
    assert refused.value.reason == "bad_deletion_request"


def test_the_audit_record_names_no_property_and_no_other_id() -> None:
    request = DeletionRequest("t", "d", None, "ops")
    deletion = Deletion("t", "p-1", ("d", "secret-other-id"), 2)
    record = audit_record(request, deletion, 1234)
    assert record == {
        "tenant": "t",
        "status": "deleted",
        "requested_distinct_id": "d",
        "requested_person_id": None,
        "person_id": "p-1",
        "distinct_id_count": 2,
        "buffered_events_dropped": 2,
        "requested_by": "ops",
        "deleted_at_ms": 1234,
    }
    assert "secret-other-id" not in json.dumps(record)
    missing = audit_record(request, None, 1234)
    assert missing["status"] == "not_found"
    assert missing["person_id"] is None
    assert missing["distinct_id_count"] == 0


def test_person_ids_after_a_deletion_use_the_epoch() -> None:
    assert person_id_for("t", "d") == str(uuid.uuid5(PERSON_NAMESPACE, "t:d"))
    assert person_id_for("t", "d", 0) == person_id_for("t", "d")
    assert person_id_for("t", "d", 1) == str(uuid.uuid5(PERSON_NAMESPACE, "t:d:1"))
    assert len({person_id_for("t", "d", n) for n in range(4)}) == 4


def test_delete_help_explains_the_command(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as shown:
        build_parser().parse_args(["delete", "--help"])
    assert shown.value.code == 0
    text = capsys.readouterr().out
    for needle in ("--distinct-id", "--person", "--requested-by", "tombstones", "exit codes"):
        assert needle in text
