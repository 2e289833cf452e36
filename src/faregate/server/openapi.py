"""FareGate's own HTTP API as an OpenAPI 3.1 document, served at `GET /openapi.json`.

It describes what FareGate accepts and answers, not everything the providers do: the proxy routes
list the fields FareGate reads and checks (`protocols/`), with the same bounds, and let any other
field through as the providers would. Clients and tools can generate against it, and the
schemathesis run in tests/server/test_schemathesis.py fuzzes the gateway from it, so it must stay
true: a route added without its entry here goes untested by that run.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from faregate import __version__
from faregate.call import ATTRIBUTION_DIMENSIONS
from faregate.ledger.rollups import ATTRIBUTION_BY, BUCKETS, DIMENSIONS, OUTCOMES
from faregate.protocols.base import MAX_MODEL_LENGTH, MAX_OUTPUT_TOKENS

JSON = "application/json"
Schema = dict[str, Any]


def _ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def _json_body(schema: Schema, description: str = "") -> Schema:
    return {"description": description or "JSON", "content": {JSON: {"schema": schema}}}


def _query(name: str, schema: Schema, description: str) -> Schema:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


# Unix seconds up to the end of year 9999: larger values are meaningless (and overflow SQLite).
MAX_TIMESTAMP = 253_402_300_799
_TIME = {"type": "number", "minimum": 0, "maximum": MAX_TIMESTAMP}
_RANGE = [
    _query("since", _TIME, "Unix seconds; default: 7 days before `until`."),
    _query("until", _TIME, "Unix seconds (exclusive); default: now."),
]
_BUCKET = _query("bucket", {"type": "string", "enum": sorted(BUCKETS)}, "Series bucket.")
_ATTRIBUTION_HEADERS = [
    {
        "name": f"X-FareGate-{dimension.capitalize()}",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "maxLength": 256},
        "description": f"Attribution: the {dimension} of this request (control characters are removed).",
    }
    for dimension in ATTRIBUTION_DIMENSIONS
]


def _proxy_errors(error: str) -> dict[str, Schema]:
    statuses = {
        "400": "Malformed or invalid request.",
        "401": "Missing or invalid credentials.",
        "403": "Not allowed.",
        "404": "Unknown model.",
        "413": "Body larger than server.max_body_bytes.",
        "429": "Budget exhausted or rate limited.",
        "502": "The provider could not be reached.",
        "504": "The provider did not answer in time.",
    }
    answers = {status: _json_body(_ref(error), text) for status, text in statuses.items()}
    answers["default"] = _json_body(_ref(error), "An error passed through from the provider.")
    return answers


def _admin(summary: str, payload: Schema, params: list[Schema] | None = None) -> Schema:
    return {
        "summary": summary,
        "tags": ["admin"],
        "security": [{"adminKey": []}, {}],
        "parameters": params or [],
        "responses": {
            "200": _json_body(payload, "The report."),
            "400": _json_body(_ref("AdminError"), "A parameter FareGate cannot use."),
            "401": _json_body(_ref("AdminError"), "An admin key is configured and was not sent."),
            "403": _json_body(_ref("AdminError"), "No admin key is configured and the client is remote."),
        },
    }


def _report(key: str) -> Schema:
    return {"type": "object", "required": [key], "properties": {key: {"type": "array"}}}


_OUTPUT_LIMIT: Schema = {"type": "integer", "minimum": 1, "maximum": MAX_OUTPUT_TOKENS}
_CONTENT: Schema = {
    "anyOf": [
        {"type": "string"},
        {"type": "array", "items": {"type": "object", "properties": {"type": {"type": "string"}}}},
    ]
}
_METADATA: Schema = {
    "type": "object",
    "description": "Attribution keys (feature, team, ... or faregate_feature, ...) are removed before "
    "the request goes upstream.",
    "additionalProperties": {"type": "string", "maxLength": 512},
}

# One server-sent event as parsed (its `data` is the provider's JSON chunk, or OpenAI's `[DONE]`).
_SSE_EVENT: Schema = {
    "type": "object",
    "required": ["data"],
    "properties": {"data": {"type": "string"}, "event": {"type": "string"}},
}

SCHEMAS: dict[str, Schema] = {
    "ChatCompletionRequest": {
        "type": "object",
        "required": ["model", "messages"],
        "properties": {
            "model": {"type": "string", "minLength": 1, "maxLength": MAX_MODEL_LENGTH},
            "messages": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["role"],
                    "properties": {
                        "role": {"type": "string", "enum": ["system", "developer", "user", "assistant"]},
                        "content": {"anyOf": [*_CONTENT["anyOf"], {"type": "null"}]},
                    },
                },
            },
            "max_tokens": _OUTPUT_LIMIT,
            "max_completion_tokens": _OUTPUT_LIMIT,
            "stream": {"type": "boolean"},
            "stream_options": {"type": "object", "properties": {"include_usage": {"type": "boolean"}}},
            "n": {"type": "integer", "minimum": 1, "maximum": 128},
            "temperature": {"type": "number", "minimum": 0, "maximum": 2},
            "top_p": {"type": "number", "minimum": 0, "maximum": 1},
            "user": {"type": "string"},
            "metadata": _METADATA,
            "tools": {"type": "array", "items": {"type": "object"}},
        },
    },
    "ChatCompletion": {
        "type": "object",
        "required": ["choices"],
        "properties": {
            "id": {"type": "string"},
            "object": {"type": "string"},
            "model": {"type": "string"},
            "choices": {"type": "array"},
            "usage": {"type": ["object", "null"]},
        },
    },
    "OpenAIError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message"],
                "properties": {
                    "message": {"type": "string"},
                    "type": {"type": ["string", "null"]},
                    "param": {"type": ["string", "null"]},
                    "code": {"type": ["string", "null"]},
                },
            }
        },
    },
    "MessagesRequest": {
        "type": "object",
        "required": ["model", "messages", "max_tokens"],
        "properties": {
            "model": {"type": "string", "minLength": 1, "maxLength": MAX_MODEL_LENGTH},
            "messages": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["role", "content"],
                    "properties": {
                        "role": {"type": "string", "enum": ["user", "assistant"]},
                        "content": _CONTENT,
                    },
                },
            },
            "max_tokens": _OUTPUT_LIMIT,
            "system": _CONTENT,
            "stream": {"type": "boolean"},
            "temperature": {"type": "number", "minimum": 0, "maximum": 1},
            "top_p": {"type": "number", "minimum": 0, "maximum": 1},
            "top_k": {"type": "integer", "minimum": 0},
            "metadata": _METADATA,
            "tools": {"type": "array", "items": {"type": "object"}},
            "stop_sequences": {"type": "array", "items": {"type": "string"}},
        },
    },
    "Message": {
        "type": "object",
        "required": ["type", "content"],
        "properties": {
            "id": {"type": "string"},
            "type": {"const": "message"},
            "role": {"type": "string"},
            "content": {"type": "array"},
            "usage": {"type": "object"},
        },
    },
    "AnthropicError": {
        "type": "object",
        "required": ["type", "error"],
        "properties": {
            "type": {"const": "error"},
            "error": {
                "type": "object",
                "required": ["type", "message"],
                "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            },
        },
    },
    "AdminError": {
        "type": "object",
        "required": ["error"],
        "properties": {
            "error": {
                "type": "object",
                "required": ["message"],
                "properties": {"type": {"type": "string"}, "message": {"type": "string"}},
            }
        },
    },
    "Feedback": {
        "type": "object",
        "required": ["request_id", "rating"],
        "properties": {
            "request_id": {"type": "string", "minLength": 1, "maxLength": 64, "pattern": "^[A-Za-z0-9]+$"},
            "rating": {"type": "number", "minimum": 0, "maximum": 1},
        },
    },
    "TaskOutcome": {
        "type": "object",
        "required": ["task_id", "feature", "outcome"],
        "properties": {
            "task_id": {"type": "string", "minLength": 1, "maxLength": 256},
            "feature": {"type": "string", "minLength": 1, "maxLength": 256},
            "outcome": {"type": "string", "enum": list(OUTCOMES)},
            "score": {"type": ["number", "null"]},
        },
    },
}


def _proxy(summary: str, request: str, answer: str, error: str, extra: list[Schema]) -> Schema:
    ok = {
        "description": "The provider's answer (a JSON body, or an SSE stream with `stream: true`).",
        "content": {JSON: {"schema": _ref(answer)}, "text/event-stream": {"schema": _SSE_EVENT}},
    }
    return {
        "summary": summary,
        "tags": ["proxy"],
        "parameters": [*_ATTRIBUTION_HEADERS, *extra],
        "requestBody": {"required": True, "content": {JSON: {"schema": _ref(request)}}},
        "responses": {"200": ok, **_proxy_errors(error)},
    }


def build_openapi() -> dict[str, Any]:
    """The document; pure data, built per call (it is small and served rarely)."""
    anthropic_version = {
        "name": "anthropic-version",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "enum": ["2023-06-01"]},
    }
    paths: dict[str, Any] = {
        "/v1/chat/completions": {
            "post": _proxy(
                "OpenAI Chat Completions", "ChatCompletionRequest", "ChatCompletion", "OpenAIError", []
            )
        },
        "/v1/messages": {
            "post": _proxy(
                "Anthropic Messages", "MessagesRequest", "Message", "AnthropicError", [anthropic_version]
            )
        },
        "/v1/models": {
            "get": {
                "summary": "The model names FareGate serves (OpenAI's list format; Anthropic's with "
                "an anthropic-version header).",
                "tags": ["proxy"],
                "responses": {"200": _json_body(_report("data"), "The models.")},
            }
        },
        "/healthz": {
            "get": {
                "summary": "Liveness.",
                "responses": {
                    "200": _json_body(
                        {"type": "object", "required": ["status"], "properties": {"status": {"const": "ok"}}}
                    )
                },
            }
        },
        "/openapi.json": {
            "get": {"summary": "This document.", "responses": {"200": _json_body({"type": "object"})}}
        },
        "/faregate/v1/budgets": {"get": _admin("Budget usage.", _report("budgets"))},
        "/faregate/v1/cache/stats": {"get": _admin("Response cache statistics.", _report("features"))},
        "/faregate/v1/cache": {
            "delete": _admin(
                "Invalidate response cache entries.",
                {"type": "object", "required": ["deleted"], "properties": {"deleted": {"type": "integer"}}},
                [_query(k, {"type": "string"}, f"Only this {k}.") for k in ("feature", "template", "tenant")],
            )
        },
        "/faregate/v1/prompt-cache": {"get": _admin("Prompt-cache report.", _report("features"))},
        "/faregate/v1/history": {"get": _admin("History policies report.", {"type": "object"}, _RANGE[:1])},
        "/faregate/v1/routing": {"get": _admin("Routing report.", _report("features"), _RANGE[:1])},
        "/faregate/v1/feedback": {
            "post": {
                **_admin("Rate an answer.", {"type": "object"}),
                "requestBody": {"required": True, "content": {JSON: {"schema": _ref("Feedback")}}},
            }
        },
        "/faregate/v1/overview": {
            "get": _admin("Totals and savings.", {"type": "object"}, [*_RANGE, _BUCKET])
        },
        "/faregate/v1/attribution": {
            "get": _admin(
                "Spend by a dimension.",
                {"type": "object"},
                [
                    *_RANGE,
                    _query("by", {"type": "string", "enum": list(ATTRIBUTION_BY)}, "Group by."),
                    *[_query(d, {"type": "string"}, f"Only this {d}.") for d in DIMENSIONS],
                ],
            )
        },
        "/faregate/v1/unit-economics": {
            "get": _admin("Cost per task and per user.", {"type": "object"}, [*_RANGE, _BUCKET])
        },
        "/faregate/v1/templates": {
            "get": _admin(
                "Template versions.",
                {"type": "object"},
                [*_RANGE, _query("feature", {"type": "string"}, "Only this feature.")],
            )
        },
        "/faregate/v1/anatomy": {"get": _admin("Input tokens by component.", {"type": "object"}, _RANGE)},
        "/faregate/v1/events": {
            "post": {
                **_admin("Record a task outcome.", {"type": "object"}),
                "requestBody": {"required": True, "content": {JSON: {"schema": _ref("TaskOutcome")}}},
            }
        },
    }
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "FareGate",
            "version": __version__,
            "description": "An LLM cost-optimization gateway: OpenAI- and Anthropic-compatible proxy "
            "routes, and the admin API behind its dashboard.",
        },
        "paths": paths,
        "components": {
            "schemas": SCHEMAS,
            "securitySchemes": {
                "adminKey": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "The key in server.admin_key_env; without one, loopback clients only.",
                }
            },
        },
    }


def openapi_route() -> Route:
    """`GET /openapi.json`, unauthenticated like /healthz: it names routes and fields, no data."""
    document = orjson.dumps(build_openapi())

    async def openapi(request: Request) -> Response:
        return Response(document, media_type=JSON)

    return Route("/openapi.json", openapi, methods=["GET"])
