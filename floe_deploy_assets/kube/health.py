"""One health pass over a release: a fixed number of list calls per namespace (one per workload
kind, one for pods), never one call per object; pods are matched to their workload by its
selector. A CronJob is judged by its schedule (suspended or not); its runs are Jobs, judged on
their own."""

from __future__ import annotations

import json
import weakref
from collections.abc import Callable, Collection, Mapping
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from floe_deploy_assets.health.rules import workload_health
from floe_deploy_assets.kube.objects import RELEASE_LABEL
from floe_deploy_assets.kube.retry import call_with_retry
from floe_deploy_assets.models.deployment import DeployedComponent, WorkloadType
from floe_deploy_assets.models.jobs import RUN_LABEL


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
    return namespace_health(api, namespace, [release], deadline).get(release, [])


def namespace_health(
    api: client.ApiClient,
    namespace: str,
    releases: Collection[str],
    deadline: float = 30.0,
) -> dict[str, list[DeployedComponent]]:
    """The health of several releases of one namespace in one pass: one list call per kind
    (and one for pods) whatever the number of releases or objects. Lists are read as JSON:
    building the client's typed models and turning them back into dicts cost four times the
    API's own time (benchmarks/bench_release_engine.py)."""
    apps, batch = client.AppsV1Api(api), client.BatchV1Api(api)
    # Model Jobs carry the floe-jobs release's labels but are the runner's, not the release's.
    selector = f"{RELEASE_LABEL} in ({','.join(sorted(releases))}),!{RUN_LABEL}"
    listers: dict[str, Callable[..., Any]] = {
        "Pod": client.CoreV1Api(api).list_namespaced_pod,
        WorkloadType.DEPLOYMENT: apps.list_namespaced_deployment,
        WorkloadType.STATEFUL_SET: apps.list_namespaced_stateful_set,
        WorkloadType.DAEMON_SET: apps.list_namespaced_daemon_set,
        WorkloadType.JOB: batch.list_namespaced_job,
        WorkloadType.CRON_JOB: _cron_job_lister(api),
    }
    listed = {
        kind: json.loads(
            call_with_retry(
                lister,
                namespace,
                label_selector=selector,
                _preload_content=False,
                what=f"listing the {kind}s of {', '.join(releases)} in {namespace}",
                deadline=deadline,
            ).data
        )["items"]
        for kind, lister in listers.items()
    }
    pods = listed.pop("Pod")
    health: dict[str, list[DeployedComponent]] = {release: [] for release in releases}
    for kind, items in listed.items():
        for obj in items:
            owned = [pod for pod in pods if _matches(pod, _selector(obj, WorkloadType(kind)))]
            release = obj["metadata"]["labels"][RELEASE_LABEL]
            health[release].append(workload_health(WorkloadType(kind), obj, owned))
    return {
        release: sorted(components, key=lambda c: (c.type, c.name))
        for release, components in health.items()
    }


_V1BETA1_CRON_JOBS_ONLY: weakref.WeakSet[client.ApiClient] = weakref.WeakSet()


def _cron_job_lister(api: client.ApiClient) -> Callable[..., Any]:
    """CronJobs from batch/v1 (Kubernetes 1.21+), else batch/v1beta1: Kubernetes 1.20 serves
    only that, and the client no longer ships it, so it is read through the REST path."""
    batch = client.BatchV1Api(api)

    def list_cron_jobs(namespace: str, **options: Any) -> Any:
        if api not in _V1BETA1_CRON_JOBS_ONLY:
            try:
                return batch.list_namespaced_cron_job(namespace, **options)
            except ApiException as error:
                if error.status != 404:
                    raise
                _V1BETA1_CRON_JOBS_ONLY.add(api)  # asked once per cluster, not every pass
        return api.call_api(
            f"/apis/batch/v1beta1/namespaces/{namespace}/cronjobs",
            "GET",
            query_params=[("labelSelector", options["label_selector"])],
            header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
            _return_http_data_only=True,
            _preload_content=False,
            _request_timeout=options.get("_request_timeout"),
        )

    return list_cron_jobs
