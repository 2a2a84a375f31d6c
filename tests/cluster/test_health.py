"""The health of workloads under each fault of the simulated kubelet, from the objects and pods
the real controllers produce."""

from __future__ import annotations

import pytest
from kubernetes import client

from floe_deploy_assets.health.rules import workload_health
from floe_deploy_assets.helm.engine import ReleaseRef, SdkHelmEngine
from floe_deploy_assets.kube.health import release_health
from floe_deploy_assets.models.deployment import Health, WorkloadType
from tests.conftest import KubeCluster
from tests.support.charts import CONFIG, generated_values
from tests.support.objects import deployment, job, sim
from tests.support.waits import wait_for

pytestmark = pytest.mark.cluster


def _health(kube_cluster: KubeCluster, namespace: str, kind: WorkloadType, name: str):
    api = kube_cluster.api
    read = {
        WorkloadType.DEPLOYMENT: client.AppsV1Api(api).read_namespaced_deployment,
        WorkloadType.JOB: client.BatchV1Api(api).read_namespaced_job,
    }[kind]
    obj = api.sanitize_for_serialization(read(name, namespace))
    selector = "app=" + name if kind is WorkloadType.DEPLOYMENT else "job-name=" + name
    pods = [
        api.sanitize_for_serialization(p)
        for p in kube_cluster.core.list_namespaced_pod(namespace, label_selector=selector).items
    ]
    return workload_health(kind, obj, pods)


def _settles(kube_cluster, namespace, kind, name, health: Health, timeout: float = 40):
    return wait_for(
        lambda: (c := _health(kube_cluster, namespace, kind, name)).health == health and c,
        timeout=timeout,
        reason=f"{kind} {name} to be {health}",
    )


CASES = [
    ("ok", {}, {}, Health.HEALTHY, None),
    ("pull", sim(fault="image-pull-error"), {}, Health.UNHEALTHY, "ImagePull"),  # Err…/…BackOff
    ("crash", sim(fault="crash-loop"), {}, Health.UNHEALTHY, "CrashLoopBackOff"),
    ("oom", sim(fault="oom-killed"), {}, Health.UNHEALTHY, "OOMKilled"),
    ("big", {}, {"cpu": "64"}, Health.UNHEALTHY, "Unschedulable: 0/2 nodes are available"),
    ("config", {}, {"env_secret": "absent"}, Health.UNHEALTHY, "CreateContainerConfigError"),
]


@pytest.mark.parametrize(
    ("name", "annotations", "shape", "health", "reason"), CASES, ids=[case[0] for case in CASES]
)
def test_deployment_health_names_the_cause(
    kube_cluster: KubeCluster, namespace: str, name, annotations, shape, health, reason
):
    manifest = deployment(name, 2, annotations, cpu=shape.get("cpu", "50m"))
    if "env_secret" in shape:
        manifest["spec"]["template"]["spec"]["containers"][0]["env"] = [
            {"name": "X", "valueFrom": {"secretKeyRef": {"name": shape["env_secret"], "key": "k"}}}
        ]
    client.AppsV1Api(kube_cluster.api).create_namespaced_deployment(namespace, manifest)

    component = _settles(kube_cluster, namespace, WorkloadType.DEPLOYMENT, name, health)

    assert component.replicas.desired == 2
    if reason is None:
        assert (component.reason, component.replicas.available) == (None, 2)
    else:
        assert component.reason is not None and reason in component.reason


def test_a_rollout_inside_its_deadline_is_progressing_then_unhealthy_after_it(
    kube_cluster: KubeCluster, namespace: str
):
    manifest = deployment("slow", 1, sim(fault="never-ready"))
    manifest["spec"]["progressDeadlineSeconds"] = 3
    client.AppsV1Api(kube_cluster.api).create_namespaced_deployment(namespace, manifest)

    early = _health(kube_cluster, namespace, WorkloadType.DEPLOYMENT, "slow")
    assert (early.health, early.progressing) == (Health.DEGRADED, True)
    late = _settles(kube_cluster, namespace, WorkloadType.DEPLOYMENT, "slow", Health.UNHEALTHY)
    assert late.reason is not None and late.reason.startswith("ProgressDeadlineExceeded")


def test_jobs_are_strict(kube_cluster: KubeCluster, namespace: str):
    batch = client.BatchV1Api(kube_cluster.api)
    batch.create_namespaced_job(namespace, job("done"))
    batch.create_namespaced_job(namespace, job("broken", sim(exit_code=3)))

    assert _settles(kube_cluster, namespace, WorkloadType.JOB, "done", Health.HEALTHY)
    failed = _settles(kube_cluster, namespace, WorkloadType.JOB, "broken", Health.UNHEALTHY)
    assert failed.reason == "container main exited with code 3 (Error)"


def test_a_release_health_pass_covers_its_cron_jobs_but_not_model_runs(
    kube_cluster: KubeCluster, namespace: str, engine: SdkHelmEngine
):
    """floe-jobs renders a CronJob for a model with a schedule (served as batch/v1beta1 on
    Kubernetes 1.20); a model Job the runner made carries the release's labels but is a run,
    not part of the release."""
    values = generated_values("jobs")
    values["models"][0]["schedule"] = "0 * * * *"
    ref = ReleaseRef("floe-jobs", namespace, "test")
    engine.install(ref, CONFIG.chart_path("jobs"), values, 60)
    model_run = job("model-run-1", {})
    model_run["metadata"]["labels"] = {
        "app.kubernetes.io/instance": "floe-jobs",
        "floe.dev/run-id": "r1",
    }
    client.BatchV1Api(kube_cluster.api).create_namespaced_job(namespace, model_run)

    components = release_health(kube_cluster.api, namespace, "floe-jobs")

    assert [(c.type, c.health) for c in components] == [(WorkloadType.CRON_JOB, Health.HEALTHY)]
    assert components[0].name.startswith("floe-jobs-")
