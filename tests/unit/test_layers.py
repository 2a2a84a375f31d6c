"""Values merge rules (Helm's) and provenance."""

from __future__ import annotations

import copy

from hypothesis import given
from hypothesis import strategies as st

from floe_deploy_assets.values.layers import LayeredValues, merge_values

scalars = st.one_of(st.integers(), st.text(max_size=5), st.booleans())
keys = st.sampled_from(["a", "b", "c", "d/e", "f~g"])
values_trees = st.recursive(
    st.one_of(scalars, st.lists(scalars, max_size=3)),
    lambda children: st.dictionaries(keys, children, max_size=4),
    max_leaves=12,
)
documents = st.dictionaries(keys, values_trees, max_size=4)


def test_maps_merge_and_lists_replace():
    base = {"a": {"x": 1, "y": [1, 2]}, "keep": True}
    merged = merge_values(base, {"a": {"y": [3], "z": 2}})
    assert merged == {"a": {"x": 1, "y": [3], "z": 2}, "keep": True}


def test_null_deletes_the_key_like_helm():
    merged = merge_values({"a": {"x": 1, "y": 2}}, {"a": {"x": None}, "missing": None})
    assert merged == {"a": {"y": 2}}


def test_scalar_over_map_and_map_over_scalar_replace():
    assert merge_values({"a": {"x": 1}}, {"a": 5}) == {"a": 5}
    assert merge_values({"a": 5}, {"a": {"x": 1}}) == {"a": {"x": 1}}


def test_empty_map_over_a_map_changes_nothing():
    assert merge_values({"a": {"x": 1}}, {"a": {}}) == {"a": {"x": 1}}


def test_an_empty_map_that_gains_keys_stops_being_a_leaf():
    layered = LayeredValues().apply("base", {"a": {}}).apply("top", {"a": {"x": 1}})
    assert layered.provenance == {"/a/x": "top"}


def test_provenance_names_the_layer_of_each_leaf():
    layered = (
        LayeredValues()
        .apply("chart defaults", {"dagster": {"replicas": 1, "image": "d:1"}, "otel": {"on": True}})
        .apply("preset", {"dagster": {"replicas": 2}})
        .apply("overrides", {"otel": None, "dagster": {"extra/key": [1]}})
    )
    assert layered.provenance == {
        "/dagster/replicas": "preset",
        "/dagster/image": "chart defaults",
        "/dagster/extra~1key": "overrides",
    }
    assert layered.describe().splitlines()[0].split() == ["/dagster/extra~1key", "overrides"]
    assert layered.layers == ("chart defaults", "preset", "overrides")


@given(base=documents, override=documents)
def test_inputs_are_never_mutated(base, override):
    before = (copy.deepcopy(base), copy.deepcopy(override))
    merged = merge_values(base, override)
    if merged:
        merged.clear()
    assert (base, override) == before


@given(base=documents, override=documents)
def test_an_override_leaf_always_wins(base, override):
    merged = merge_values(base, override)
    for key, value in override.items():
        if value is not None and not isinstance(value, dict):
            assert merged[key] == value


@given(base=documents, left=documents, right=documents)
def test_layers_on_disjoint_keys_commute(base, left, right):
    right = {k: v for k, v in right.items() if k not in left}
    assert merge_values(base, left, right) == merge_values(base, right, left)


@given(base=documents, override=documents)
def test_every_leaf_has_provenance_and_nothing_else_does(base, override):
    layered = LayeredValues().apply("base", base).apply("override", override)
    assert set(layered.provenance) == set(_leaf_pointers(layered.values, ""))


def _leaf_pointers(value, pointer):
    if pointer == "" and not value:
        return
    if isinstance(value, dict) and value:
        for key, item in value.items():
            token = key.replace("~", "~0").replace("/", "~1")
            yield from _leaf_pointers(item, f"{pointer}/{token}")
    else:
        yield pointer
