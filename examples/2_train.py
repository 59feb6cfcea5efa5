"""The brief's example 2: train the churn model with hyperparameter optimization, on generated customers.

The brief names a CSV under the server's data root (`training_data_path`); a client on another machine
uploads the CSV as a dataset instead and names it by `dataset_id`. Everything else is as the brief writes it.
"""

import csv
import random
import tempfile
from pathlib import Path

from _connect import CHURN, connect


def customers(path: Path, n: int = 400) -> Path:
    """The brief's four features and its target: who called support often and used the product little churned."""
    rng = random.Random(0)
    with path.open("w", newline="") as out:
        writer = csv.writer(out)
        writer.writerow(["age", "income", "usage_frequency", "support_calls", "churned"])
        for _ in range(n):
            age, income = rng.randint(18, 79), round(rng.gauss(55_000, 15_000), 2)
            usage, calls = rng.randint(0, 29), min(12, int(rng.expovariate(0.5)))
            churned = int(0.6 * calls - 0.15 * usage + rng.gauss(0, 1) > 0)
            writer.writerow([age, income, usage, calls, churned])
    return path


client = connect()
dataset = client.datasets.upload(customers(Path(tempfile.mkdtemp()) / "customer_churn_dataset.csv"))
print("uploaded", dataset)

run = client.trainings.start(
    CHURN, dataset_id=dataset.id, validation_split=0.2, test_split=0.1,
    enable_hyperparameter_optimization=True, max_trials=20, cross_validation_folds=5,
    enable_early_stopping=True, random_state=42, description="Training with hyperparameter optimization",
    preprocessing={"scaling": "standard", "encoding": "label", "feature_selection": "mutual_info"},
    augmentation={"enabled": True, "methods": ["smote", "random_oversampling"]})
training = run.wait(progress=True)
print("trained", training)
for trial in run.best_trials(3):
    print("  trial", trial.number, f"{trial.mean:.4f}", trial.params)
print("registered", client.versions.get(CHURN, "latest"))
