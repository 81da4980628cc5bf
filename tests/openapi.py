"""Clever's published Swagger 2.0 description as JSON Schema, to validate API answers.

``CLEVER_API.errors("GET", "/v3.0/users/ID", 200, body)`` lists what in ``body`` disagrees
with the schema Clever documents for that answer (empty when it agrees). Swagger 2.0
schemas are a draft-4 dialect with extensions: ``x-nullable: true`` becomes "or null",
other ``x-*`` keys and ``discriminator`` are dropped, and an event's own definition
(``users.created``, ...), which Swagger picks by the ``type`` discriminator, is applied by
hand to each event. The files and their source: ``tests/fixtures/clever_openapi/README.md``.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from jsonschema import Draft4Validator, ValidationError

SPEC_DIR = Path(__file__).resolve().parent / "fixtures" / "clever_openapi"
_DROPPED = frozenset({"discriminator", "example", "externalDocs", "readOnly", "xml"})
_SCHEMA_MAPS = ("properties", "definitions", "patternProperties")
_SCHEMA_LISTS = ("allOf", "anyOf", "oneOf")
_SCHEMA_ONE = ("items", "additionalProperties", "not")


def json_schema(schema: Any) -> Any:
    """One Swagger 2.0 schema object as a draft-4 JSON Schema."""
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key.startswith("x-") or key in _DROPPED:
            continue
        if key in _SCHEMA_MAPS:
            out[key] = {name: json_schema(sub) for name, sub in value.items()}
        elif key in _SCHEMA_LISTS:
            out[key] = [json_schema(sub) for sub in value]
        elif key in _SCHEMA_ONE:
            out[key] = json_schema(value)
        else:
            out[key] = value
    if schema.get("x-nullable"):
        return {"anyOf": [out, {"type": "null"}]}
    return out


@dataclass(frozen=True)
class _Spec:
    document: dict[str, Any]

    @cached_property
    def definitions(self) -> dict[str, Any]:
        return {name: json_schema(s) for name, s in self.document["definitions"].items()}

    @cached_property
    def routes(self) -> list[tuple[re.Pattern[str], str]]:
        base = self.document.get("basePath", "")
        found = []
        for template in self.document["paths"]:
            pattern = re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(base + template))
            found.append((re.compile(pattern + "$"), template))
        return found

    def validator(self, schema: dict[str, Any]) -> Draft4Validator:
        root = {"definitions": self.definitions, "allOf": [json_schema(schema)]}
        return Draft4Validator(root)

    def response_schema(self, method: str, template: str, status: int) -> dict[str, Any] | None:
        operation = self.document["paths"][template].get(method.lower())
        if operation is None:
            return None
        responses = operation.get("responses", {})
        answer = responses.get(str(status), responses.get("default"))
        if answer is None:
            return None
        if "$ref" in answer:  # "#/responses/NotFound"
            answer = self.document["responses"][answer["$ref"].rsplit("/", 1)[1]]
        return answer.get("schema")


class ApiDescription:
    """The v3.0 Data API and Events API descriptions, looked up by request path."""

    def __init__(self, *files: str) -> None:
        self._specs = [
            _Spec(json.loads((SPEC_DIR / name).read_text(encoding="utf-8"))) for name in files
        ]

    def describes(self, method: str, path: str) -> bool:
        return self._find(method, path) is not None

    def template(self, method: str, path: str) -> str:
        """The described path (``/users/{id}``) that ``path`` is an instance of."""
        found = self._find(method, path)
        assert found is not None, f"{method} {path} is not described"
        return found[1]

    def _find(self, method: str, path: str) -> tuple[_Spec, str] | None:
        for spec in self._specs:
            for pattern, template in spec.routes:
                if pattern.match(path) and method.lower() in spec.document["paths"][template]:
                    return spec, template
        return None

    def errors(self, method: str, path: str, status: int, body: Any) -> list[str]:
        """What in ``body`` disagrees with Clever's description (empty: nothing)."""
        found = self._find(method, path.split("?", 1)[0])
        if found is None:
            return [f"{method} {path} is not described"]
        spec, template = found
        schema = spec.response_schema(method, template, status)
        if schema is None:
            return [f"{method} {template} documents no {status} answer"]
        problems = _problems(spec.validator(schema), body)
        if template.startswith("/events"):
            problems += self._event_problems(spec, body)
        return problems

    def _event_problems(self, spec: _Spec, body: Any) -> list[str]:
        data = body.get("data") if isinstance(body, dict) else None
        items = data if isinstance(data, list) else [body]
        problems = []
        for item in items:
            event = item.get("data") if isinstance(item, dict) else None
            if not isinstance(event, dict):
                continue  # the response schema has said so already
            kind = event.get("type")
            if kind not in spec.definitions or "." not in str(kind):
                problems.append(f"event {event.get('id')}: type {kind!r} is not described")
                continue
            problems += [
                f"event {event.get('id')} ({kind}): {p}"
                for p in _problems(spec.validator({"$ref": f"#/definitions/{kind}"}), event)
            ]
        return problems


def _problems(validator: Draft4Validator, body: Any) -> list[str]:
    errors = [leaf for error in validator.iter_errors(body) for leaf in _leaves(error)]
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '(root)'}: {error.message}"
        for error in sorted(errors, key=lambda e: [str(p) for p in e.absolute_path])
    ]


def _leaves(error: ValidationError) -> list[ValidationError]:
    """An x-nullable value that is neither null nor valid: the reasons it is not valid,
    rather than "is not valid under any of the given schemas"."""
    if error.validator != "anyOf" or not error.context:
        return [error]
    not_null = [e for e in error.context if e.schema != {"type": "null"}]
    return [leaf for e in not_null for leaf in _leaves(e)] or [error]


CLEVER_API = ApiDescription("v3.0.json", "v3.0-events.json")
