"""The simulated kubelet's status workers, without a cluster: several write at once, never two
for the same pod, and every answer's connection goes back to the pool."""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import Any

from localcluster.kubelet.pods import PodAgent
from localcluster.kubelet.timeline import Backoff

NODE = "sim-node-1"


class _Answer:
    """A ``_preload_content=False`` answer, recording whether it was read and given back."""

    def __init__(self, log: list[_Answer]):
        self.drained = self.released = False
        log.append(self)

    def drain_conn(self) -> None:
        self.drained = True

    def release_conn(self) -> None:
        self.released = True


class _Core:
    """The few CoreV1Api calls the pod agent makes; each status write takes a while."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.in_flight: Counter[str] = Counter()
        self.overlaps: list[str] = []
        self.writes: list[tuple[str, str]] = []
        self.answers: list[_Answer] = []
        self.most_at_once = 0

    def patch_namespaced_pod_status(self, name: str, namespace: str, body: dict, **kw: Any):
        assert kw.get("_preload_content") is False
        with self.lock:
            self.in_flight[name] += 1
            if self.in_flight[name] > 1:
                self.overlaps.append(name)
            self.most_at_once = max(self.most_at_once, sum(self.in_flight.values()))
        time.sleep(0.02)
        with self.lock:
            self.in_flight[name] -= 1
            self.writes.append((name, body["status"]["phase"]))
        return _Answer(self.answers)

    def read_namespaced_config_map(self, name: str, namespace: str, **kw: Any):
        assert kw.get("_preload_content") is False
        return _Answer(self.answers)


def _pod(index: int) -> dict:
    return {
        "metadata": {
            "name": f"p{index}",
            "namespace": "ns",
            "uid": f"uid-{index}",
            "annotations": {"sim.kubelet.floe.dev/run-seconds": "30"},
        },
        "spec": {
            "nodeName": NODE,
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "img:1"}],
            "volumes": [{"name": "a", "configMap": {"name": "artifacts"}}],
        },
        "status": {},
    }


def test_workers_write_at_once_but_never_twice_at_once_for_one_pod():
    core = _Core()
    agent = PodAgent(core, [NODE], Backoff())  # type: ignore[arg-type]
    stop = threading.Event()
    workers = [threading.Thread(target=agent.run, args=(stop,), daemon=True) for _ in range(4)]
    for worker in workers:
        worker.start()
    try:
        for _ in range(5):  # each event makes the pod due again, also while it is being written
            for index in range(8):
                agent.on_event("MODIFIED", _pod(index))
            time.sleep(0.005)
        deadline = time.monotonic() + 10
        while len({name for name, _ in core.writes}) < 8 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)  # whatever was due again has been synced
    finally:
        stop.set()
        with agent._wake:
            agent._wake.notify_all()
        for worker in workers:
            worker.join(timeout=5)

    assert {name for name, _ in core.writes} == {f"p{i}" for i in range(8)}
    assert core.overlaps == []
    assert core.most_at_once > 1
    assert {phase for _, phase in core.writes} == {"Running"}
    assert core.answers and all(a.drained and a.released for a in core.answers)
