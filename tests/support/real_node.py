"""Pods and Jobs for the real node's tests, placed on the real node (busybox unless they name
another of its images), and what the tests read of them."""

from __future__ import annotations

from kubernetes import client

from localcluster import realnode
from tests.support.waits import wait_for

BUSYBOX = "docker.io/local/busybox:debian-bookworm"
TOLERATE_THE_REAL_NODE = {
    "key": realnode.REAL_NODE_LABEL,
    "operator": "Exists",
    "effect": "NoSchedule",
}
# A chart component's scheduling values that place it on the real node.
ON_THE_REAL_NODE = {
    "nodeSelector": {realnode.REAL_NODE_LABEL: "true"},
    "tolerations": [TOLERATE_THE_REAL_NODE],
}


def _pod_spec_on_the_real_node(
    script: str, restart_policy: str, image: str = BUSYBOX, **container: object
) -> dict:
    """A pod spec whose one container runs ``script`` with ``sh`` in ``image`` on the real node;
    ``container`` adds fields to the container (resources, securityContext, probes)."""
    return {
        "restartPolicy": restart_policy,
        "nodeSelector": {realnode.REAL_NODE_LABEL: "true"},
        "tolerations": [TOLERATE_THE_REAL_NODE],
        "terminationGracePeriodSeconds": 1,
        "containers": [
            {
                "name": "main",
                "image": image,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
                **container,
            }
        ],
    }


def job_on_the_real_node(name: str, script: str, **container: object) -> dict:
    """A Job whose one pod runs ``script`` once (``image`` and container fields as for
    ``_pod_spec_on_the_real_node``)."""
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": _pod_spec_on_the_real_node(script, "Never", **container)},
        },
    }


def pod_on_the_real_node(name: str, script: str, **container: object) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": _pod_spec_on_the_real_node(script, "Always", **container),
    }


def run_job(core: client.CoreV1Api, namespace: str, job: dict, timeout: float = 90) -> client.V1Pod:
    """Create ``job``, wait until it finishes on the real node, and return its pod."""
    batch = client.BatchV1Api(core.api_client)
    name = job["metadata"]["name"]
    batch.create_namespaced_job(namespace, job)
    wait_for(
        lambda: job_outcome(batch, namespace, name),
        timeout=timeout,
        reason=f"Job {name} to finish on the real node",
    )
    return the_pod(core, namespace, name)


def pod_log(core: client.CoreV1Api, namespace: str, pod: client.V1Pod) -> list[str]:
    # As the runner reads it: the raw bytes (the client would mangle a non-JSON answer).
    log = core.read_namespaced_pod_log(pod.metadata.name, namespace, _preload_content=False)
    return log.data.decode().splitlines()


def job_outcome(batch: client.BatchV1Api, namespace: str, name: str) -> str | None:
    job = batch.read_namespaced_job(name, namespace)
    for condition in job.status.conditions or []:
        if condition.type in ("Complete", "Failed") and condition.status == "True":
            return condition.type
    return None


def the_pod(core: client.CoreV1Api, namespace: str, job: str) -> client.V1Pod:
    pods = core.list_namespaced_pod(namespace, label_selector=f"job-name={job}").items
    assert len(pods) == 1, [p.metadata.name for p in pods]
    return pods[0]


def serving(core: client.CoreV1Api, namespace: str, service: str) -> list[str]:
    """The ready addresses behind ``service`` (none before its Endpoints object exists)."""
    try:
        endpoints = core.read_namespaced_endpoints(service, namespace)
    except client.ApiException as error:
        if error.status == 404:
            return []
        raise
    return [a.ip for subset in endpoints.subsets or [] for a in subset.addresses or []]
