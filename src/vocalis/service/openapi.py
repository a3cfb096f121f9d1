"""An OpenAPI document that says what the service really answers.

FastAPI documents each route's success and a ``422`` in its own ``HTTPValidationError`` shape. The
service answers every error in one shape, ``{"error": {"code", "message"}}`` (:class:`ErrorBody`),
and a protected route can always answer ``401``, a route with an id in its path ``404``. This
module rewrites the generated document once so that a client generated from it, or a contract
test that checks status codes and bodies against it, meets what the server does.

>>> spec = {"paths": {"/v1/things/{thing_id}": {"get": {
...     "security": [{"HTTPBearer": []}], "parameters": [{"name": "thing_id", "in": "path"}],
...     "responses": {"200": {"description": "ok"}, "422": {"description": "Validation Error"}}}}},
...     "components": {"schemas": {"HTTPValidationError": {}, "ValidationError": {}}}}
>>> op = document_errors(spec)["paths"]["/v1/things/{thing_id}"]["get"]
>>> sorted(op["responses"])
['200', '401', '404', '422']
>>> op["responses"]["404"]["content"]["application/json"]["schema"]
{'$ref': '#/components/schemas/ErrorBody'}
>>> sorted(spec["components"]["schemas"])
['ErrorBody', 'ErrorDetail']
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI

ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}

GENERIC = {
    "400": "Bad request: the body does not parse, or a value breaks the rule the message names.",
    "401": "Missing, invalid or expired credentials (`Authorization: Bearer <API key or token>`).",
    "404": "No such resource, or it belongs to another user (existence is not revealed).",
    "413": "The body is larger than the server accepts (JSON: `max_json_bytes`; uploads: their own limits).",
    "422": "Validation error: a parameter or a body field breaks its rule; `details` lists each one.",
}


def _error(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": dict(ERROR_REF)}}}


def document_errors(spec: dict[str, Any]) -> dict[str, Any]:
    """Rewrite ``spec`` in place (and return it): every error response in the one error shape.

    * every ``422`` carries :class:`ErrorBody` (FastAPI's ``HTTPValidationError`` is dropped);
    * an operation with a JSON body can answer ``400`` (a body that does not parse) and ``413``;
    * an operation with ``security`` can answer ``401``;
    * an operation with a path parameter can answer ``404``;
    * an operation with a request body or a query parameter can answer ``422``;
    * error responses a route declared itself keep their description, with the error schema.
    """
    for item in spec.get("paths", {}).values():
        for method, op in item.items():
            if method not in ("get", "put", "post", "delete", "patch"):
                continue
            responses: dict[str, Any] = op.setdefault("responses", {})
            params = op.get("parameters", [])
            wanted = []
            if "application/json" in op.get("requestBody", {}).get("content", {}):
                wanted += ["400", "413"]  # a body that is not JSON at all, or too large (max_json_bytes)
            if op.get("security"):
                wanted.append("401")
            if any(p.get("in") == "path" for p in params):
                wanted.append("404")
            if op.get("requestBody") or params:
                wanted.append("422")
            for status in wanted:
                responses.setdefault(status, {"description": GENERIC[status]})
            for status, response in list(responses.items()):
                if not status.startswith("4"):
                    continue
                description = response.get("description") or GENERIC.get(status, "Error")
                if status == "422":
                    description = GENERIC["422"]
                responses[status] = _error(description)
            op["responses"] = dict(sorted(responses.items()))
    schemas = spec.setdefault("components", {}).setdefault("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        schemas.pop(name, None)
    if "ErrorBody" not in schemas:
        from vocalis.service.schemas import ErrorBody

        body = ErrorBody.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(body.pop("$defs", {}))
        schemas["ErrorBody"] = body
    return spec


def install(app: FastAPI) -> None:
    """Make ``app.openapi()`` (and ``/openapi.json``, ``/docs``) serve the rewritten document."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = document_errors(generate())
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
