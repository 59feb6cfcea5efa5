"""Storing prediction records (shared.prediction_records) as rows of the predictions table.

A request id already stored for its model version and day is skipped, so a batch stored twice adds
nothing. On Postgres a batch goes by COPY into a temporary table and from there, by one INSERT ... ON CONFLICT DO
NOTHING, into the (partitioned) predictions table: COPY alone cannot skip a row; on SQLite it is one
executemany. One bad record must not cost the others their place, and one statement fails whole: each
record is checked first against what the databases refuse (a string with NUL, NaN in JSONB, a value too
long for its column), and rejected alone. Should the statement still fail on data, the batch is stored a
row at a time, each in a savepoint, so that only the rows the database refuses are lost.
"""

from __future__ import annotations

import functools
import logging
import math
import operator
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Iterable

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.monitoring import sensitive, stale
from services.monitoring.tables import NAME_LENGTH, REQUEST_ID_LENGTH, Actual, Prediction
from shared.db import utcnow
from shared.prediction_records import FIELDS, REQUIRED

log = logging.getLogger(__name__)

# Rows per statement and savepoint: bounds the JSON document a statement carries, and the rows retried
# one at a time when a statement is refused.
ROWS_PER_STATEMENT = 1000
JSON_DEPTH = 32
TABLE = Prediction.__table__
ACTUALS = Actual.__table__


class BadRecord(ValueError):
    """A record the store cannot hold; the message says which field and why."""


@dataclass
class Ingested:
    """What became of a batch: rows stored, records whose request id was already stored, and the
    rejected records' positions in the batch with the reason."""

    stored: int = 0
    duplicates: int = 0
    rejected: list[tuple[int, str]] = field(default_factory=list)


def store_predictions(*, session: Session, records: list[Any], hash_key: str) -> Ingested:
    """Store the valid records of a batch once per (model version, request id), their sensitive features
    protected with `hash_key` (sensitive.py); report the rest."""
    outcome = Ingested()
    rows: list[tuple[int, dict[str, Any]]] = []
    received_at = utcnow()
    for index, record in enumerate(records):
        try:
            rows.append((index, prediction_row(record, received_at=received_at)))
        except BadRecord as exc:
            outcome.rejected.append((index, str(exc)))
    sensitive.protect_rows(session, [row for _, row in rows], hash_key=hash_key)
    refused_before = len(outcome.rejected)
    for start in range(0, len(rows), ROWS_PER_STATEMENT):
        chunk = rows[start:start + ROWS_PER_STATEMENT]
        try:
            with session.begin_nested():
                outcome.stored += _insert(session, [row for _, row in chunk])
        except Exception as exc:
            if not _refused_data(exc):
                raise
            log.warning("a batch of %d predictions was refused whole (%s); storing them one at a time",
                        len(chunk), exc.__class__.__name__)
            _insert_one_at_a_time(session, chunk, outcome)
    refused_by_database = len(outcome.rejected) - refused_before
    outcome.duplicates = len(rows) - outcome.stored - refused_by_database
    refused = {index for index, _ in outcome.rejected}
    stale.mark_predictions(session, [row for index, row in rows if index not in refused])
    store_actuals(session, [actual_row(records[index], received_at=received_at) for index, row in rows
                            if index not in refused and records[index].get("actual") is not None])
    return outcome


def actual_row(record: dict[str, Any], *, received_at: datetime) -> dict[str, Any]:
    """The actuals row of a record that carries its outcome (`actual`), checked like a prediction's fields."""
    return {"model_id": _uuid(record, "model_id"), "request_id": _text(record, "request_id", REQUEST_ID_LENGTH),
            "actual": _json("actual", record["actual"]), "recorded_at": received_at}


def store_actuals(session: Session, rows: list[dict[str, Any]]) -> None:
    """Upsert actuals by (model, request id): a later one for the same prediction corrects the earlier;
    the hours of the predictions they join are then stale."""
    # One row per key: a statement may not update a row twice (the last one sent wins).
    rows = list({(row["model_id"], row["request_id"]): row for row in rows}.values())
    if not rows:
        return
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    statement = dialect.insert(ACTUALS)
    session.execute(statement.on_conflict_do_update(
        index_elements=["model_id", "request_id"],
        set_={"actual": statement.excluded.actual, "recorded_at": statement.excluded.recorded_at}), rows)
    stale.mark_actuals(session, rows)


def _insert(session: Session, rows: list[dict[str, Any]]) -> int:
    """Insert `rows`, skipping request ids stored before; the number inserted."""
    if session.get_bind().dialect.name == "postgresql":
        return _copy_insert(session, rows)
    # SQLite: an executemany with RETURNING goes as one multi-row INSERT per page of rows, compiled once
    # ("insertmanyvalues"); the rows returned are those inserted.
    return len(session.execute(_SQLITE_INSERT, rows).all())


# COPY's columns; the values psycopg would adapt with its Python dumpers, one call per value (UUIDs,
# dates, times: four fifths of formatting a batch's rows), made text here, once per distinct value: a
# batch's rows share their model, day and time of receipt. JSON is sent as its text (orjson: the values
# were checked already); the rest go to psycopg's C dumpers as they are.
_COLUMNS = tuple(column.name for column in TABLE.columns)
_in_copy_order = operator.itemgetter(*_COLUMNS)
_AS_TEXT = tuple((position, operator.attrgetter("hex") if isinstance(column.type, sa.Uuid)
                  else operator.methodcaller("isoformat"))
                 for position, column in enumerate(TABLE.columns)
                 if isinstance(column.type, (sa.Uuid, sa.Date, sa.DateTime)))
_AS_JSON = tuple(position for position, column in enumerate(TABLE.columns) if isinstance(column.type, sa.JSON))


def _copy_values(row: dict[str, Any], texts: dict[Any, str]) -> list[Any]:
    """The row's values in _COLUMNS' order, as COPY's text format takes them; `texts` is what was made text
    so far."""
    values = list(_in_copy_order(row))
    for position, text in _AS_TEXT:
        value = values[position]
        if value is not None:
            made = texts.get(value)
            if made is None:
                made = texts[value] = text(value)
            values[position] = made
    for position in _AS_JSON:
        if values[position] is not None:
            values[position] = orjson.dumps(values[position]).decode()
    return values


# A temporary table per connection, emptied by each transaction's end (and before each batch, as one
# transaction may store several): what COPY fills and the INSERT reads.
_INCOMING = "predictions_incoming"
_CREATE_INCOMING = (f"CREATE TEMPORARY TABLE IF NOT EXISTS {_INCOMING} "
                    f"(LIKE {TABLE.name} INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
_COPY = f"COPY {_INCOMING} ({', '.join(_COLUMNS)}) FROM STDIN"
_MOVE = (f"INSERT INTO {TABLE.name} ({', '.join(_COLUMNS)}) SELECT {', '.join(_COLUMNS)} FROM {_INCOMING} "
         "ON CONFLICT (model_id, request_id, version, day) DO NOTHING")


def _copy_insert(session: Session, rows: list[dict[str, Any]]) -> int:
    cursor = session.connection().connection.dbapi_connection.cursor()
    try:
        cursor.execute(_CREATE_INCOMING)
        cursor.execute(f"TRUNCATE {_INCOMING}")
        with cursor.copy(_COPY) as copy:
            texts: dict[Any, str] = {}
            for row in rows:
                copy.write_row(_copy_values(row, texts))
        cursor.execute(_MOVE)
        return cursor.rowcount
    finally:
        cursor.close()


_SQLITE_INSERT = sqlite.insert(TABLE).on_conflict_do_nothing(index_elements=["model_id", "request_id", "version", "day"]) \
    .returning(TABLE.c.id)


def _insert_one_at_a_time(session: Session, rows: list[tuple[int, dict[str, Any]]], outcome: Ingested) -> None:
    for index, row in rows:
        try:
            with session.begin_nested():
                outcome.stored += _insert(session, [row])
        except Exception as exc:
            if not _refused_data(exc):
                raise
            outcome.rejected.append((index, f"the database refused it: {getattr(exc, 'orig', None) or exc}"))


def _refused_data(exc: Exception) -> bool:
    """Whether the values were refused: by the database, or on their way to it (a bind step or the driver
    failing to encode one), rather than the connection or a lock failing (OperationalError: the task's
    retry is for those) or the SQL being wrong (a bug)."""
    if isinstance(exc, sa.exc.DBAPIError):
        return isinstance(exc, (sa.exc.DataError, sa.exc.IntegrityError))
    return isinstance(exc, (sa.exc.StatementError, ValueError, TypeError))


def json_object(value: Any, fields: tuple[str, ...], what: str = "a record") -> dict[str, Any]:
    """`value` if it is a JSON object with none but `fields`; BadRecord otherwise."""
    if not isinstance(value, dict):
        raise BadRecord(f"{what} is a JSON object, not {type(value).__name__}")
    if not value.keys() <= _field_set(fields):  # once per record of a batch: no set made each time
        unknown = set(value) - set(fields)
        raise BadRecord(f"unknown fields: {', '.join(sorted(map(str, unknown)))}")
    return value


_field_set = functools.lru_cache(maxsize=None)(frozenset)


def object_field(record: dict[str, Any], name: str) -> dict[str, Any] | None:
    """The record's `name`, which is absent or an object; BadRecord otherwise."""
    value = record.get(name)
    if value is not None and not isinstance(value, dict):
        raise BadRecord(f"{name}: an object")
    return value


def prediction_row(record: Any, *, received_at: datetime) -> dict[str, Any]:
    """The table row of `record`, or BadRecord naming what is wrong with it."""
    json_object(record, FIELDS)
    missing = [name for name in REQUIRED if record.get(name) is None]
    if missing:
        raise BadRecord(f"missing: {', '.join(missing)}")
    if record.get("prediction") is None and not record.get("error"):
        raise BadRecord("a record has a prediction, or an error when the prediction failed")
    version = record["version"]
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version < 2**31:
        raise BadRecord(f"version: a version number, not {version!r}")
    latency = record.get("latency_ms")
    if latency is not None and (not isinstance(latency, (int, float)) or isinstance(latency, bool)
                                or not math.isfinite(latency) or latency < 0):
        raise BadRecord(f"latency_ms: a finite number of milliseconds, not {latency!r}")
    features = record.get("features")
    if features is not None and not isinstance(features, dict):
        raise BadRecord("features: an object of feature names and values")
    context = object_field(record, "context")
    predicted_at = timestamp("predicted_at", record["predicted_at"])
    _json("actual", record.get("actual"))  # stored by store_predictions, in actuals
    return {
        "id": uuid.uuid4(),
        "model_id": _uuid(record, "model_id"),
        "version": version,
        "endpoint": _text(record, "endpoint", NAME_LENGTH),
        "deployment_id": _uuid(record, "deployment_id"),
        "request_id": _text(record, "request_id", REQUEST_ID_LENGTH),
        "unit_id": _text(record, "unit_id", NAME_LENGTH),
        # As the monitoring issue asks: a feature's NaN or infinity is a missing value, not a bad record.
        "features": _features(features),
        "prediction": _json("prediction", record.get("prediction")),
        "probabilities": _json("probabilities", record.get("probabilities")),
        "latency_ms": None if latency is None else float(latency),
        "error": _text(record, "error", None),
        "context": _json("context", context),
        "predicted_at": predicted_at,
        "day": predicted_at.date(),
        "received_at": received_at,
    }


def _uuid(record: dict, name: str) -> uuid.UUID | None:
    value = record.get(name)
    if value is None:
        return None
    try:
        # A batch names few models and deployments, each in every record: parsed once each.
        return _parsed_uuid(value) if type(value) is str else uuid.UUID(value)
    except (TypeError, ValueError, AttributeError):
        raise BadRecord(f"{name}: a UUID, not {value!r}") from None


_parsed_uuid = functools.lru_cache(maxsize=1024)(uuid.UUID)


def _text(record: dict, name: str, length: int | None) -> str | None:
    value = record.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or (name != "error" and not value):
        raise BadRecord(f"{name}: a non-empty string, not {value!r}")
    _check_string(name, value)
    if length is not None and len(value) > length:
        raise BadRecord(f"{name}: longer than {length} characters")
    return value


def timestamp(name: str, value: Any) -> datetime:
    """`value`, an ISO 8601 time with its zone, in UTC; BadRecord naming the field `name` otherwise."""
    try:
        moment = datetime.fromisoformat(value) if isinstance(value, str) else None
    except ValueError:
        moment = None
    if moment is None or moment.tzinfo is None:
        raise BadRecord(f"{name}: an ISO 8601 time with its zone, not {value!r}")
    # In UTC: SQLite keeps a time's wall clock and drops its zone.
    return moment.astimezone(timezone.utc)


def _features(features: dict[str, Any] | None) -> dict[str, Any] | None:
    """_json("features", features, missing_for_nan=True), quicker for the usual flat object of numbers and
    strings: every record of a batch has one, and the general walk was half the time of storing them."""
    if features is None:
        return None
    if _finite_numbers(features.values()):
        checked = dict(features)
        _check_keys("features", checked)
        return checked
    checked = {}
    for key, value in features.items():
        kind = type(value)
        if kind is float:
            checked[key] = value if math.isfinite(value) else None
        elif kind is int or kind is bool or value is None:
            checked[key] = value
        elif kind is str:
            _check_string("features", value)
            checked[key] = value
        else:
            checked[key] = _json("features", value, missing_for_nan=True, depth=1)
    _check_keys("features", checked)
    return checked


def _check_keys(name: str, value: dict) -> None:
    try:
        keys = "".join(value)  # all at once: a TypeError if one is not a string
    except TypeError:
        raise BadRecord(f"{name}: object keys are strings") from None
    _check_string(name, keys)


def _json(name: str, value: Any, *, missing_for_nan: bool = False, depth: int = 0) -> Any:
    """`value` as JSONB takes it: objects with string keys, finite numbers, strings without NUL."""
    if depth > JSON_DEPTH:
        raise BadRecord(f"{name}: nested deeper than {JSON_DEPTH}")
    if value is None or isinstance(value, (bool, int)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):
            return value
        if missing_for_nan:
            return None
        raise BadRecord(f"{name}: {value} is not a number JSON can hold")
    if isinstance(value, str):
        _check_string(name, value)
        return value
    if isinstance(value, list):
        if depth < JSON_DEPTH and _finite_numbers(value):
            return list(value)
        return [_json(name, item, missing_for_nan=missing_for_nan, depth=depth + 1) for item in value]
    if isinstance(value, dict):
        _check_keys(name, value)
        if depth < JSON_DEPTH and _finite_numbers(value.values()):
            return dict(value)
        return {key: _json(name, item, missing_for_nan=missing_for_nan, depth=depth + 1)
                for key, item in value.items()}
    raise BadRecord(f"{name}: {type(value).__name__} is not JSON")


_NUMBERS = frozenset((int, float))


def _finite_numbers(values: Iterable[Any]) -> bool:
    """Whether `values` are all finite ints or floats (not bools), as most features and probabilities are:
    checked at C speed, where a walk value by value was most of a record's time. One NaN or infinity makes
    the sum NaN or infinite; so may a sum of finite floats past the largest, which takes the walk instead."""
    if not _NUMBERS.issuperset(map(type, values)):
        return False
    try:
        return math.isfinite(sum(values))
    except OverflowError:  # an int too large for a float
        return False


def _check_string(name: str, value: str) -> None:
    # Postgres stores no NUL in text or JSONB, and the driver cannot encode a lone surrogate ("\\ud800",
    # which JSON can carry) as UTF-8: either would fail the batch's one statement.
    if "\x00" in value:
        raise BadRecord(f"{name}: contains a NUL character")
    if value.isascii():
        return
    try:
        value.encode()
    except UnicodeEncodeError:
        raise BadRecord(f"{name}: not valid Unicode (a lone surrogate)") from None
