"""A model's sensitive features (its `sensitive_features` in the registry) are never stored in clear.

At ingestion each sensitive value of a prediction's features is replaced before the row is written:
- a categorical value is stored as "hmac:" and the first 32 hex digits (128 bits) of its HMAC-SHA256 under
  a key derived from the platform key (MODELYARD_FEATURE_HASH_KEY) for this model and this feature: equal
  values of one feature still match one another, which is all drift needs, while equal values of two
  features or two models do not, and without the key no guess can be checked against a stored hash;
- a numeric value is stored as its bin of the decile edges in the version's training profile, labelled
  "[a, b)" (the last bin "[a, b]"), with "< a" below the first edge and "> b" above the last;
- a value that cannot be protected that way is dropped (stored as missing): a numeric value of a version
  without a profile (an uploaded one), which could not be binned and must not be kept in clear, and a
  list or an object. Missing stays missing.
Without a profile a feature's kind is unknown: a number counts as numeric, anything else as categorical.

Drift compares like with like: the reference sample's sensitive columns get the same treatment, and
both sides are tested as categorical.

Monitoring keeps what this needs, the models' lists (tables.SensitiveFeatures) and the versions' kinds
and bin edges (tables.VersionBaseline), from the registry's events: a batch costs one query, and none
when no record has features.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import json
import math
import uuid
from typing import Any, Callable

import sqlalchemy as sa
from sqlalchemy.orm import Session

from services.monitoring.tables import SensitiveFeatures, VersionBaseline
from shared.served_model import CATEGORICAL, NUMERIC

HASH_PREFIX = "hmac:"
HASH_HEX_DIGITS = 32
# Used when MODELYARD_FEATURE_HASH_KEY is not set, which only development and testing allow
# (shared.config): the hashes it makes protect nothing from whoever has read this line.
DEVELOPMENT_KEY = "modelyard-development-feature-hash-key"


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def canonical(value: Any) -> str:
    """The text a categorical value is hashed as: the same for a JSON value and the reference CSV's (pandas
    reads a category 1 back as 1.0 when the column has gaps)."""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def bin_labels(edges: list[float]) -> tuple[list[str], str, str]:
    """The labels of the bins between `edges` (numpy.histogram's: each closed on the left, the last also
    on the right), and of the values below and above them."""
    below, above = f"< {edges[0]!r}", f"> {edges[-1]!r}"
    if len(edges) == 1:
        return [f"[{edges[0]!r}, {edges[0]!r}]"], below, above
    inner = [f"[{low!r}, {high!r})" for low, high in zip(edges[:-2], edges[1:-1])]
    return inner + [f"[{edges[-2]!r}, {edges[-1]!r}]"], below, above


def _binner(edges: list[float]) -> Callable[[Any], str | None]:
    edges = [float(edge) for edge in edges]
    labels, below, above = bin_labels(edges)

    def binned(value: Any) -> str | None:
        number = _number(value)
        if number is None:
            return None
        if number < edges[0]:
            return below
        if number > edges[-1]:
            return above
        return labels[min(bisect.bisect_right(edges, number) - 1, len(labels) - 1)]

    return binned


def _hasher(key: bytes, model_id: uuid.UUID, feature: str, *, numbers_dropped: bool) -> Callable[[Any], str | None]:
    # A key per model and feature (HMAC of their names under the platform key): one value hashes differently
    # in each feature. JSON keeps the two names apart whatever characters they hold.
    derived = hmac.new(key, json.dumps([str(model_id), feature]).encode(), hashlib.sha256).digest()
    base = hmac.new(derived, digestmod=hashlib.sha256)
    known: dict[str, str] = {}  # categories repeat: hash each once per batch

    def hashed(value: Any) -> str | None:
        if isinstance(value, (list, dict)) or (numbers_dropped and _number(value) is not None):
            return None
        text = canonical(value)
        digest = known.get(text)
        if digest is None:
            mac = base.copy()
            mac.update(text.encode())
            digest = known[text] = HASH_PREFIX + mac.hexdigest()[:HASH_HEX_DIGITS]
        return digest

    return hashed


def _drop(value: Any) -> None:
    return None


class Protector:
    """How each sensitive feature of one model version is stored."""

    def __init__(self, *, key: bytes, model_id: uuid.UUID, features: list[str], kinds: dict[str, str] | None,
                 bin_edges: dict[str, list[float]] | None):
        kinds, bin_edges = kinds or {}, bin_edges or {}
        self.protect: dict[str, Callable[[Any], Any]] = {}
        # What decides each feature's stored values, hashable: drift keeps a reference's columns protected by it.
        self.how = {name: (key, model_id, name, kinds.get(name), tuple(bin_edges.get(name) or ())) for name in features}
        for name in features:
            if bin_edges.get(name):
                self.protect[name] = _binner(bin_edges[name])
            elif kinds.get(name) == NUMERIC:
                self.protect[name] = _drop  # profiled numeric, but training saw no finite value: no bins
            else:
                self.protect[name] = _hasher(key, model_id, name, numbers_dropped=kinds.get(name) != CATEGORICAL)

    def value(self, name: str, value: Any) -> Any:
        return None if _missing(value) else self.protect[name](value)

    def features(self, features: dict[str, Any]) -> dict[str, Any]:
        return {name: self.value(name, value) if name in self.protect else value for name, value in features.items()}


def platform_key(configured: str) -> bytes:
    """The HMAC key: MODELYARD_FEATURE_HASH_KEY, or the development key where it is not set."""
    return (configured or DEVELOPMENT_KEY).encode()


def protect_rows(session: Session, rows: list[dict[str, Any]], *, hash_key: str) -> None:
    """Replace the sensitive values in the `features` of prediction rows (ingestion's) with their protected
    form, in place."""
    with_features = [row for row in rows if row["features"]]
    if not with_features:
        return
    model_ids = {row["model_id"] for row in with_features}
    versions = {row["version"] for row in with_features}
    found = session.execute(
        sa.select(SensitiveFeatures.model_id, SensitiveFeatures.features, VersionBaseline.version,
                  VersionBaseline.feature_kinds, VersionBaseline.bin_edges)
        .outerjoin(VersionBaseline, sa.and_(VersionBaseline.model_id == SensitiveFeatures.model_id,
                                            VersionBaseline.version.in_(versions)))
        .where(SensitiveFeatures.model_id.in_(model_ids))).all()
    lists = {model_id: features for model_id, features, *_ in found if features}
    if not lists:
        return
    baselines = {(row.model_id, row.version): row for row in found if row.version is not None}
    key, protectors = platform_key(hash_key), {}
    for row in with_features:
        sensitive = lists.get(row["model_id"])
        if not sensitive:
            continue
        which = (row["model_id"], row["version"])
        protector = protectors.get(which)
        if protector is None:
            # A version monitoring has not heard of yet has no profile here: its numbers are dropped.
            baseline = baselines.get(which)
            protector = protectors[which] = Protector(
                key=key, model_id=row["model_id"], features=sensitive,
                kinds=baseline.feature_kinds if baseline else None, bin_edges=baseline.bin_edges if baseline else None)
        row["features"] = protector.features(row["features"])


def reference_protector(session: Session, baseline: VersionBaseline, names: list[str], *,
                        hash_key: str) -> Protector:
    """How ingestion stores the version's sensitive features among `names` (its reference sample's columns):
    what drift compares the stored window with, as categories."""
    sensitive = session.scalar(sa.select(SensitiveFeatures.features)
                               .where(SensitiveFeatures.model_id == baseline.model_id)) or []
    return Protector(key=platform_key(hash_key), model_id=baseline.model_id,
                     features=[name for name in sensitive if name in names], kinds=baseline.feature_kinds,
                     bin_edges=baseline.bin_edges)
