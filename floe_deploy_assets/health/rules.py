"""Health of one workload from its object and its pods (plain dicts, as listed from the API).

- healthy: every desired replica is updated and available (a Job: complete);
- degraded + progressing: a rollout still inside its progress deadline (a Job: running);
- unhealthy: the rollout passed its deadline, a pod cannot pull its image, crash-loops, was
  OOM-killed, lacks its config or cannot be scheduled (with the scheduler's message), a Job failed;
- a missing object is unhealthy, with the reason `missing`; nothing is assumed healthy.
Pod problems are named even while a rollout is within its deadline: an image that cannot be
pulled will not fix itself by waiting.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from floe_deploy_assets.models.deployment import (
    DeployedComponent,
    Health,
    ReplicaCounts,
    WorkloadType,
)

POD_FAILURE_REASONS = (
    "ImagePullBackOff",
    "ErrImagePull",
    "CrashLoopBackOff",
    "CreateContainerConfigError",
    "InvalidImageName",
)

Obj = Mapping[str, Any]


def _condition(obj: Obj, kind: str) -> Obj | None:
    return next(
        (c for c in obj.get("status", {}).get("conditions") or [] if c.get("type") == kind), None
    )


def pod_problem(pods: Iterable[Obj]) -> str | None:
    """The first reason a kubelet or the scheduler gives for a pod that cannot run."""
    for pod in pods:
        status = pod.get("status", {})
        scheduled = _condition(pod, "PodScheduled")
        if scheduled and scheduled.get("status") == "False":
            return f"Unschedulable: {scheduled.get('message', '')}".rstrip(": ")
        for container in status.get("containerStatuses") or []:
            state = container.get("state") or {}
            last = (container.get("lastState") or {}).get("terminated") or {}
            terminated = state.get("terminated") or last
            if terminated.get("reason") == "OOMKilled":
                return f"OOMKilled: container {container['name']} ran out of memory"
            waiting = state.get("waiting") or {}
            if waiting.get("reason") in POD_FAILURE_REASONS:
                message = waiting.get("message")
                return f"{waiting['reason']}: {message}" if message else waiting["reason"]
            if status.get("phase") == "Failed" and terminated:
                return (
                    f"container {container['name']} exited with code "
                    f"{terminated.get('exitCode')} ({terminated.get('reason', 'Error')})"
                )
        if status.get("phase") == "Failed":
            return f"pod {pod['metadata']['name']} failed: {status.get('reason', 'Failed')}"
    return None


def _component(
    obj: Obj,
    kind: WorkloadType,
    counts: tuple[int, int, int],
    health: Health,
    reason: str | None,
    progressing: bool = False,
) -> DeployedComponent:
    desired, ready, available = counts
    return DeployedComponent(
        name=obj["metadata"]["name"],
        type=kind,
        replicas=ReplicaCounts(desired=desired, ready=ready, available=available),
        health=health,
        reason=reason,
        progressing=progressing,
    )


def _rollout(
    obj: Obj, kind: WorkloadType, counts: tuple[int, int, int], updated: int, pods: list[Obj]
) -> DeployedComponent:
    desired, _, available = counts
    generation = obj["metadata"].get("generation", 0)
    observed = obj.get("status", {}).get("observedGeneration", generation)
    problem = pod_problem(pods)
    progress = _condition(obj, "Progressing")
    if progress and progress.get("reason") == "ProgressDeadlineExceeded":
        return _component(
            obj,
            kind,
            counts,
            Health.UNHEALTHY,
            problem or f"ProgressDeadlineExceeded: {progress.get('message', '')}",
        )
    if problem:
        return _component(obj, kind, counts, Health.UNHEALTHY, problem)
    if observed >= generation and updated >= desired and available >= desired:
        return _component(obj, kind, counts, Health.HEALTHY, None)
    return _component(
        obj,
        kind,
        counts,
        Health.DEGRADED,
        f"rollout in progress: {updated}/{desired} updated, {available}/{desired} available",
        progressing=True,
    )


def workload_health(
    kind: WorkloadType, obj: Obj | None, pods: list[Obj], name: str = ""
) -> DeployedComponent:
    """The DeployedComponent of one workload; ``obj`` None means it is missing."""
    if obj is None:
        missing = {"metadata": {"name": name}}
        return _component(missing, kind, (0, 0, 0), Health.UNHEALTHY, "missing: not found")
    spec, status = obj.get("spec", {}), obj.get("status", {})
    if kind == "Deployment":
        desired = spec.get("replicas", 1)
        counts = (desired, status.get("readyReplicas", 0), status.get("availableReplicas", 0))
        return _rollout(obj, kind, counts, status.get("updatedReplicas", 0), pods)
    if kind == "StatefulSet":
        desired, ready = spec.get("replicas", 1), status.get("readyReplicas", 0)
        current = status.get("updateRevision") == status.get("currentRevision")
        updated = status.get("updatedReplicas", 0) if not current else desired
        return _rollout(obj, kind, (desired, ready, ready), updated, pods)
    if kind == "DaemonSet":
        desired = status.get("desiredNumberScheduled", 0)
        counts = (desired, status.get("numberReady", 0), status.get("numberAvailable", 0))
        return _rollout(obj, kind, counts, status.get("updatedNumberScheduled", 0), pods)
    if kind == "Job":
        counts = (spec.get("completions", 1), status.get("active", 0), status.get("succeeded", 0))
        failed, complete = _condition(obj, "Failed"), _condition(obj, "Complete")
        if failed and failed.get("status") == "True":
            return _component(
                obj,
                kind,
                counts,
                Health.UNHEALTHY,
                pod_problem(pods)
                or f"{failed.get('reason')}: {failed.get('message', '')}".rstrip(": "),
            )
        if complete and complete.get("status") == "True":
            return _component(obj, kind, counts, Health.HEALTHY, None)
        problem = pod_problem(pods)
        if problem:
            return _component(obj, kind, counts, Health.UNHEALTHY, problem)
        return _component(obj, kind, counts, Health.DEGRADED, "running", progressing=True)
    # CronJob: its runs are Jobs of their own; the schedule itself is healthy unless suspended.
    if spec.get("suspend"):
        return _component(obj, kind, (0, 0, 0), Health.DEGRADED, "suspended")
    return _component(obj, kind, (0, 0, 0), Health.HEALTHY, None)
