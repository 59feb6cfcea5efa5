"""Prediction records travel as plain-json messages (orjson): what arrives is what was sent (NaN aside:
serving sends none)."""

from __future__ import annotations

import pytest
from kombu.exceptions import EncodeError
from kombu.serialization import dumps, loads, prepare_accept_content

from shared.tasks import ACCEPTED_CONTENT, PLAIN_JSON


def _round_trip(value):
    content_type, encoding, body = dumps(value, serializer=PLAIN_JSON)
    return loads(body, content_type, encoding, accept=prepare_accept_content(ACCEPTED_CONTENT))


def test_records_arrive_exactly_as_sent():
    records = [{"request_id": "r-0", "features": {"a": 0.0012345678901234567, "b": 2 ** 63 - 1, "c": "café", "d": None},
                "probabilities": {"0": 0.25, "1": 0.75}, "prediction": True, "latency_ms": 1.5}]
    assert _round_trip([records]) == [records]


def test_what_orjson_would_not_write_or_read_arrives_as_pythons_json_reads_it():
    odd = {"nul": "a\x00b", "surrogate": "lone-\ud800", "nested": [[{"k": "\u00e9"}]]}
    assert _round_trip(odd) == odd


def test_an_integer_past_64_bits_arrives_exact():
    assert _round_trip({"category": 2 ** 70, "negative": -(2 ** 64)}) == {"category": 2 ** 70, "negative": -(2 ** 64)}


def test_what_json_cannot_carry_is_an_encode_error():
    with pytest.raises(EncodeError):
        dumps({"features": {"a": b"bytes"}}, serializer=PLAIN_JSON)
