"""Problems with generated values, as (JSON pointer, message) pairs that never echo a value.

jsonschema's own messages quote the offending instance ("'hunter2' is not of type 'integer'"),
and a misplaced credential is exactly what would be quoted, so messages are rebuilt here from
the failed keyword and the schema alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError as SchemaError

from floe_deploy_assets.values.layers import pointer_token


@dataclass(frozen=True, order=True)
class ValuesProblem:
    pointer: str
    message: str
    rule: str = "schema"

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message}"


def _pointer(path: Iterable[Any]) -> str:
    return "".join(f"/{pointer_token(str(part))}" for part in path)


def _describe(error: SchemaError) -> str:
    keyword, expected = error.validator, error.validator_value
    if keyword == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = (
            sorted(set(error.instance) - set(allowed))
            if isinstance(error.instance, Mapping)
            else []
        )
        return (
            f"unknown key {', '.join(map(repr, unknown))}; allowed here: "
            f"{', '.join(allowed) or 'none'}"
        )
    if keyword == "required":
        return f"missing required key {error.message.split(' is a required')[0]}"
    if keyword == "type":
        return f"must be of type {expected}"
    if keyword == "enum":
        return f"must be one of {', '.join(map(str, expected))}"
    if keyword == "const":
        return f"must be {expected!r}"
    if keyword == "pattern":
        return f"must match the pattern {expected}"
    bounds = {"minimum": ">=", "maximum": "<=", "exclusiveMinimum": ">", "exclusiveMaximum": "<"}
    if keyword in bounds:
        return f"must be {bounds[keyword]} {expected}"
    if keyword in ("minLength", "maxLength", "minItems", "maxItems"):
        return f"violates {keyword} {expected}"
    if keyword in ("anyOf", "oneOf"):
        return "matches none of the allowed shapes"
    return f"fails the schema's {keyword!r} rule"


def schema_problems(values: Mapping[str, Any], schema: Mapping[str, Any]) -> list[ValuesProblem]:
    """Every place where ``values`` breaks ``schema`` (validated as Helm does: merged values)."""
    validator = Draft202012Validator(schema)
    problems = {
        ValuesProblem(_pointer(error.absolute_path), _describe(error))
        for error in validator.iter_errors(values)
    }
    return sorted(problems)
