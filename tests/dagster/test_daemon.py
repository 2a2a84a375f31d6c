"""The sensors where users run them: dagster-daemon and dagster-webserver on workspace.yaml, a
DAGSTER_HOME of the test's with real instance storage, the local control plane, and faults put
on a workload through the simulated kubelet's annotations. Everything asserted is what the
instance stored and what the webserver's GraphQL API answers, as the UI shows it."""

from __future__ import annotations

import itertools
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from floe_deploy_assets.defs.build import build_definitions
from floe_deploy_assets.defs.data_products import DataProductsResource
from tests.conftest import KubeCluster
from tests.support.dagster_home import dagster_yaml
from tests.support.dagster_processes import daemon, webserver
from tests.support.dagster_ui import DagsterUI
from tests.support.deployment import create_operator_secrets, deploy_through_graph, write_config
from tests.support.objects import set_fault
from tests.support.postgres import create_database
from tests.support.waits import wait_for

pytestmark = pytest.mark.cluster

SENSOR_INTERVAL = 5  # seconds between the release sensors' ticks in these tests
CHECK_RUN_SLACK = 45  # a check run's queueing, process start and code loading, on 2 cores
WEBSERVER = "floe-platform-dagster-webserver"


@pytest.fixture(params=["sqlite", "postgres"])
def dagster_home(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    """The test's instance: Dagster's default SQLite storage, or PostgreSQL as the platform's
    Dagster uses (a fresh database on the session's server)."""
    url = None
    if request.param == "postgres":
        url = create_database(request.getfixturevalue("postgres_url"), f"d{uuid.uuid4().hex[:12]}")
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(dagster_yaml(request.param, url))
    return home


@pytest.fixture
def deployed(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path, dagster_home: Path
) -> Iterator[dict[str, str]]:
    """dev deployed through the graph, in a run stored in the test's instance; staging mapped
    but never deployed. Yields the environment the daemon and webserver load the graph with."""
    create_operator_secrets(kube_cluster.core, namespace)
    config = write_config(
        tmp_path,
        kube_cluster.kubeconfig,
        namespace,
        undeployed=["staging"],
        redeploy_cron="* * * * *",  # the schedule test waits for one tick
    )
    deploy_through_graph(config, kube_cluster.kubeconfig, dagster_home)
    yield {
        "FLOE_DEPLOY_CONFIG": str(config),
        "FLOE_KUBECONFIG": str(kube_cluster.kubeconfig),
        "FLOE_SENSOR_INTERVAL_SECONDS": str(SENSOR_INTERVAL),
    }


def _set_fault(kube_cluster: KubeCluster, namespace: str, fault: str | None) -> float:
    set_fault(kube_cluster.api, namespace, WEBSERVER, fault)
    return time.monotonic()


def test_health_under_the_daemon_fails_on_a_fault_and_passes_on_recovery(
    kube_cluster: KubeCluster, namespace: str, dagster_home: Path, deployed: dict[str, str]
):
    with webserver(dagster_home, deployed) as url, daemon(dagster_home, deployed):
        instance = DagsterUI(url)
        # The first ticks see every release for the first time: a check run each.
        healthy = wait_for(
            lambda: _passed(instance.latest_check("platform_release", "release_healthy", "dev")),
            timeout=SENSOR_INTERVAL * 2 + CHECK_RUN_SLACK + 30,
            reason="the first release_healthy result of dev from a sensor-requested run",
        )
        assert healthy["evaluation"]["partition"] == "dev"
        # Its run was requested on the same tick as dev's, after dev's two: it may start only
        # once they ended (on 2 cores a check run's process takes up to CHECK_RUN_SLACK).
        missing = wait_for(
            lambda: instance.latest_check("platform_release", "release_healthy", "staging"),
            timeout=3 * CHECK_RUN_SLACK,
            reason="release_healthy of staging, which has no release",
        )
        assert missing["status"] == "FAILED"  # no release is never a pass
        assert missing["evaluation"]["severity"] == "WARN"
        assert "no release floe-platform" in missing["evaluation"]["description"]

        faulted = _set_fault(kube_cluster, namespace, "crash-loop")
        failed = wait_for(
            lambda: _failed(instance.latest_check("platform_release", "release_healthy", "dev")),
            timeout=SENSOR_INTERVAL * 2 + CHECK_RUN_SLACK + 20,  # the crash loop shows first
            reason="release_healthy of dev to fail on the crash-looping webserver",
        )
        fault_latency = time.monotonic() - faulted
        assert "CrashLoopBackOff" in failed["evaluation"]["description"], failed
        assert failed["evaluation"]["severity"] == "ERROR"
        # Each environment keeps its own result: staging is still the missing release.
        staging = instance.latest_check("platform_release", "release_healthy", "staging")
        assert staging is not None and staging["runId"] == missing["runId"]

        recovered_at = _set_fault(kube_cluster, namespace, None)
        wait_for(
            lambda: _passed(instance.latest_check("platform_release", "release_healthy", "dev")),
            timeout=SENSOR_INTERVAL * 2 + CHECK_RUN_SLACK + 20,
            reason="release_healthy of dev to pass again once the fault is gone",
        )
        recovery_latency = time.monotonic() - recovered_at
        print(f"fault -> failed check {fault_latency:.1f} s; recovered {recovery_latency:.1f} s")

        for sensor in ("workload_health", "release_status"):
            # Every tick is saved, and one with no news says so. Each tick so far may have had
            # news (the fault, the recovery): wait for a quiet one.
            ticks = wait_for(
                lambda sensor=sensor: _with_a_quiet_tick(instance.ticks(sensor)),
                timeout=SENSOR_INTERVAL * 3 + CHECK_RUN_SLACK,
                reason=f"a tick of {sensor} with nothing changed",
                interval=1,
            )
            assert not [t for t in ticks if t["status"] == "FAILURE"], (sensor, ticks)

    # One observation per change, none repeated for a state that did not change.
    with dg.DagsterInstance.from_config(str(dagster_home)) as stored:
        for kind in ("components", "helm_status"):
            seen = _observations(stored, "dev", kind)
            assert seen, kind
            repeated = [a for a, b in itertools.pairwise(seen) if a == b]
            assert not repeated, (kind, repeated)
        assert len(_observations(stored, "staging", "helm_status")) == 1  # "absent", once


def _observations(instance: dg.DagsterInstance, partition: str, kind: str) -> list[str]:
    """The ``kind`` metadata of the release_status (helm_status) or workload_health
    (components) observations of platform_release in ``partition``, oldest first."""
    records = instance.fetch_observations(
        dg.AssetRecordsFilter(
            asset_key=dg.AssetKey("platform_release"), asset_partitions=[partition]
        ),
        limit=1000,
        ascending=True,
    ).records
    return [
        str(r.asset_observation.metadata[kind].value)
        for r in records
        if r.asset_observation is not None and kind in r.asset_observation.metadata
    ]


def _with_a_quiet_tick(ticks: list[dict[str, Any]]) -> list[dict[str, Any]] | None:
    return ticks if any("nothing changed" in (t["skipReason"] or "") for t in ticks) else None


def _passed(execution: dict[str, Any] | None) -> dict[str, Any] | None:
    return execution if execution and execution["status"] == "SUCCEEDED" else None


def _failed(execution: dict[str, Any] | None) -> dict[str, Any] | None:
    return execution if execution and execution["status"] == "FAILED" else None


def test_a_scheduled_redeploy_of_an_in_sync_environment_is_skipped_and_writes_nothing(
    dagster_home: Path, deployed: dict[str, str]
):
    with webserver(dagster_home, deployed) as url, daemon(dagster_home, deployed):
        instance = DagsterUI(url)
        # The sensors' first ticks see each release once and run its check: let those settle.
        wait_for(
            lambda: (
                len([r for r in instance.runs() if r["jobName"] == "release_health"]) >= 4
                and all(r["status"] in ("SUCCESS", "FAILURE") for r in instance.runs())
            ),
            timeout=SENSOR_INTERVAL * 2 + CHECK_RUN_SLACK * 2,
            reason="the sensors' first check runs to finish",
        )
        runs = instance.runs()
        with dg.DagsterInstance.from_config(str(dagster_home)) as stored:
            last_event = stored.event_log_storage.get_maximum_record_id()
        instance.start_schedule("redeploy_dev")

        (tick,) = wait_for(
            lambda: [
                t for t in instance.schedule_ticks("redeploy_dev") if t["status"] != "STARTED"
            ],
            timeout=60 + 45,  # the next minute, and the scheduler's own pace
            reason="the first tick of redeploy_dev",
        )
        assert tick["status"] == "SKIPPED", tick
        assert tick["runIds"] == []
        assert tick["skipReason"].startswith("dev is in sync, nothing to deploy"), tick
        assert "platform: revision 1 already has chart" in tick["skipReason"]
        assert instance.runs() == runs  # no run
        with dg.DagsterInstance.from_config(str(dagster_home)) as stored:
            assert stored.event_log_storage.get_maximum_record_id() == last_event  # no event


SIM = "sim.kubelet.floe.dev/"
PRODUCT = ["data_products", "customer-360"]


def _run_models_once_the_rerun_sensor_ticks(
    instance: DagsterUI,
    dagster_home: Path,
    environment: dict[str, str],
    data_products: DataProductsResource,
) -> dg.ExecuteInProcessResult:
    """Run dev's models (``run_data_products``), stored in the daemon's instance, after the
    rerun sensor's first tick: it starts from the moment it runs, its first tick only
    bookmarks."""
    wait_for(
        lambda: instance.ticks("failed_model_reruns"),
        timeout=SENSOR_INTERVAL * 2 + 30,
        reason="the first tick of failed_model_reruns",
    )
    with dg.DagsterInstance.from_config(str(dagster_home)) as stored:
        return (
            build_definitions(
                environment["FLOE_DEPLOY_CONFIG"],
                kubeconfig=environment["FLOE_KUBECONFIG"],
                data_products=data_products,
            )
            .resolve_job_def("run_data_products")
            .execute_in_process(partition_key="dev", instance=stored, raise_on_error=False)
        )


def test_a_failed_model_is_rerun_by_the_sensor_under_the_daemon(
    kube_cluster: KubeCluster, dagster_home: Path, deployed: dict[str, str]
):
    faulty = DataProductsResource(
        pod_annotations={"stg_orders": {f"{SIM}exit-code": "3", f"{SIM}logs": "Database Error"}}
    )
    with webserver(dagster_home, deployed) as url, daemon(dagster_home, deployed):
        instance = DagsterUI(url)
        failed = _run_models_once_the_rerun_sensor_ticks(instance, dagster_home, deployed, faulty)
        assert not failed.success
        # What the UI shows: the failed model, and the model skipped below it, failed in dev.
        for model in ("stg_orders", "customer_orders"):
            statuses = instance.partition_statuses([*PRODUCT, model])
            assert statuses["failedPartitions"] == ["dev"], (model, statuses)
        assert instance.partition_statuses([*PRODUCT, "stg_customers"]) == {
            "materializedPartitions": ["dev"],
            "failedPartitions": [],
        }

        def rerun() -> dict[str, Any] | None:
            for run in instance.runs():
                if run["tags"].get("floe.dev/attempt") == "2" and run["status"] in (
                    "SUCCESS",
                    "FAILURE",
                ):
                    return run
            return None

        # Backoff 30 s after the first attempt, then the run's queueing and its three Jobs.
        done = wait_for(
            rerun, timeout=30 + SENSOR_INTERVAL * 2 + CHECK_RUN_SLACK + 60, reason="the rerun"
        )
        assert done["jobName"] == "run_data_products" and done["status"] == "SUCCESS", done
        assert done["tags"]["dagster/partition"] == "dev"
        assert not [t for t in instance.ticks("failed_model_reruns") if t["status"] == "FAILURE"]
        assert instance.partition_statuses([*PRODUCT, "stg_orders"])["failedPartitions"] == []
    with dg.DagsterInstance.from_config(str(dagster_home)) as stored:
        rebuilt = {
            record.asset_key.path[-1]
            for record in stored.get_records_for_run(
                done["runId"], of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
            ).records
            if record.asset_key is not None
        }
    # The failed model and the models skipped below it; not the model that succeeded.
    assert rebuilt == {"stg_orders", "customer_orders", "customer_360"}


@pytest.mark.timeout(600)  # two products deployed, run and rerun through the daemon
@pytest.mark.parametrize("dagster_home", ["sqlite"], indirect=True)
def test_failed_models_of_two_products_are_rerun_each_within_its_product(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path, dagster_home: Path
):
    """Two products (upstream fixtures) whose models have the same names, customers and
    orders: orders fails in both; each is rerun, in its own product, by its own request."""
    fixtures = Path(__file__).resolve().parents[1] / "fixtures" / "upstream-compiled-artifacts"
    products = tmp_path / "products"
    products.mkdir()
    for source in fixtures.glob("v0.[56]_*.json"):
        (products / source.name).write_text(source.read_text())
    create_operator_secrets(kube_cluster.core, namespace)
    config = write_config(tmp_path, kube_cluster.kubeconfig, namespace)
    document = yaml.safe_load(config.read_text())
    document["artifacts"] = {"paths": ["products/*.json"]}
    config.write_text(yaml.safe_dump(document))
    deploy_through_graph(config, kube_cluster.kubeconfig, dagster_home)
    environment = {
        "FLOE_DEPLOY_CONFIG": str(config),
        "FLOE_KUBECONFIG": str(kube_cluster.kubeconfig),
        "FLOE_SENSOR_INTERVAL_SECONDS": str(SENSOR_INTERVAL),
    }
    faulty = DataProductsResource(pod_annotations={"orders": {f"{SIM}exit-code": "3"}})
    with webserver(dagster_home, environment) as url, daemon(dagster_home, environment):
        instance = DagsterUI(url)
        failed = _run_models_once_the_rerun_sensor_ticks(
            instance, dagster_home, environment, faulty
        )
        assert not failed.success

        def reruns() -> list[dict[str, Any]] | None:
            done = [
                run
                for run in instance.runs()
                if run["tags"].get("floe.dev/attempt") == "2"
                and run["status"] in ("SUCCESS", "FAILURE")
            ]
            return done if len(done) == 2 else None

        done = wait_for(
            reruns, timeout=30 + SENSOR_INTERVAL * 2 + CHECK_RUN_SLACK + 60, reason="the reruns"
        )
        assert {run["status"] for run in done} == {"SUCCESS"}, done
    with dg.DagsterInstance.from_config(str(dagster_home)) as stored:
        rebuilt = sorted(
            record.asset_key.to_user_string()
            for run in done
            for record in stored.get_records_for_run(
                run["runId"], of_type=dg.DagsterEventType.ASSET_MATERIALIZATION
            ).records
            if record.asset_key is not None
        )
    assert rebuilt == [
        "data_products/golden-ingestion-test/orders",
        "data_products/golden-semantic-test/orders",
    ]
