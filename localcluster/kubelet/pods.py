"""Follow the pods bound to our nodes and write the status a kubelet would.

One informer feeds pod events in; workers write status at the moments the pod's timeline says
it changes (a heap of due times, no polling per pod). A pod being deleted is finalized the way a
kubelet does once its containers are gone: deleted with grace period 0.

Several workers (``run`` in as many threads) write at once: one worker, waiting for each write's
answer in turn, held a busy cluster to about 12 pods/s, with pods' final status written seconds
after their containers ended. A pod is synced by one worker at a time (a pod due while another
worker syncs it is synced again after), so its writes never overtake one another. The answers
to status writes are not read into client objects: nothing uses them.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from localcluster.kubelet.behaviour import BehaviourError, PodBehaviour, behaviour_for
from localcluster.kubelet.nodes import MERGE_PATCH, now_stamp
from localcluster.kubelet.timeline import (
    Backoff,
    ContainerFacts,
    PodFacts,
    container_moment,
    pod_status,
)

log = logging.getLogger(__name__)
RETRY_MISSING_INPUTS = 1.0


@dataclass
class TrackedPod:
    facts: PodFacts
    node: str
    behaviour: PodBehaviour | None
    config_error: str | None
    started: datetime
    pod_ip: str
    conditions: list[dict[str, Any]] = field(default_factory=list)
    written: dict[str, Any] | None = None
    deleting: bool = False
    references: tuple[Reference, ...] = ()
    inputs_ready: bool = False  # every referenced Secret and ConfigMap was found once
    blocked: bool = False


@dataclass(frozen=True)
class Reference:
    """A Secret or ConfigMap a pod needs before its containers can start."""

    kind: str  # secret, configmap
    name: str
    via: str  # env (CreateContainerConfigError when missing), volume (stuck in ContainerCreating)


def pod_references(spec: dict[str, Any]) -> tuple[Reference, ...]:
    """The non-optional Secrets and ConfigMaps a pod's env and volumes use."""
    found: list[Reference] = []
    for container in [*(spec.get("initContainers") or []), *spec["containers"]]:
        for entry in container.get("env") or []:
            source = entry.get("valueFrom") or {}
            for key, kind in (("secretKeyRef", "secret"), ("configMapKeyRef", "configmap")):
                ref = source.get(key)
                if ref and not ref.get("optional"):
                    found.append(Reference(kind, ref["name"], "env"))
        for entry in container.get("envFrom") or []:
            for key, kind in (("secretRef", "secret"), ("configMapRef", "configmap")):
                ref = entry.get(key)
                if ref and not ref.get("optional"):
                    found.append(Reference(kind, ref["name"], "env"))
    for volume in spec.get("volumes") or []:
        secret, config_map = volume.get("secret"), volume.get("configMap")
        if secret and not secret.get("optional"):
            found.append(Reference("secret", secret["secretName"], "volume"))
        if config_map and not config_map.get("optional"):
            found.append(Reference("configmap", config_map["name"], "volume"))
    return tuple(dict.fromkeys(found))


def _readiness_delay(container: dict[str, Any]) -> float | None:
    probe = container.get("readinessProbe")
    if probe is None:
        return None
    return float(probe.get("initialDelaySeconds") or 0)


def pod_facts(pod: dict[str, Any]) -> PodFacts:
    spec, meta = pod["spec"], pod["metadata"]
    return PodFacts(
        namespace=meta["namespace"],
        name=meta["name"],
        uid=meta["uid"],
        restart_policy=spec.get("restartPolicy", "Always"),
        containers=tuple(
            ContainerFacts(c["name"], c.get("image", ""), _readiness_delay(c))
            for c in spec["containers"]
        ),
        init_containers=tuple(
            ContainerFacts(c["name"], c.get("image", "")) for c in spec.get("initContainers") or []
        ),
        active_deadline_seconds=spec.get("activeDeadlineSeconds"),
    )


def _discard(response: Any) -> None:
    """Drops the body of a ``_preload_content=False`` answer and gives its connection back to
    the pool."""
    try:
        response.drain_conn()
    finally:
        response.release_conn()


def _parse_stamp(stamp: str) -> datetime:
    return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)


class PodAgent:
    def __init__(self, core: client.CoreV1Api, node_names: list[str], backoff: Backoff):
        self.core = core
        self.nodes = {name: index for index, name in enumerate(node_names)}
        self.backoff = backoff
        self.pods: dict[str, TrackedPod] = {}
        self._due: list[tuple[float, int, str]] = []
        self._sequence = itertools.count()
        self._ip_counter = itertools.count(2)
        self._wake = threading.Condition()
        self._syncing: set[str] = set()  # pods a worker is syncing now
        self._again: set[str] = set()  # of those, pods that came due meanwhile

    # --- informer side -------------------------------------------------------------------------
    def on_event(self, kind: str, pod: dict[str, Any]) -> None:
        node = pod["spec"].get("nodeName")
        if node not in self.nodes:
            return
        uid = pod["metadata"]["uid"]
        with self._wake:
            if kind == "DELETED":
                self.pods.pop(uid, None)
                return
            tracked = self.pods.get(uid)
            if tracked is None:
                tracked = self._track(pod, node)
                self.pods[uid] = tracked
            tracked.conditions = pod.get("status", {}).get("conditions") or []
            tracked.deleting = pod["metadata"].get("deletionTimestamp") is not None
            self._schedule(uid, 0.0)

    def _track(self, pod: dict[str, Any], node: str) -> TrackedPod:
        status = pod.get("status", {})
        started = (
            _parse_stamp(status["startTime"])
            if status.get("startTime")
            else datetime.now(UTC).replace(microsecond=0)
        )
        facts = pod_facts(pod)
        images = [c.image for c in facts.containers]
        try:
            behaviour, error = (
                behaviour_for(pod["metadata"].get("annotations"), facts.restart_policy, images),
                None,
            )
        except BehaviourError as exc:
            behaviour, error = None, str(exc)
        pod_ip = (
            status.get("podIP") or f"10.244.{self.nodes[node]}.{next(self._ip_counter) % 250 + 2}"
        )
        return TrackedPod(
            facts, node, behaviour, error, started, pod_ip, references=pod_references(pod["spec"])
        )

    def _schedule(self, uid: str, delay: float) -> None:
        heapq.heappush(self._due, (time.monotonic() + delay, next(self._sequence), uid))
        self._wake.notify()

    # --- worker side ---------------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            with self._wake:
                while not self._due or self._due[0][0] > time.monotonic():
                    timeout = self._due[0][0] - time.monotonic() if self._due else 1.0
                    self._wake.wait(timeout=max(timeout, 0.0))
                    if stop.is_set():
                        return
                _, _, uid = heapq.heappop(self._due)
                if uid in self._syncing:
                    self._again.add(uid)
                    continue
                tracked = self.pods.get(uid)
                if tracked is None:
                    continue
                self._syncing.add(uid)
            try:
                self._sync(tracked)
            finally:
                with self._wake:
                    self._syncing.discard(uid)
                    if uid in self._again:
                        self._again.discard(uid)
                        self._schedule(uid, 0.0)

    def _sync(self, tracked: TrackedPod) -> None:
        facts = tracked.facts
        try:
            if tracked.deleting:
                self._finalize(facts)
                return
            status, next_change = self.desired_status(tracked)
            if status != tracked.written:
                _discard(
                    self.core.patch_namespaced_pod_status(
                        facts.name,
                        facts.namespace,
                        {"status": status},
                        _content_type=MERGE_PATCH,
                        _preload_content=False,
                    )
                )
                tracked.written = status
        except ApiException as exc:
            if exc.status == 404:
                return
            log.warning("pod %s/%s: %s; retrying", facts.namespace, facts.name, exc.reason)
            next_change = 0.5
        if next_change is not None:
            elapsed = (datetime.now(UTC) - tracked.started).total_seconds()
            with self._wake:
                self._schedule(facts.uid, max(next_change - elapsed, 0.0) + 0.01)

    def desired_status(self, tracked: TrackedPod) -> tuple[dict[str, Any], float | None]:
        if tracked.behaviour is None:
            return self._waiting_status(
                tracked, "CreateContainerConfigError", tracked.config_error
            ), None
        if not tracked.inputs_ready:
            blocked = self._blocked_status(tracked)
            if blocked is not None:
                return blocked
        elapsed = (datetime.now(UTC) - tracked.started).total_seconds()
        status, next_change = pod_status(
            tracked.facts,
            tracked.behaviour,
            tracked.started,
            elapsed,
            self.backoff,
            tracked.pod_ip,
            "127.0.0.1",
        )
        status["conditions"] = self._stamp_transitions(tracked, status["conditions"])
        return status, next_change

    def _blocked_status(self, tracked: TrackedPod) -> tuple[dict[str, Any], float] | None:
        """A kubelet starts no container while a Secret or ConfigMap it needs is missing: a
        missing env source is CreateContainerConfigError, a missing volume keeps the pod in
        ContainerCreating. It retries; so do we, every RETRY_MISSING_INPUTS seconds."""
        missing = [ref for ref in tracked.references if not self._exists(tracked, ref)]
        if not missing:
            tracked.inputs_ready = True
            if tracked.blocked:
                # The containers start now; the timeline runs from here.
                tracked.started = datetime.now(UTC).replace(microsecond=0)
            return None
        tracked.blocked = True
        elapsed = (datetime.now(UTC) - tracked.started).total_seconds()
        env_missing = [ref for ref in missing if ref.via == "env"]
        if env_missing:
            ref = env_missing[0]
            status = self._waiting_status(
                tracked, "CreateContainerConfigError", f'{ref.kind} "{ref.name}" not found'
            )
        else:
            status = self._waiting_status(tracked, "ContainerCreating", None)
        return status, elapsed + RETRY_MISSING_INPUTS

    def _exists(self, tracked: TrackedPod, ref: Reference) -> bool:
        read = (
            self.core.read_namespaced_secret
            if ref.kind == "secret"
            else self.core.read_namespaced_config_map
        )
        try:
            # Read to the end and given back: a connection left holding an unread answer is
            # not reused, and a new one costs a TLS handshake on both sides (two per pod).
            _discard(read(ref.name, tracked.facts.namespace, _preload_content=False))
        except ApiException as exc:
            if exc.status == 404:
                return False
            raise
        return True

    def _waiting_status(
        self, tracked: TrackedPod, reason: str, message: str | None
    ) -> dict[str, Any]:
        """Every container waiting for the same reason, the pod Pending."""
        waiting = {"reason": reason, **({"message": message} if message else {})}
        containers = [
            {
                "name": c.name,
                "image": c.image,
                "imageID": "",
                "ready": False,
                "restartCount": 0,
                "started": False,
                "lastState": {},
                "state": {"waiting": waiting},
            }
            for c in tracked.facts.containers
        ]
        return {
            "phase": "Pending",
            "hostIP": "127.0.0.1",
            "startTime": tracked.started.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "containerStatuses": containers,
            "conditions": self._stamp_transitions(
                tracked, [{"type": "PodScheduled", "status": "True"}]
            ),
        }

    @staticmethod
    def _stamp_transitions(
        tracked: TrackedPod, conditions: list[dict[str, Any]]
    ) -> list[dict[str, Any]]:
        """Keep a condition's lastTransitionTime while its status stays the same."""
        previous = {c["type"]: c for c in tracked.conditions}
        stamped = []
        for condition in conditions:
            before = previous.get(condition["type"])
            same = before is not None and before.get("status") == condition["status"]
            stamp = before.get("lastTransitionTime") if same and before else None
            stamped.append(
                {**condition, "lastProbeTime": None, "lastTransitionTime": stamp or now_stamp()}
            )
        return stamped

    def _finalize(self, facts: PodFacts) -> None:
        self.core.delete_namespaced_pod(
            facts.name,
            facts.namespace,
            body=client.V1DeleteOptions(
                grace_period_seconds=0, preconditions=client.V1Preconditions(uid=facts.uid)
            ),
        )

    # --- log server side -----------------------------------------------------------------------
    def container_logs(self, namespace: str, pod: str, container: str) -> tuple[int, str]:
        """(HTTP status, body) for the kubelet's containerLogs endpoint."""
        with self._wake:
            tracked = next(
                (
                    p
                    for p in self.pods.values()
                    if p.facts.namespace == namespace and p.facts.name == pod
                ),
                None,
            )
        if tracked is None:
            return 404, f'pods "{pod}" not found'
        facts = next(
            (
                c
                for c in tracked.facts.containers + tracked.facts.init_containers
                if c.name == container
            ),
            None,
        )
        if facts is None:
            return 400, f'container "{container}" in pod "{pod}" is not valid'
        behaviour = tracked.behaviour
        if behaviour is None:
            return 400, (
                f'container "{container}" in pod "{pod}" is waiting to start: '
                "CreateContainerConfigError"
            )
        if facts in tracked.facts.containers:
            elapsed = (datetime.now(UTC) - tracked.started).total_seconds()
            moment = container_moment(
                elapsed, facts, behaviour, tracked.facts.restart_policy, self.backoff
            )
            if moment.run_window is None and moment.last_run is None:
                return 400, (
                    f'container "{container}" in pod "{pod}" is waiting to start: {moment.reason}'
                )
        if behaviour.logs is not None:
            return 200, behaviour.logs.rstrip("\n") + "\n"
        lines = [f"simulated container {container} of pod {namespace}/{pod} started"]
        if behaviour.exits and behaviour.exit_code:
            lines.append(f"simulated container {container} exiting with code {behaviour.exit_code}")
        return 200, "\n".join(lines) + "\n"
