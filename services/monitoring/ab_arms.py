"""Each arm of an A/B test as sums the database adds up: what ab_analysis.py tests, read in a few queries.

An arm is the predictions of its (model, version) on the test's endpoint within the test's window: from B's
first prediction there (until then A answers every unit, which would read as a sample ratio mismatch) to the
test's end. Two queries read both arms, each arm's rows apart (a UNION ALL: each side planned on its own model's
rows): one pass over the predictions joined to their actuals (`_pass`) sums what every metric needs: how many,
how many failed, the latencies' count, sum and sum of squares; a classifier's (predicted, actual) label pairs
and their counts (the groups of the query), or a regressor's count of number pairs and its errors' sums of |e|,
e^2 and e^4; and one counts each arm's distinct units (unit_id, else request_id: what assignment hashes). A
third reads the metrics recorded for the test's arms (`recorded_sums`). The JSON values become labels and
numbers in SQL as scores.py reads them (`{"prediction": v}` stands for v; a number strictly between 0 and 1 is
a binary model's probability of 1, labelled 1 from 0.5), so that the database returns a few groups, not a row
per prediction; Python then makes them labels as tally.py does (1.0 is the label 1).

The predictions are read by model and time (ix_predictions_model_id_predicted_at), and on Postgres only the
window's days' partitions (the `day` condition): never the other tests' or models' rows. A million predictions
take ~4 s of Postgres on the development machine (2 cores, shared): ~0.4 s per 500,000 to read them, as much
again to join their actuals, ~1 s to make their JSON labels, ~0.5 s to count their distinct units.
"""

from __future__ import annotations

import uuid
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.monitoring.scores import NUMERIC_TYPES, as_label
from services.monitoring.tables import ABTestAnalysis, Actual, Prediction, RecordedMetric
from services.monitoring.tally import label_key

ARMS = ("A", "B")
# Postgres's memory for the aggregates' hash tables (a million units' ids take ~60 MB): the default sent them to
# disk. No parallel plan: its workers would take the cores the pool's other process and Postgres need.
WORK_MEM = "96MB"


@dataclass
class ArmSums:
    """One arm's sums over its predictions in the window."""

    predictions: int = 0
    errors: int = 0
    units: int = 0
    latencies: int = 0
    latency_sum: float = 0.0
    latency_sum_sq: float = 0.0
    label_pairs: Counter = field(default_factory=Counter)  # (predicted, actual) label -> count; a classifier's
    scored: int = 0  # a regressor's predictions and actuals that are both numbers
    absolute_error: float = 0.0
    squared_error: float = 0.0
    squared_error_sq: float = 0.0  # the sum of e^4: the variance of e^2, which rmse's test needs


def window_days(since: datetime, until: datetime) -> tuple:
    """The condition on `day` (the partition key) that the window implies: Postgres reads its days alone."""
    return Prediction.day >= since.date(), Prediction.day <= until.date()


def _arm_rows(test: ABTestAnalysis, arm: str, since: datetime, until: datetime, *columns: Any) -> sa.Select:
    model_id, version = (test.model_a_id, test.version_a) if arm == "A" else (test.model_b_id, test.version_b)
    return sa.select(sa.literal(arm).label("arm"), *columns).where(
        Prediction.model_id == model_id, Prediction.version == version, Prediction.endpoint == test.endpoint,
        *window_days(since, until), Prediction.predicted_at >= since, Prediction.predicted_at <= until)


def first_traffic(session: Session, test: ABTestAnalysis, *, until: datetime) -> datetime | None:
    """When B made its first prediction on the endpoint since the test started; None while it has made none."""
    return session.scalar(_arm_rows(test, "B", test.started_at, until).with_only_columns(
        sa.func.min(Prediction.predicted_at)))


def arm_sums(session: Session, test: ABTestAnalysis, *, since: datetime, until: datetime) -> dict[str, ArmSums]:
    """Both arms' sums over [since, until]."""
    postgres = session.get_bind().dialect.name == "postgresql"
    if postgres:
        session.execute(sa.select(sa.func.set_config("work_mem", WORK_MEM, True),
                                  sa.func.set_config("max_parallel_workers_per_gather", "0", True),
                                  sa.func.set_config("jit", "off", True)))
    found = {arm: ArmSums() for arm in ARMS}
    _pass(session, test, since, until, found, postgres)
    unit = sa.func.coalesce(Prediction.unit_id, Prediction.request_id).label("unit")
    units = sa.union_all(*(_arm_rows(test, arm, since, until, unit).distinct() for arm in ARMS)).subquery()
    for arm, count in session.execute(sa.select(units.c.arm, sa.func.count()).group_by(units.c.arm)):
        found[arm].units = count
    return found


def _pass(session: Session, test: ABTestAnalysis, since: datetime, until: datetime, found: dict[str, ArmSums],
          postgres: bool) -> None:
    """Every sum but the units, in one pass over each arm's predictions and their actuals."""
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
    rows = sa.union_all(*(
        _arm_rows(test, arm, since, until, Prediction.error, Prediction.latency_ms, *columns).outerjoin(
            Actual, sa.and_(Actual.model_id == Prediction.model_id, Actual.request_id == Prediction.request_id))
        for arm in ARMS)).subquery()
    latency = rows.c.latency_ms
    labels = [rows.c.predicted, rows.c.actual] if "predicted" in rows.c else []
    sums = [sa.func.count(), sa.func.count(rows.c.error), sa.func.count(latency), sa.func.sum(latency),
            sa.func.sum(latency * latency)]
    if "residual" in rows.c:
        residual = rows.c.residual
        sums += [sa.func.count(residual), sa.func.sum(sa.func.abs(residual)), sa.func.sum(residual * residual),
                 sa.func.sum(residual * residual * residual * residual)]
    for row in session.execute(sa.select(rows.c.arm, *labels, *sums).group_by(rows.c.arm, *labels)):
        arm, pair, figures = found[row[0]], row[1:1 + len(labels)], row[1 + len(labels):]
        predictions, errors, latencies, total, squares, *residuals = figures
        arm.predictions += predictions
        arm.errors += errors
        arm.latencies += latencies
        arm.latency_sum += float(total or 0.0)
        arm.latency_sum_sq += float(squares or 0.0)
        if pair and pair[0] is not None:  # the group of the arm's predictions scored with these labels
            arm.label_pairs[label_key(as_label(_parsed(pair[0]))), label_key(as_label(_parsed(pair[1])))] += predictions
        if residuals:
            arm.scored = residuals[0]
            arm.absolute_error, arm.squared_error, arm.squared_error_sq = (float(value or 0.0)
                                                                           for value in residuals[1:])


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


def _parsed(text: str) -> Any:
    return orjson.loads(text)


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
