"""Problems with generated values, as (JSON pointer, message) pairs that never echo a value.

jsonschema's own messages quote the offending instance ("'hunter2' is not of type 'integer'"),
and a misplaced credential is exactly what would be quoted, so messages are rebuilt here from
the failed keyword and the schema alone.

Semantics: as Helm's, and stricter where Helm cannot see.

- ``pattern`` is applied as Go's regexp (RE2, what Helm uses) applies it: ``$`` is the end of the
  text, never "before a final newline" as in Python, and classes are ASCII. Our patterns are
  written in the portable subset (models/rules.py), where replacing each ``$`` outside a class by
  ``\\Z`` and compiling with ``re.ASCII`` gives exactly RE2's answer; so "0.5.0\\n" or
  Arabic-Indic digits are refused by both.
- ``format`` ``kubernetes-cpu``, ``kubernetes-memory`` and ``cron``, and the keyword
  ``x-limits-cover-requests``, are enforced here (bounds, cron fields, limits >= requests); Helm
  asserts no format and ignores unknown keywords, so for Helm they are annotations.

The keywords' meanings live in ``conformance.py``, whose quick yes/no check goes first: only
values that fail it (or a schema it cannot read) bring in jsonschema, to say where and why.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from floe_deploy_assets.models.rules import LIMITS_KEYWORD, echo, summarize
from floe_deploy_assets.values.conformance import (
    UnsupportedSchemaError,
    conforms,
    format_problem,
    go_regex,
    limits_problems,
)
from floe_deploy_assets.values.layers import pointer_token

if TYPE_CHECKING:
    from jsonschema.exceptions import ValidationError as SchemaError

PATTERN_SHOWN_MAX = 60


@dataclass(frozen=True, order=True)
class ValuesProblem:
    pointer: str
    message: str
    rule: str = "schema"

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message}"


def _go_pattern(
    validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[SchemaError]:
    from jsonschema.exceptions import ValidationError

    if validator.is_type(instance, "string") and not go_regex(pattern).search(instance):
        yield ValidationError(f"does not match the pattern {pattern}")


def _format(
    validator: Any, name: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[SchemaError]:
    from jsonschema.exceptions import ValidationError

    problem = (
        format_problem(name, instance, schema) if validator.is_type(instance, "string") else None
    )
    if problem:
        # The checks' messages never quote a quantity; a cron expression is no secret.
        yield ValidationError(problem)


def _limits_cover_requests(
    validator: Any, enabled: bool, instance: Any, schema: Mapping[str, Any]
) -> Iterator[SchemaError]:
    from jsonschema.exceptions import ValidationError

    if enabled and validator.is_type(instance, "object"):
        yield from map(ValidationError, limits_problems(instance))


@functools.cache
def _explaining_validator() -> Any:
    """jsonschema's 2020-12 validator with our keyword meanings; imported only when needed."""
    from jsonschema import Draft202012Validator, validators

    return validators.extend(
        Draft202012Validator,
        {"pattern": _go_pattern, "format": _format, LIMITS_KEYWORD: _limits_cover_requests},
    )


def _pointer(path: Iterable[Any]) -> str:
    return "".join(f"/{pointer_token(str(part))}" for part in path)


def _must_match(pattern: str) -> str:
    # A long pattern (a label key's is 150 characters) would make every finding a paragraph.
    if len(pattern) <= PATTERN_SHOWN_MAX:
        return f"must match the pattern {pattern}"
    return "must match the pattern values.schema.json gives here (too long to show)"


def _describe(error: SchemaError) -> str:
    """What is wrong; for a rule that holds only in some cases (``if``/``then``), why: the
    description the ``then`` branch gives where it fails."""
    described = _what_fails(error)
    reason = error.schema.get("description") if "then" in error.absolute_schema_path else None
    return f"{described} ({reason})" if reason else described


def _what_fails(error: SchemaError) -> str:
    keyword, expected = error.validator, error.validator_value
    if "propertyNames" in error.absolute_schema_path:  # the instance is a key, not a value
        return f"key {echo(str(error.instance))} {_must_match(expected)}"
    if keyword == "additionalProperties":
        allowed = sorted(error.schema.get("properties", {}))
        unknown = (
            sorted(set(error.instance) - set(allowed))
            if isinstance(error.instance, Mapping)
            else []
        )
        return (
            f"unknown key {summarize(echo(key) for key in unknown)}; allowed here: "
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
        return _must_match(expected)
    if keyword in ("format", LIMITS_KEYWORD):
        return error.message  # built by the checks above, never quoting the value
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
    try:
        if conforms(values, schema):
            return []
    except UnsupportedSchemaError:
        pass  # jsonschema reads every keyword
    validator = _explaining_validator()(schema)
    problems = {
        ValuesProblem(_pointer(error.absolute_path), _describe(error))
        for error in validator.iter_errors(values)
    }
    return sorted(problems)
