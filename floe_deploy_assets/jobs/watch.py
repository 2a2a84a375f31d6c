"""Following a run's Jobs and pods in one namespace, and counting the API calls made.

One Job watch (the phase: Job conditions) and one pod watch (what holds a pod back, how its
container ended) per namespace, each selecting the run's label, whatever the number of Jobs: no
per-Job polling. Both feed the same queue, which the runner alone reads.

Each watch lists once, then watches from the list's resourceVersion (``kube.retry.
watch_with_relist``). Every ``resync_seconds`` the server ends the watch and it is opened again
from the last resourceVersion seen (bookmarks included), which bounds how long a thread outlives
``stop()``; it lists again only when the API server says that version is gone (410 Gone, as an
answer or an ERROR event). A periodic relist
would fetch every Job and pod of the run, finished or not, every ``resync_seconds``: at 2,000
models that is most of the work and of the memory of a run.

Objects are read as raw JSON and cut down to the few fields the
runner reads (``job_from_json``, ``pod_from_json``): the client's own deserialization of a pod
costs about 3 ms, over a hundred times the JSON parse, and a pod or Job goes through several
events in a run. The cut-down objects are still ``V1Job`` and ``V1Pod`` (built with client-side
validation off and a shared configuration, which the generated constructors otherwise copy per
object), so the runner and ``jobs.pods`` read them as they read the client's.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from kubernetes import client
from kubernetes.client import (
    V1ContainerState,
    V1ContainerStateRunning,
    V1ContainerStateTerminated,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1Job,
    V1JobCondition,
    V1JobStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodCondition,
    V1PodSpec,
    V1PodStatus,
)

from floe_deploy_assets.jobs.spec import RUN_LABEL
from floe_deploy_assets.kube.retry import (
    DEFAULT_DEADLINE,
    DEFAULT_POLICY,
    RetryPolicy,
    watch_with_relist,
)

JOB_NAME_LABEL = "job-name"  # set by the Job controller on the pods of a Job


@dataclass(frozen=True)
class Observed:
    """An event of the Job or pod watch. ``type``: SYNC (``object`` is the list of every
    object, after a list), ADDED, MODIFIED, DELETED, or ERROR (``object`` is the exception
    that ended the watch). ``seen_at``: wall-clock time the runner received it. Jobs and pods
    carry only what the runner reads (``job_from_json``, ``pod_from_json``)."""

    kind: str  # "Job" or "Pod"
    type: str
    object: Any
    seen_at: float


class CountingApiClient(client.ApiClient):
    """An ApiClient counting its calls by method and resource, e.g. ``POST jobs``,
    ``GET pods (watch)``, ``GET pods/{name}/log``. Thread-safe."""

    def __init__(self, configuration: client.Configuration) -> None:
        super().__init__(configuration)
        self._lock = threading.Lock()
        self.calls: Counter[str] = Counter()

    def call_api(self, resource_path: str, method: str, *args: Any, **kwargs: Any) -> Any:
        query = kwargs.get("query_params", args[1] if len(args) > 1 else None) or []
        watching = any(key == "watch" and value for key, value in query)
        resource = resource_path.split("{namespace}/", 1)[-1]
        with self._lock:
            self.calls[f"{method} {resource}{' (watch)' if watching else ''}"] += 1
        return super().call_api(resource_path, method, *args, **kwargs)

    @property
    def total(self) -> int:
        with self._lock:
            return sum(self.calls.values())


# --- raw JSON to the fields the runner reads ------------------------------------------------
# Shared by every cut-down object: the generated constructors copy the default configuration
# for each object when given none, which costs more than the rest of the object.
_MODELS = client.Configuration()
_MODELS.client_side_validation = False


def _time(stamp: str | None) -> datetime | None:
    return datetime.fromisoformat(stamp) if stamp else None


def _metadata(raw: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> V1ObjectMeta:
    return V1ObjectMeta(
        name=raw.get("name"),
        labels=labels,
        creation_timestamp=_time(raw.get("creationTimestamp")),
        resource_version=raw.get("resourceVersion"),
        local_vars_configuration=_MODELS,
    )


def job_from_json(raw: Mapping[str, Any]) -> V1Job:
    """A Job as the API server sends it, cut down to its name and the status the runner reads
    (conditions, start and completion time)."""
    status = raw.get("status") or {}
    conditions = [
        V1JobCondition(
            type=c.get("type"),
            status=c.get("status"),
            reason=c.get("reason"),
            message=c.get("message"),
            last_transition_time=_time(c.get("lastTransitionTime")),
            local_vars_configuration=_MODELS,
        )
        for c in status.get("conditions") or []
    ]
    return V1Job(
        metadata=_metadata(raw.get("metadata") or {}),
        status=V1JobStatus(
            conditions=conditions or None,
            start_time=_time(status.get("startTime")),
            completion_time=_time(status.get("completionTime")),
            local_vars_configuration=_MODELS,
        ),
        local_vars_configuration=_MODELS,
    )


def _container_state(raw: Mapping[str, Any] | None) -> V1ContainerState | None:
    if not raw:
        return None
    waiting, running, terminated = raw.get("waiting"), raw.get("running"), raw.get("terminated")
    return V1ContainerState(
        waiting=V1ContainerStateWaiting(
            reason=waiting.get("reason"),
            message=waiting.get("message"),
            local_vars_configuration=_MODELS,
        )
        if waiting is not None
        else None,
        running=V1ContainerStateRunning(
            started_at=_time(running.get("startedAt")), local_vars_configuration=_MODELS
        )
        if running is not None
        else None,
        terminated=V1ContainerStateTerminated(
            exit_code=terminated.get("exitCode"),
            reason=terminated.get("reason"),
            message=terminated.get("message"),
            started_at=_time(terminated.get("startedAt")),
            finished_at=_time(terminated.get("finishedAt")),
            local_vars_configuration=_MODELS,
        )
        if terminated is not None
        else None,
        local_vars_configuration=_MODELS,
    )


def pod_from_json(raw: Mapping[str, Any]) -> V1Pod:
    """A pod as the API server sends it, cut down to what the runner and ``jobs.pods`` read:
    its name, Job name label and creation time, its node, phase, conditions and the states of
    its containers."""
    metadata = raw.get("metadata") or {}
    job_name = (metadata.get("labels") or {}).get(JOB_NAME_LABEL)
    status = raw.get("status") or {}
    return V1Pod(
        metadata=_metadata(metadata, {JOB_NAME_LABEL: job_name} if job_name else None),
        spec=V1PodSpec(
            containers=[],
            node_name=(raw.get("spec") or {}).get("nodeName"),
            local_vars_configuration=_MODELS,
        ),
        status=V1PodStatus(
            phase=status.get("phase"),
            conditions=[
                V1PodCondition(
                    type=c.get("type"),
                    status=c.get("status"),
                    reason=c.get("reason"),
                    message=c.get("message"),
                    local_vars_configuration=_MODELS,
                )
                for c in status.get("conditions") or []
            ]
            or None,
            container_statuses=[
                V1ContainerStatus(
                    name=c.get("name"),
                    image=c.get("image"),
                    image_id=c.get("imageID"),
                    ready=c.get("ready"),
                    restart_count=c.get("restartCount"),
                    state=_container_state(c.get("state")),
                    last_state=_container_state(c.get("lastState")),
                    local_vars_configuration=_MODELS,
                )
                for c in status.get("containerStatuses") or []
            ]
            or None,
            local_vars_configuration=_MODELS,
        ),
        local_vars_configuration=_MODELS,
    )


class RunWatch:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        run_id: str,
        events: queue.Queue[Observed],
        resync_seconds: float = 10.0,
        *,
        deadline: float = DEFAULT_DEADLINE,
        policy: RetryPolicy = DEFAULT_POLICY,
    ) -> None:
        """``deadline``: how long a streak of retryable failures (of a list or a watch) may
        last before the watch gives up with an ERROR event."""
        self.namespace, self.events, self.resync_seconds = namespace, events, resync_seconds
        self.deadline, self.policy = deadline, policy
        self._selector = f"{RUN_LABEL}={run_id}"
        self._stopped = threading.Event()
        batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
        self._threads = [
            threading.Thread(
                target=self._follow,
                args=("Job", batch.list_namespaced_job, job_from_json),
                name=f"watch-jobs-{namespace}",
                daemon=True,
            ),
            threading.Thread(
                target=self._follow,
                args=("Pod", core.list_namespaced_pod, pod_from_json),
                name=f"watch-pods-{namespace}",
                daemon=True,
            ),
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def stop(self) -> None:
        """The threads end at their next event or resync; nothing waits for them."""
        self._stopped.set()

    def _follow(
        self, kind: str, list_fn: Callable[..., Any], convert: Callable[[Any], Any]
    ) -> None:
        try:
            for event in watch_with_relist(
                list_fn,
                self.namespace,
                what=f"watching the {kind}s of {self._selector} in namespace {self.namespace}",
                stopped=self._stopped.is_set,
                watch_seconds=self.resync_seconds,
                convert=convert,
                deadline=self.deadline,
                policy=self.policy,
                label_selector=self._selector,
            ):
                if self._stopped.is_set():
                    return
                self.events.put(Observed(kind, event.type, event.object, time.time()))
        except Exception as error:  # the runner decides; a silent dead watch would hang it
            self.events.put(Observed(kind, "ERROR", error, time.time()))
