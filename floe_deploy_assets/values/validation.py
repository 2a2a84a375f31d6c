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
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from jsonschema import Draft202012Validator, validators
from jsonschema.exceptions import ValidationError as SchemaError

from floe_deploy_assets.models.resources import (
    CPU_FORMAT,
    MEMORY_FORMAT,
    cpu_millicores,
    cpu_problem,
    memory_bytes,
    memory_problem,
)
from floe_deploy_assets.models.rules import (
    CRON_FORMAT,
    LIMITS_KEYWORD,
    cron_problem,
    echo,
    summarize,
)
from floe_deploy_assets.values.layers import pointer_token

PATTERN_SHOWN_MAX = 60

FORMATS: dict[str, Callable[[str], str | None]] = {
    CPU_FORMAT: cpu_problem,
    MEMORY_FORMAT: memory_problem,
    CRON_FORMAT: cron_problem,
}


@dataclass(frozen=True, order=True)
class ValuesProblem:
    pointer: str
    message: str
    rule: str = "schema"

    def __str__(self) -> str:
        return f"{self.pointer or '/'}: {self.message}"


@functools.lru_cache(maxsize=512)
def go_regex(pattern: str) -> re.Pattern[str]:
    """``pattern`` compiled to match as Go's RE2 matches it (for the portable subset)."""
    translated: list[str] = []
    escaped, class_start = False, -1  # class_start: where the open class's "[" is, or -1
    for index, char in enumerate(pattern):
        if escaped:
            escaped = False
        elif char == "\\":
            escaped = True
        elif class_start >= 0:
            # "]" closes a class unless it is the class's first character ("[]a]", "[^]a]").
            first = class_start + (2 if pattern[class_start + 1 : class_start + 2] == "^" else 1)
            if char == "]" and index > first:
                class_start = -1
        elif char == "[":
            class_start = index
        elif char == "$":
            char = "\\Z"
        translated.append(char)
    return re.compile("".join(translated), re.ASCII)


def _go_pattern(
    validator: Any, pattern: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[SchemaError]:
    if validator.is_type(instance, "string") and not go_regex(pattern).search(instance):
        yield SchemaError(f"does not match the pattern {pattern}")


def _format(
    validator: Any, name: str, instance: Any, schema: Mapping[str, Any]
) -> Iterator[SchemaError]:
    check = FORMATS.get(name)
    if check is None or not validator.is_type(instance, "string"):
        return
    if "pattern" in schema and not go_regex(schema["pattern"]).search(instance):
        return  # the pattern's finding says it
    problem = check(instance)
    if problem:
        # The checks' messages never quote a quantity; a cron expression is no secret.
        yield SchemaError(problem)


def _limits_cover_requests(
    validator: Any, enabled: bool, instance: Any, schema: Mapping[str, Any]
) -> Iterator[SchemaError]:
    if not (enabled and validator.is_type(instance, "object")):
        return
    requests, limits = instance.get("requests"), instance.get("limits")
    if not (isinstance(requests, Mapping) and isinstance(limits, Mapping)):
        return  # "required" and "type" say what is missing
    for resource, problem, amount in (
        ("cpu", cpu_problem, cpu_millicores),
        ("memory", memory_problem, memory_bytes),
    ):
        wanted, most = requests.get(resource), limits.get(resource)
        if not (isinstance(wanted, str) and isinstance(most, str)):
            continue
        if problem(wanted) or problem(most):
            continue  # reported at the quantity itself
        if amount(most) < amount(wanted):
            yield SchemaError(
                f"limits.{resource} is below requests.{resource} (Kubernetes refuses a limit "
                "below its request)"
            )


ValuesValidator = validators.extend(
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
    validator = ValuesValidator(schema)
    problems = {
        ValuesProblem(_pointer(error.absolute_path), _describe(error))
        for error in validator.iter_errors(values)
    }
    return sorted(problems)
