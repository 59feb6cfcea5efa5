"""Data checks that need no pandas: the request validator runs them on a dataset's value counts, and
the worker runs them again on the real split (data.py)."""

from __future__ import annotations

import math
from typing import Any

from shared.errors import ValidationFailed

# SMOTE interpolates between a row and its k nearest neighbours of the same class (imblearn's default k=5).
SMOTE_NEIGHBOURS = 5


class TrainingDataError(ValidationFailed):
    """The data parses but cannot train the requested model; the message says why in plain words."""


def plain_label(value: Any) -> Any:
    """A JSON-safe Python scalar for a class label: numpy scalars (they have .item()) become int/float/str."""
    return value.item() if hasattr(value, "item") else value


def check_class_counts(class_counts: dict[Any, int], *, folds: int, validation_split: float, test_split: float,
                       smote: bool = False) -> None:
    """Refuse class counts that cannot fill every cross-validation fold of the training part.

    Cross-validation runs on the training part, about (1 - validation_split - test_split) of each
    class under a stratified split; every fold needs each class, and SMOTE needs more than
    SMOTE_NEIGHBOURS rows of a class in each fold's training rows. Usable before the data is split
    (from a dataset's value counts) and after (with the real training-part counts and splits of 0).
    """
    if len(class_counts) < 2:
        only = ", ".join(repr(plain_label(c)) for c in class_counts) or "none"
        raise TrainingDataError(f"The target has only one class ({only}); classification needs at least two.")
    label, smallest = min(class_counts.items(), key=lambda item: item[1])
    in_training = math.floor(smallest * (1 - validation_split - test_split))
    if in_training < folds:
        raise TrainingDataError(
            f"Class {plain_label(label)!r} has {smallest} rows, about {in_training} of them in the training part, "
            f"fewer than the {folds} cross-validation folds; use fewer folds or add rows of that class.")
    per_fold = in_training - math.ceil(in_training / folds)
    if smote and per_fold <= SMOTE_NEIGHBOURS:
        raise TrainingDataError(
            f"SMOTE needs more than {SMOTE_NEIGHBOURS} rows of each class in every training fold; class "
            f"{plain_label(label)!r} has about {per_fold}. Use random_oversampling, fewer folds, or more rows.")
