"""Save trained pipelines with skops, with the versions of the libraries they depend on.

They load back with `shared.model_files.loads_trusted`, which trusts a fixed list of types only
(TRUSTED_TYPES there: every type these pipelines contain).
"""

from __future__ import annotations

import importlib.metadata
import platform
import zipfile
from typing import Any

import skops.io as sio


def dumps(model: Any) -> bytes:
    """The model as compressed skops bytes."""
    return sio.dumps(model, compression=zipfile.ZIP_DEFLATED)


_DISTRIBUTIONS = {"sklearn": "scikit-learn", "numpy": "numpy", "scipy": "scipy", "pandas": "pandas",
                  "imblearn": "imbalanced-learn", "skops": "skops", "optuna": "optuna", "skopt": "scikit-optimize"}


def library_versions() -> dict[str, str]:
    """Versions of the libraries a trained model depends on, for its lineage."""
    versions = {name: importlib.metadata.version(dist) for name, dist in _DISTRIBUTIONS.items()}
    versions["python"] = platform.python_version()
    return versions
