"""What the client's calls return: the server's answers as dataclasses.

Each shows in its repr what a user looks for first (name, status, version, the headline figures); the
rest of the answer is in its fields with `repr=False`, and the whole JSON answer in `raw`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any, TypeVar

T = TypeVar("T", bound="Result")


@dataclass
class Result:
    raw: dict = field(repr=False)

    @classmethod
    def from_json(cls: type[T], data: dict) -> T:
        return cls(raw=data, **{f.name: data.get(f.name) for f in fields(cls) if f.name != "raw"})


def _hidden() -> Any:
    return field(default=None, repr=False)


@dataclass
class Model(Result):
    id: str = None
    name: str = None
    type: str = None
    status: str = None
    latest_version: int | None = None
    aliases: dict = None
    framework: str = _hidden()
    description: str = _hidden()
    features: list = _hidden()
    target_variable: str | None = _hidden()
    hyperparameters: dict = _hidden()
    tags: dict = _hidden()
    metadata: dict = _hidden()
    created_by: str = _hidden()
    created_at: str = _hidden()


@dataclass
class Version(Result):
    model_id: str = None
    number: int = None
    status: str = None
    provenance: str = None
    format: str | None = None
    metrics: dict = None
    aliases: list = None
    id: str = _hidden()
    artifact_sha256: str = _hidden()
    size: int = _hidden()
    description: str = _hidden()
    parameters: dict = _hidden()
    dataset_id: str | None = _hidden()
    parent_version: int | None = _hidden()
    training_job_id: str | None = _hidden()
    created_at: str = _hidden()


@dataclass
class Dataset(Result):
    id: str = None
    name: str = None
    rows: int = None
    columns: int = None
    sha256: str = _hidden()
    size: int = _hidden()
    description: str = _hidden()
    schema: list = _hidden()


@dataclass
class Training(Result):
    id: str = None
    model_id: str = None
    status: str = None
    phase: str | None = None
    progress: dict = _hidden()
    best_value: float | None = None
    version_number: int | None = None
    error: str | None = None
    metric: str = _hidden()
    estimator: str = _hidden()
    strategy: str = _hidden()
    best_params: dict | None = _hidden()
    cv_scores: dict | None = _hidden()
    test_metrics: dict | None = _hidden()


@dataclass
class Trial(Result):
    number: int = None
    state: str = None
    mean: float | None = None
    std: float | None = None
    params: dict = None
    fold_scores: list = _hidden()
    duration_s: float | None = _hidden()
    error: str | None = _hidden()


@dataclass
class Deployment(Result):
    id: str = None
    endpoint: str = None
    environment: str = None
    version: int = None
    status: str = None
    reason: str | None = None
    model_id: str = _hidden()
    strategy: str = _hidden()
    previous_id: str | None = _hidden()
    config: dict = _hidden()
    health: list = _hidden()
    transitions: list = _hidden()


@dataclass
class Endpoint(Result):
    name: str = None
    environment: str = None
    live_version: int | None = None
    candidate_version: int | None = None
    model_id: str = _hidden()
    url: str = _hidden()
    traffic: dict | None = _hidden()
    pending_traffic: dict | None = _hidden()
    replicas: list = _hidden()


@dataclass
class Prediction(Result):
    predictions: list = None
    model_id: str = None
    model_version: int = None
    probabilities: list | None = _hidden()
    request_ids: list = _hidden()


@dataclass
class Recorded(Result):
    """The answer to recording predictions, actuals or metrics: how many were kept, and each refused record."""

    accepted: int = None
    stored: int | None = None
    duplicates: int | None = None
    rejected: list = None


@dataclass
class DriftReport(Result):
    model_id: str = None
    version: int = None
    overall_drift_score: float = None
    severity: str = None
    drifted: list = None
    id: str = _hidden()
    window: dict = _hidden()
    features: list = _hidden()
    prediction_drift: dict | None = _hidden()
    concept_drift: dict | None = _hidden()

    @classmethod
    def from_json(cls, data: dict) -> DriftReport:
        report = super().from_json(data)
        report.drifted = [feature["name"] for feature in data.get("features", []) if feature.get("drifted")]
        return report


@dataclass
class Performance(Result):
    summary: dict = None
    by_version: dict = _hidden()
    series: list = _hidden()


@dataclass
class ABTest(Result):
    id: str = None
    name: str = None
    status: str = None
    model_a_id: str = None
    version_a: int = None
    model_b_id: str = None
    version_b: int = None
    traffic_split: float = None
    verdict: str | None = None
    summary: str | None = _hidden()
    success_metrics: list = _hidden()
    guardrail_metrics: list = _hidden()
    warnings: list = _hidden()


@dataclass
class ABResults(Result):
    ab_test_id: str = None
    insufficient_data: bool = None
    units: dict = None
    decision: dict = None
    metrics: list = _hidden()
    srm: dict = _hidden()
    window: dict = _hidden()


@dataclass
class User(Result):
    id: str = None
    username: str = None
    role: str = None
    is_active: bool = None
