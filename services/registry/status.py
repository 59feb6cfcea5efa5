"""The model lifecycle: which status may follow which.

registered -> training -> trained | failed; a trained model can be deployed, retrained or archived;
a deployed one can be withdrawn back to trained. Anything may be archived, and an archived model is
restored to registered, from where its lifecycle starts again.
"""

from __future__ import annotations

from shared.errors import InvalidTransition

REGISTERED, TRAINING, TRAINED, FAILED, DEPLOYED, ARCHIVED = (
    "registered", "training", "trained", "failed", "deployed", "archived",
)
STATUSES = (REGISTERED, TRAINING, TRAINED, FAILED, DEPLOYED, ARCHIVED)

ALLOWED: dict[str, tuple[str, ...]] = {
    REGISTERED: (TRAINING, TRAINED, ARCHIVED),
    TRAINING: (TRAINED, FAILED, ARCHIVED),
    TRAINED: (TRAINING, DEPLOYED, ARCHIVED),
    FAILED: (TRAINING, ARCHIVED),
    DEPLOYED: (TRAINED, ARCHIVED),
    ARCHIVED: (REGISTERED,),
}


def check_transition(current: str, new: str) -> None:
    """Refuse a move the lifecycle does not allow; staying in the same status is no move."""
    if new == current:
        return
    allowed = ALLOWED[current]
    if new not in allowed:
        raise InvalidTransition(
            f"A model cannot go from {current} to {new}; from {current} it may go to {', '.join(allowed)}.",
            errors={"status": [f"allowed from {current}: {', '.join(allowed)}"]},
        )
