"""Schemathesis against the REST API's own OpenAPI document: valid and invalid requests generated from
the schema, sent as an admin (who reaches the most code). No answer may be a 5xx, and every answer
must match the documented response schema.

It runs on a studio of its own (fresh data directory, the session's engine), so the fuzzer's accounts,
revocations and uploads never meet other tests' data. Accepted generations are cancelled at once to
keep the shared CPU free. Bounded: FUZZ_EXAMPLES cases per operation, each for data that fits the
schema and data that does not (wrong types, out-of-range numbers, missing and extra fields).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from storage import Storage
from storage.types import OPERATOR
from tests.webapp.conftest import Live, open_test_storage, serve
from tests.webapp.test_access_matrix import MATRIX

FUZZ_EXAMPLES = 25
"""Generated cases per operation and mode (valid and invalid by the schema)."""


@dataclass
class FuzzStudio:
    url: str
    storage: Storage
    admin_id: int
    token: str

    def bearer(self) -> dict[str, str]:
        """The admin's token, made anew when the fuzzer has revoked it (DELETE /tokens/{id} is fuzzed too)."""
        if any(
            t.revoked_at is not None
            for t in self.storage.tokens.list_for(OPERATOR, self.admin_id)
            if self.token.startswith(t.prefix)
        ):
            self.token = self.storage.tokens.create(OPERATOR, self.admin_id, "fuzz").secret
        return {"Authorization": f"Bearer {self.token}"}


@pytest.fixture(scope="module")
def fuzz_studio(tmp_path_factory: pytest.TempPathFactory, live: Live) -> Iterator[FuzzStudio]:
    from webapp.server import create_app

    storage = open_test_storage(tmp_path_factory.mktemp("fuzz-data"))
    admin = storage.users.create(OPERATOR, "fuzz-admin", role="admin", password="fuzz-password-1").user
    token = storage.tokens.create(OPERATOR, admin.id, "fuzz").secret
    app = create_app(storage, live.engine)
    url, server, thread = serve(app)
    yield FuzzStudio(url, storage, admin.id, token)
    server.should_exit = True
    thread.join(timeout=30)
    storage.close()


@pytest.fixture(scope="module")
def api_schema(fuzz_studio: FuzzStudio) -> schemathesis.BaseSchema:
    return schemathesis.openapi.from_url(f"{fuzz_studio.url}/openapi.json")


def check(case: schemathesis.Case, studio: FuzzStudio) -> None:
    response = case.call(base_url=studio.url, headers=studio.bearer(), timeout=60)
    case.validate_response(response, checks=[not_a_server_error, response_schema_conformance])
    if case.method.upper() == "POST" and case.path == "/api/v1/generations" and response.status_code == 202:
        httpx.delete(
            f"{studio.url}/api/v1/generations/{response.json()['id']}", headers=studio.bearer(), timeout=30
        )


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
@pytest.mark.parametrize("operation", list(MATRIX), ids=[f"{m} {p}" for m, p in MATRIX])
def test_no_request_makes_the_api_fail(
    api_schema: schemathesis.BaseSchema,
    fuzz_studio: FuzzStudio,
    operation: tuple[str, str],
    mode: GenerationMode,
) -> None:
    """MATRIX lists every operation of the OpenAPI document (test_access_matrix checks that)."""
    method, path = operation
    api_operation = api_schema[path][method]
    if mode == GenerationMode.NEGATIVE and not (
        api_operation.path_parameters or api_operation.query or api_operation.body
    ):
        pytest.skip("no parameters or body to get wrong")

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        database=None,
        phases=[Phase.generate],
        print_blob=True,
    )
    @given(case=api_operation.as_strategy(mode))
    def fuzz(case: schemathesis.Case) -> None:
        check(case, fuzz_studio)

    fuzz()
