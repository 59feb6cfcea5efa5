"""The cursor format and sort parsing of the one pagination scheme (no database needed)."""

from __future__ import annotations

import uuid
from datetime import datetime, timezone

import pytest

from services.identity.tables import User
from shared.errors import ValidationFailed
from shared.pagination import Sorting, decode_cursor, encode_cursor

SORTING = Sorting(columns={"username": User.username, "created_at": User.created_at}, tiebreaker=User.id,
                  default="username")


def test_a_cursor_round_trips_a_timestamp_and_a_uuid():
    at, row_id = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=timezone.utc), uuid.uuid4()
    cursor = encode_cursor("-created_at", at, row_id)
    assert decode_cursor(cursor, "-created_at", User.created_at, User.id) == (at, row_id)
    assert "=" not in cursor and "+" not in cursor and "/" not in cursor


@pytest.mark.parametrize("cursor", ["", "!!!", "bm90IGpzb24", "WzEsMl0", "eyJzIjoidXNlcm5hbWUifQ"],
                         ids=["empty", "not-base64", "not-json", "not-an-object", "missing-keys"])
def test_a_cursor_this_api_did_not_issue_is_refused_naming_the_cursor(cursor):
    with pytest.raises(ValidationFailed) as caught:
        decode_cursor(cursor, "username", User.username, User.id)
    assert "cursor" in caught.value.errors


def test_a_cursor_made_for_another_sort_is_refused():
    cursor = encode_cursor("username", "ann", uuid.uuid4())
    with pytest.raises(ValidationFailed, match="made for sort 'username'"):
        decode_cursor(cursor, "-username", User.username, User.id)


def test_a_cursor_whose_values_do_not_fit_the_columns_is_refused():
    cursor = encode_cursor("created_at", "yesterday", "not-a-uuid")
    with pytest.raises(ValidationFailed, match="position cannot be read"):
        decode_cursor(cursor, "created_at", User.created_at, User.id)


def test_sort_accepts_known_fields_either_way_and_defaults():
    assert SORTING.resolve(None)[0] == "username"
    assert SORTING.resolve("-created_at")[1:] == (User.created_at, True)
    with pytest.raises(ValidationFailed) as caught:
        SORTING.resolve("password_hash")
    assert "-created_at" in caught.value.errors["sort"][0]
