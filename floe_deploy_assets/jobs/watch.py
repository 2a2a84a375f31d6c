"""Following a run's Jobs and pods in one namespace, and counting the API calls made.

One Job watch (the phase: Job conditions) and one pod watch (what holds a pod back, how its
container ended) per namespace, each selecting the run's label, whatever the number of Jobs: no
per-Job polling. Both feed the same queue, which the runner alone reads. Each watch lists again
every ``resync_seconds`` (and on 410 Gone, through ``kube.retry.watch_with_relist``), which also
bounds how long a thread outlives ``stop()``.
"""

from __future__ import annotations

import queue
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubernetes import client

from floe_deploy_assets.jobs.spec import RUN_LABEL
from floe_deploy_assets.kube.retry import watch_with_relist


@dataclass(frozen=True)
class Observed:
    """An event of the Job or pod watch. ``type``: SYNC (``object`` is the list of every
    object, after a list), ADDED, MODIFIED, DELETED, or ERROR (``object`` is the exception
    that ended the watch). ``seen_at``: wall-clock time the runner received it."""

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


class RunWatch:
    def __init__(
        self,
        api: client.ApiClient,
        namespace: str,
        run_id: str,
        events: queue.Queue[Observed],
        resync_seconds: float = 10.0,
    ) -> None:
        self.namespace, self.events, self.resync_seconds = namespace, events, resync_seconds
        self._selector = f"{RUN_LABEL}={run_id}"
        self._stopped = threading.Event()
        batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
        self._threads = [
            threading.Thread(
                target=self._follow,
                args=("Job", batch.list_namespaced_job),
                name=f"watch-jobs-{namespace}",
                daemon=True,
            ),
            threading.Thread(
                target=self._follow,
                args=("Pod", core.list_namespaced_pod),
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

    def _follow(self, kind: str, list_fn: Callable[..., Any]) -> None:
        try:
            while not self._stopped.is_set():
                for event in watch_with_relist(
                    list_fn,
                    self.namespace,
                    what=f"watching the {kind}s of {self._selector} in namespace {self.namespace}",
                    duration=self.resync_seconds,
                    label_selector=self._selector,
                ):
                    if self._stopped.is_set():
                        return
                    body = event.object.items if event.type == "SYNC" else event.object
                    self.events.put(Observed(kind, event.type, body, time.time()))
        except Exception as error:  # the runner decides; a silent dead watch would hang it
            self.events.put(Observed(kind, "ERROR", error, time.time()))
