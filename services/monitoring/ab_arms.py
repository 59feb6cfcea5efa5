"""The SQL of an A/B test's arms: their predictions' sums per hour, and their new units, over time ranges.

An arm is the predictions of its (model, version) on the test's endpoint within the test's window: from B's
first prediction there (until then A answers every unit, which would read as a sample ratio mismatch) to the
test's end. The window's hours' sums are kept (ab_hours.py), so a look reads only the ranges of hours that
changed: each arm's rows apart (a UNION ALL: each side planned on its own model's rows), in one pass over the
predictions joined to their actuals (`hourly_sums`), grouped by hour: how many, how many failed, the latencies'
count, sum and sum of squares; a classifier's (predicted, actual) label pairs and their counts (the groups of the
query), or a regressor's count of number pairs and its errors' sums of |e|, e^2 and e^4. Units (unit_id, else
request_id: what assignment hashes) do not add up over hours: `add_units` stores the ranges' units that are new
to the arm and counts them. The metrics recorded for the test's arms are one query (`recorded_sums`).

The JSON values become labels and numbers in SQL as scores.py reads them (`{"prediction": v}` stands for v; a
number strictly between 0 and 1 is a binary model's probability of 1, labelled 1 from 0.5), so that the database
returns a few groups, not a row per prediction; Python then makes them labels as tally.py does (1.0 is the
label 1). The predictions are read by model and time (ix_predictions_model_id_predicted_at), and on Postgres only
the ranges' days' partitions (the `day` condition): never the other tests' or models' rows. A million
predictions read at once take ~4 s of Postgres on the development machine (2 cores, shared with other work):
~0.4 s per 500,000 to read them, as much again to join their actuals, ~1 s to make their labels, ~0.5 s for
their units.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.orm import Session

from services.monitoring.scores import NUMERIC_TYPES, as_label
from services.monitoring.tables import ABTestAnalysis, ABTestUnit, Actual, Prediction, RecordedMetric
from services.monitoring.tally import label_key

ARMS = ("A", "B")
# Postgres's memory for the aggregates' hash tables (a million units' ids take ~60 MB): the default sent them to
# disk. No parallel plan: its workers would take the cores the pool's other process and Postgres need.
WORK_MEM = "96MB"
# Half-open [start, end) time ranges.
Ranges = list[tuple[datetime, datetime]]


def utc(moment: datetime) -> datetime:
    """An aware UTC time: SQLite hands back UTC wall clocks without their zone."""
    return moment.replace(tzinfo=timezone.utc) if moment.tzinfo is None else moment.astimezone(timezone.utc)


@dataclass
class ArmSums:
    """One arm's sums over some of its predictions: they add up."""

    predictions: int = 0
    errors: int = 0
    latencies: int = 0
    latency_sum: float = 0.0
    latency_sum_sq: float = 0.0
    label_pairs: Counter = field(default_factory=Counter)  # (predicted, actual) label -> count; a classifier's
    scored: int = 0  # a regressor's predictions and actuals that are both numbers
    absolute_error: float = 0.0
    squared_error: float = 0.0
    squared_error_sq: float = 0.0  # the sum of e^4: the variance of e^2, which rmse's test needs
    units: int = 0  # distinct: set by the caller, never added

    def add(self, other: ArmSums) -> ArmSums:
        """These sums with `other`'s added (in place)."""
        for item in fields(self):
            if item.name == "label_pairs":
                self.label_pairs.update(other.label_pairs)
            elif item.name != "units":
                setattr(self, item.name, getattr(self, item.name) + getattr(other, item.name))
        return self

    def columns(self) -> dict[str, Any]:
        """As tables.ABTestHour's columns."""
        row = {item.name: getattr(self, item.name) for item in fields(self) if item.name != "units"}
        row["label_pairs"] = [[p, a, n] for (p, a), n in self.label_pairs.items()] or None
        return row

    @classmethod
    def from_columns(cls, row: Any) -> ArmSums:
        values = {item.name: getattr(row, item.name) for item in fields(cls) if item.name != "units"}
        values["label_pairs"] = Counter({(p, a): n for p, a, n in values["label_pairs"] or ()})
        return cls(**values)


def _arm_rows(test: ABTestAnalysis, arm: str, ranges: Ranges, *columns: Any) -> sa.Select:
    model_id, version = (test.model_a_id, test.version_a) if arm == "A" else (test.model_b_id, test.version_b)
    return sa.select(*columns).where(
        Prediction.model_id == model_id, Prediction.version == version, Prediction.endpoint == test.endpoint,
        # The days: Postgres reads their partitions alone.
        Prediction.day >= utc(min(start for start, _ in ranges)).date(),
        Prediction.day <= utc(max(end for _, end in ranges)).date(),
        sa.or_(*(sa.and_(Prediction.predicted_at >= start, Prediction.predicted_at < end) for start, end in ranges)))


def first_traffic(session: Session, test: ABTestAnalysis, *, until: datetime) -> datetime | None:
    """When B made its first prediction on the endpoint since the test started; None while it has made none."""
    found = session.scalar(_arm_rows(test, "B", [(utc(test.started_at), until)], sa.func.min(Prediction.predicted_at)))
    return None if found is None else utc(found)


def tune(session: Session) -> None:
    """Postgres's settings for this transaction's aggregates (WORK_MEM's comment); JIT costs 0.15-0.3 s per query."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(sa.select(sa.func.set_config("work_mem", WORK_MEM, True),
                                  sa.func.set_config("max_parallel_workers_per_gather", "0", True),
                                  sa.func.set_config("jit", "off", True)))


def hourly_sums(session: Session, test: ABTestAnalysis, ranges: Ranges) -> dict[tuple[str, datetime], ArmSums]:
    """Each arm's sums per UTC hour of the ranges, for the hours that hold any of its predictions."""
    postgres = session.get_bind().dialect.name == "postgresql"
    scored = sa.and_(Prediction.error.is_(None), Actual.actual.is_not(None))
    if test.model_type in NUMERIC_TYPES:
        residual = (_number(_value(Actual.actual, "actual", postgres), postgres)
                    - _number(_value(Prediction.prediction, "prediction", postgres), postgres))
        columns = (sa.case((scored, residual)).label("residual"),)
    elif test.model_type == "classification":
        columns = (sa.case((scored, _label_text(_value(Prediction.prediction, "prediction", postgres), postgres)))
                   .label("predicted"),
                   sa.case((scored, sa.cast(_value(Actual.actual, "actual", postgres), sa.Text))).label("actual"))
    else:
        columns = ()
    hour = (sa.func.date_trunc("hour", sa.func.timezone("UTC", Prediction.predicted_at)) if postgres
            else sa.func.strftime("%Y-%m-%d %H:00:00", Prediction.predicted_at))
    # A shadow test's B answered copies of A's requests, whose outcomes users record under model A.
    outcome_of = (Actual.model_id == test.model_a_id) if test.type == "shadow" else \
        (Actual.model_id == Prediction.model_id)
    rows = sa.union_all(*(
        _arm_rows(test, arm, ranges, sa.literal(arm).label("arm"), hour.label("hour"), Prediction.error,
                  Prediction.latency_ms, *columns).outerjoin(
            Actual, sa.and_(outcome_of, Actual.request_id == Prediction.request_id))
        for arm in ARMS)).subquery()
    latency = rows.c.latency_ms
    labels = [rows.c.predicted, rows.c.actual] if "predicted" in rows.c else []
    sums = [sa.func.count(), sa.func.count(rows.c.error), sa.func.count(latency), sa.func.sum(latency),
            sa.func.sum(latency * latency)]
    if "residual" in rows.c:
        residual = rows.c.residual
        sums += [sa.func.count(residual), sa.func.sum(sa.func.abs(residual)), sa.func.sum(residual * residual),
                 sa.func.sum(residual * residual * residual * residual)]
    found: dict[tuple[str, datetime], ArmSums] = {}
    groups = (rows.c.arm, rows.c.hour, *labels)
    for row in session.execute(sa.select(*groups, *sums).group_by(*groups)):
        key = (row[0], _utc_hour(row[1]))
        pair, figures = row[2:2 + len(labels)], row[2 + len(labels):]
        predictions, errors, latencies, total, squares, *residuals = figures
        sums_of = found.setdefault(key, ArmSums())
        sums_of.predictions += predictions
        sums_of.errors += errors
        sums_of.latencies += latencies
        sums_of.latency_sum += float(total or 0.0)
        sums_of.latency_sum_sq += float(squares or 0.0)
        if pair and pair[0] is not None:  # the group of the hour's predictions scored with these labels
            sums_of.label_pairs[label_key(as_label(orjson.loads(pair[0]))),
                                label_key(as_label(orjson.loads(pair[1])))] += predictions
        if residuals:
            sums_of.scored = residuals[0]
            sums_of.absolute_error, sums_of.squared_error, sums_of.squared_error_sq = (
                float(value or 0.0) for value in residuals[1:])
    return found


def _utc_hour(value: datetime | str) -> datetime:
    """Postgres's date_trunc of the UTC time, SQLite's text of it, as an aware datetime."""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.replace(tzinfo=timezone.utc)


def add_units(session: Session, test: ABTestAnalysis, ranges: Ranges) -> dict[str, int]:
    """Store the ranges' units each arm had not seen yet; how many per arm."""
    dialect = postgresql if session.get_bind().dialect.name == "postgresql" else sqlite
    unit = sa.func.coalesce(Prediction.unit_id, Prediction.request_id)
    added = {}
    for arm in ARMS:
        seen = _arm_rows(test, arm, ranges, sa.literal(test.ab_test_id, sa.Uuid), sa.literal(arm), unit).distinct()
        statement = dialect.insert(ABTestUnit).from_select(["ab_test_id", "arm", "unit"], seen)
        # preserve_rowcount: SQLAlchemy keeps an INSERT's rowcount only when asked.
        added[arm] = session.execute(statement.on_conflict_do_nothing().execution_options(preserve_rowcount=True)).rowcount
    return added


def _value(column: Any, key: str, postgres: bool) -> Any:
    """scores.value_of in SQL: the JSON value's `key` when it is an object holding one, else the value
    (`->` answers NULL for an object without the key and for anything not an object)."""
    if postgres:
        return sa.func.coalesce(column.op("->")(key), column)
    return sa.func.coalesce(sa.type_coerce(column, sa.Text).op("->")(f"$.{key}"), column)


def _label_text(value: Any, postgres: bool) -> Any:
    """scores.label_of in SQL, as JSON text: a number strictly between 0 and 1 is 1 from 0.5 up, else 0. Nested
    CASEs: a value is cast to a number only once it is known to be one."""
    number = _number(value, postgres)
    as_text = sa.cast(value, sa.Text)
    probability = sa.case((number >= 0.5, "1"), else_="0")
    return sa.case((_kind(value, postgres).not_in(_NUMBER_KINDS[postgres]), as_text),
                   (sa.and_(number > 0, number < 1), probability), else_=as_text)


_NUMBER_KINDS = {True: ("number",), False: ("integer", "real")}


def _kind(value: Any, postgres: bool) -> Any:
    return sa.func.jsonb_typeof(value) if postgres else sa.func.json_type(value)


def _number(value: Any, postgres: bool) -> Any:
    """The JSON value as a float when it is a number (not a bool, as scores.number), else NULL."""
    number = sa.cast(value, sa.Float) if postgres else sa.func.json_extract(value, "$")
    return sa.case((_kind(value, postgres).in_(_NUMBER_KINDS[postgres]), number), else_=sa.null())


def recorded_sums(session: Session, test_id: uuid.UUID, names: list[str]) -> dict[tuple[str, str], tuple]:
    """(name, arm) -> (count, sum, sum of squares) of the values recorded for the test's arms "A" and "B"."""
    if not names:
        return {}
    value = RecordedMetric.value
    query = sa.select(RecordedMetric.name, RecordedMetric.arm, sa.func.count(), sa.func.sum(value),
                      sa.func.sum(value * value)).where(
        RecordedMetric.ab_test_id == test_id, RecordedMetric.name.in_(names), RecordedMetric.arm.in_(ARMS),
    ).group_by(RecordedMetric.name, RecordedMetric.arm)
    return {(name, arm): (count, float(total), float(squares))
            for name, arm, count, total, squares in session.execute(query)}
