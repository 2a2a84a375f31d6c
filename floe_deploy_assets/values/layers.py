"""Merging values layers the way Helm coalesces them, remembering which layer set each leaf.

Merge rules (the same as Helm's for user values over chart defaults):

- maps merge key by key, recursively;
- anything else (scalars, lists) replaces what was below it: lists are never concatenated;
- a map over a scalar, or a scalar over a map, replaces it too (the upper layer wins);
- ``null`` deletes the key from the result, as ``--set key=null`` does in Helm;
- inputs are never modified: every merge returns new objects.

A *leaf* is a scalar, a list or an empty map; its provenance is the name of the layer that last
set it, keyed by its JSON pointer (RFC 6901).
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


def pointer_token(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _leaves(value: Any, pointer: str) -> list[str]:
    if isinstance(value, Mapping) and value:
        return [
            leaf
            for key, item in value.items()
            for leaf in _leaves(item, f"{pointer}/{pointer_token(str(key))}")
        ]
    return [pointer]


def _under(pointer: str, prefix: str) -> bool:
    return pointer == prefix or pointer.startswith(prefix + "/")


@dataclass(frozen=True)
class LayeredValues:
    """Values built from named layers, lowest first, with per-leaf provenance."""

    values: dict[str, Any] = field(default_factory=dict)  # shared structure: copy before mutating
    provenance: dict[str, str] = field(default_factory=dict)
    layers: tuple[str, ...] = ()

    def apply(self, layer: str, override: Mapping[str, Any]) -> LayeredValues:
        provenance = dict(self.provenance)
        values = _merge(self.values, override, "", layer, provenance)
        return LayeredValues(values, provenance, (*self.layers, layer))

    def describe(self) -> str:
        """One line per leaf: pointer and the layer that set it, in pointer order."""
        width = max((len(p) for p in self.provenance), default=0)
        return "\n".join(f"{p:<{width}}  {self.provenance[p]}" for p in sorted(self.provenance))


def _merge(
    base: Mapping[str, Any],
    override: Mapping[str, Any],
    pointer: str,
    layer: str,
    provenance: dict[str, str],
) -> dict[str, Any]:
    # Subtrees no layer touches are shared with ``base``; everything taken from ``override`` is
    # copied, so no caller's input ends up inside (or mutated through) the result.
    merged = dict(base)
    for key, value in override.items():
        child = f"{pointer}/{pointer_token(str(key))}"
        below = merged.get(key)
        if isinstance(value, Mapping) and isinstance(below, Mapping):
            merged[key] = _merge(below, value, child, layer, provenance)
            if merged[key]:
                provenance.pop(child, None)  # an empty map that gained keys is no longer a leaf
            continue
        for stale in [p for p in provenance if _under(p, child)]:
            del provenance[stale]
        if value is None:
            merged.pop(key, None)
            continue
        merged[key] = copy.deepcopy(value)
        for leaf in _leaves(value, child):
            provenance[leaf] = layer
    return merged


def merge_values(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Merge plain values layers, lowest first, without provenance."""
    result = LayeredValues()
    for index, layer in enumerate(layers):
        result = result.apply(str(index), layer)
    return result.values
