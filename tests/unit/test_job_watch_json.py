"""The runner's watch reads raw JSON: the cut-down Jobs and pods must say what the client's
own objects say, and the watch must resume where it stood rather than list the run again."""

from __future__ import annotations

import json
import queue
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from floe_deploy_assets.jobs import pods
from floe_deploy_assets.jobs.runner import _terminal_condition
from floe_deploy_assets.jobs.watch import RunWatch, job_from_json, pod_from_json
from floe_deploy_assets.kube.retry import RetryPolicy

STAMP = "2024-05-01T10:00:00Z"


def _deserialized(raw: dict[str, Any], kind: str) -> Any:
    class Response:
        data = json.dumps(raw)

    return client.ApiClient().deserialize(Response(), kind)


def _pod(phase: str, conditions=(), state=None, last=None, node="sim-node-1") -> dict:
    statuses = [
        {
            "name": "dbt",
            "image": "dbt:1",
            "imageID": "",
            "ready": False,
            "restartCount": 1 if last else 0,
            "state": state or {},
            "lastState": last or {},
        }
    ]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": "orders-r1-abcde",
            "namespace": "ns",
            "creationTimestamp": STAMP,
            "resourceVersion": "17",
            "labels": {"job-name": "orders-r1", "controller-uid": "u", "floe.dev/run-id": "r1"},
        },
        "spec": {
            "containers": [{"name": "dbt", "image": "dbt:1", "command": ["dbt", "run"]}],
            "nodeName": node,
        },
        "status": {
            "phase": phase,
            "conditions": list(conditions),
            "containerStatuses": statuses if state or last else None,
        },
    }


POD_STATES = {
    "unschedulable": _pod(
        "Pending",
        [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/2"}],
        node=None,
    ),
    "not scheduled yet": _pod("Pending", node=None),
    "creating": _pod("Pending"),
    "image pull": _pod("Pending", state={"waiting": {"reason": "ErrImagePull", "message": "nf"}}),
    "config error": _pod("Pending", state={"waiting": {"reason": "CreateContainerConfigError"}}),
    "running": _pod("Running", state={"running": {"startedAt": STAMP}}),
    "succeeded": _pod(
        "Succeeded",
        state={
            "terminated": {
                "exitCode": 0,
                "reason": "Completed",
                "startedAt": STAMP,
                "finishedAt": "2024-05-01T10:00:01Z",
            }
        },
    ),
    "restarted after OOM": _pod(
        "Running",
        state={"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
        last={"terminated": {"exitCode": 137, "reason": "OOMKilled", "startedAt": STAMP}},
    ),
}


@pytest.mark.parametrize("state", list(POD_STATES))
def test_a_cut_down_pod_reads_as_the_clients_own(state: str):
    raw = POD_STATES[state]
    ours, theirs = pod_from_json(raw), _deserialized(raw, "V1Pod")

    assert pods.pod_hold(ours) == pods.pod_hold(theirs)
    assert pods.started_at(ours) == pods.started_at(theirs)
    assert pods.termination(ours) == pods.termination(theirs)
    assert ours.metadata.name == theirs.metadata.name
    assert ours.metadata.labels == {"job-name": "orders-r1"}
    assert ours.metadata.creation_timestamp == theirs.metadata.creation_timestamp


@pytest.mark.parametrize(
    "conditions",
    [
        [],
        [{"type": "Complete", "status": "True", "lastTransitionTime": STAMP}],
        [
            {"type": "Suspended", "status": "False"},
            {
                "type": "Failed",
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "Job has reached the specified backoff limit",
                "lastTransitionTime": STAMP,
            },
        ],
    ],
)
def test_a_cut_down_job_reads_as_the_clients_own(conditions: list[dict]):
    raw = {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": "orders-r1", "namespace": "ns", "resourceVersion": "9"},
        "spec": {"template": {"spec": {"containers": [{"name": "dbt", "image": "i"}]}}},
        "status": {
            "startTime": STAMP,
            "completionTime": "2024-05-01T10:00:02Z" if conditions else None,
            "conditions": conditions,
        },
    }
    ours, theirs = job_from_json(raw), _deserialized(raw, "V1Job")

    assert ours.metadata.name == theirs.metadata.name
    assert (
        ours.status.start_time == theirs.status.start_time == datetime(2024, 5, 1, 10, tzinfo=UTC)
    )
    assert ours.status.completion_time == theirs.status.completion_time
    mine, its = _terminal_condition(ours), _terminal_condition(theirs)
    assert (mine and mine.to_dict()) == (its and its.to_dict())


# --- the watch: one list, then watches from where it stands -------------------------------
class _Response:
    """A ``_preload_content=False`` answer: a body, or watch lines."""

    def __init__(self, body: dict | None = None, lines: list[dict] | None = None):
        self.data = json.dumps(body).encode() if body is not None else b""
        self._lines = lines or []
        self.released = self.closed = False

    def stream(self, amt=None, decode_content=False):
        for line in self._lines:
            yield (json.dumps(line) + "\n").encode()

    def release_conn(self):
        self.released = True

    def close(self):
        self.closed = True


class _FakeList:
    """Lists and watches of Jobs as an API server answers them, recorded."""

    def __init__(self, watches: list[list[dict]], stop: RunWatch | None = None):
        self.watches, self.calls, self.stop = watches, [], stop

    def __call__(self, namespace: str, **kwargs: Any) -> _Response:
        self.calls.append(("watch" if kwargs.get("watch") else "list", kwargs))
        if not kwargs.get("watch"):
            listed = len([c for c in self.calls if c[0] == "list"])
            return _Response({"metadata": {"resourceVersion": f"{listed * 100}"}, "items": []})
        if not self.watches:
            assert self.stop is not None
            self.stop.stop()
            return _Response(lines=[])
        return _Response(lines=self.watches.pop(0))


def _job_event(kind: str, name: str, version: str) -> dict:
    return {"type": kind, "object": {"metadata": {"name": name, "resourceVersion": version}}}


def _follow(watches: list[list[dict]]) -> tuple[_FakeList, list]:
    events: queue.Queue = queue.Queue()
    watch = RunWatch(
        client.ApiClient(), "ns", "r1", events, resync_seconds=1, policy=RetryPolicy(sleep=id)
    )
    fake = _FakeList(watches, watch)
    watch._follow("Job", fake, job_from_json)
    return fake, list(events.queue)


def test_the_watch_resumes_from_the_last_version_seen_without_listing_again():
    bookmark = {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "130"}}}
    fake, events = _follow(
        [
            [_job_event("ADDED", "a-r1", "110"), _job_event("MODIFIED", "a-r1", "120")],
            [bookmark],
            [_job_event("MODIFIED", "a-r1", "140")],
        ]
    )

    assert [kind for kind, _ in fake.calls] == ["list", "watch", "watch", "watch", "watch"]
    versions = [kwargs["resource_version"] for kind, kwargs in fake.calls if kind == "watch"]
    assert versions == ["100", "120", "130", "140"]
    assert [(e.type, e.object.metadata.name if e.type != "SYNC" else None) for e in events] == [
        ("SYNC", None),
        ("ADDED", "a-r1"),
        ("MODIFIED", "a-r1"),
        ("MODIFIED", "a-r1"),
    ]
    assert all(kwargs["label_selector"] == "floe.dev/run-id=r1" for _, kwargs in fake.calls)


def test_a_gone_version_lists_again():
    gone = {"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}
    fake, events = _follow([[_job_event("ADDED", "a-r1", "110"), gone]])

    assert [kind for kind, _ in fake.calls] == ["list", "watch", "list", "watch"]
    assert [kwargs.get("resource_version") for _, kwargs in fake.calls] == [
        None,
        "100",
        None,
        "200",
    ]
    assert [e.type for e in events] == ["SYNC", "ADDED", "SYNC"]
