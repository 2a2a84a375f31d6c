"""The deployment graph end to end against the local control plane: materializing dev deploys
both releases and passes the health check; a plaintext secret planted in the configuration fails
the blocking check and nothing is installed; the sensors emit on change only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from floe_deploy_assets.defs.build import build_definitions
from floe_deploy_assets.defs.resources import DeploymentConfigResource, KubernetesResource
from floe_deploy_assets.defs.sensors import release_status_sensor, workload_health_sensor
from floe_deploy_assets.helm.engine import ReleaseRef, SdkHelmEngine
from tests.conftest import KubeCluster
from tests.support.deployment import create_operator_secrets, write_config

pytestmark = pytest.mark.cluster
LEAKED = "hunter2-plaintext-token"


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def _run(config: Path, kube_cluster: KubeCluster, instance: dg.DagsterInstance):
    defs = build_definitions(str(config), kubeconfig=str(kube_cluster.kubeconfig))
    return defs.resolve_job_def("deploy_platform").execute_in_process(
        partition_key="dev", instance=instance, raise_on_error=False
    )


def _metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    (event,) = result.asset_materializations_for_node(asset)
    return {key: value.value for key, value in event.metadata.items()}


def _checks(result: dg.ExecuteInProcessResult) -> dict[str, bool]:
    return {
        f"{e.asset_key.to_user_string()}:{e.check_name}": e.passed
        for e in result.get_asset_check_evaluations()
    }


def test_materializing_dev_deploys_both_releases_and_they_are_healthy(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path, instance: dg.DagsterInstance
):
    create_operator_secrets(kube_cluster.core, namespace)
    config = write_config(tmp_path, kube_cluster.kubeconfig, namespace)

    result = _run(config, kube_cluster, instance)

    assert result.success
    assert set(_checks(result).values()) == {True}
    assert len(_checks(result)) == 10
    platform = _metadata(result, "platform_release")
    assert (platform["action"], platform["revision"], platform["helm_status"]) == (
        "install",
        1,
        "deployed",
    )
    assert platform["platform_deployment"]["status"] == "deployed"
    assert platform["platform_deployment"]["environment"] == "dev"
    assert "floe-platform-dagster-webserver" in platform["components"]
    assert "StatefulSet/floe-platform-postgresql added" in platform["manifest_diff"]
    assert _metadata(result, "jobs_release")["action"] == "install"
    artifacts = result.asset_materializations_for_node("compiled_artifacts")[0]
    assert (
        artifacts.tags["dagster/data_version"] == _metadata(result, "compiled_artifacts")["digest"]
    )

    again = _run(config, kube_cluster, instance)  # what the redeploy schedule runs
    assert again.success
    assert _metadata(again, "platform_release")["action"] == "nothing"
    assert _metadata(again, "platform_release")["revision"] == 1  # no new revision

    resources = {
        "deployment": DeploymentConfigResource(path=str(config)),
        "kubernetes": KubernetesResource(kubeconfig=str(kube_cluster.kubeconfig)),
    }
    for sensor in (release_status_sensor, workload_health_sensor):
        first = sensor(dg.build_sensor_context(instance=instance, resources=resources))
        assert first.asset_events, sensor.name
        second = sensor(
            dg.build_sensor_context(instance=instance, resources=resources, cursor=first.cursor)
        )
        assert second.asset_events == [] and second.cursor == first.cursor, sensor.name
    health = workload_health_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    evaluations = [e for e in health.asset_events if isinstance(e, dg.AssetCheckEvaluation)]
    assert {(e.asset_key.to_user_string(), e.passed) for e in evaluations} == {
        ("platform_release", True),
        ("jobs_release", True),  # floe-jobs runs no workload until a model runs
    }


def test_a_plaintext_secret_fails_the_blocking_check_and_nothing_is_installed(
    kube_cluster: KubeCluster,
    namespace: str,
    tmp_path: Path,
    instance: dg.DagsterInstance,
    engine: SdkHelmEngine,
):
    create_operator_secrets(kube_cluster.core, namespace)
    planted = {"platform": {"polaris": {"config": {"token": LEAKED}}}}
    config = write_config(tmp_path, kube_cluster.kubeconfig, namespace, planted)

    result = _run(config, kube_cluster, instance)

    assert not result.success
    checks = _checks(result)
    assert checks["platform_values:no_plaintext_secrets"] is False
    assert checks["platform_values:values_match_schema"] is True
    assert result.asset_materializations_for_node("platform_release") == []
    assert engine.status(ReleaseRef("floe-platform", namespace, "test")) is None
    logs = "\n".join(
        str(record.dagster_event) + str(record.user_message)
        for record in instance.all_logs(result.run_id)
    )
    assert "/polaris/config/token" in logs and LEAKED not in logs
