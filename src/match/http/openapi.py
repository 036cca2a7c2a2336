"""The OpenAPI 3 description of the API, built from the route table (the same Endpoint and Param
values the app serves), so it cannot drift from the routes.

Every parameter can come from the query string, an urlencoded form or a multipart form; the
description lists them as query parameters and, for POST and DELETE, also as the form body
(multipart when the route takes a file upload).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from match.http.endpoints import Endpoint
from match.http.params import Param

VERSION = "0.1.0"

_STATUS_TEXT = {
    400: "A missing or malformed parameter, not an image, a URL that cannot be fetched",
    403: "The API key may not do this (read-only, or limited to other collections)",
    404: "An unknown filepath or collection",
    408: "The request body did not arrive in time",
    413: "A body, upload, image or download over the limits",
    415: "An image in a format Match does not read",
    502: "The server of a URL answered with an error",
    503: "The store is unavailable",
    405: "Wrong HTTP method for this route",
    500: "Internal error (logged on the server)",
}


def openapi(endpoints: Iterable[Endpoint], *, title: str = "Match") -> dict[str, Any]:
    paths: dict[str, Any] = {}
    for endpoint in endpoints:
        operations = paths.setdefault(endpoint.path, {})
        for method in endpoint.methods:
            operations[method.lower()] = _operation(endpoint, method)
    return {
        "openapi": "3.0.3",
        "info": {
            "title": title,
            "version": VERSION,
            "description": "Reverse image search with dsys/match's API. Every response is the "
            'envelope {"status", "error", "method", "result"}. TinEye MatchEngine\'s API is '
            "served under /rest/<method>/: its failures answer 200, with status fail or warn "
            "and timing stats in the envelope.",
        },
        "paths": paths,
        "components": {"schemas": {"Envelope": _ENVELOPE}},
    }


def _operation(endpoint: Endpoint, method: str) -> dict[str, Any]:
    operation: dict[str, Any] = {
        # From the path: /add and /rest/add/ are both "add" methods.
        "operationId": f"{endpoint.path.strip('/').replace('/', '_')}_{method.lower()}",
        "summary": endpoint.summary,
        "parameters": [
            _query_parameter(param) for param in endpoint.params if param.type != "file"
        ],
        "responses": _responses(endpoint),
    }
    if method != "GET" and endpoint.params:
        operation["requestBody"] = _form_body(endpoint.params)
    return operation


def _query_parameter(param: Param) -> dict[str, Any]:
    return {
        "name": param.name,
        "in": "query",
        "required": param.required,
        "description": param.help,
        "schema": schema_of(param),
    }


def _form_body(params: tuple[Param, ...]) -> dict[str, Any]:
    schema = {
        "type": "object",
        "properties": {
            param.name: schema_of(param) | {"description": param.help} for param in params
        },
    }
    required = [param.name for param in params if param.required]
    if required:
        schema["required"] = required
    content = {"multipart/form-data": {"schema": schema}}
    if not any(param.type == "file" for param in params):
        content["application/x-www-form-urlencoded"] = {"schema": schema}
    return {"required": False, "content": content}


def schema_of(param: Param) -> dict[str, Any]:
    """The JSON schema of a parameter's value as sent on the wire."""
    schema: dict[str, Any] = {
        "string": {"type": "string"},
        "integer": {"type": "integer"},
        "number": {"type": "number"},
        "boolean": {"type": "boolean"},
        "json": {
            "type": "string",
            "contentMediaType": "application/json",
            "description": "A JSON object.",
        },
        "file": {"type": "string", "format": "binary"},
    }[param.type]
    schema = dict(schema)
    if param.default is not None:
        schema["default"] = param.default
    if param.minimum is not None:
        schema["minimum"] = param.minimum
    if param.maximum is not None:
        schema["maximum"] = param.maximum
    return schema


def _responses(endpoint: Endpoint) -> dict[str, Any]:
    ok_schema = {
        "allOf": [
            {"$ref": "#/components/schemas/Envelope"},
            {
                "type": "object",
                "properties": {"result": {"type": "array", "items": endpoint.result or {}}},
            },
        ]
    }
    responses: dict[str, Any] = {
        "200": {"description": "ok", "content": {"application/json": {"schema": ok_schema}}},
    }
    if endpoint.media is not None:  # a file of lines, not the envelope
        responses["200"] = {"description": "ok", "content": {m: {} for m in endpoint.media}}
    for status in sorted({*endpoint.errors, 405, 500}):
        responses[str(status)] = {
            "description": _STATUS_TEXT.get(status, "Error"),
            "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Envelope"}}},
        }
    return responses


_ENVELOPE = {
    "type": "object",
    "required": ["status", "error", "method", "result"],
    "properties": {
        "status": {"type": "string", "enum": ["ok", "warn", "fail"]},
        "error": {"type": "array", "items": {"type": "string"}},
        "method": {"type": "string"},
        "result": {"type": "array"},
    },
}
