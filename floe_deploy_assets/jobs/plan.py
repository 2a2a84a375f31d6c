"""Which models of a run may start, and which are skipped after a failure (no I/O).

A model starts once every upstream model in the run has succeeded. Upstream models outside the
selection are taken as already built, as ``dbt run --select`` does. When a model fails, every
model downstream of it is skipped, with a reason naming the failed model.
"""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Mapping, Sequence
from enum import StrEnum
from typing import Protocol

from floe_deploy_assets.models.config import ConfigError


class Outcome(StrEnum):
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SKIPPED = "Skipped"


class DbtModelLike(Protocol):
    """A model as CompiledArtifacts' ``transforms.models`` has it."""

    @property
    def name(self) -> str: ...

    @property
    def depends_on(self) -> list[str]: ...


def select_models(
    models: Sequence[DbtModelLike], select: Iterable[str] | None = None
) -> dict[str, tuple[str, ...]]:
    """Model name -> its upstream models, for the selected models (all when ``select`` is None),
    in the document's order."""
    known = {model.name: tuple(model.depends_on) for model in models}
    if select is None:
        return known
    wanted = dict.fromkeys(select)  # a dict, not a list: a lookup per model, not a scan
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ConfigError(
            f"--select {', '.join(unknown)}: no such model in transforms.models "
            f"(models: {', '.join(known)})"
        )
    return {name: known[name] for name in known if name in wanted}


def dependents(models: Mapping[str, Iterable[str]]) -> dict[str, list[str]]:
    """Model name -> the models of ``models`` that depend on it directly, each once, in the
    document's order: the dependencies turned around, in one pass over them."""
    found: dict[str, list[str]] = {name: [] for name in models}
    for name, upstream in models.items():
        for dependency in dict.fromkeys(upstream):
            if dependency in found:
                found[dependency].append(name)
    return found


class RunPlan:
    """The models of one run, as they start and end. Linear in models and dependencies over a
    whole run (but for a heap's log factor): each model counts its upstream models that have
    not succeeded yet, and joins the ready models when that count reaches 0; no call rescans
    the models that wait."""

    def __init__(self, models: Mapping[str, Iterable[str]]) -> None:
        self._upstream = {
            name: tuple(dep for dep in deps if dep in models) for name, deps in models.items()
        }
        self._names = list(self._upstream)  # document order: ties start in that order
        self._position = {name: index for index, name in enumerate(self._names)}
        self._dependents = dependents(self._upstream)
        # Per model, its upstream models (each once) that have not succeeded yet.
        self._unmet = {name: len(set(deps)) for name, deps in self._upstream.items()}
        self._check_acyclic()
        self._waiting = set(self._upstream)  # neither taken nor skipped
        # Positions of the waiting models whose upstream models all succeeded: a heap, so that
        # they are taken in document order. Ascending, so already a heap.
        self._ready = [index for index, name in enumerate(self._names) if not self._unmet[name]]
        self.outcomes: dict[str, Outcome] = {}
        self.skip_reasons: dict[str, str] = {}

    def _check_acyclic(self) -> None:
        """Kahn's algorithm: the models never freed of their upstream models are on a cycle or
        below one."""
        unmet = dict(self._unmet)
        free = [name for name, count in unmet.items() if not count]
        while free:
            for dependent in self._dependents[free.pop()]:
                unmet[dependent] -= 1
                if not unmet[dependent]:
                    free.append(dependent)
        stuck = sorted(name for name, count in unmet.items() if count)
        if stuck:
            raise ConfigError(f"dependency cycle among models: {', '.join(stuck)}")

    def upstream(self, model: str) -> tuple[str, ...]:
        """The models of this run that ``model`` waits for."""
        return self._upstream[model]

    @property
    def finished(self) -> bool:
        return len(self.outcomes) == len(self._upstream)

    def take_ready(self, limit: int) -> list[str]:
        """Up to ``limit`` models whose upstream models all succeeded, the first in document
        order; they leave the waiting models (the caller starts them)."""
        count = min(max(0, limit), len(self._ready))
        taken = [self._names[heapq.heappop(self._ready)] for _ in range(count)]
        self._waiting.difference_update(taken)
        return taken

    def record(self, model: str, succeeded: bool) -> dict[str, str]:
        """Record how ``model`` ended; returns the models skipped because of it, with reasons."""
        self.outcomes[model] = Outcome.SUCCEEDED if succeeded else Outcome.FAILED
        if not succeeded:
            return self._skip_downstream_of(model)
        for dependent in self._dependents[model]:
            self._unmet[dependent] -= 1
            if not self._unmet[dependent] and dependent in self._waiting:
                heapq.heappush(self._ready, self._position[dependent])
        return {}

    def _skip_downstream_of(self, failed: str) -> dict[str, str]:
        """Skips the waiting models below ``failed``. The rule, in its simplest statement (the
        unit tests' reference): passes over the waiting models in document order, repeated
        until one skips nothing, skip a model once one of its upstream models failed or was
        skipped before the pass reached it, and its reason names ("via") the first such
        upstream model. The same passes without rescanning: below a model skipped in a pass,
        a model later in the document is reached in that pass, an earlier one in the next;
        each pass is a heap of document positions."""
        reason = f"upstream model {failed} failed"
        skipped: dict[str, str] = {}
        blocked = {failed}
        this_pass = [self._position[d] for d in self._dependents[failed] if d in self._waiting]
        heapq.heapify(this_pass)
        next_pass: list[int] = []
        while this_pass or next_pass:
            if not this_pass:
                this_pass, next_pass = next_pass, []
            position = heapq.heappop(this_pass)
            name = self._names[position]
            if name in blocked:
                continue  # reached through more than one upstream model
            via = next(dep for dep in self._upstream[name] if dep in blocked)
            skipped[name] = reason if via == failed else f"{reason} (via {via})"
            blocked.add(name)
            for dependent in self._dependents[name]:
                if dependent in self._waiting and dependent not in blocked:
                    later = self._position[dependent] > position
                    heapq.heappush(this_pass if later else next_pass, self._position[dependent])
        self._waiting.difference_update(skipped)
        for name, why in skipped.items():
            self.outcomes[name] = Outcome.SKIPPED
            self.skip_reasons[name] = why
        return skipped
