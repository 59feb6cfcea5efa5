"""Which features a trained model leans on: permutation importance on the test split.

Stored with the version, it weights the drift score: a drifted feature the model ignores matters less
than one it depends on. Permutation importance (sklearn.inspection.permutation_importance) is measured
per input column, whatever the pipeline's encoding makes of it, and for every estimator alike, where a
model's own `feature_importances_` exist for trees only and name the encoded columns.

Each column is shuffled REPEATS times on at most ROWS test rows, scored by the estimator's own score
(accuracy for classifiers, R² for regressors); an importance is the mean drop in that score, negative
drops (noise) count as 0, and the importances are given as shares summing to 1. A model no shuffle
hurts has none (None): its drift score stays the unweighted share.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

ROWS = 2_000
REPEATS = 3


def permutation_shares(model: Any, X: pd.DataFrame, y: np.ndarray, *, random_state: int) -> dict[str, float] | None:
    from sklearn.inspection import permutation_importance

    if len(X) > ROWS:
        rows = np.random.default_rng(random_state).choice(len(X), size=ROWS, replace=False)
        X, y = X.iloc[np.sort(rows)], y[np.sort(rows)]
    drops = permutation_importance(model, X, y, n_repeats=REPEATS, random_state=random_state).importances_mean
    drops = np.clip(np.nan_to_num(drops, nan=0.0), 0.0, None)
    total = float(drops.sum())
    if total <= 0:
        return None
    return {str(name): float(drop / total) for name, drop in zip(X.columns, drops)}
