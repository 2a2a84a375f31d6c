"""What the values schemas' keywords mean here, and a yes/no check of values against them.

``conforms`` answers "do these values pass the chart's schema?" without jsonschema: importing
jsonschema and building its validator costs about a fifth of ``floe-deploy values``' start-up,
and values that pass (nearly always) need no explanation. Only values that fail go to
jsonschema (``validation.py``), which says where and why; both use the keyword meanings defined
here (Go's regexp for ``pattern``, our formats, ``x-limits-cover-requests``), and
``tests/unit/test_conformance.py`` holds the two to the same verdict.

``conforms`` knows the keywords our schemas use (``values/schema.py`` writes them). A schema with
any other assertion raises ``UnsupportedSchemaError``, so an unknown keyword is never read as
"passes": the caller then asks jsonschema.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from floe_deploy_assets.models.resources import (
    CPU_FORMAT,
    MEMORY_FORMAT,
    cpu_millicores,
    cpu_problem,
    memory_bytes,
    memory_problem,
)
from floe_deploy_assets.models.rules import CRON_FORMAT, LIMITS_KEYWORD, cron_problem

FORMATS: dict[str, Callable[[str], str | None]] = {
    CPU_FORMAT: cpu_problem,
    MEMORY_FORMAT: memory_problem,
    CRON_FORMAT: cron_problem,
}

# Keywords that assert nothing about the instance (JSON Schema's annotations and containers).
ANNOTATIONS = frozenset(
    ("$schema", "$defs", "$comment", "title", "description", "default", "examples", "deprecated")
)


class UnsupportedSchemaError(Exception):
    """The schema uses a keyword ``conforms`` does not implement; ask jsonschema instead."""


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


def format_problem(name: str, text: str, schema: Mapping[str, Any]) -> str | None:
    """What is wrong with ``text`` as format ``name``; None when it is fine, when the format is
    not ours (Helm asserts none) or when the schema's pattern already refuses it (that finding
    says it)."""
    check = FORMATS.get(name)
    if check is None:
        return None
    if "pattern" in schema and not go_regex(schema["pattern"]).search(text):
        return None
    return check(text)


def limits_problems(resources: Mapping[str, Any]) -> Iterator[str]:
    """Each resource whose limit is below its request (the rule ``x-limits-cover-requests``);
    a missing or malformed quantity is left to ``required``, ``type`` and the formats."""
    requests, limits = resources.get("requests"), resources.get("limits")
    if not (isinstance(requests, Mapping) and isinstance(limits, Mapping)):
        return
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
            yield (
                f"limits.{resource} is below requests.{resource} (Kubernetes refuses a limit "
                "below its request)"
            )


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, Mapping),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": _is_number,
    # JSON Schema counts 1.0 as an integer; a bool is never a number.
    "integer": lambda v: _is_number(v) and (isinstance(v, int) or float(v).is_integer()),
}


def json_equal(one: Any, other: Any) -> bool:
    """Equality as JSON means it (``enum``, ``const``): true is not 1, 1 is 1.0."""
    if isinstance(one, bool) or isinstance(other, bool):
        return isinstance(one, bool) and isinstance(other, bool) and one == other
    if isinstance(one, Mapping) and isinstance(other, Mapping):
        return one.keys() == other.keys() and all(json_equal(one[k], other[k]) for k in one)
    if isinstance(one, list) and isinstance(other, list):
        return len(one) == len(other) and all(map(json_equal, one, other))
    if _is_number(one) and _is_number(other):
        return bool(one == other)
    return type(one) is type(other) and one == other


def conforms(instance: Any, schema: Mapping[str, Any]) -> bool:
    """Whether ``instance`` passes ``schema`` (a values.schema.json: local ``$ref`` only)."""
    return _Checker(schema).passes(instance, schema)


class _Checker:
    def __init__(self, root: Mapping[str, Any]) -> None:
        self.root = root

    def resolve(self, reference: str) -> Mapping[str, Any]:
        if not reference.startswith("#/"):
            raise UnsupportedSchemaError(f"$ref {reference} (only local references are read here)")
        target: Any = self.root
        for token in reference[2:].split("/"):
            target = target[token.replace("~1", "/").replace("~0", "~")]
        return target  # type: ignore[no-any-return]

    def passes(self, instance: Any, schema: Mapping[str, Any] | bool) -> bool:
        if isinstance(schema, bool):
            return schema
        objects_checked = False  # the object keywords are read together, once
        for keyword, expected in schema.items():
            if keyword in ANNOTATIONS or keyword in ("then", "else"):  # "then": under "if"
                continue
            if keyword in OBJECT_KEYWORDS:
                if not objects_checked and not _object_keywords(self, instance, schema):
                    return False
                objects_checked = True
                continue
            check = _KEYWORDS.get(keyword)
            if check is None:
                raise UnsupportedSchemaError(f"keyword {keyword!r}")
            if not check(self, instance, expected, schema):
                return False
        return True


Check = Callable[[_Checker, Any, Any, Mapping[str, Any]], bool]


def _type(checker: _Checker, instance: Any, expected: Any, schema: Mapping[str, Any]) -> bool:
    names = [expected] if isinstance(expected, str) else expected
    return any(TYPES[name](instance) for name in names)


OBJECT_KEYWORDS = ("properties", "patternProperties", "additionalProperties")


def _object_keywords(checker: _Checker, instance: Any, schema: Mapping[str, Any]) -> bool:
    """``properties``, ``patternProperties`` and ``additionalProperties`` together: which keys
    are additional depends on the other two."""
    if not isinstance(instance, Mapping):
        return True
    properties = schema.get("properties", {})
    patterns = schema.get("patternProperties", {})
    additional = schema.get("additionalProperties", True)
    for key, value in instance.items():
        matched = [p for p in patterns if re.search(p, key)]  # as jsonschema: Python's search
        if key in properties and not checker.passes(value, properties[key]):
            return False
        if any(not checker.passes(value, patterns[p]) for p in matched):
            return False
        if key not in properties and not matched and not checker.passes(value, additional):
            return False
    return True


def _if(checker: _Checker, instance: Any, expected: Any, schema: Mapping[str, Any]) -> bool:
    branch = "then" if checker.passes(instance, expected) else "else"
    return branch not in schema or checker.passes(instance, schema[branch])


def _bound(compare: Callable[[Any, Any], bool]) -> Check:
    return lambda _c, instance, expected, _s: (
        not _is_number(instance) or compare(instance, expected)
    )


def _length(compare: Callable[[int, int], bool], kind: type[str] | type[list[Any]]) -> Check:
    return lambda _c, instance, expected, _s: (
        not isinstance(instance, kind) or compare(len(instance), expected)
    )


def _when_string(test: Callable[[str, Any, Mapping[str, Any]], bool]) -> Check:
    return lambda _c, instance, expected, schema: (
        not isinstance(instance, str) or test(instance, expected, schema)
    )


_KEYWORDS: dict[str, Check] = {
    "type": _type,
    "$ref": lambda c, instance, ref, _s: c.passes(instance, c.resolve(ref)),
    "required": lambda _c, instance, names, _s: (
        not isinstance(instance, Mapping) or all(name in instance for name in names)
    ),
    "propertyNames": lambda c, instance, names, _s: (
        not isinstance(instance, Mapping) or all(c.passes(key, names) for key in instance)
    ),
    "items": lambda c, instance, items, _s: (
        not isinstance(instance, list) or all(c.passes(item, items) for item in instance)
    ),
    "allOf": lambda c, instance, schemas, _s: all(c.passes(instance, s) for s in schemas),
    "anyOf": lambda c, instance, schemas, _s: any(c.passes(instance, s) for s in schemas),
    "oneOf": lambda c, instance, schemas, _s: sum(c.passes(instance, s) for s in schemas) == 1,
    "not": lambda c, instance, negated, _s: not c.passes(instance, negated),
    "if": _if,
    "enum": lambda _c, instance, options, _s: any(json_equal(instance, o) for o in options),
    "const": lambda _c, instance, value, _s: json_equal(instance, value),
    "pattern": _when_string(lambda text, pattern, _s: bool(go_regex(pattern).search(text))),
    "format": _when_string(lambda text, name, schema: format_problem(name, text, schema) is None),
    "minLength": _length(lambda n, limit: n >= limit, str),
    "maxLength": _length(lambda n, limit: n <= limit, str),
    "minItems": _length(lambda n, limit: n >= limit, list),
    "maxItems": _length(lambda n, limit: n <= limit, list),
    "minimum": _bound(lambda n, limit: n >= limit),
    "maximum": _bound(lambda n, limit: n <= limit),
    "exclusiveMinimum": _bound(lambda n, limit: n > limit),
    "exclusiveMaximum": _bound(lambda n, limit: n < limit),
    LIMITS_KEYWORD: lambda _c, instance, enabled, _s: (
        not (enabled and isinstance(instance, Mapping))
        or next(limits_problems(instance), None) is None
    ),
}
