"""Training jobs: start one, follow its trials, get the trained version."""

from __future__ import annotations

import time
from typing import Any, Iterator

from modelyard.client.errors import TrainingFailed
from modelyard.client.http import Transport
from modelyard.client.registry import model_path
from modelyard.client.results import Training, Trial

ENDED = frozenset({"succeeded", "failed", "cancelled"})


class TrainingRun:
    """A handle on one training job: poll it, wait for it, read its trials, cancel it."""

    def __init__(self, http: Transport, job_id: str):
        self._http = http
        self.id = job_id

    def __repr__(self) -> str:
        return f"TrainingRun(id={self.id!r})"

    def get(self) -> Training:
        return Training.from_json(self._http.get(f"/trainings/{self.id}"))

    def trials(self) -> Iterator[Trial]:
        """The job's trials in the order they were asked."""
        for item in self._http.pages(f"/trainings/{self.id}/trials"):
            yield Trial.from_json(item)

    def best_trials(self, n: int = 5) -> list[Trial]:
        """The `n` finished trials with the best mean score, by the job's direction."""
        job = self.get()
        done = [trial for trial in self.trials() if trial.mean is not None]
        return sorted(done, key=lambda trial: trial.mean, reverse=job.raw.get("direction") != "minimize")[:n]

    def cancel(self) -> Training:
        return Training.from_json(self._http.post(f"/trainings/{self.id}/cancel"))

    def wait(self, progress: bool = False, *, poll: float = 1.0, timeout: float | None = None) -> Training:
        """Poll until the job ends; the job as it ended. `progress` shows a bar of its trials (tqdm).

        Raises TrainingFailed if it failed or was cancelled, TimeoutError past `timeout` seconds.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        bar = None
        try:
            while True:
                job = self.get()
                if progress:
                    bar = _show(bar, job)
                if job.status in ENDED:
                    break
                if deadline is not None and time.monotonic() > deadline:
                    raise TimeoutError(f"training {self.id} still {job.status} after {timeout} s")
                time.sleep(poll)
        finally:
            if bar is not None:
                bar.close()
        if job.status != "succeeded":
            raise TrainingFailed(job)
        return job


def _show(bar: Any, job: Training) -> Any:
    """The progress bar brought up to the job's trials; made on the first call (tqdm imported only then)."""
    progress = job.progress or {}
    if bar is None:
        from tqdm.auto import tqdm

        bar = tqdm(total=progress.get("trials_total") or None, desc=f"training {job.metric or ''}".strip(),
                   unit="trial")
    if progress.get("trials_total") and bar.total != progress["trials_total"]:
        bar.total = progress["trials_total"]
    bar.update(max(0, (progress.get("trials_done") or 0) - bar.n))
    bar.set_postfix_str(f"{job.status}{f' {job.phase}' if job.phase else ''}"
                        + (f" best={progress['best_value']:.4g}" if progress.get("best_value") is not None else ""),
                        refresh=True)
    return bar


class Trainings:
    def __init__(self, http: Transport):
        self._http = http

    def start(self, model: str, **request: Any) -> TrainingRun:
        """Queue a training of the model: the brief's example 2's fields (training_data_path or
        dataset_id, splits, folds, optimization, preprocessing, augmentation ...)."""
        accepted = self._http.post(model_path(model) + "/trainings", request, idempotent_post=True)
        return TrainingRun(self._http, accepted["id"])

    def get(self, job_id: str) -> TrainingRun:
        return TrainingRun(self._http, job_id)

    def list(self, model: str) -> Iterator[Training]:
        for item in self._http.pages(model_path(model) + "/trainings"):
            yield Training.from_json(item)
