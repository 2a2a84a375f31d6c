"""Drift: where a live object differs from the release manifest, in the fields the manifest sets.

Fields the manifest does not set (defaults the API server filled in, status, fields other
controllers own) are not drift: only what Helm applied is compared, as Flux's drift detection
compares a dry-run apply of the stored manifest. Differences are reported as JSON Pointers and
never with values, so a drifted Secret leaks nothing.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kubernetes.utils import parse_quantity

# Fields a manifest may carry that the API server rewrites or owns by design.
IGNORED_POINTERS = ("/metadata/namespace", "/status")


@dataclass(frozen=True)
class DriftedObject:
    kind: str
    name: str
    pointers: tuple[str, ...]  # where live differs; ("",) when the object is missing

    @property
    def missing(self) -> bool:
        return self.pointers == ("",)

    def __str__(self) -> str:
        if self.missing:
            return f"{self.kind}/{self.name} is missing"
        return f"{self.kind}/{self.name} differs at {', '.join(self.pointers)}"


def _escape(key: str) -> str:
    return key.replace("~", "~0").replace("/", "~1")


def _same_scalar(desired: Any, live: Any, pointer: str) -> bool:
    if desired == live:
        return True
    if isinstance(desired, bool) or isinstance(live, bool):
        return False
    # The API server stores quantities canonically ("1000m" comes back as "1").
    if "/resources/" in pointer or pointer.endswith("/storage"):
        try:
            return bool(parse_quantity(desired) == parse_quantity(live))
        except (ValueError, TypeError):
            return False
    return False


def differences(desired: Any, live: Any, pointer: str = "") -> list[str]:
    """JSON Pointers under which ``live`` differs from ``desired``, for the fields ``desired``
    sets (a null in ``desired`` sets nothing)."""
    if pointer in IGNORED_POINTERS or desired is None:
        return []
    if isinstance(desired, Mapping):
        if not isinstance(live, Mapping):
            return [pointer] if desired or live is not None else []
        found = []
        for key, value in desired.items():
            found += differences(value, live.get(key), f"{pointer}/{_escape(str(key))}")
        return found
    if isinstance(desired, Sequence) and not isinstance(desired, str):
        if not isinstance(live, Sequence) or isinstance(live, str) or len(live) != len(desired):
            return [pointer]
        found = []
        for index, (want, have) in enumerate(zip(desired, live, strict=True)):
            found += differences(want, have, f"{pointer}/{index}")
        return found
    return [] if _same_scalar(desired, live, pointer) else [pointer]


def scaled_elsewhere(manifest: Iterable[Mapping[str, Any]]) -> set[tuple[str, str]]:
    """(kind, name) of workloads an HPA in the same manifest scales: their replicas are the
    autoscaler's to set, not drift (Flux issue #803 shows the noise otherwise)."""
    return {
        (target["kind"], target["name"])
        for obj in manifest
        if obj.get("kind") == "HorizontalPodAutoscaler"
        and (target := obj.get("spec", {}).get("scaleTargetRef"))
    }


def drifted(
    manifest: Sequence[Mapping[str, Any]], live: Sequence[Mapping[str, Any] | None]
) -> list[DriftedObject]:
    """The manifest's objects whose live counterpart (same position in ``live``; None when it
    does not exist) differs in the fields the manifest sets."""
    autoscaled = scaled_elsewhere(manifest)
    found = []
    for desired, current in zip(manifest, live, strict=True):
        kind, name = desired["kind"], desired["metadata"]["name"]
        if current is None:
            found.append(DriftedObject(kind, name, ("",)))
            continue
        pointers = differences(desired, current)
        if (kind, name) in autoscaled:
            pointers = [p for p in pointers if p != "/spec/replicas"]
        if pointers:
            found.append(DriftedObject(kind, name, tuple(pointers)))
    return found
