"""The real controllers and scheduler drive workloads on the simulated kubelet."""

from __future__ import annotations

import pytest
from kubernetes import client

from tests.conftest import KubeCluster
from tests.support.objects import deployment, job, pod, sim
from tests.support.waits import wait_for

pytestmark = pytest.mark.cluster


def _job_condition(batch: client.BatchV1Api, name: str, namespace: str):
    status = batch.read_namespaced_job_status(name, namespace).status
    return next((c for c in status.conditions or [] if c.status == "True"), None)


def test_deployment_rolls_out_to_all_replicas_available(kube_cluster: KubeCluster, namespace: str):
    apps = client.AppsV1Api(kube_cluster.api)
    apps.create_namespaced_deployment(namespace, deployment("web", 3, readiness_delay=1))

    rolled_out = wait_for(
        lambda: (
            (d := apps.read_namespaced_deployment_status("web", namespace).status)
            and d.available_replicas == 3
            and d.updated_replicas == 3
            and d
        ),
        timeout=30,
        reason="deployment web to be 3/3 available",
    )

    assert rolled_out.ready_replicas == 3
    pods = kube_cluster.core.list_namespaced_pod(namespace, label_selector="app=web").items
    assert {p.spec.node_name for p in pods} <= {"sim-node-1", "sim-node-2"}
    assert all(p.status.pod_ip and p.status.host_ip == "127.0.0.1" for p in pods)


def test_job_reaches_complete(kube_cluster: KubeCluster, namespace: str):
    batch = client.BatchV1Api(kube_cluster.api)
    batch.create_namespaced_job(namespace, job("succeeds"))

    condition = wait_for(
        lambda: _job_condition(batch, "succeeds", namespace),
        timeout=30,
        reason="job succeeds to finish",
    )

    assert condition.type == "Complete"
    assert batch.read_namespaced_job_status("succeeds", namespace).status.succeeded == 1


def test_failing_job_reaches_failed_with_backoff_limit_exceeded(
    kube_cluster: KubeCluster, namespace: str
):
    batch = client.BatchV1Api(kube_cluster.api)
    batch.create_namespaced_job(namespace, job("fails", sim(exit_code=2), backoff_limit=0))

    condition = wait_for(
        lambda: _job_condition(batch, "fails", namespace), timeout=30, reason="job fails to finish"
    )

    assert (condition.type, condition.reason) == ("Failed", "BackoffLimitExceeded")
    pods = kube_cluster.core.list_namespaced_pod(namespace, label_selector="job-name=fails").items
    terminated = pods[0].status.container_statuses[0].state.terminated
    assert (pods[0].status.phase, terminated.exit_code, terminated.reason) == ("Failed", 2, "Error")


def test_pod_larger_than_any_node_stays_pending_and_unschedulable(
    kube_cluster: KubeCluster, namespace: str
):
    core = kube_cluster.core
    core.create_namespaced_pod(namespace, pod("huge", cpu="64", memory="1Gi"))

    def unschedulable():
        status = core.read_namespaced_pod_status("huge", namespace).status
        return next(
            (
                c
                for c in status.conditions or []
                if c.type == "PodScheduled" and c.reason == "Unschedulable"
            ),
            None,
        )

    condition = wait_for(unschedulable, timeout=30, reason="PodScheduled=False/Unschedulable")
    assert condition.status == "False"
    assert "Insufficient cpu" in condition.message
    assert core.read_namespaced_pod("huge", namespace).status.phase == "Pending"
    events = wait_for(
        lambda: [
            e
            for e in core.list_namespaced_event(namespace).items
            if e.reason == "FailedScheduling" and e.involved_object.name == "huge"
        ],
        timeout=30,
        reason="a FailedScheduling event for pod huge",
    )
    assert "Insufficient cpu" in events[0].message


def test_statefulset_with_volume_claim_template_becomes_ready(
    kube_cluster: KubeCluster, namespace: str
):
    apps = client.AppsV1Api(kube_cluster.api)
    labels = {"app": "db"}
    apps.create_namespaced_stateful_set(
        namespace,
        {
            "apiVersion": "apps/v1",
            "kind": "StatefulSet",
            "metadata": {"name": "db"},
            "spec": {
                "serviceName": "db",
                "replicas": 2,
                "selector": {"matchLabels": labels},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "containers": [
                            {
                                "name": "db",
                                "image": "postgres:16",
                                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
                            }
                        ]
                    },
                },
                "volumeClaimTemplates": [
                    {
                        "metadata": {"name": "data"},
                        "spec": {
                            "accessModes": ["ReadWriteOnce"],
                            "resources": {"requests": {"storage": "1Gi"}},
                        },
                    }
                ],
            },
        },
    )

    wait_for(
        lambda: (
            apps.read_namespaced_stateful_set_status("db", namespace).status.ready_replicas == 2
        ),
        timeout=45,
        reason="statefulset db to have 2 ready replicas",
    )

    claims = kube_cluster.core.list_namespaced_persistent_volume_claim(namespace).items
    assert sorted(c.metadata.name for c in claims) == ["data-db-0", "data-db-1"]
    assert {c.status.phase for c in claims} == {"Bound"}
    assert {c.spec.storage_class_name for c in claims} == {"standard"}


def test_deleted_pods_are_finalized_by_the_kubelet(kube_cluster: KubeCluster, namespace: str):
    core = kube_cluster.core
    core.create_namespaced_pod(namespace, pod("short-lived"))
    wait_for(
        lambda: core.read_namespaced_pod("short-lived", namespace).status.phase == "Running",
        timeout=30,
        reason="pod short-lived to run",
    )

    core.delete_namespaced_pod("short-lived", namespace)  # default 30 s grace period

    wait_for(
        lambda: (
            not [
                p
                for p in core.list_namespaced_pod(namespace).items
                if p.metadata.name == "short-lived"
            ]
        ),
        timeout=10,
        reason="the kubelet to finish deleting pod short-lived",
    )


def test_the_api_server_answers_a_pretty_printed_object_with_a_map(
    kube_cluster: KubeCluster, namespace: str
):
    # The vendored reflect2 1.0.1 faulted under Go 1.19 here (build.py): a ConfigMap asked for
    # pretty-printed, as `wget` and `curl` get every answer, crashed the API server.
    kube_cluster.core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "pretty", "labels": {"a": "1"}}, "data": {"k": "v"}}
    )
    answer = kube_cluster.core.api_client.call_api(
        f"/api/v1/namespaces/{namespace}/configmaps/pretty",
        "GET",
        query_params=[("pretty", "true")],
        header_params={"User-Agent": "curl/8.0"},
        auth_settings=["BearerToken"],
        _preload_content=False,
    )
    text = answer.data.decode()
    assert '\n  "data": {\n    "k": "v"\n  }' in text, text
    assert kube_cluster.core.read_namespace(namespace).metadata.name == namespace  # still up
