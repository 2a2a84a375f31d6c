"""Which models of a run may start, and which are skipped after a failure (no I/O).

A model starts once every upstream model in the run has succeeded. Upstream models outside the
selection are taken as already built, as ``dbt run --select`` does. When a model fails, every
model downstream of it is skipped, with a reason naming the failed model.
"""

from __future__ import annotations

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
    wanted = list(dict.fromkeys(select))
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ConfigError(
            f"--select {', '.join(unknown)}: no such model in transforms.models "
            f"(models: {', '.join(known)})"
        )
    return {name: known[name] for name in known if name in wanted}


class RunPlan:
    def __init__(self, models: Mapping[str, Iterable[str]]) -> None:
        self._upstream = {
            name: tuple(dep for dep in deps if dep in models) for name, deps in models.items()
        }
        self._check_acyclic()
        self._waiting = list(self._upstream)  # document order: ties start in that order
        self.outcomes: dict[str, Outcome] = {}
        self.skip_reasons: dict[str, str] = {}

    def _check_acyclic(self) -> None:
        done: set[str] = set()
        remaining = dict(self._upstream)
        while remaining:
            ready = [name for name, deps in remaining.items() if done.issuperset(deps)]
            if not ready:
                raise ConfigError(f"dependency cycle among models: {', '.join(sorted(remaining))}")
            done.update(ready)
            for name in ready:
                del remaining[name]

    def upstream(self, model: str) -> tuple[str, ...]:
        """The models of this run that ``model`` waits for."""
        return self._upstream[model]

    @property
    def finished(self) -> bool:
        return len(self.outcomes) == len(self._upstream)

    def take_ready(self, limit: int) -> list[str]:
        """Up to ``limit`` models whose upstream models all succeeded; they leave the waiting
        list (the caller starts them)."""
        ready = [
            name
            for name in self._waiting
            if all(self.outcomes.get(dep) is Outcome.SUCCEEDED for dep in self._upstream[name])
        ][: max(0, limit)]
        self._waiting = [name for name in self._waiting if name not in ready]
        return ready

    def record(self, model: str, succeeded: bool) -> dict[str, str]:
        """Record how ``model`` ended; returns the models skipped because of it, with reasons."""
        self.outcomes[model] = Outcome.SUCCEEDED if succeeded else Outcome.FAILED
        return {} if succeeded else self._skip_downstream_of(model)

    def _skip_downstream_of(self, failed: str) -> dict[str, str]:
        skipped: dict[str, str] = {}
        blocked = {failed}
        changed = True
        while changed:  # transitively, in document order
            changed = False
            for name in list(self._waiting):
                via = next((dep for dep in self._upstream[name] if dep in blocked), None)
                if via is None:
                    continue
                reason = f"upstream model {failed} failed"
                skipped[name] = reason if via == failed else f"{reason} (via {via})"
                blocked.add(name)
                self._waiting.remove(name)
                changed = True
        for name, reason in skipped.items():
            self.outcomes[name] = Outcome.SKIPPED
            self.skip_reasons[name] = reason
        return skipped
