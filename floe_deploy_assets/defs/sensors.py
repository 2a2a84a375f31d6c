"""Sensors that watch the releases: their Helm status, and their workloads' health.

Each emits events only when what it sees changed since its last tick (a fingerprint per
environment and release in a JSON cursor), so an idle platform adds nothing to the event log.
Each tick is bounded: after ``TICK_BUDGET_SECONDS`` the remaining releases wait for the next tick.
"""

import hashlib
import json
import time
from collections.abc import Callable, Iterator

import dagster as dg

from floe_deploy_assets.defs.deploy_assets import (
    CHARTS,
    components_table,
    healthy,
    release_key,
)
from floe_deploy_assets.defs.resources import DeploymentConfigResource, KubernetesResource
from floe_deploy_assets.helm.engine import ReleaseRef
from floe_deploy_assets.kube.health import release_health
from floe_deploy_assets.kube.lease import current_holder
from floe_deploy_assets.models.config import ChartKind
from floe_deploy_assets.release.decide import PENDING_STATUSES, platform_status

TICK_BUDGET_SECONDS = 40.0  # Dagster gives a sensor evaluation about 60 s
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
    observe: Callable[[str, ChartKind, ReleaseRef], tuple[object, list[AssetEvent]]],
) -> dg.SensorResult:
    """Observe every release within the tick budget; keep the events of those whose
    fingerprint changed."""
    seen: dict[str, str] = json.loads(context.cursor) if context.cursor else {}
    events: list[AssetEvent] = []
    started = time.monotonic()
    for environment, chart, ref in _releases(deployment):
        if time.monotonic() - started > TICK_BUDGET_SECONDS:
            context.log.warning("tick budget spent; the other releases are observed next tick")
            break
        try:
            state, found = observe(environment, chart, ref)
        except Exception as error:  # an unreachable cluster is an observation, not a crash
            state = {"error": f"{type(error).__name__}: {error}"}
            found = [_observation(chart, environment, {"unreachable": state["error"]})]
        key = f"{environment}/{chart}"
        fingerprint = _fingerprint(state)
        if seen.get(key) != fingerprint:
            seen[key] = fingerprint
            events.extend(found)
    if not events:
        return dg.SensorResult(
            skip_reason="nothing changed", cursor=json.dumps(seen, sort_keys=True)
        )
    return dg.SensorResult(asset_events=events, cursor=json.dumps(seen, sort_keys=True))


@dg.sensor(
    name="release_status",
    minimum_interval_seconds=INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Helm status of every release, as an observation on its release asset; "
    "a release stuck pending with no deploy holding its lock is surfaced.",
)
def release_status_sensor(
    context: dg.SensorEvaluationContext,
    deployment: DeploymentConfigResource,
    kubernetes: KubernetesResource,
) -> dg.SensorResult:
    def observe(
        environment: str, chart: ChartKind, ref: ReleaseRef
    ) -> tuple[object, list[AssetEvent]]:
        release = kubernetes.helm(ref.cluster).status(ref)
        holder = current_holder(
            kubernetes.cluster(ref.cluster).coordination, ref.namespace, ref.name
        )
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

    return _on_change(context, deployment, observe)


@dg.sensor(
    name="workload_health",
    minimum_interval_seconds=INTERVAL_SECONDS,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Health of every release's workloads: an observation with the component "
    "table and a release_healthy check evaluation, when the health changed.",
)
def workload_health_sensor(
    context: dg.SensorEvaluationContext,
    deployment: DeploymentConfigResource,
    kubernetes: KubernetesResource,
) -> dg.SensorResult:
    def observe(
        environment: str, chart: ChartKind, ref: ReleaseRef
    ) -> tuple[object, list[AssetEvent]]:
        components = release_health(kubernetes.cluster(ref.cluster).api, ref.namespace, ref.name)
        state = [
            (c.name, c.health, c.reason, c.replicas.ready, c.replicas.desired) for c in components
        ]
        table = components_table(components)
        unhealthy = [c.name for c in components if not healthy([c])]
        return state, [
            _observation(chart, environment, {"components": dg.MetadataValue.md(table)}),
            dg.AssetCheckEvaluation(
                asset_key=release_key(chart),
                check_name="release_healthy",
                passed=healthy(components),  # no workloads (floe-jobs at rest) is healthy
                partition=environment,
                metadata={
                    "unhealthy": dg.MetadataValue.json(unhealthy),
                    "components": dg.MetadataValue.md(table),
                },
            ),
        ]

    return _on_change(context, deployment, observe)


def _observation(chart: ChartKind, environment: str, metadata: dict[str, object]) -> AssetEvent:
    return dg.AssetObservation(
        asset_key=release_key(chart),
        partition=environment,
        metadata=metadata,  # type: ignore[arg-type]
    )
