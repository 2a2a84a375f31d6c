"""The status a kubelet would write for a pod, as a pure function of time since it started.

Given a pod's spec facts, its chosen behaviour and the seconds elapsed since the kubelet started
it, ``pod_status`` returns the status document and when it next changes. Keeping this a pure
function makes every fault testable without a cluster and keeps the simulated kubelet restart-safe:
the start time lives in the pod's own ``status.startTime``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from localcluster.kubelet.behaviour import OOM_EXIT_CODE, PodBehaviour

DEADLINE_EXIT_CODE = 137  # SIGKILL, as when the kubelet kills a container at its deadline


@dataclass(frozen=True)
class ContainerFacts:
    name: str
    image: str
    readiness_delay: float | None = None  # None: no readiness probe


@dataclass(frozen=True)
class PodFacts:
    namespace: str
    name: str
    uid: str
    restart_policy: str
    containers: tuple[ContainerFacts, ...]
    init_containers: tuple[ContainerFacts, ...] = ()
    active_deadline_seconds: float | None = None


@dataclass(frozen=True)
class Backoff:
    """Restart back-off: the first restart is at once, then base, 2*base, ... up to cap."""

    base: float = 10.0
    cap: float = 300.0

    def before_restart(self, restarts_so_far: int) -> float:
        if restarts_so_far == 0:
            return 0.0
        return min(self.base * 2 ** (restarts_so_far - 1), self.cap)


@dataclass(frozen=True)
class ContainerMoment:
    """Where one container is at a moment; offsets are seconds since the pod started."""

    state: str  # waiting, running, terminated
    reason: str | None
    restart_count: int
    run_window: tuple[float, float | None] | None  # current or last run (start, end)
    last_run: tuple[float, float] | None  # the run before, when the container restarted
    next_change: float | None
    message: str | None = None
    ready: bool = False


def _restarts(behaviour: PodBehaviour, restart_policy: str) -> bool:
    return restart_policy == "Always" or (
        restart_policy == "OnFailure" and behaviour.exit_code != 0
    )


def _exit_reason(exit_code: int, fault: str | None) -> str:
    if fault == "oom-killed" or (exit_code == OOM_EXIT_CODE and fault == "oom-killed"):
        return "OOMKilled"
    return "Completed" if exit_code == 0 else "Error"


def container_moment(
    t: float,
    container: ContainerFacts,
    behaviour: PodBehaviour,
    restart_policy: str,
    backoff: Backoff,
) -> ContainerMoment:
    if behaviour.fault == "image-pull-error":
        if t < backoff.base:
            return ContainerMoment(
                "waiting",
                "ErrImagePull",
                0,
                None,
                None,
                backoff.base,
                message=f"rpc error: code = NotFound desc = failed to pull and "
                f'unpack image "{container.image}": not found',
            )
        return ContainerMoment(
            "waiting",
            "ImagePullBackOff",
            0,
            None,
            None,
            None,
            message=f'Back-off pulling image "{container.image}"',
        )
    start = behaviour.start_delay
    if t < start:
        return ContainerMoment("waiting", "ContainerCreating", 0, None, None, start)
    restarts, last = 0, None
    while True:
        end = None if behaviour.run_seconds is None else start + behaviour.run_seconds
        if end is None or t < end:
            ready_at = _ready_at(start, container, behaviour)
            ready = ready_at is not None and t >= ready_at
            changes = [x for x in (end, ready_at) if x is not None and x > t]
            return ContainerMoment(
                "running",
                None,
                restarts,
                (start, end),
                last,
                min(changes) if changes else None,
                ready=ready,
            )
        if not _restarts(behaviour, restart_policy):
            return ContainerMoment(
                "terminated",
                _exit_reason(behaviour.exit_code, behaviour.fault),
                restarts,
                (start, end),
                last,
                None,
            )
        wait = backoff.before_restart(restarts)
        if t < end + wait:
            return ContainerMoment(
                "waiting",
                "CrashLoopBackOff",
                restarts,
                None,
                (start, end),
                end + wait,
                message=f"back-off {wait:.0f}s restarting failed container={container.name}",
            )
        last, start, restarts = (start, end), end + wait, restarts + 1


def _ready_at(start: float, container: ContainerFacts, behaviour: PodBehaviour) -> float | None:
    if behaviour.fault == "never-ready":
        return None
    return start + (container.readiness_delay or 0.0)


def _stamp(started: datetime, offset: float) -> str:
    return (started + timedelta(seconds=offset)).strftime("%Y-%m-%dT%H:%M:%SZ")


def container_id(pod: PodFacts, container: str, restart: int) -> str:
    digest = hashlib.sha256(f"{pod.uid}/{container}/{restart}".encode()).hexdigest()
    return f"containerd://{digest}"


def _terminated(
    pod: PodFacts,
    started: datetime,
    name: str,
    restart: int,
    window: tuple[float, float],
    exit_code: int,
    reason: str,
) -> dict[str, Any]:
    return {
        "terminated": {
            "exitCode": exit_code,
            "reason": reason,
            "startedAt": _stamp(started, window[0]),
            "finishedAt": _stamp(started, window[1]),
            "containerID": container_id(pod, name, restart),
        }
    }


def _container_status(
    pod: PodFacts,
    started: datetime,
    container: ContainerFacts,
    moment: ContainerMoment,
    behaviour: PodBehaviour,
    killed_at: float | None,
) -> dict[str, Any]:
    status: dict[str, Any] = {
        "name": container.name,
        "image": container.image,
        "imageID": "",
        "ready": moment.ready,
        "restartCount": moment.restart_count,
        "started": False,
        "lastState": {},
    }
    if moment.reason not in ("ErrImagePull", "ImagePullBackOff"):
        digest = hashlib.sha256(container.image.encode()).hexdigest()
        status["imageID"] = f"docker-pullable://{container.image.split(':')[0]}@sha256:{digest}"
    if moment.last_run is not None:
        status["lastState"] = _terminated(
            pod,
            started,
            container.name,
            moment.restart_count - (moment.state != "waiting"),
            moment.last_run,
            behaviour.exit_code,
            _exit_reason(behaviour.exit_code, behaviour.fault),
        )
    if killed_at is not None and moment.run_window is not None:
        status["state"] = _terminated(
            pod,
            started,
            container.name,
            moment.restart_count,
            (moment.run_window[0], killed_at),
            DEADLINE_EXIT_CODE,
            "Error",
        )
        status["ready"] = False
    elif moment.state == "waiting":
        waiting = {"reason": moment.reason}
        if moment.message:
            waiting["message"] = moment.message
        status["state"] = {"waiting": waiting}
    elif moment.state == "running":
        assert moment.run_window is not None
        status["state"] = {"running": {"startedAt": _stamp(started, moment.run_window[0])}}
        status["started"] = True
        status["containerID"] = container_id(pod, container.name, moment.restart_count)
    else:
        assert moment.run_window is not None and moment.run_window[1] is not None
        status["state"] = _terminated(
            pod,
            started,
            container.name,
            moment.restart_count,
            (moment.run_window[0], moment.run_window[1]),
            behaviour.exit_code,
            moment.reason or "Error",
        )
    if "terminated" in status["state"]:
        status["containerID"] = status["state"]["terminated"]["containerID"]
    return status


def _condition(
    kind: str, ok: bool, reason: str | None = None, message: str | None = None
) -> dict[str, Any]:
    condition: dict[str, Any] = {"type": kind, "status": "True" if ok else "False"}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


def pod_status(
    pod: PodFacts,
    behaviour: PodBehaviour,
    started: datetime,
    t: float,
    backoff: Backoff,
    pod_ip: str,
    host_ip: str,
) -> tuple[dict[str, Any], float | None]:
    """The pod's status ``t`` seconds after ``started``, and the next ``t`` at which it changes."""
    moments = [
        container_moment(t, c, behaviour, pod.restart_policy, backoff) for c in pod.containers
    ]
    deadline = pod.active_deadline_seconds
    all_terminated = all(m.state == "terminated" for m in moments)
    finished_at = max((m.run_window[1] or 0.0 for m in moments if m.run_window), default=0.0)
    deadline_hit = (
        deadline is not None and t >= deadline and not (all_terminated and finished_at <= deadline)
    )
    killed_at = deadline if deadline_hit else None
    status: dict[str, Any] = {"hostIP": host_ip, "startTime": _stamp(started, 0)}
    initialized = t >= behaviour.start_delay or not pod.init_containers
    if pod.init_containers:
        status["initContainerStatuses"] = [
            {
                "name": c.name,
                "image": c.image,
                "imageID": "",
                "ready": initialized,
                "restartCount": 0,
                "lastState": {},
                "state": _terminated(
                    pod, started, c.name, 0, (0.0, behaviour.start_delay), 0, "Completed"
                )
                if initialized
                else {"waiting": {"reason": "PodInitializing"}},
            }
            for c in pod.init_containers
        ]
    statuses = [
        _container_status(pod, started, c, m, behaviour, killed_at)
        for c, m in zip(pod.containers, moments, strict=False)
    ]
    if not initialized:
        for entry in statuses:
            entry["state"] = {"waiting": {"reason": "PodInitializing"}}
    status["containerStatuses"] = statuses
    unready = [s["name"] for s in statuses if not s["ready"]]
    if deadline_hit:
        phase = "Failed"
        status["reason"] = "DeadlineExceeded"
        status["message"] = "Pod was active on the node longer than the specified deadline"
    elif all_terminated:
        phase = "Succeeded" if behaviour.exit_code == 0 else "Failed"
    elif any(m.run_window or m.last_run for m in moments):
        phase = "Running"
    else:
        phase = "Pending"
    status["phase"] = phase
    if phase in ("Running", "Succeeded", "Failed") and not (
        phase == "Failed" and not any(m.run_window or m.last_run for m in moments)
    ):
        status["podIP"] = pod_ip
        status["podIPs"] = [{"ip": pod_ip}]
    terminal = phase in ("Succeeded", "Failed")
    ready_reason = "PodCompleted" if terminal else "ContainersNotReady"
    ready_message = None if terminal else f"containers with unready status: [{' '.join(unready)}]"
    status["conditions"] = [
        _condition(
            "Initialized",
            initialized,
            None if initialized else "ContainersNotInitialized",
            None
            if initialized
            else "containers with incomplete status: "
            f"[{' '.join(c.name for c in pod.init_containers)}]",
        ),
        _condition(
            "Ready",
            not unready,
            None if not unready else ready_reason,
            None if not unready else ready_message,
        ),
        _condition(
            "ContainersReady",
            not unready,
            None if not unready else ready_reason,
            None if not unready else ready_message,
        ),
        _condition("PodScheduled", True),
    ]
    changes = [m.next_change for m in moments if m.next_change is not None]
    if deadline is not None and not deadline_hit and not terminal:
        changes.append(deadline)
    if not initialized:
        changes.append(behaviour.start_delay)
    return status, (min(changes) if changes and not deadline_hit else None)
