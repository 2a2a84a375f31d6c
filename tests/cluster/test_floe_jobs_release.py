"""The floe-jobs chart installed by the real Helm engine into the local control plane."""

from __future__ import annotations

import helm_python
import pytest
from kubernetes import client

from floe_deploy_assets.helm.render import build_dependencies
from tests.conftest import KubeCluster
from tests.support.charts import CONFIG, generated_values, install_jobs_release, render
from tests.support.rbac import allowed, as_service_account
from tests.support.waits import wait_for

pytestmark = pytest.mark.cluster
CHART = CONFIG.chart_path("jobs")
RELEASE = "floe-jobs"


@pytest.fixture(autouse=True)
def chart_dependencies() -> None:
    build_dependencies(CHART)


def test_install_then_helm_test_then_uninstall_leaves_nothing(
    kube_cluster: KubeCluster, namespace: str, helm: helm_python.Config
):
    core = kube_cluster.core

    release = install_jobs_release(helm, kube_cluster.core, namespace)
    assert (release["status"], release["revision"]) == ("deployed", 1)
    assert core.read_namespaced_config_map("floe-jobs-artifacts", namespace).data["models.json"]
    assert core.list_namespaced_pod(namespace).items == []  # installing starts no model

    tested = helm.test(RELEASE, timeout=60)
    assert tested["release"]["status"] == "deployed"

    helm.uninstall(RELEASE, wait="watcher", timeout=60)
    owned = "app.kubernetes.io/instance=floe-jobs"
    rbac = client.RbacAuthorizationV1Api(kube_cluster.api)
    wait_for(
        lambda: (
            not (
                core.list_namespaced_pod(namespace, label_selector=owned).items
                or core.list_namespaced_config_map(namespace, label_selector=owned).items
                or core.list_namespaced_service_account(namespace, label_selector=owned).items
                or rbac.list_namespaced_role(namespace, label_selector=owned).items
            )
        ),
        timeout=30,
        reason="the release's objects (and its test pod) to be gone",
    )
    assert [
        s.metadata.name
        for s in core.list_namespaced_secret(namespace).items
        if s.type == "helm.sh/release.v1"
    ] == []


def test_a_models_job_rendered_from_the_chart_runs_to_completion(
    kube_cluster: KubeCluster, namespace: str, helm: helm_python.Config
):
    install_jobs_release(helm, kube_cluster.core, namespace)
    values = {
        **generated_values("jobs"),
        "run": {"model": "customer_orders", "jobName": "customer-orders-r1", "runId": "r1"},
    }
    job = render("jobs", values, namespace=namespace).named("Job", "customer-orders-r1")
    batch = client.BatchV1Api(kube_cluster.api)

    batch.create_namespaced_job(namespace, job)

    done = wait_for(
        lambda: (
            (
                s := batch.read_namespaced_job_status("customer-orders-r1", namespace).status
            ).succeeded
            and s
        ),
        timeout=30,
        reason="the customer_orders job to complete",
    )
    assert done.succeeded == 1


def test_the_jobs_service_account_can_read_its_inputs_and_nothing_else(
    kube_cluster: KubeCluster, namespace: str, helm: helm_python.Config
):
    install_jobs_release(helm, kube_cluster.core, namespace)
    core = kube_cluster.core
    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "unrelated"}, "stringData": {"password": "not-for-dbt"}}
    )
    dbt = as_service_account(kube_cluster.kubeconfig, namespace, "floe-jobs-dbt")
    wait_for(
        lambda: allowed(lambda: dbt.read_namespaced_config_map("floe-jobs-artifacts", namespace)),
        timeout=10,
        reason="the jobs' RoleBinding to take effect",
    )
    assert allowed(lambda: dbt.read_namespaced_config_map("floe-jobs-dbt-profiles", namespace))
    assert not allowed(lambda: dbt.read_namespaced_config_map("kube-root-ca.crt", namespace))
    assert not allowed(lambda: dbt.list_namespaced_config_map(namespace))
    assert not allowed(lambda: dbt.read_namespaced_secret("unrelated", namespace))
    assert not allowed(lambda: dbt.list_namespaced_secret(namespace))
    assert not allowed(lambda: dbt.list_namespaced_pod(namespace))
    assert not allowed(lambda: dbt.read_namespaced_config_map("floe-jobs-artifacts", "default"))
