"""The client's exceptions: one per kind of refusal a caller handles differently, each carrying the
server's problem+json fields (RFC 9457) as the server sent them."""

from __future__ import annotations

from typing import Any


class ModelyardError(Exception):
    """The server refused or failed a request. `status`, `title`, `detail`, `type`, `instance` and
    `errors` (field name -> messages) are the problem's fields."""

    def __init__(self, status: int, title: str, detail: str = "", *, type: str | None = None,
                 instance: str | None = None, errors: dict[str, Any] | None = None):
        self.status, self.title, self.detail = status, title, detail
        self.type, self.instance, self.errors = type, instance, errors or {}
        super().__init__(self.describe())

    def describe(self) -> str:
        """The title, the detail and each field's messages, one per line: what a person needs to fix it."""
        status = f" ({self.status})" if self.status else ""  # none for a client-side failure (TrainingFailed)
        lines = [f"{self.title}{status}" + (f": {self.detail}" if self.detail else "")]
        lines += [f"  {field}: {message}" for field, message in _flatten(self.errors)]
        return "\n".join(lines)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(status={self.status}, title={self.title!r}, detail={self.detail!r})"


class Unauthorized(ModelyardError):
    """401: no credentials, or ones the server no longer takes (expired token, revoked key)."""


class PermissionDenied(ModelyardError):
    """403: the caller's role may not do this."""


class NotFound(ModelyardError):
    """404: no such model, version, dataset, job, deployment, endpoint or test."""


class Conflict(ModelyardError):
    """409: the request clashes with the current state (a duplicate name, a transition not allowed)."""


class ValidationError(ModelyardError):
    """422: invalid input; `errors` names each bad field with its messages."""


class TrainingFailed(ModelyardError):
    """A training the client waited for ended failed or cancelled; `training` is the job as it ended."""

    def __init__(self, training: Any):
        self.training = training
        super().__init__(0, f"Training {training.status}", training.error or "")


BY_STATUS: dict[int, type[ModelyardError]] = {
    401: Unauthorized, 403: PermissionDenied, 404: NotFound, 409: Conflict, 422: ValidationError,
}


def from_problem(status: int, body: Any, reason: str) -> ModelyardError:
    """The exception for an error answer; a body that is not a problem (a proxy's HTML page) still
    gives the status and the HTTP reason."""
    problem = body if isinstance(body, dict) else {}
    errors = problem.get("errors")
    return BY_STATUS.get(status, ModelyardError)(
        status, problem.get("title") or reason or "Error", problem.get("detail") or "",
        type=problem.get("type"), instance=problem.get("instance"),
        errors=errors if isinstance(errors, dict) else None)


def _flatten(errors: Any, prefix: str = ""):
    """(field path, message) pairs from webargs' nested {field: [messages] | {subfield: ...}}."""
    if isinstance(errors, dict):
        for key, value in errors.items():
            yield from _flatten(value, f"{prefix}.{key}" if prefix else str(key))
    elif isinstance(errors, list) and all(isinstance(item, str) for item in errors):
        yield prefix, " ".join(errors)
    elif isinstance(errors, list):
        for index, item in enumerate(errors):
            yield from _flatten(item, f"{prefix}[{index}]")
    else:
        yield prefix, str(errors)
