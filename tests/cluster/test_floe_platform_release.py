"""The floe-platform chart (PostgreSQL, OpenTelemetry collector, Dagster, Polaris,
Marquez) installed
by the real Helm engine into the local control plane."""

from __future__ import annotations

import json

import helm_python
import pytest
from kubernetes import client

from floe_deploy_assets.helm.render import build_dependencies
from floe_deploy_assets.kube.health import release_health
from floe_deploy_assets.models.deployment import Health
from tests.conftest import KubeCluster
from tests.support.charts import CONFIG, generated_values, values_generator
from tests.support.waits import wait_for

pytestmark = pytest.mark.cluster
CHART = CONFIG.chart_path("platform")
RELEASE = "floe-platform"


@pytest.fixture(autouse=True)
def operator_secrets(kube_cluster: KubeCluster, namespace: str) -> None:
    """The Secrets an operator provides, as the values generator lists them; the simulated
    kubelet, like a real one, starts no container whose Secret is missing."""
    build_dependencies(CHART)
    for secret in values_generator("platform").required_secrets:
        kube_cluster.core.create_namespaced_secret(
            namespace,
            {
                "metadata": {"name": secret.name},
                "stringData": {key: "test-only-value" for key in secret.keys},
            },
        )


def _postgres_ready(apps: client.AppsV1Api, namespace: str):
    status = apps.read_namespaced_stateful_set_status("floe-platform-postgresql", namespace).status
    return status.ready_replicas == 1 and status


def test_postgresql_becomes_ready_rolls_on_upgrade_and_keeps_its_data_on_uninstall(
    kube_cluster: KubeCluster, namespace: str, helm: helm_python.Config
):
    apps, core = client.AppsV1Api(kube_cluster.api), kube_cluster.core
    values = generated_values("platform")
    values["dagster"]["webserver"]["replicas"] = 2
    values["podDisruptionBudget"]["enabled"] = True  # served as policy/v1beta1 on 1.20

    release = helm.install(str(CHART), RELEASE, values, namespace=namespace, timeout=60)

    assert release["status"] == "deployed"
    wait_for(
        lambda: _postgres_ready(apps, namespace),
        timeout=45,
        reason="the PostgreSQL StatefulSet to be ready",
    )
    # The client no longer ships policy/v1beta1, which is what Kubernetes 1.20 serves.
    budget = kube_cluster.api.call_api(
        f"/apis/policy/v1beta1/namespaces/{namespace}/poddisruptionbudgets/"
        "floe-platform-dagster-webserver",
        "GET",
        auth_settings=["BearerToken"],
        _preload_content=False,
    )
    assert json.loads(budget.data)["spec"]["maxUnavailable"] == 1
    claim = core.read_namespaced_persistent_volume_claim(
        "data-floe-platform-postgresql-0", namespace
    )
    assert claim.status.phase == "Bound"
    expected = {
        "otel-collector": 1,
        "dagster-webserver": 2,
        "dagster-daemon": 1,
        "dagster-user-code": 1,
        "polaris": 1,
        "marquez": 1,
    }
    for deployment, replicas in expected.items():
        wait_for(
            lambda d=deployment, n=replicas: (
                apps.read_namespaced_deployment_status(
                    f"floe-platform-{d}", namespace
                ).status.available_replicas
                == n
            ),
            timeout=45,
            reason=f"Deployment floe-platform-{deployment} to have {replicas} available",
        )
    health = {c.name: c for c in release_health(kube_cluster.api, namespace, RELEASE)}
    assert set(health) == {"floe-platform-postgresql"} | {f"floe-platform-{d}" for d in expected}
    assert {c.health for c in health.values()} == {Health.HEALTHY}
    assert health["floe-platform-dagster-webserver"].replicas.available == 2
    first = core.read_namespaced_pod("floe-platform-postgresql-0", namespace).metadata.uid
    collector_pods = [
        p.metadata.uid
        for p in core.list_namespaced_pod(
            namespace, label_selector=("app.kubernetes.io/component=otel-collector")
        ).items
    ]

    values["postgresql"]["resources"]["limits"]["memory"] = "2Gi"
    upgraded = helm.upgrade(str(CHART), RELEASE, values, namespace=namespace, timeout=60)

    assert upgraded["revision"] == 2
    postgres = "app.kubernetes.io/component=postgresql"
    wait_for(
        lambda: [
            pod
            for pod in core.list_namespaced_pod(namespace, label_selector=postgres).items
            if pod.metadata.uid != first
            and pod.spec.containers[0].resources.limits["memory"] == "2Gi"
            and pod.status.phase == "Running"
        ],
        timeout=60,
        reason="the upgrade to roll the PostgreSQL pod",
    )
    collector = core.list_namespaced_pod(
        namespace, label_selector=("app.kubernetes.io/component=otel-collector")
    ).items
    assert [p.metadata.uid for p in collector] == collector_pods  # untouched by the change
    wait_for(lambda: _postgres_ready(apps, namespace), timeout=45, reason="ready again")

    tested = helm.test(RELEASE, timeout=60)
    assert tested["release"]["status"] == "deployed"

    helm.uninstall(RELEASE, wait="watcher", timeout=60)
    owned = "app.kubernetes.io/instance=floe-platform"
    wait_for(
        lambda: (
            not (
                apps.list_namespaced_stateful_set(namespace, label_selector=owned).items
                or core.list_namespaced_service(namespace, label_selector=owned).items
                or core.list_namespaced_pod(namespace, label_selector=owned).items
            )
        ),
        timeout=45,
        reason="the release's workloads to be gone",
    )
    # A StatefulSet's claims outlive it on purpose (Kubernetes keeps data unless told otherwise).
    claims = core.list_namespaced_persistent_volume_claim(
        namespace, label_selector=("app.kubernetes.io/component=postgresql")
    ).items
    assert [c.metadata.name for c in claims] == ["data-floe-platform-postgresql-0"]
