"""The deployment graph end to end against the local control plane: materializing dev deploys
both releases and passes the health check; a plaintext secret planted in the configuration fails
the blocking check and nothing is installed; the sensors emit on change only."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from floe_deploy_assets.defs.build import build_definitions
from floe_deploy_assets.defs.data_products import DataProductsResource
from floe_deploy_assets.defs.resources import DeploymentConfigResource, KubernetesResource
from floe_deploy_assets.defs.sensors import release_status_sensor, workload_health_sensor
from floe_deploy_assets.helm.engine import ReleaseRef, SdkHelmEngine
from floe_deploy_assets.helm.storage import ReleaseStorage
from floe_deploy_assets.kube.health import release_health
from floe_deploy_assets.models.deployment import Health
from tests.conftest import KubeCluster
from tests.support.deployment import create_operator_secrets, write_config
from tests.support.objects import set_fault
from tests.support.waits import wait_for

pytestmark = pytest.mark.cluster
LEAKED = "hunter2-plaintext-token"


@pytest.fixture
def instance() -> Iterator[dg.DagsterInstance]:
    with dg.instance_for_test() as instance:
        yield instance


def _defs(config: Path, kube_cluster: KubeCluster, **resources: Any) -> dg.Definitions:
    return build_definitions(str(config), kubeconfig=str(kube_cluster.kubeconfig), **resources)


def _run(config: Path, kube_cluster: KubeCluster, instance: dg.DagsterInstance):
    return (
        _defs(config, kube_cluster)
        .resolve_job_def("deploy_platform")
        .execute_in_process(partition_key="dev", instance=instance, raise_on_error=False)
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
    assert len(_checks(result)) == 12
    platform = _metadata(result, "platform_release")
    assert (platform["action"], platform["revision"], platform["helm_status"]) == (
        "install",
        1,
        "deployed",
    )
    assert platform["platform_deployment"]["status"] == "deployed"
    assert platform["platform_deployment"]["environment"] == "dev"
    assert "floe-platform-dagster-webserver" in platform["components"]
    # An install's change starts with the objects it created, by kind.
    assert platform["manifest_diff"].startswith("**Install**")
    assert "| StatefulSet | 1 | floe-platform-postgresql |" in platform["manifest_diff"]
    assert _metadata(result, "jobs_release")["action"] == "install"
    assert platform["launched_by"] == "job deploy_platform"
    artifacts = result.asset_materializations_for_node("compiled_artifacts")[0]
    assert (
        artifacts.tags["dagster/data_version"] == _metadata(result, "compiled_artifacts")["digest"]
    )

    again = _run(config, kube_cluster, instance)  # what the redeploy schedule runs
    assert again.success
    assert _metadata(again, "platform_release")["action"] == "nothing"
    assert _metadata(again, "platform_release")["revision"] == 1  # no new revision

    models = (
        _defs(config, kube_cluster)
        .resolve_job_def("run_data_products")
        .execute_in_process(partition_key="dev", instance=instance, raise_on_error=False)
    )
    assert models.success
    for model in ("stg_customers", "stg_orders", "customer_orders", "customer_360"):
        (event,) = [
            e for e in models.get_asset_materialization_events() if e.asset_key.path[-1] == model
        ]
        metadata = event.materialization.metadata
        assert metadata["phase"].value == "Succeeded" and metadata["job_name"].value

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
    # A change of health is a run of the partitioned release_healthy check, not a runless
    # evaluation (the daemon tests run those; test_daemon.py).
    health = workload_health_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert {
        (key.to_user_string(), request.tags["dagster/partition"], request.job_name)
        for request in health.run_requests
        for key in request.asset_check_keys or []
    } == {
        ("platform_release:release_healthy", "dev", "release_health"),
        ("jobs_release:release_healthy", "dev", "release_health"),
    }

    # What a killed deploy leaves: the release pending with no deploy holding its lock.
    ReleaseStorage(kube_cluster.core).set_status(
        namespace, "floe-jobs", 1, "pending-upgrade", "Upgrade in progress"
    )
    status = release_status_sensor(dg.build_sensor_context(instance=instance, resources=resources))
    (jobs,) = [e for e in status.asset_events if e.asset_key == dg.AssetKey("jobs_release")]
    assert jobs.metadata["helm_status"].value == "pending-upgrade"
    assert "no deploy holds the release lock" in str(jobs.metadata["stuck"].value)


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


SIM = "sim.kubelet.floe.dev/"
JOBS_ASSETS = ["compiled_artifacts", "jobs_values", "jobs_manifests", "jobs_release"]


def test_a_failing_model_leads_the_sensor_to_request_exactly_one_rerun(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path, instance: dg.DagsterInstance
):
    create_operator_secrets(kube_cluster.core, namespace)
    config = write_config(tmp_path, kube_cluster.kubeconfig, namespace)
    faults = DataProductsResource(
        pod_annotations={
            "stg_orders": {f"{SIM}exit-code": "3", f"{SIM}logs": "compiling\nDatabase Error"},
            "stg_customers": {f"{SIM}fault": "image-pull-error"},  # not worth a retry
        },
        schedule_deadline_seconds=20,
        start_deadline_seconds=20,
        retry_backoff_seconds=0,  # rerun at the next tick
    )
    defs = _defs(config, kube_cluster, data_products=faults)
    deployed = defs.resolve_job_def("deploy_platform").execute_in_process(
        partition_key="dev",
        instance=instance,
        asset_selection=[dg.AssetKey(key) for key in JOBS_ASSETS],
    )
    assert deployed.success

    sensor = next(
        s for s in defs.get_repository_def().sensor_defs if s.name == "failed_model_reruns"
    )
    resources = {"data_products": faults}
    started = sensor(dg.build_sensor_context(instance=instance, resources=resources))
    assert started.run_requests == []  # the sensor starts from now: earlier failures are history

    run = defs.resolve_job_def("run_data_products").execute_in_process(
        partition_key="dev", instance=instance, raise_on_error=False
    )

    assert not run.success
    assert run.get_asset_materialization_events() == []
    product = ["data_products", "customer-360"]
    partitions = defs.resolve_assets_def(dg.AssetKey([*product, "stg_orders"])).partitions_def
    assert partitions is not None

    def status(model: str) -> dg.AssetPartitionStatus | None:
        found = instance.get_status_by_partition(
            dg.AssetKey([*product, model]), ["dev"], partitions
        )
        return found["dev"] if found else None

    # What the UI shows for the dev partition of each model: failed and skipped alike.
    for model in ("stg_orders", "stg_customers", "customer_orders", "customer_360"):
        assert status(model) is dg.AssetPartitionStatus.FAILED, model
    # The failure of the models' step (what the UI shows for the failed run, which the models'
    # failed partitions link to): each failed or skipped model by asset key.
    (step_failure,) = run.get_step_failure_events()
    failure = step_failure.step_failure_data.user_failure_data
    assert failure is not None and failure.metadata["partition"].value == "dev"
    failed = {
        model: failure.metadata[f"data_products/customer-360/{model}"].value
        for model in ("stg_orders", "stg_customers", "customer_orders", "customer_360")
    }
    assert (failed["stg_orders"]["reason"], failed["stg_orders"]["exit_code"]) == ("Error", 3)
    assert failed["stg_orders"]["retryable"] is True
    assert "compiling\nDatabase Error" in failed["stg_orders"]["log_excerpt"]
    assert failed["stg_customers"]["reason"] in ("ErrImagePull", "ImagePullBackOff")
    assert failed["stg_customers"]["retryable"] is False
    assert "exit_code" not in failed["stg_customers"]  # its container never ran
    assert (failed["customer_orders"]["phase"], failed["customer_orders"]["reason"]) == (
        "Skipped",
        "Skipped",
    )
    assert failed["customer_360"]["message"].startswith("upstream model")

    first = sensor(
        dg.build_sensor_context(instance=instance, resources=resources, cursor=started.cursor)
    )
    (request,) = first.run_requests
    # The failed model and the models skipped below it; not the image-pull failure.
    assert [key.path[-1] for key in request.asset_selection] == [
        "stg_orders",
        "customer_orders",
        "customer_360",
    ]
    assert (request.partition_key, request.tags["floe.dev/attempt"]) == ("dev", "2")
    again = sensor(
        dg.build_sensor_context(instance=instance, resources=resources, cursor=first.cursor)
    )
    assert again.run_requests == []  # two ticks, nothing new

    # The fault gone, the requested rerun (only that model) succeeds, as its second attempt.
    rerun = (
        _defs(config, kube_cluster)
        .resolve_job_def("run_data_products")
        .execute_in_process(
            partition_key="dev",
            instance=instance,
            asset_selection=request.asset_selection,
            tags=request.tags,
        )
    )
    # All three run as attempt 2: customer_orders needs stg_customers too, which is taken as
    # built when it is outside the selection (as `dbt run --select` does).
    assert rerun.success
    rebuilt = {
        e.asset_key.path[-1]: e.materialization.metadata["attempt"].value
        for e in rerun.get_asset_materialization_events()
    }
    assert rebuilt == {"stg_orders": 2, "customer_orders": 2, "customer_360": 2}
    (built,) = [
        e.materialization.metadata
        for e in rerun.get_asset_materialization_events()
        if e.asset_key.path[-1] == "stg_orders"
    ]
    assert (built["namespace"].value, built["phase"].value) == (namespace, "Succeeded")
    assert built["pod_name"].value.startswith(f"{built['job_name'].value}-")
    assert isinstance(built["start_time"], dg.TimestampMetadataValue)
    assert isinstance(built["end_time"], dg.TimestampMetadataValue)
    assert built["start_time"].value <= built["end_time"].value
    assert built["duration_seconds"].value > 0
    assert status("stg_orders") is dg.AssetPartitionStatus.MATERIALIZED
    assert status("stg_customers") is dg.AssetPartitionStatus.FAILED  # not rerun: image pull


def test_a_stored_health_result_that_disagrees_with_the_sensor_is_checked_again(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path, instance: dg.DagsterInstance
):
    """A check run evaluates health when it starts, and can see a moment the sensor did not
    (a rollout's last old pod still terminating). The next tick that sees the health unchanged
    but a stored result saying otherwise asks for the check again, once."""
    create_operator_secrets(kube_cluster.core, namespace)
    config = write_config(tmp_path, kube_cluster.kubeconfig, namespace)
    defs = _defs(config, kube_cluster)
    assert _run(config, kube_cluster, instance).success  # dev deployed, release_healthy passed
    resources = {
        "deployment": DeploymentConfigResource(path=str(config)),
        "kubernetes": KubernetesResource(kubeconfig=str(kube_cluster.kubeconfig)),
    }
    healthy = workload_health_sensor(
        dg.build_sensor_context(instance=instance, resources=resources)
    )

    def platform_unhealthy(expected: bool) -> bool:
        components = release_health(kube_cluster.api, namespace, "floe-platform")
        return any(c.health is not Health.HEALTHY for c in components) == expected

    # The check runs during a fault, and the fault is gone before the sensor's next tick.
    set_fault(kube_cluster.api, namespace, "floe-platform-dagster-webserver", "image-pull-error")
    wait_for(lambda: platform_unhealthy(True), timeout=60, reason="the image pull error to show")
    during = defs.resolve_job_def("release_health").execute_in_process(
        instance=instance, tags={"dagster/partition": "dev"}, raise_on_error=False
    )
    stored = {e.asset_key.to_user_string(): e.passed for e in during.get_asset_check_evaluations()}
    assert stored == {"platform_release": False, "jobs_release": True}
    set_fault(kube_cluster.api, namespace, "floe-platform-dagster-webserver", None)
    wait_for(lambda: platform_unhealthy(False), timeout=90, reason="the rollout to recover")

    tick = workload_health_sensor(
        dg.build_sensor_context(instance=instance, resources=resources, cursor=healthy.cursor)
    )
    assert tick.asset_events == []  # the sensor saw no change since its last tick
    (recheck,) = tick.run_requests
    assert recheck.asset_check_keys == [
        dg.AssetCheckKey(dg.AssetKey("platform_release"), "release_healthy")
    ]
    assert "-recheck-" in (recheck.run_key or "") and recheck.tags["dagster/partition"] == "dev"
    again = workload_health_sensor(
        dg.build_sensor_context(instance=instance, resources=resources, cursor=tick.cursor)
    )
    assert [r.run_key for r in again.run_requests] == [recheck.run_key]  # deduplicated by key
