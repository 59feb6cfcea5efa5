"""From CSV bytes to the train / validation / test split the search and the final fit use.

Rows whose target is missing are dropped first; the split is stratified for classification and
deterministic in `random_state`. Data that parses but cannot train raises TrainingDataError with a
message written for the person who sent the data.
"""

from __future__ import annotations

import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pandas.api.types import is_bool_dtype, is_numeric_dtype
from sklearn.model_selection import train_test_split

from services.training.data_checks import TrainingDataError, check_class_counts, plain_label
from services.training.spec import TrainingSpec


@dataclass(frozen=True)
class DataSplit:
    X_train: pd.DataFrame
    y_train: np.ndarray
    X_val: pd.DataFrame
    y_val: np.ndarray
    X_test: pd.DataFrame
    y_test: np.ndarray
    feature_kinds: dict[str, str]
    # Original target labels in encoded order (label i is classes[i]); None for regression.
    classes: list[Any] | None
    dropped_rows: int = 0

    @property
    def X_fit(self) -> pd.DataFrame:
        """Train + validation rows: what the final model is fitted on."""
        return pd.concat([self.X_train, self.X_val])

    @property
    def y_fit(self) -> np.ndarray:
        return np.concatenate([self.y_train, self.y_val])


def load_frame(source: bytes | str | Path) -> pd.DataFrame:
    """Parse CSV bytes or a CSV file; empty fields become missing values."""
    try:
        return pd.read_csv(io.BytesIO(source) if isinstance(source, bytes) else source)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise TrainingDataError(f"The training data is not a readable CSV file: {exc}") from exc


def feature_kind(column: pd.Series) -> str:
    """numeric for int/float columns; categorical for text, booleans and anything else."""
    return "numeric" if is_numeric_dtype(column) and not is_bool_dtype(column) else "categorical"


def _encode_target(y: pd.Series, spec: TrainingSpec) -> tuple[np.ndarray, list[Any] | None]:
    if spec.model_type == "regression":
        numeric = pd.to_numeric(y, errors="coerce")
        bad = y[numeric.isna()]
        if len(bad):
            raise TrainingDataError(
                f"Regression needs a numeric target, but {spec.target!r} holds {plain_label(bad.iloc[0])!r} "
                f"(and {len(bad) - 1} more non-numeric values).")
        return numeric.to_numpy(dtype=float), None
    # Always encoded: the positive class of a binary target is then label 1 whatever the labels are.
    values = y.to_numpy() if is_numeric_dtype(y) else y.astype(str).to_numpy(dtype=object)
    classes, codes = np.unique(values, return_inverse=True)
    return codes.astype(np.int64), [plain_label(c) for c in classes]


def split(frame: pd.DataFrame, spec: TrainingSpec) -> DataSplit:
    """Train / validation / test parts of `frame` for `spec`, or TrainingDataError."""
    missing = [c for c in (*spec.features, spec.target) if c not in frame.columns]
    if missing:
        raise TrainingDataError(f"The training data has no column(s) {', '.join(map(repr, missing))}; "
                                f"its columns are {', '.join(map(repr, frame.columns))}.")
    if frame.empty:
        raise TrainingDataError("The training data has no rows.")
    has_target = frame[spec.target].notna()
    if not has_target.any():
        raise TrainingDataError(f"The target column {spec.target!r} is empty in all {len(frame)} rows; "
                                "there is nothing to learn from.")
    frame = frame.loc[has_target]
    dropped = int((~has_target).sum())
    y, classes = _encode_target(frame[spec.target], spec)
    X = frame[list(spec.features)].copy()
    kinds = {name: feature_kind(X[name]) for name in spec.features}
    for name, kind in kinds.items():
        if kind == "categorical":
            # Plain objects with np.nan for missing: what SimpleImputer and the encoders expect.
            X[name] = X[name].astype(object).where(X[name].notna(), np.nan)
    stratify = y if classes is not None else None
    smote = spec.augmentation.enabled and "smote" in spec.augmentation.methods
    if classes is not None:
        counts = dict(zip(classes, np.bincount(y).tolist()))
        check_class_counts(counts, folds=spec.folds, validation_split=spec.validation_split,
                           test_split=spec.test_split, smote=smote)
    elif len(y) * (1 - spec.validation_split - spec.test_split) < spec.folds:
        raise TrainingDataError(f"{len(y)} rows leave fewer training rows than the {spec.folds} "
                                "cross-validation folds; add rows or use fewer folds.")
    try:
        X_rest, X_test, y_rest, y_test = train_test_split(
            X, y, test_size=spec.test_split, stratify=stratify, random_state=spec.random_state)
        val_share = spec.validation_split / (1 - spec.test_split)
        X_train, X_val, y_train, y_val = train_test_split(
            X_rest, y_rest, test_size=val_share, stratify=y_rest if classes is not None else None,
            random_state=spec.random_state)
    except ValueError as exc:
        # train_test_split refuses a test or validation part smaller than the number of classes.
        raise TrainingDataError(f"{len(y)} rows are too few to split into training, validation and test "
                                f"parts of these sizes: {exc}") from exc
    if classes is not None:
        counts = dict(zip(classes, np.bincount(y_train, minlength=len(classes)).tolist()))
        check_class_counts(counts, folds=spec.folds, validation_split=0, test_split=0, smote=smote)
    return DataSplit(X_train, y_train, X_val, y_val, X_test, y_test, kinds, classes, dropped)
