"""The model lifecycle: which status may follow which; and the two statuses of a version.

registered -> training -> trained | failed; a trained model can be deployed, retrained or archived;
a deployed one can be withdrawn back to trained. A training that fails or is cancelled may also send
the model back to registered, where it was before (and a user may end a stuck `training` that way).
Anything may be archived, and an archived model is restored to registered, from where its lifecycle
starts again.

A version is `ready` or `archived` (kept for lineage and audit, but no alias may point at it), and
may move between the two freely.
"""

from __future__ import annotations

from shared.errors import InvalidTransition

REGISTERED, TRAINING, TRAINED, FAILED, DEPLOYED, ARCHIVED = (
    "registered", "training", "trained", "failed", "deployed", "archived",
)
STATUSES = (REGISTERED, TRAINING, TRAINED, FAILED, DEPLOYED, ARCHIVED)
VERSION_READY, VERSION_ARCHIVED = "ready", "archived"
VERSION_STATUSES = (VERSION_READY, VERSION_ARCHIVED)

ALLOWED: dict[str, tuple[str, ...]] = {
    REGISTERED: (TRAINING, TRAINED, ARCHIVED),
    TRAINING: (REGISTERED, TRAINED, FAILED, ARCHIVED),
    TRAINED: (TRAINING, DEPLOYED, ARCHIVED),
    FAILED: (TRAINING, ARCHIVED),
    DEPLOYED: (TRAINED, ARCHIVED),
    ARCHIVED: (REGISTERED,),
}


def allows(current: str, new: str) -> bool:
    """Whether the lifecycle lets a model go from `current` to `new`; staying in the same status is no move."""
    return new == current or new in ALLOWED[current]


def check_transition(current: str, new: str) -> None:
    """Refuse a move the lifecycle does not allow."""
    if not allows(current, new):
        allowed = ALLOWED[current]
        raise InvalidTransition(
            f"A model cannot go from {current} to {new}; from {current} it may go to {', '.join(allowed)}.",
            errors={"status": [f"allowed from {current}: {', '.join(allowed)}"]},
        )
