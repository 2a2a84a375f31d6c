"""The quick yes/no values check (values/conformance.py) gives jsonschema's verdict, on the
generated values of every chart and environment and on thousands of mutations of them; and
``floe-deploy values`` answers without importing jsonschema when the values pass."""

from __future__ import annotations

import copy
import subprocess
import sys
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from floe_deploy_assets.values.conformance import UnsupportedSchemaError, conforms, json_equal
from floe_deploy_assets.values.validation import _explaining_validator, schema_problems
from tests.support.charts import ROOT, values_generator

CHARTS = ("platform", "jobs")
ENVIRONMENTS = ("dev", "staging", "prod")
GENERATED = {
    (chart, env): values_generator(chart, env)  # type: ignore[arg-type]
    for chart in CHARTS
    for env in ENVIRONMENTS
}


def jsonschema_passes(values: Any, schema: dict[str, Any]) -> bool:
    return next(_explaining_validator()(schema).iter_errors(values), None) is None


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in the document, the root included."""
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _paths(value, (*prefix, index))
    return found


def _leaves(node: Any) -> list[Any]:
    if isinstance(node, dict):
        return [leaf for value in node.values() for leaf in _leaves(value)]
    if isinstance(node, list):
        return [leaf for value in node for leaf in _leaves(value)]
    return [node]


# Values near the schemas' edges: quantities, enum members, cron, a trailing newline, numbers
# that are and are not integers, booleans that JSON does not count as numbers.
EDGE_VALUES = [
    *("", "a", "A", "-", "0", "-1", "100m", "100m\n", "0.5", "1Gi", "1Gi ", "512Mi", "1e3"),
    *("Exists", "Equal", "NoSchedule", "NoExecute", "IfNotPresent", "Always", "Never"),
    *("* * * * *", "0 3 * * *", "@daily", "61 * * * *", "\u0661\u0660\u0660m"),
    *("x" * 63, "x" * 64, "x" * 128, "x" * 129, "x" * 253, "x" * 254, "a." * 127 + "a"),
    *(True, False, None, 0, 1, -1, 1.0, 1.5, 65535, 65536, 10**9, [], {}, ["a"], {"a": 1}),
]
json_values = st.recursive(
    st.sampled_from(EDGE_VALUES) | st.text(max_size=5) | st.integers(-3, 3),
    lambda inner: st.lists(inner, max_size=2) | st.dictionaries(st.text(max_size=4), inner),
    max_leaves=4,
)


@st.composite
def mutated(draw: st.DrawFn, values: dict[str, Any]) -> dict[str, Any]:
    """The values with one to three places changed: a value replaced (by an edge value or one
    from elsewhere in the document), a key removed, or an unknown key added."""
    values = copy.deepcopy(values)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(values)[1:]))
        *parents, last = path
        parent = values
        for part in parents:
            parent = parent[part]
        action = draw(st.sampled_from(("replace", "replace", "borrow", "delete", "add")))
        if action == "replace":
            parent[last] = draw(json_values)
        elif action == "borrow":
            parent[last] = copy.deepcopy(draw(st.sampled_from(_leaves(values))))
        elif action == "delete" and isinstance(parent, dict):
            del parent[last]
        elif action == "add" and isinstance(parent[last], dict):
            parent[last][draw(st.text(min_size=1, max_size=6))] = draw(json_values)
    return values


@pytest.mark.parametrize(("chart", "env"), list(GENERATED))
def test_generated_values_conform_as_jsonschema_says(chart: str, env: str) -> None:
    generator = GENERATED[chart, env]
    values = generator.layered.values
    assert conforms(values, generator.schema)
    assert jsonschema_passes(values, generator.schema)


@pytest.mark.parametrize(("chart", "env"), list(GENERATED))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_values_get_jsonschemas_verdict(chart: str, env: str, data: st.DataObject) -> None:
    generator = GENERATED[chart, env]
    values = data.draw(mutated(generator.layered.values))
    assert conforms(values, generator.schema) == jsonschema_passes(values, generator.schema)


def test_mutations_do_reach_failing_values() -> None:
    """The property above is only worth its name if many mutations fail: count them."""
    generator = GENERATED["platform", "dev"]
    verdicts: list[bool] = []

    @settings(max_examples=200, deadline=None, database=None)
    @given(data=st.data())
    def collect(data: st.DataObject) -> None:
        verdicts.append(conforms(data.draw(mutated(generator.layered.values)), generator.schema))

    collect()
    assert verdicts.count(False) > len(verdicts) / 5
    assert verdicts.count(True) > 0


@pytest.mark.parametrize(
    ("schema", "instance", "passes"),
    [
        ({"enum": [1, "a"]}, True, False),  # true is not 1
        ({"const": 1}, 1.0, True),  # 1.0 is 1
        ({"type": "integer"}, 2.0, True),
        ({"type": "integer"}, True, False),
        ({"type": "number"}, False, False),
        ({"type": ["string", "null"]}, None, True),
        (
            {"patternProperties": {"^x-": {"type": "string"}}, "additionalProperties": False},
            {"x-a": "1"},
            True,
        ),
        (
            {"patternProperties": {"^x-": {"type": "string"}}, "additionalProperties": False},
            {"y": "1"},
            False,
        ),
        ({"$defs": {"n": {"minimum": 2}}, "$ref": "#/$defs/n", "maximum": 3}, 1, False),
        ({"$defs": {"n": {"minimum": 2}}, "$ref": "#/$defs/n", "maximum": 3}, 4, False),
        ({"$defs": {"n": {"minimum": 2}}, "$ref": "#/$defs/n", "maximum": 3}, 3, True),
        ({"if": {"const": "Exists"}, "then": False}, "Exists", False),
        ({"if": {"const": "Exists"}, "then": False, "else": {"maxLength": 2}}, "Equal", False),
        ({"pattern": "^[0-9]+$"}, "100\n", False),  # "$" is the end of the text, as in Go
        ({"format": "kubernetes-cpu"}, "0", False),
        ({"maxLength": 2}, "abc", False),
        ({"minLength": 1}, "", False),
        ({"maxLength": 2}, 123, True),  # length is asked of strings only
        ({"minItems": 1}, [], False),
        ({"maxItems": 1}, [1, 2], False),
        ({"exclusiveMinimum": 0}, 0, False),
        ({"exclusiveMaximum": 0}, -1, True),
        ({"required": ["a"]}, {"b": 1}, False),
        ({"required": ["a"]}, "not an object", True),
        ({"propertyNames": {"maxLength": 1}}, {"ab": 1}, False),
        ({"items": {"type": "string"}}, ["a", 1], False),
        ({"anyOf": [{"type": "string"}, {"minimum": 3}]}, 2, False),
        ({"allOf": [{"minimum": 1}, {"maximum": 3}]}, 2, True),
        ({"oneOf": [{"minimum": 1}, {"maximum": 3}]}, 2, False),
        ({"not": {"const": "x"}}, "x", False),
        ({"const": {"a": [1]}}, {"a": [1], "b": 2}, False),
        ({"enum": [[1, 2]]}, [1, 2], True),
        ({"additionalProperties": {"type": "integer"}}, {"a": "1"}, False),
        (
            {"x-limits-cover-requests": True},
            {"requests": {"cpu": "2"}, "limits": {"cpu": "1"}},
            False,
        ),
    ],
)
def test_keyword_meanings_agree_with_jsonschema(schema: dict, instance: Any, passes: bool) -> None:
    assert conforms(instance, schema) is passes
    assert jsonschema_passes(instance, schema) is passes


def test_an_unknown_keyword_is_never_read_as_passing() -> None:
    schema = {"type": "object", "dependentRequired": {"a": ["b"]}}
    with pytest.raises(UnsupportedSchemaError, match="dependentRequired"):
        conforms({"a": 1}, schema)
    # schema_problems then asks jsonschema, which reads every keyword.
    assert [str(p) for p in schema_problems({"a": 1}, schema)] == [
        "/: fails the schema's 'dependentRequired' rule"
    ]


def test_json_equality_is_jsons() -> None:
    assert json_equal({"a": [1, 2.0]}, {"a": [1.0, 2]})
    assert not json_equal([True], [1])
    assert not json_equal("1", 1)


def test_values_that_pass_are_answered_without_jsonschema() -> None:
    """The start-up cost this module exists to save: jsonschema is not imported by a
    ``floe-deploy values`` whose values pass (and is, to explain values that fail)."""
    script = (
        "import sys; from floe_deploy_assets.cli import main\n"
        "code = main(['values', '--env', 'dev', '--chart', 'platform'])\n"
        "print(code, 'jsonschema' in sys.modules, file=sys.stderr)"
    )
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert result.stderr.strip().splitlines()[-1] == "0 False"
