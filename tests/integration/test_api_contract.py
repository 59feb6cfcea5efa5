"""The API checked against its own OpenAPI document by schemathesis, in process through WSGI:
generated requests to every operation, valid and invalid (its coverage and fuzzing phases), with an
admin's credentials, get no 500 and only answers the document describes (status code, content
type, body schema)."""

from __future__ import annotations

from typing import Iterator

import pytest
import schemathesis
from schemathesis.config import SchemathesisConfig
from schemathesis.engine import Status, events, from_schema

from tests.support.auth import make_api_key, make_user
from tests.support.yaml_stream import register_yaml_stream_reader

pytestmark = pytest.mark.integration
register_yaml_stream_reader()

CHECKS = ("not_a_server_error", "status_code_conformance", "content_type_conformance", "response_schema_conformance")
# Examples per operation and phase: the whole run takes ~10 s per database on a shared 2-core machine.
EXAMPLES = 15


def _config(headers: dict[str, str]) -> SchemathesisConfig:
    return SchemathesisConfig.from_dict({
        # Both kinds of credential the document names, fixed: generated ones make 401s that test nothing else.
        "headers": headers,
        "continue-on-failure": True,
        # Every run the same, and nothing written into the work tree (.schemathesis/).
        "cache": {"enabled": False},
        "generation": {"max-examples": EXAMPLES, "mode": "all", "deterministic": True, "database": "none"},
        # Stateful runs follow links between operations; the document declares none.
        "phases": {"stateful": {"enabled": False}},
        "checks": {"enabled": False, **{name: {"enabled": True} for name in CHECKS}},
    })


def _failures(schema) -> Iterator[tuple[str, str, str]]:
    """(operation, check, what the check says) for each failed check, and each error of the run."""
    for event in from_schema(schema).execute():
        if isinstance(event, events.ScenarioFinished):
            for check in (check for checks in event.recorder.checks.values() for check in checks):
                if check.status == Status.FAILURE and check.failure_info is not None:
                    yield event.label or "?", check.name, check.failure_info.failure.title
        elif isinstance(event, (events.NonFatalError, events.FatalError)):
            yield getattr(event, "label", "?"), "error", str(event.info)[:500]


# The document and the answers' shapes are the database's to neither make nor break, and the SQLite run took a
# minute: every operation's answers on SQLite are the other integration tests' and the README tour's.
@pytest.mark.postgres_only
def test_every_operation_answers_as_its_openapi_document_says(app):
    admin, headers = make_user(app, "admin")
    headers.update(make_api_key(app, "admin", owner=admin)[1])
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", app, config=_config(headers))
    found = sorted(set(_failures(schema)))
    assert not found, "\n".join(f"{label}: {check}: {title}" for label, check, title in found)
