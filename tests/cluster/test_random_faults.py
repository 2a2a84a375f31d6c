"""Random transient faults on every request, through whole deploys, status and model runs
(issue 13).

Every request goes through a fault-injecting proxy that answers a share of them, at random,
with 429 (with and without Retry-After), 500, 503, a dropped connection, or ends a watch with
410 Gone: Helm's requests (through its relay, kube/relay.py, as floe-deploy runs it) through one
proxy, ours (the Lease, the release storage, health, drift, the model runner's Jobs, pods and
watches) through another. Each seed runs the sequence a user would: deploy the environment
(floe-platform, then floe-jobs, as ``floe-deploy deploy`` does), deploy changed values, deploy
again unchanged, then what ``status`` reads and a ``run-models`` of every model.

A transient fault must never be taken for a verdict: no rollback, no hold, no failure
classified final, nothing left pending, no revision lost (numbers contiguous), every failed
revision marked transient, no model failed; at 10 % of every request each deploy converges in
its own run. Without the relay (Helm's client repeats only a 429/5xx carrying Retry-After or a
dropped GET, so an action of the platform chart, about 70 requests, rarely gets through whole at
10 %), the deploy's retries of whole actions still never take a fault for a verdict, and one
clean run then converges. ``benchmarks/bench_random_faults.py`` has the figures for 20 seeds.

The seeds are fixed (``FLOE_FAULT_SEEDS``, three by default, for CI time); the sequence of
faults is not exactly reproducible, since Helm's requests run concurrently.
"""

from __future__ import annotations

import os
import random
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes import config as kube_config

from floe_deploy_assets.helm.deploy import DeployOutcome, DeployPolicy, deploy, desired_digests
from floe_deploy_assets.helm.engine import ReleaseRef, SdkHelmEngine
from floe_deploy_assets.helm.storage import failed_finally
from floe_deploy_assets.jobs.plan import select_models
from floe_deploy_assets.jobs.runner import JobRunner, RunnerSettings
from floe_deploy_assets.jobs.spec import JobTemplate
from floe_deploy_assets.kube.access import ClusterAccess
from floe_deploy_assets.kube.health import release_health
from floe_deploy_assets.kube.lease import current_holder
from floe_deploy_assets.release.decide import Action
from floe_deploy_assets.release.digests import VALUES_DIGEST_LABEL
from tests.conftest import KubeCluster
from tests.support.charts import CONFIG, generated_values, values_generator
from tests.support.deployment import create_operator_secrets
from tests.support.faultproxy import Fault, FaultProxy, Rule
from tests.support.waits import create_namespace_ready_for_pods

pytestmark = pytest.mark.cluster
SEEDS = [int(s) for s in os.environ.get("FLOE_FAULT_SEEDS", "11,12,13").split(",")]
RATE = float(os.environ.get("FLOE_FAULT_RATE", "0.1"))  # of every request
POLICY = DeployPolicy(timeout=timedelta(seconds=180))
MODELS = RunnerSettings(concurrency=4, schedule_deadline=60, start_deadline=60)
CHARTS = ("platform", "jobs")
PENDING = ("pending-install", "pending-upgrade", "pending-rollback")
FAULTS = (
    Fault.too_many_requests(retry_after=1),
    Fault.status(429, "injected: too many requests, please try again later"),  # no Retry-After
    Fault.server_error(),
    Fault.unavailable(),
    Fault.drop(),
)
WATCH_FAULTS = (*FAULTS, Fault.watch_gone(), Fault.watch_gone())


@dataclass
class RandomFaults(Rule):
    """Every request, each taken with probability ``rate`` and answered with a fault drawn
    from ``FAULTS`` (``WATCH_FAULTS`` for a watch). ``chosen`` counts the faults applied."""

    rate: float = RATE
    seed: int = 0
    chosen: Counter[str] = field(default_factory=Counter)
    rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        self.rng = random.Random(self.seed)

    def matches(self, method: str, path: str, query: str, watch: bool) -> bool:
        if not super().matches(method, path, query, watch) or self.rng.random() >= self.rate:
            return False
        self.fault = self.rng.choice(WATCH_FAULTS if watch else FAULTS)
        self.chosen[str(self.fault)] += 1
        return True


def add_random_faults(proxy: FaultProxy, seed: int, rate: float = RATE) -> RandomFaults:
    rule = RandomFaults(None, r".", Fault.server_error(), rate=rate, seed=seed)
    with proxy._lock:  # the proxy's rules, under its lock (add_rule makes plain rules only)
        proxy._rules.append(rule)
    return rule


@dataclass(frozen=True)
class Step:
    """One deploy of one release: what it did and how long it took."""

    run: str  # install, upgrade, redeploy (and "+catch-up" for a next run that converged it)
    chart: str
    action: Action
    succeeded: bool
    seconds: float
    retried: int
    error: str | None
    error_transient: bool | None
    remediation: Action | None
    retried_errors: tuple[str, ...] = ()


@dataclass
class SeedResult:
    seed: int
    rate: float
    helm_rate: float
    steps: list[Step] = field(default_factory=list)
    faults: Counter[str] = field(default_factory=Counter)
    requests: int = 0
    # Not converged (yet): the desired state not reached within the sequence.
    problems: list[str] = field(default_factory=list)
    # What a transient fault must never cause: a rollback, a hold, a failure taken as final,
    # a pending revision left behind, a revision lost.
    violations: list[str] = field(default_factory=list)
    # When the sequence did not converge: whether one clean run (no faults, same values, no
    # flags) then did, without a rollback or hold.
    recovered: bool | None = None
    seconds: float = 0.0
    models: int = 0  # run by run-models, after the deploys
    status_and_models_seconds: float = 0.0

    @property
    def converged(self) -> bool:
        return not self.problems and not self.violations

    @property
    def catch_ups(self) -> int:
        return sum(1 for s in self.steps if s.run.endswith("+catch-up"))

    @property
    def converged_first_time(self) -> bool:
        return self.converged and self.catch_ups == 0


def _step(run: str, chart: str, outcome: DeployOutcome, seconds: float) -> Step:
    error = outcome.error
    return Step(
        run,
        chart,
        outcome.decision.action,
        outcome.succeeded,
        seconds,
        len(outcome.retried),
        str(error) if error else None,
        error.transient if error else None,
        outcome.remediation.action if outcome.remediation else None,
        tuple(e.detail for e in outcome.retried),
    )


def _check_history(
    result: SeedResult, engine: SdkHelmEngine, ref: ReleaseRef, chart: str, values: dict[str, Any]
) -> None:
    history = engine.history(ref)
    statuses = [r.status for r in history]
    if not history or statuses[-1] != "deployed":
        result.problems.append(f"{ref.name}: not deployed: {statuses}")
    elif (
        history[-1].labels.get(VALUES_DIGEST_LABEL)
        != desired_digests(CONFIG.chart_path(chart), values).values
    ):
        result.problems.append(f"{ref.name}: revision {history[-1].revision} has other values")
    if set(statuses) & set(PENDING):
        result.violations.append(f"{ref.name}: pending revisions: {statuses}")
    if [r.revision for r in history] != list(range(1, len(history) + 1)):
        result.violations.append(f"{ref.name}: revisions lost: {[r.revision for r in history]}")
    for r in history:
        # Every fault injected is transient: no failure may be recorded as the values' own.
        # (One recorded as transient, or not at all when the deploy lost its Lease first, is
        # no verdict: see helm.deploy._revision.)
        if r.status == "failed" and failed_finally(r.revision, r.labels):
            result.violations.append(f"{ref.name}: revision {r.revision} recorded final")


def _proxy_with_faults(
    stack: ExitStack, kubeconfig: Path, seed: int, rate: float
) -> tuple[FaultProxy, RandomFaults]:
    proxy = stack.enter_context(FaultProxy(kubeconfig))
    return proxy, add_random_faults(proxy, seed, rate)


def run_seed(
    kubeconfig: Path,
    seed: int,
    rate: float = RATE,
    helm_rate: float | None = None,
    policy: DeployPolicy = POLICY,
    relay: bool = True,
) -> SeedResult:
    """The sequence for one seed, in a namespace of its own (deleted after): Helm's requests
    through one proxy (faults at ``helm_rate``, by default ``rate``), ours (the Lease, the
    release storage, health and drift) through another (faults at ``rate``)."""
    helm_rate = rate if helm_rate is None else helm_rate
    direct_api = kube_config.new_client_from_config(str(kubeconfig))
    core = client.CoreV1Api(direct_api)
    namespace = f"faults-{seed}-{uuid.uuid4().hex[:6]}"
    create_namespace_ready_for_pods(core, namespace)
    result = SeedResult(seed, rate, helm_rate)
    started = time.monotonic()
    try:
        create_operator_secrets(core, namespace)
        with ExitStack() as stack:
            helm_proxy, helm_rule = _proxy_with_faults(stack, kubeconfig, seed, helm_rate)
            our_proxy, our_rule = _proxy_with_faults(stack, kubeconfig, seed + 1000, rate)
            engine = SdkHelmEngine(helm_proxy.kubeconfig, relay=relay)
            stack.callback(engine.close)
            cluster = ClusterAccess.from_kubeconfig(our_proxy.kubeconfig)
            refs = {
                chart: ReleaseRef(CONFIG.release_name(chart, "dev"), namespace, "test-cluster")
                for chart in CHARTS
            }
            values = {chart: generated_values(chart) for chart in CHARTS}
            try:
                _sequence(result, engine, cluster, refs, values, policy)
            finally:
                for proxy in (helm_proxy, our_proxy):
                    proxy.clear_rules()
                result.faults = helm_rule.chosen + our_rule.chosen
                result.requests = len(helm_proxy.requests) + len(our_proxy.requests)
            for chart in CHARTS:
                _check_history(result, engine, refs[chart], chart, values[chart])
            if result.problems:
                _recover(result, engine, cluster, refs, values)
    finally:
        result.seconds = time.monotonic() - started
        core.delete_namespace(namespace, propagation_policy="Background")
    return result


def _sequence(
    result: SeedResult,
    engine: SdkHelmEngine,
    cluster: ClusterAccess,
    refs: dict[str, ReleaseRef],
    values: dict[str, dict[str, Any]],
    policy: DeployPolicy,
) -> None:
    def changed() -> None:
        values["platform"]["postgresql"]["resources"]["limits"]["memory"] = "2Gi"
        values["jobs"]["job"]["ttlSecondsAfterFinished"] = 60

    sequence = (("install", None), ("upgrade", changed), ("redeploy", None))
    for run, before in sequence:
        if before:
            before()
        for chart in CHARTS:  # platform first; the jobs only once it is deployed, as the CLI
            label = run
            for _ in range(2):  # the run, and at most one next run that catches up
                began = time.monotonic()
                outcome = deploy(
                    engine,
                    refs[chart],
                    CONFIG.chart_path(chart),
                    values[chart],
                    cluster=cluster,
                    policy=policy,
                )
                step = _step(label, chart, outcome, time.monotonic() - began)
                result.steps.append(step)
                _judge(result, step, expect_nothing=run == "redeploy" and label == run)
                if outcome.succeeded:
                    break
                label = f"{run}+catch-up"
            else:
                result.problems.append(f"{chart}: {run} did not converge in two runs")
                changed()  # what a clean run must then reach: the sequence's last values
                return
    _status_and_models(result, engine, cluster, refs, values["jobs"])


def _status_and_models(
    result: SeedResult,
    engine: SdkHelmEngine,
    cluster: ClusterAccess,
    refs: dict[str, ReleaseRef],
    jobs_values: dict[str, Any],
) -> None:
    """What `floe-deploy status` reads (each release's status, Lease and workloads' health),
    then `run-models` (every model, one Job each): under the same faults, every read answers
    and every model succeeds; a model failed by a blip would be a verdict on the model."""
    began = time.monotonic()
    for chart, ref in refs.items():
        try:
            release = engine.status(ref)
            current_holder(cluster.coordination, ref.namespace, ref.name)
            release_health(cluster.api, ref.namespace, ref.name)
        except Exception as error:
            result.violations.append(f"{chart} status: {error}")
            continue
        if release is None or release.status != "deployed":
            result.problems.append(f"{chart} status: {release and release.status}")
    artifacts = values_generator("jobs").artifacts.transforms
    assert artifacts is not None
    models = select_models(artifacts.models_in_dependency_order())
    ref = refs["jobs"]
    with JobTemplate(
        CONFIG.chart_path("jobs"), jobs_values, release_name=ref.name, namespace=ref.namespace
    ) as template:
        try:
            report = JobRunner(cluster.api, template, MODELS).run(models, f"faults-{result.seed}")
        except Exception as error:
            result.violations.append(f"run-models: {error}")
            return
    result.models = len(report.results)
    for failed in report.failed:
        result.violations.append(f"run-models: {failed.model} failed: {failed.reason}")
    result.status_and_models_seconds = time.monotonic() - began


def _recover(
    result: SeedResult,
    engine: SdkHelmEngine,
    cluster: ClusterAccess,
    refs: dict[str, ReleaseRef],
    values: dict[str, dict[str, Any]],
) -> None:
    """After the storm: one clean run of each release (same values, no flags) must converge,
    without a rollback or hold."""
    recovered = True
    for chart in CHARTS:
        began = time.monotonic()
        outcome = deploy(
            engine, refs[chart], CONFIG.chart_path(chart), values[chart], cluster=cluster
        )
        step = _step("clean", chart, outcome, time.monotonic() - began)
        result.steps.append(step)
        _judge(result, step, expect_nothing=False)
        recovered = recovered and outcome.succeeded
    check = SeedResult(result.seed, 0.0, 0.0)
    for chart in CHARTS:
        _check_history(check, engine, refs[chart], chart, values[chart])
    result.violations += check.violations
    result.recovered = recovered and not check.problems


def _judge(result: SeedResult, step: Step, expect_nothing: bool) -> None:
    """No rollback or hold caused by a transient fault; a failure must be transient (every
    fault injected is)."""
    where = f"{step.chart} {step.run}"
    if step.action in (Action.ROLLBACK, Action.HOLD, Action.WAIT, Action.UNLOCK):
        result.violations.append(f"{where}: decided {step.action}")
    if step.remediation in (Action.ROLLBACK, Action.HOLD):
        result.violations.append(f"{where}: remediation {step.remediation}: {step.error}")
    if not step.succeeded and not step.error_transient:
        result.violations.append(f"{where}: failed finally: {step.error or step.action}")
    if expect_nothing and step.succeeded and step.action is not Action.NOTHING:
        result.problems.append(f"{where}: an unchanged redeploy did {step.action}")


def summary(result: SeedResult, verbose: bool = False) -> str:
    steps = ", ".join(
        f"{s.chart}/{s.run}:{s.action}{'' if s.succeeded else '!'}"
        f"{f'+{s.retried}r' if s.retried else ''} {s.seconds:.0f}s"
        for s in result.steps
    )
    faults = sum(result.faults.values())
    recovered = {None: "", True: ", a clean run then converged", False: ", a clean run did NOT"}
    return (
        f"seed {result.seed} (faults: {result.rate:g} of ours, {result.helm_rate:g} of Helm's):"
        f" {'converged' if result.converged else 'NOT converged'}{recovered[result.recovered]}"
        f" in {result.seconds:.0f} s, {faults}/{result.requests} requests faulted"
        f" ({dict(result.faults)}); {steps}"
        + (
            f"; status and run-models ({result.models} models) "
            f"{result.status_and_models_seconds:.0f}s"
            if result.models
            else ""
        )
        + "".join(f"\n    VIOLATION {v}" for v in result.violations)
        + "".join(f"\n    {p}" for p in result.problems)
        + "".join(
            f"\n    {s.chart} {s.run}: retried: {list(s.retried_errors)}; error: {s.error}"
            for s in result.steps
            if verbose and (s.retried_errors or s.error)
        )
    )


@pytest.fixture(scope="module")
def charts_built() -> Iterator[None]:
    from floe_deploy_assets.helm.render import build_dependencies

    for chart in CHARTS:
        build_dependencies(CONFIG.chart_path(chart))
    yield


@pytest.mark.timeout(900)
@pytest.mark.parametrize("seed", SEEDS)
def test_whole_sequences_converge_in_the_same_run_under_random_transient_faults(
    seed: int, kube_cluster: KubeCluster, charts_built: None
):
    """10 % of every request, Helm's included (through its relay, as floe-deploy runs it):
    every deploy converges in its own run, status reads and every model succeeds."""
    result = run_seed(kube_cluster.kubeconfig, seed)
    print(summary(result))
    assert sum(result.faults.values()) > 0, "no fault was injected"
    assert result.converged, summary(result, verbose=True)
    assert result.catch_ups == 0, summary(result, verbose=True)
    assert result.models == len(values_generator("jobs").artifacts.transforms.models)


@pytest.mark.timeout(900)
def test_without_the_relay_a_fault_is_still_never_taken_for_a_verdict_on_the_values(
    kube_cluster: KubeCluster, charts_built: None
):
    """Helm talking to the API server directly, 10 % of its requests faulted: its actions
    rarely get through (client-go repeats few failures), which is what the deploy's own
    retries of whole actions are for when a fault outlasts the relay. No rollback, hold, final
    failure, pending or lost revision; one clean run then converges."""
    result = run_seed(kube_cluster.kubeconfig, SEEDS[0], relay=False)
    print(summary(result))
    assert sum(result.faults.values()) > 0, "no fault was injected"
    assert not result.violations, summary(result, verbose=True)
    assert result.converged or result.recovered, summary(result, verbose=True)
