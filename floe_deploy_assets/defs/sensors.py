"""Sensors that watch the releases: their Helm status, and their workloads' health.

Each emits events only when what it sees changed since its last tick (a fingerprint per
environment and release in a JSON cursor), so an idle platform adds nothing to the event log.
Each tick is bounded: after ``TICK_BUDGET_SECONDS`` the remaining releases wait for the next tick.
"""

import functools
import hashlib
import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import dagster as dg

from floe_deploy_assets.defs.deploy_assets import (
    CHARTS,
    components_table,
    release_healthy_metadata,
    release_key,
    unhealthy,
)
from floe_deploy_assets.defs.resources import DeploymentConfigResource, KubernetesResource
from floe_deploy_assets.helm.engine import ReleaseRef
from floe_deploy_assets.kube.health import release_health
from floe_deploy_assets.kube.lease import current_holder
from floe_deploy_assets.kube.retry import describe
from floe_deploy_assets.models.config import ChartKind
from floe_deploy_assets.release.decide import PENDING_STATUSES, platform_status

TICK_BUDGET_SECONDS = 40.0  # Dagster gives a sensor evaluation about 60 s
NEXT = "_next"  # cursor key: the release the next tick starts with
RETRY_SECONDS = 10.0  # how long one release's calls are retried before its cluster counts as down
INTERVAL_SECONDS = 30

AssetEvent = dg.AssetObservation | dg.AssetCheckEvaluation


def _fingerprint(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _releases(deployment: DeploymentConfigResource) -> Iterator[tuple[str, ChartKind, ReleaseRef]]:
    for environment in deployment.config.environments:
        for chart in CHARTS:
            yield environment, chart, deployment.release(chart, environment)


def _on_change(
    context: dg.SensorEvaluationContext,
    deployment: DeploymentConfigResource,
    observe: Callable[[str, ChartKind, ReleaseRef, float], tuple[object, list[AssetEvent]]],
) -> dg.SensorResult:
    """Observe the releases within the tick budget; keep the events of those whose fingerprint
    changed. A cluster that fails once is not asked again this tick (its other releases get
    the same observation), and a tick that runs out of budget leaves a bookmark, so the next
    tick starts where this one stopped and every release gets its turn."""
    seen: dict[str, Any] = json.loads(context.cursor) if context.cursor else {}
    releases = list(_releases(deployment))
    start = int(seen.get(NEXT, 0)) % len(releases)
    events: list[AssetEvent] = []
    unreachable: dict[str, str] = {}  # cluster -> why
    started = time.monotonic()
    for index, (environment, chart, ref) in enumerate(releases[start:] + releases[:start]):
        left = TICK_BUDGET_SECONDS - (time.monotonic() - started)
        if left <= 0:
            context.log.warning("tick budget spent; the other releases are observed next tick")
            seen[NEXT] = (start + index) % len(releases)
            break
        if ref.cluster not in unreachable:
            try:
                state, found = observe(environment, chart, ref, left)
            except Exception as error:  # an unreachable cluster is an observation, not a crash
                unreachable[ref.cluster] = f"{type(error).__name__}: {describe(error)}"
        if ref.cluster in unreachable:
            # The error class, not its text: a retry count in the text must not count as news.
            state = {"unreachable": unreachable[ref.cluster].split(":")[0]}
            found = [_observation(chart, environment, {"unreachable": unreachable[ref.cluster]})]
        key = f"{environment}/{chart}"
        fingerprint = _fingerprint(state)
        if seen.get(key) != fingerprint:
            seen[key] = fingerprint
            events.extend(found)
    else:
        seen[NEXT] = start
    cursor = json.dumps(seen, sort_keys=True)
    if not events:
        return dg.SensorResult(skip_reason="nothing changed", cursor=cursor)
    return dg.SensorResult(asset_events=events, cursor=cursor)


Observe = Callable[
    [KubernetesResource, str, ChartKind, ReleaseRef, float], tuple[object, list[AssetEvent]]
]


def _release_sensor(name: str, description: str, observe: Observe) -> dg.SensorDefinition:
    """A sensor that observes every release with ``observe`` and emits on change only."""

    @dg.sensor(
        name=name,
        minimum_interval_seconds=INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=description,
    )
    def release_sensor(
        context: dg.SensorEvaluationContext,
        deployment: DeploymentConfigResource,
        kubernetes: KubernetesResource,
    ) -> dg.SensorResult:
        return _on_change(context, deployment, functools.partial(observe, kubernetes))

    return release_sensor


def _release_status(
    kubernetes: KubernetesResource, environment: str, chart: ChartKind, ref: ReleaseRef, left: float
) -> tuple[object, list[AssetEvent]]:
    release = kubernetes.helm(ref.cluster).status(ref)
    holder = current_holder(kubernetes.cluster(ref.cluster).coordination, ref.namespace, ref.name)
    helm_status = release.status if release else "absent"
    stuck = helm_status in PENDING_STATUSES and holder is None
    state = {
        "status": helm_status,
        "revision": release.revision if release else 0,
        "holder": holder.identity if holder else None,
        "stuck": stuck,
    }
    metadata: dict[str, object] = {
        "helm_status": helm_status,
        "revision": state["revision"],
        "platform_status": str(platform_status(helm_status)) if release else "absent",
        "chart_version": release.chart_version if release else "",
        "deploying": holder.identity if holder else "",
    }
    if stuck:
        metadata["stuck"] = (
            f"revision {state['revision']} is {helm_status} and no deploy holds the "
            "release lock: the next deploy unlocks it (marks it failed) and converges"
        )
    return state, [_observation(chart, environment, metadata)]


def _workload_health(
    kubernetes: KubernetesResource, environment: str, chart: ChartKind, ref: ReleaseRef, left: float
) -> tuple[object, list[AssetEvent]]:
    components = release_health(
        kubernetes.cluster(ref.cluster).api,
        ref.namespace,
        ref.name,
        deadline=min(left, RETRY_SECONDS),
    )
    state = [(c.name, c.health, c.reason, c.replicas.ready, c.replicas.desired) for c in components]
    table = components_table(components)
    return state, [
        _observation(chart, environment, {"components": dg.MetadataValue.md(table)}),
        dg.AssetCheckEvaluation(
            asset_key=release_key(chart),
            check_name="release_healthy",
            passed=not unhealthy(components),
            partition=environment,
            metadata=release_healthy_metadata(components),
        ),
    ]


release_status_sensor = _release_sensor(
    "release_status",
    "Helm status of every release, as an observation on its release asset; a release stuck "
    "pending with no deploy holding its lock is surfaced.",
    _release_status,
)
workload_health_sensor = _release_sensor(
    "workload_health",
    "Health of every release's workloads: an observation with the component table and a "
    "release_healthy check evaluation, when the health changed.",
    _workload_health,
)


def _observation(chart: ChartKind, environment: str, metadata: dict[str, object]) -> AssetEvent:
    return dg.AssetObservation(
        asset_key=release_key(chart),
        partition=environment,
        metadata=metadata,  # type: ignore[arg-type]
    )
