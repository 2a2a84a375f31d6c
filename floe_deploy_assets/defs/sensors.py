"""Sensors that watch the releases: their Helm status, and their workloads' health.

Each records only what changed since its last tick (a fingerprint per environment and release
in a JSON cursor), so an idle platform adds nothing to the event log, and each tick says in its
log or skip reason what it recorded or why it recorded nothing. Each tick is bounded: after
``TICK_BUDGET_SECONDS`` the remaining releases wait for the next tick.

Health becomes a check result through a run, not a sensor event: on a change the health sensor
requests a run of the partitioned ``release_healthy`` check for that environment. A check
evaluation reported by a sensor has no run, and Dagster's storage keeps one such row per check
and partition (``idx_asset_check_executions_unique`` on asset, check, run id and partition): the
second one for an environment fails the whole tick, and its cursor is never saved. A run gives
each evaluation its own row, carries the partition, and is what the UI links the result to.
"""

import functools
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import dagster as dg
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from floe_deploy_assets.defs.deploy_assets import (
    RELEASE_HEALTH_JOB,
    Release,
    components_table,
    releases,
)
from floe_deploy_assets.defs.resources import DeploymentConfigResource, KubernetesResource
from floe_deploy_assets.helm.engine import ReleaseRef
from floe_deploy_assets.kube.health import release_health
from floe_deploy_assets.kube.lease import current_holder
from floe_deploy_assets.kube.retry import describe
from floe_deploy_assets.models.deployment import Health
from floe_deploy_assets.release.decide import PENDING_STATUSES, platform_status

PARTITION_TAG = "dagster/partition"
VERDICT = {  # of a release_healthy result that is stored
    AssetCheckExecutionRecordStatus.SUCCEEDED: True,
    AssetCheckExecutionRecordStatus.FAILED: False,
}
TICK_BUDGET_SECONDS = 40.0  # Dagster gives a sensor evaluation about 60 s
NEXT = "_next"  # cursor key: the release the next tick starts with
RETRY_SECONDS = 10.0  # how long one release's calls are retried before its cluster counts as down
# How often the sensors tick: 30 s, or FLOE_SENSOR_INTERVAL_SECONDS (the daemon tests tick
# every few seconds).
INTERVAL_SECONDS = int(os.environ.get("FLOE_SENSOR_INTERVAL_SECONDS", "30"))


@dataclass(frozen=True)
class Observed:
    """What a sensor saw of one release: ``state`` is what counts as news (its fingerprint is
    kept in the cursor), ``summary`` one line for the tick's log, ``reachable`` False when the
    cluster could not be asked (then no verdict is drawn from it)."""

    state: object
    summary: str
    observation: dg.AssetObservation
    reachable: bool = True
    healthy: bool | None = None  # the health sensor's verdict, which release_healthy must show


@dataclass(frozen=True)
class Sighting:
    environment: str
    release: Release
    observed: Observed
    sequence: int  # how many changes of this release the sensor has seen: keys its run requests
    changed: bool  # since the last tick


def _fingerprint(value: object) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _releases(deployment: DeploymentConfigResource) -> Iterator[tuple[str, Release, ReleaseRef]]:
    graph = releases(deployment.products())  # the documents read once a tick
    for environment in deployment.config.environments:
        for release in graph:
            yield environment, release, release.ref(deployment, environment)


Observe = Callable[[str, Release, ReleaseRef, float], Observed]


def _observe(
    context: dg.SensorEvaluationContext, deployment: DeploymentConfigResource, observe: Observe
) -> tuple[list[Sighting], str]:
    """Observe the releases within the tick budget; return what was seen of each (marking
    those whose fingerprint changed) and the new cursor. A cluster that fails once is not asked
    again this tick (its other releases get the same observation), and a tick that runs out of
    budget leaves a bookmark, so the next tick starts where this one stopped and every release
    gets its turn."""
    seen: dict[str, Any] = json.loads(context.cursor) if context.cursor else {}
    found = list(_releases(deployment))
    start = int(seen.get(NEXT, 0)) % len(found)
    sightings: list[Sighting] = []
    unreachable: dict[str, _Unanswered] = {}  # cluster -> the failure, and the release asked
    started = time.monotonic()
    for index, (environment, release, ref) in enumerate(found[start:] + found[:start]):
        left = TICK_BUDGET_SECONDS - (time.monotonic() - started)
        if left <= 0:
            context.log.warning("tick budget spent; the other releases are observed next tick")
            seen[NEXT] = (start + index) % len(found)
            break
        if ref.cluster not in unreachable:
            try:
                observed = observe(environment, release, ref, left)
            except Exception as error:  # an unreachable cluster is an observation, not a crash
                unreachable[ref.cluster] = _Unanswered(
                    type(error).__name__, describe(error), ref, f"{environment}/{release}"
                )
        if ref.cluster in unreachable:
            observed = _unreachable(environment, release, ref, unreachable[ref.cluster])
        key = f"{environment}/{release}"
        # Earlier cursors kept the bare fingerprint; they count as a first sight.
        previous: dict[str, Any] = seen[key] if isinstance(seen.get(key), dict) else {}
        fingerprint = _fingerprint(observed.state)
        sequence = int(previous.get("changes", 0))
        changed = previous.get("fingerprint") != fingerprint
        if changed:
            sequence += 1
            seen[key] = {"fingerprint": fingerprint, "changes": sequence}
        sightings.append(Sighting(environment, release, observed, sequence, changed))
    else:
        seen[NEXT] = start
    return sightings, json.dumps(seen, sort_keys=True)


def _recorded(sightings: list[Sighting]) -> str:
    changes = [s for s in sightings if s.changed]
    if not changes:
        return f"nothing changed in the {len(sightings)} release(s) observed"
    return "recorded: " + "; ".join(
        f"{c.environment}/{c.release} {c.observed.summary}" for c in changes
    )


@dataclass(frozen=True)
class _Unanswered:
    """The failure that marked a cluster unreachable this tick, and the release it was for."""

    kind: str  # the error's class
    message: str  # one line: what failed, where, why
    asked: ReleaseRef
    asked_as: str  # environment/release

    def said_to(self, ref: ReleaseRef) -> str:
        """The observation's text for ``ref``: its own failure, or, for the other releases on
        the cluster, that they were not asked because of the one that was."""
        if ref == self.asked:
            return f"{self.kind}: {self.message}"
        return (
            f"not asked this tick: cluster {self.asked.cluster} failed for another release "
            f"just before (release {self.asked.name} in namespace {self.asked.namespace}, "
            f"{self.asked_as}), so no other release on it was asked: {self.kind}: "
            f"{self.message}"
        )


def _unreachable(
    environment: str, release: Release, ref: ReleaseRef, unanswered: _Unanswered
) -> Observed:
    # The error class, not its text: a retry count in the text must not count as news.
    return Observed(
        state={"unreachable": unanswered.kind},
        summary=f"cluster unreachable ({unanswered.kind})",
        observation=_observation(release, environment, {"unreachable": unanswered.said_to(ref)}),
        reachable=False,
    )


def _sensor_args(
    name: str, description: str, **extra: Any
) -> dict[str, Any]:  # what both release sensors share
    return {
        "name": name,
        "minimum_interval_seconds": INTERVAL_SECONDS,
        "default_status": dg.DefaultSensorStatus.RUNNING,
        "description": description,
        **extra,
    }


@dg.sensor(
    **_sensor_args(
        "release_status",
        "Helm status of every release, as an observation on its release asset when it changed; "
        "a release stuck pending with no deploy holding its lock is surfaced.",
    )
)
def release_status_sensor(
    context: dg.SensorEvaluationContext,
    deployment: DeploymentConfigResource,
    kubernetes: KubernetesResource,
) -> dg.SensorResult:
    sightings, cursor = _observe(
        context, deployment, functools.partial(_release_status, kubernetes)
    )
    return dg.SensorResult(
        asset_events=[s.observed.observation for s in sightings if s.changed],
        skip_reason=_recorded(sightings),
        cursor=cursor,
    )


@dg.sensor(
    **_sensor_args(
        "workload_health",
        "Health of every release's workloads. When it changed: an observation with the "
        "component table, and a run of the release's partitioned release_healthy check for "
        "that environment (fails on a fault, passes again on recovery; an environment with no "
        "release is reported missing, never healthy).",
        job_name=RELEASE_HEALTH_JOB,
    )
)
def workload_health_sensor(
    context: dg.SensorEvaluationContext,
    deployment: DeploymentConfigResource,
    kubernetes: KubernetesResource,
) -> dg.SensorResult:
    sightings, cursor = _observe(
        context, deployment, functools.partial(_workload_health, kubernetes)
    )
    requests = []
    for sighting in sightings:
        run_key = _check_run_key(context.instance, sighting)
        if run_key is not None:
            requests.append(
                dg.RunRequest(
                    run_key=run_key,
                    job_name=RELEASE_HEALTH_JOB,
                    asset_check_keys=[sighting.release.healthy_key],
                    # The partition as a tag, not partition_key: Dagster 1.13 finds a job's
                    # partitions from its assets, and this job has only (partitioned) checks.
                    tags={
                        PARTITION_TAG: sighting.environment,
                        "floe.dev/observed": sighting.observed.summary[:200],
                    },
                )
            )
    events = [s.observed.observation for s in sightings if s.changed]
    if requests:
        context.log.info(_recorded(sightings) + f"; {len(requests)} check run(s)")
        return dg.SensorResult(asset_events=events, run_requests=requests, cursor=cursor)
    return dg.SensorResult(asset_events=events, skip_reason=_recorded(sightings), cursor=cursor)


def _check_run_key(instance: dg.DagsterInstance, sighting: Sighting) -> str | None:
    """The run key of the release_healthy run this sighting calls for, or None.

    A change of health calls for a run, one per change however often a tick is retried. So
    does a stored result that disagrees with what the sensor sees: the run evaluates health
    again when it starts, and can see a moment the sensor did not (a rollout's last old pod
    still terminating), which would otherwise stand until the next change. Such a re-check is
    keyed by the result it corrects, so a run already queued for it is not requested twice. A
    cluster that did not answer is no verdict, and a result still being evaluated is waited
    for."""
    if not sighting.observed.reachable:
        return None
    key = f"release_healthy-{sighting.environment}-{sighting.release}-{sighting.sequence}"
    if sighting.changed:
        return key
    stored = instance.event_log_storage.get_latest_asset_check_execution_by_key(
        [sighting.release.healthy_key],
        partition_filter=PartitionKeyFilter(key=sighting.environment),
    ).get(sighting.release.healthy_key)
    if stored is None:
        return key  # the change's own run has not started yet (or was lost): same key
    if VERDICT.get(stored.status, sighting.observed.healthy) == sighting.observed.healthy:
        return None  # it agrees, or is still being evaluated
    return f"{key}-recheck-{stored.id}"


def _release_status(
    kubernetes: KubernetesResource, environment: str, graph: Release, ref: ReleaseRef, left: float
) -> Observed:
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
    summary = f"{helm_status} revision {state['revision']}" if release else "no release"
    if stuck:
        metadata["stuck"] = (
            f"revision {state['revision']} is {helm_status} and no deploy holds the "
            "release lock: the next deploy unlocks it (marks it failed) and converges"
        )
        summary += " (stuck)"
    return Observed(state, summary, _observation(graph, environment, metadata))


def _workload_health(
    kubernetes: KubernetesResource, environment: str, graph: Release, ref: ReleaseRef, left: float
) -> Observed:
    if kubernetes.helm(ref.cluster).status(ref) is None:
        return Observed(
            state={"release": "absent"},
            summary="no release",
            healthy=False,
            observation=_observation(
                graph, environment, {"components": f"no release {ref.name} in {ref.namespace}"}
            ),
        )
    components = release_health(
        kubernetes.cluster(ref.cluster).api,
        ref.namespace,
        ref.name,
        deadline=min(left, RETRY_SECONDS),
    )
    state = [(c.name, c.health, c.reason, c.replicas.ready, c.replicas.desired) for c in components]
    unhealthy = [
        f"{c.name} {c.reason or c.health}" for c in components if c.health != Health.HEALTHY
    ]
    summary = ("unhealthy: " + ", ".join(unhealthy)) if unhealthy else "healthy"
    return Observed(
        state,
        summary,
        healthy=not unhealthy,
        observation=_observation(
            graph, environment, {"components": dg.MetadataValue.md(components_table(components))}
        ),
    )


def _observation(
    release: Release, environment: str, metadata: dict[str, object]
) -> dg.AssetObservation:
    return dg.AssetObservation(
        asset_key=release.release_key,
        partition=environment,
        metadata=metadata,  # type: ignore[arg-type]
    )
