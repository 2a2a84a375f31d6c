"""What a model's pod says: whether it runs, what holds it back, how its container ended.

Job conditions say whether a Job succeeded or failed, but not why a pod never starts: a pod
that cannot be scheduled or whose image cannot be pulled leaves its Job active until its
deadline. Reading the pod's status lets the runner end those early, with the pod's reason.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from kubernetes.client import V1ContainerStateTerminated, V1Pod

from floe_deploy_assets.jobs.spec import DBT_CONTAINER

# An image that cannot be pulled will not be pulled by waiting: fail at once.
IMAGE_PULL_REASONS = frozenset(
    {"ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull"}
)


class Hold(StrEnum):
    """What kind of wait a pod is in; each has its own deadline in the runner."""

    UNSCHEDULED = "unscheduled"  # the schedule deadline
    STARTING = "starting"  # the start deadline (volumes, config, a slow start)
    IMAGE = "image"  # no deadline: fail now


@dataclass(frozen=True)
class PodHold:
    kind: Hold
    reason: str
    message: str


@dataclass(frozen=True)
class Termination:
    exit_code: int | None
    reason: str | None
    message: str | None


def pod_hold(pod: V1Pod) -> PodHold | None:
    """Why the pod's dbt container is not running yet, if it is not."""
    status = pod.status
    if status is None or status.phase in ("Running", "Succeeded", "Failed"):
        return None
    for condition in status.conditions or []:
        if condition.type == "PodScheduled" and condition.status == "False":
            return PodHold(
                Hold.UNSCHEDULED, condition.reason or "Unschedulable", condition.message or ""
            )
    if not pod.spec or not pod.spec.node_name:
        return PodHold(Hold.UNSCHEDULED, "NotScheduled", "the pod has no node yet")
    for container in status.container_statuses or []:
        waiting = container.state.waiting if container.state else None
        if waiting is not None:
            kind = Hold.IMAGE if waiting.reason in IMAGE_PULL_REASONS else Hold.STARTING
            return PodHold(kind, waiting.reason or "Waiting", waiting.message or "")
    return PodHold(Hold.STARTING, "ContainerCreating", "the container has not started yet")


def started_at(pod: V1Pod) -> datetime | None:
    """When the dbt container started running (None while it has not)."""
    for container in _dbt_statuses(pod):
        for state in (container.state, container.last_state):
            if state is not None and state.running is not None:
                return state.running.started_at
            if state is not None and state.terminated is not None:
                return state.terminated.started_at
    return None


def termination(pod: V1Pod) -> Termination | None:
    """How the dbt container ended (its last run, when it restarted)."""
    for container in _dbt_statuses(pod):
        terminated: V1ContainerStateTerminated | None = None
        for state in (container.state, container.last_state):
            if state is not None and state.terminated is not None:
                terminated = state.terminated
                break
        if terminated is not None:
            return Termination(terminated.exit_code, terminated.reason, terminated.message)
    return None


def _dbt_statuses(pod: V1Pod) -> list:
    statuses = (pod.status.container_statuses if pod.status else None) or []
    return [c for c in statuses if c.name == DBT_CONTAINER] or statuses[:1]


def last_bytes(log: bytes, limit: int) -> str:
    """The end of a log, at most ``limit`` bytes, starting at a line when the log was cut."""
    if len(log) <= limit:
        return log.decode("utf-8", errors="replace")
    tail = log[-limit:]
    newline = tail.find(b"\n")
    if 0 <= newline < len(tail) - 1:
        tail = tail[newline + 1 :]
    return tail.decode("utf-8", errors="replace")
