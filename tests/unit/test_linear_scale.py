"""Run planning and the reruns sensor's model lookups behave as the straightforward (quadratic)
implementations they replaced (issue 14), on random DAGs up to 2,000 models: same models
started in the same order, same skips with the same reasons in the same order, same cycle
errors, same downstream models. Speed is the benchmark's business
(benchmarks/bench_code_location.py), not these tests'."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping

import dagster as dg
import pytest

from floe_deploy_assets.defs.data_products import (
    MODELS_STEP,
    PARTITION,
    Downstream,
    _retryable_failures,
    for_failure,
)
from floe_deploy_assets.jobs.plan import Outcome, RunPlan, dependents, select_models
from floe_deploy_assets.models.artifacts import TransformModel
from floe_deploy_assets.models.config import ConfigError


# --- the implementations replaced, as they were ------------------------------------------------
class ReferencePlan:
    def __init__(self, models: Mapping[str, Iterable[str]]) -> None:
        self._upstream = {
            name: tuple(dep for dep in deps if dep in models) for name, deps in models.items()
        }
        self._check_acyclic()
        self._waiting = list(self._upstream)
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

    @property
    def finished(self) -> bool:
        return len(self.outcomes) == len(self._upstream)

    def take_ready(self, limit: int) -> list[str]:
        ready = [
            name
            for name in self._waiting
            if all(self.outcomes.get(dep) is Outcome.SUCCEEDED for dep in self._upstream[name])
        ][: max(0, limit)]
        self._waiting = [name for name in self._waiting if name not in ready]
        return ready

    def record(self, model: str, succeeded: bool) -> dict[str, str]:
        self.outcomes[model] = Outcome.SUCCEEDED if succeeded else Outcome.FAILED
        return {} if succeeded else self._skip_downstream_of(model)

    def _skip_downstream_of(self, failed: str) -> dict[str, str]:
        skipped: dict[str, str] = {}
        blocked = {failed}
        changed = True
        while changed:
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


def reference_downstream(depends_on: dict[str, list[str]]) -> dict[str, list[str]]:
    below: dict[str, list[str]] = {}
    for model in depends_on:
        found: set[str] = set()
        frontier = [model]
        while frontier:
            current = frontier.pop()
            for other, upstream in depends_on.items():
                if current in upstream and other not in found:
                    found.add(other)
                    frontier.append(other)
        below[model] = [m for m in depends_on if m in found]
    return below


# --- random DAGs -------------------------------------------------------------------------------
def random_dag(rng: random.Random, models: int, max_fan_in: int = 6) -> dict[str, list[str]]:
    """Model -> upstream models, in a shuffled document order (not the dependency order). Some
    models name an upstream model twice, or one outside the mapping (built before the run)."""
    names = [f"m{index}" for index in range(models)]  # in dependency order
    dag: dict[str, list[str]] = {}
    for index, name in enumerate(names):
        upstream = rng.sample(names[:index], rng.randint(0, min(max_fan_in, index)))
        if upstream and rng.random() < 0.1:
            upstream.append(upstream[0])
        if rng.random() < 0.1:
            upstream.insert(rng.randint(0, len(upstream)), "built_before")
        dag[name] = upstream
    order = list(dag)
    rng.shuffle(order)
    return {name: dag[name] for name in order}


def drive_both(dag: dict[str, list[str]], rng: random.Random, failure_rate: float) -> int:
    """Drives a RunPlan and the reference in lockstep, with random limits, models ending in a
    random order and random failures; every answer must be the same, in the same order.
    Returns how many models were skipped."""
    plan, reference = RunPlan(dag), ReferencePlan(dag)
    running: list[str] = []
    while not reference.finished:
        assert not plan.finished
        limit = rng.choice([-1, 0, 1, 2, 5, 50])
        taken = plan.take_ready(limit)
        assert taken == reference.take_ready(limit)
        running.extend(taken)
        if not running:
            continue
        model = running.pop(rng.randrange(len(running)))
        succeeded = rng.random() >= failure_rate
        assert list(plan.record(model, succeeded).items()) == list(
            reference.record(model, succeeded).items()
        )
    assert plan.finished
    assert list(plan.outcomes.items()) == list(reference.outcomes.items())
    assert list(plan.skip_reasons.items()) == list(reference.skip_reasons.items())
    return len(plan.skip_reasons)


@pytest.mark.parametrize("seed", range(300))
def test_small_random_plans_start_and_skip_as_the_reference(seed: int):
    rng = random.Random(seed)
    drive_both(random_dag(rng, rng.randint(1, 40)), rng, rng.choice([0.0, 0.1, 0.3, 0.7]))


def test_a_2000_model_plan_starts_and_skips_as_the_reference():
    rng = random.Random(2000)
    assert drive_both(random_dag(rng, 2000), rng, failure_rate=0.02) > 100


def test_skips_name_the_upstream_model_the_passes_over_the_document_reach_first():
    # d's first upstream model, c, comes after d in the document: the pass that skips b
    # reaches d before c is skipped, so d's reason names b, not c.
    plan = RunPlan({"a": (), "b": ("a",), "d": ("c", "b"), "c": ("a",)})
    assert plan.take_ready(10) == ["a"]
    assert list(plan.record("a", succeeded=False).items()) == [
        ("b", "upstream model a failed"),
        ("d", "upstream model a failed (via b)"),
        ("c", "upstream model a failed"),
    ]


@pytest.mark.parametrize("seed", range(100))
def test_cycles_are_refused_naming_the_same_models_as_the_reference(seed: int):
    rng = random.Random(seed)
    dag = random_dag(rng, rng.randint(2, 30))
    # A chain down the dependency order, closed by its first model depending on its last.
    cycle = sorted(rng.sample(range(len(dag)), rng.randint(1, min(4, len(dag)))))
    for above, below in zip(cycle, [*cycle[1:], cycle[0]], strict=True):
        dag[f"m{below}"].append(f"m{above}")
    with pytest.raises(ConfigError) as expected:
        ReferencePlan(dag)
    with pytest.raises(ConfigError) as refused:
        RunPlan(dag)
    assert str(refused.value) == str(expected.value)


@pytest.mark.parametrize("seed", range(20))
def test_downstream_models_are_the_references_in_the_same_order(seed: int):
    rng = random.Random(seed)
    dag = {
        name: [dep for dep in upstream if dep != "built_before"]
        for name, upstream in random_dag(rng, rng.randint(1, 300)).items()
    }
    downstream = Downstream(dag)
    expected = reference_downstream(dag)
    for model in dag:
        assert downstream[model] == expected[model]


def test_dependents_are_each_listed_once_in_the_documents_order():
    assert dependents({"c": ["a", "a"], "a": [], "b": ["a", "outside"]}) == {
        "c": [],
        "a": ["c", "b"],
        "b": [],
    }


def test_selecting_most_of_2000_models_keeps_the_documents_order():
    models = [TransformModel(name=f"m{i}", compute="duckdb") for i in range(2000)]
    wanted = [f"m{i}" for i in range(1999, 0, -2)] + ["m1"]  # reversed, one twice
    assert list(select_models(models, wanted)) == [f"m{i}" for i in range(1, 2000, 2)]


# --- the reruns sensor reads a failed run in the models' order --------------------------------
def test_a_failed_runs_retryable_models_are_read_in_the_models_order_whatever_the_failures():
    names = ["stg", "mid", "top", "other"]  # the models' order
    keys = {name: f"data_products/p/{name}" for name in names}
    ranked = {key: (rank, "p", name) for rank, (name, key) in enumerate(keys.items())}

    def entry(reason: str, retryable: bool, phase: Outcome = Outcome.FAILED) -> dg.MetadataValue:
        details = {"phase": phase, "reason": reason, "retryable": retryable, "attempt": 2}
        return for_failure(details)

    @dg.op(name=MODELS_STEP)
    def models_step() -> None:
        raise dg.Failure(
            "models failed",
            metadata={  # in the order the runner ended them, not the models' order
                PARTITION: "dev",
                "api_calls": 12,
                keys["top"]: entry("BackoffLimitExceeded", retryable=True),
                keys["mid"]: entry("upstream model stg failed", False, Outcome.SKIPPED),
                keys["other"]: entry("ImagePullBackOff", retryable=False),
                keys["stg"]: entry("DeadlineExceeded", retryable=True),
                "data_products/p/gone": entry("BackoffLimitExceeded", retryable=True),
            },
        )

    @dg.job
    def models_run() -> None:
        models_step()

    with dg.DagsterInstance.ephemeral() as instance:
        assert not models_run.execute_in_process(instance=instance, raise_on_error=False).success
        [record] = instance.fetch_run_status_changes(
            dg.DagsterEventType.RUN_FAILURE, limit=1
        ).records
        found = _retryable_failures(instance, record, ranked)
    assert [(f["model"], f["partition"], f["attempt"]) for f in found] == [
        ("stg", "dev", 2),
        ("top", "dev", 2),
    ]
    assert {f["run_id"] for f in found} == {record.run_id}
