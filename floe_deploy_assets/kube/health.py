"""One health pass over a release: a fixed number of list calls per namespace (one per workload
kind, one for pods), never one call per object; pods are matched to their workload by its
selector. CronJobs are not listed: their runs are Jobs, judged on their own, and Kubernetes 1.20
serves CronJobs only as batch/v1beta1, which the client no longer ships."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from kubernetes import client

from floe_deploy_assets.health.rules import workload_health
from floe_deploy_assets.kube.retry import call_with_retry
from floe_deploy_assets.models.deployment import DeployedComponent, WorkloadType

RELEASE_LABEL = "app.kubernetes.io/instance"


def _selector(obj: Mapping[str, Any], kind: WorkloadType) -> dict[str, str]:
    spec = obj.get("spec", {})
    if kind is WorkloadType.JOB:
        return {"job-name": obj["metadata"]["name"]}
    return dict((spec.get("selector") or {}).get("matchLabels") or {})


def _matches(pod: Mapping[str, Any], selector: dict[str, str]) -> bool:
    labels = pod["metadata"].get("labels") or {}
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def release_health(
    api: client.ApiClient, namespace: str, release: str, deadline: float = 30.0
) -> list[DeployedComponent]:
    """The release's workloads and their health, sorted by kind and name. Transient API
    failures are retried within ``deadline`` seconds per list call."""
    apps, batch = client.AppsV1Api(api), client.BatchV1Api(api)
    selector = f"{RELEASE_LABEL}={release}"
    listers: dict[WorkloadType, Callable[..., Any]] = {
        WorkloadType.DEPLOYMENT: apps.list_namespaced_deployment,
        WorkloadType.STATEFUL_SET: apps.list_namespaced_stateful_set,
        WorkloadType.DAEMON_SET: apps.list_namespaced_daemon_set,
        WorkloadType.JOB: batch.list_namespaced_job,
    }
    pods = [
        api.sanitize_for_serialization(p)
        for p in call_with_retry(
            client.CoreV1Api(api).list_namespaced_pod,
            namespace,
            label_selector=selector,
            what=f"listing the pods of release {release} in {namespace}",
            deadline=deadline,
        ).items
    ]
    components = []
    for kind, lister in listers.items():
        listed = call_with_retry(
            lister,
            namespace,
            label_selector=selector,
            what=f"listing the {kind}s of release {release} in {namespace}",
            deadline=deadline,
        )
        for item in listed.items:
            obj = api.sanitize_for_serialization(item)
            owned = [pod for pod in pods if _matches(pod, _selector(obj, kind))]
            components.append(workload_health(kind, obj, owned))
    return sorted(components, key=lambda c: (c.type, c.name))
