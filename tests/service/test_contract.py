"""API contract: schemathesis generates requests from the app's own OpenAPI spec; none may get a 5xx.

Beyond "no 5xx", the spec must tell the truth: every status code the server answers is documented
for that operation, with the documented content type, and every body (success and error) matches
its documented schema, so a client generated from ``/openapi.json`` meets what the server does.

In-process (ASGI), with a valid bearer token, so the protected routes run their real code and not
just the 401 path; every 4xx must carry the one error shape ``{"error": {"code", "message"}}``.
Each operation gets ``MAX_EXAMPLES`` valid and ``MAX_EXAMPLES`` invalid (negative) requests, so the
whole contract runs in seconds. (Schemathesis' own pytest plugin does not support pytest 9 yet:
the operations are driven here with its Hypothesis strategies.)
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

schemathesis = pytest.importorskip("schemathesis", reason="schemathesis is not installed (it is in the 'dev' extra)")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from schemathesis import GenerationMode  # noqa: E402
from schemathesis.checks import (  # noqa: E402
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.service.conftest import make_settings, register  # noqa: E402

MAX_EXAMPLES = int(os.environ.get("VOCALIS_CONTRACT_EXAMPLES", "10"))
"""Examples per operation and mode; raise it for a longer run (e.g. 200)."""


@pytest.fixture(scope="module")
def api(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Any, dict[str, str]]]:
    """The app (lifespan running: migrations done), its schemathesis schema and a valid bearer token."""
    from fastapi.testclient import TestClient

    from vocalis.service.app import create_app

    app = create_app(make_settings(Path(tmp_path_factory.mktemp("contract")), max_audio_seconds=5.0,
                                       preload_model=True))  # /healthz is 200 only with the model loaded
    with TestClient(app, raise_server_exceptions=False) as client:
        acct = register(client, "contract@example.org")
        token = client.post("/v1/auth/token", json={"email": acct.email, "password": "correct horse"})
        assert token.status_code == 200, token.text
        schema = schemathesis.openapi.from_asgi("/openapi.json", app)
        yield schema, {"Authorization": f"Bearer {token.json()['access_token']}"}


def error_shape(ctx: Any, response: Any, case: Any) -> bool | None:
    """Every 4xx with a JSON body is ``{"error": {"code": str, "message": str, ...}}``."""
    ctype = response.headers.get("content-type") or [""]
    if 400 <= response.status_code < 500 and "json" in ctype[0]:
        body = response.json()
        err = body.get("error") if isinstance(body, dict) else None
        assert isinstance(err, dict) and isinstance(err.get("code"), str) and isinstance(err.get("message"), str), \
            f"{response.status_code} body is not the error shape: {body!r}"[:500]
    return None


CHECKS = [not_a_server_error, error_shape, status_code_conformance, content_type_conformance,
          response_schema_conformance]


def _cases() -> list[Any]:
    """(operation, mode) pairs; invalid requests only where there is an input to break."""
    from vocalis.service.app import create_app
    from vocalis.service.settings import Settings

    spec = create_app(Settings(data_dir=Path("/nonexistent/vocalis-contract"), secret_key="x")).openapi()
    out = []
    for path, item in spec["paths"].items():
        for method, op in item.items():
            if method not in ("get", "post", "put", "patch", "delete"):
                continue
            name = f"{method.upper()} {path}"
            out.append(pytest.param(name, GenerationMode.POSITIVE, id=f"{name} valid"))
            if op.get("parameters") or op.get("requestBody"):
                out.append(pytest.param(name, GenerationMode.NEGATIVE, id=f"{name} invalid"))
    return out


@pytest.mark.timeout(120)
@pytest.mark.parametrize(("operation", "mode"), _cases())
def test_no_5xx_and_the_spec_tells_the_truth(operation: str, mode: GenerationMode, api: tuple[Any, dict[str, str]]) -> None:
    schema, headers = api
    method, path = operation.split(" ", 1)
    op = schema[path][method]

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(max_examples=MAX_EXAMPLES, deadline=None, derandomize=True, database=None,
              suppress_health_check=list(HealthCheck))
    def run(case: Any) -> None:
        response = case.call(headers={**headers, **(case.headers or {})})
        case.validate_response(response, checks=CHECKS)

    run()
