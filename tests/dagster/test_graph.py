"""The shape of the Dagster graph built from floe-deploy.yaml and the example CompiledArtifacts:
asset keys and dependencies, partitions, checks (and which block), sensors, schedules, jobs.
A change to the graph changes this snapshot on purpose."""

from __future__ import annotations

import time
from pathlib import Path

import dagster as dg
import pytest
import yaml

from floe_deploy_assets.defs.build import build_definitions
from floe_deploy_assets.defs.resources import DeploymentConfigResource, KubernetesResource
from floe_deploy_assets.defs.sensors import (
    RETRY_SECONDS,
    release_status_sensor,
    workload_health_sensor,
)
from floe_deploy_assets.models.config import ConfigError
from tests.support.charts import ROOT


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    return build_definitions(str(ROOT / "floe-deploy.yaml"))


def test_assets_and_their_dependencies(defs: dg.Definitions):
    graph = defs.resolve_asset_graph()
    deps = {
        key.to_user_string(): sorted(d.to_user_string() for d in graph.get(key).parent_keys)
        for key in graph.get_all_asset_keys()
    }
    assert deps == {
        "compiled_artifacts": [],
        "platform_values": ["compiled_artifacts"],
        "jobs_values": ["compiled_artifacts"],
        "platform_manifests": ["platform_values"],
        "jobs_manifests": ["jobs_values"],
        "platform_release": ["platform_manifests"],
        "jobs_release": ["jobs_manifests", "platform_release"],
        **MODEL_DEPS,
    }


PRODUCT = "data_products/customer-360"
MODEL_DEPS: dict[str, list[str]] = {
    f"{PRODUCT}/stg_customers": ["jobs_release"],
    f"{PRODUCT}/stg_orders": ["jobs_release"],
    f"{PRODUCT}/customer_orders": [
        f"{PRODUCT}/stg_customers",
        f"{PRODUCT}/stg_orders",
        "jobs_release",
    ],
    f"{PRODUCT}/customer_360": [f"{PRODUCT}/customer_orders", "jobs_release"],
}


def test_every_asset_is_partitioned_by_environment(defs: dg.Definitions):
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        partitions = graph.get(key).partitions_def
        assert isinstance(partitions, dg.StaticPartitionsDefinition), key
        assert partitions.get_partition_keys() == ["dev", "staging", "prod"]


def test_checks_and_which_of_them_block(defs: dg.Definitions):
    graph = defs.resolve_asset_graph()
    checks = {
        f"{key.asset_key.to_user_string()}:{key.name}": graph.get_check_spec(key).blocking
        for key in graph.asset_check_keys
    }
    assert checks == {
        "platform_values:values_match_schema": True,
        "platform_values:no_plaintext_secrets": True,
        "jobs_values:values_match_schema": True,
        "jobs_values:no_plaintext_secrets": True,
        "platform_manifests:manifests_valid": True,
        "platform_manifests:pod_security_restricted": True,
        "platform_manifests:manifests_hold_no_credentials": True,
        "jobs_manifests:manifests_valid": True,
        "jobs_manifests:pod_security_restricted": True,
        "jobs_manifests:manifests_hold_no_credentials": True,
        "platform_release:release_healthy": False,
        "jobs_release:release_healthy": False,
        # The example's dbt tests (examples/customer_360), blocking unless dbt's severity is warn.
        **{
            f"data_products/customer-360/{model}:{name}": True
            for model, names in {
                "stg_customers": (
                    "unique__customer_id",
                    "not_null__customer_id",
                    "not_null__email",
                ),
                "stg_orders": ("unique__order_id", "not_null__order_id", "accepted_values__status"),
                "customer_orders": (
                    "unique__customer_id",
                    "not_null__customer_id",
                    "relationships__customer_id",
                ),
                "customer_360": (
                    "unique__customer_id",
                    "not_null__customer_id",
                    "accepted_values__segment",
                ),
            }.items()
            for name in names
        },
        "data_products/customer-360/customer_360:unique__email": False,
        "data_products/customer-360/customer_360:not_null__first_order_on": False,
    }


def test_every_check_is_per_environment_and_described(defs: dg.Definitions):
    graph = defs.resolve_asset_graph()
    for key in graph.asset_check_keys:
        spec = graph.get_check_spec(key)
        assert spec.partitions_def == graph.get(key.asset_key).partitions_def, key
        assert spec.description and len(spec.description) > 40, key


def test_every_asset_has_owners_kinds_and_a_code_version(defs: dg.Definitions):
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.owners and node.kinds and node.description, key
        if key.to_user_string() != "compiled_artifacts":  # its data version is its digest
            assert node.code_version, key
    # A chart's digest versions what is made from it: values, manifests and the release.
    assert graph.get(dg.AssetKey("platform_values")).code_version == (
        graph.get(dg.AssetKey("platform_release")).code_version
    )


def test_sensors_schedules_and_jobs(defs: dg.Definitions):
    repository = defs.get_repository_def()
    assert sorted(s.name for s in repository.sensor_defs) == [
        "failed_model_reruns",
        "release_automation",
        "release_status",
        "workload_health",
    ]
    assert {s.name: s.cron_schedule for s in repository.schedule_defs} == {
        "redeploy_dev": "*/30 * * * *",
        "redeploy_staging": "0 * * * *",
        "redeploy_prod": "0 6 * * 1-5",
    }
    jobs = {job.name for job in repository.get_all_jobs() if not job.name.startswith("__")}
    assert jobs == {"deploy_platform", "run_data_products", "release_health"}


def test_a_broken_configuration_fails_loading_with_the_clis_message(tmp_path: Path):
    broken = tmp_path / "floe-deploy.yaml"
    broken.write_text(
        (ROOT / "floe-deploy.yaml").read_text().replace("resources: small", "resources: tiny")
    )
    with pytest.raises(ConfigError, match=r"floe-deploy.yaml: clusterMappings\[0\].resources"):
        build_definitions(str(broken))


def test_a_sensor_tick_against_an_unreachable_cluster_reports_it_and_ends(tmp_path: Path):
    kubeconfig = tmp_path / "kubeconfig"
    kubeconfig.write_text(
        yaml.safe_dump(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "gone", "cluster": {"server": "https://127.0.0.1:9"}}],
                "users": [{"name": "u", "user": {"token": "t"}}],
                "contexts": [{"name": "floe-local", "context": {"cluster": "gone", "user": "u"}}],
                "current-context": "floe-local",
            }
        )
    )
    resources = {
        "deployment": DeploymentConfigResource(path=str(ROOT / "floe-deploy.yaml")),
        "kubernetes": KubernetesResource(kubeconfig=str(kubeconfig)),
    }
    with dg.instance_for_test() as instance:
        for sensor in (release_status_sensor, workload_health_sensor):
            started = time.monotonic()
            first = sensor(dg.build_sensor_context(instance=instance, resources=resources))
            assert time.monotonic() - started < RETRY_SECONDS + 20, sensor.name  # one try
            unreachable = [e.metadata["unreachable"].value for e in first.asset_events]
            assert len(unreachable) == 6  # 3 environments x 2 releases, each named
            assert all("Error" in str(message) for message in unreachable), unreachable
            again = sensor(
                dg.build_sensor_context(instance=instance, resources=resources, cursor=first.cursor)
            )
            assert again.asset_events == []  # still down: no news


def test_several_products_each_have_their_releases_models_and_jobs(tmp_path: Path):
    """With ``artifacts.paths``, each product's documents, jobs release and models are keyed
    under it; the platform's values come from every product's document."""
    products = tmp_path / "products"
    products.mkdir()
    fixtures = ROOT / "tests" / "fixtures" / "upstream-compiled-artifacts"
    for source in (ROOT / "examples" / "compiled-artifacts.json", *fixtures.glob("v0.[56]*")):
        (products / source.name).write_text(source.read_text())
    document = yaml.safe_load((ROOT / "floe-deploy.yaml").read_text())
    document["artifacts"] = {"paths": ["products/*.json"]}
    document["charts"] = {
        chart: {"path": str(ROOT / "charts" / f"floe-{chart}"), "releaseName": f"floe-{chart}"}
        for chart in ("platform", "jobs")
    }
    (tmp_path / "floe-deploy.yaml").write_text(yaml.safe_dump(document))

    defs = build_definitions(str(tmp_path / "floe-deploy.yaml"))
    graph = defs.resolve_asset_graph()

    def parents(key: str) -> list[str]:
        node = graph.get(dg.AssetKey.from_user_string(key))
        return sorted(d.to_user_string() for d in node.parent_keys)

    names = ("customer-360", "golden-semantic-test", "golden-ingestion-test")
    assert parents("platform_values") == sorted(f"{p}/compiled_artifacts" for p in names)
    for product in names:
        assert parents(f"{product}/jobs_values") == [f"{product}/compiled_artifacts"]
        assert parents(f"{product}/jobs_release") == [
            f"{product}/jobs_manifests",
            "platform_release",
        ]
    # Two products have models of the same names: their keys differ by product.
    assert parents("data_products/golden-semantic-test/orders") == [
        "data_products/golden-semantic-test/customers",
        "golden-semantic-test/jobs_release",
    ]
    assert parents("data_products/golden-semantic-test/customers") == [
        "golden-semantic-test/jobs_release"
    ]
    repository = defs.get_repository_def()
    jobs = {job.name for job in repository.get_all_jobs() if not job.name.startswith("__")}
    assert jobs == {
        "deploy_platform",
        "run_data_products",
        "release_health",
        *(f"{kind}_{p.replace('-', '_')}" for p in names for kind in ("deploy", "run")),
    }
    run_semantic = repository.get_job("run_golden_semantic_test")
    assert {k.to_user_string() for k in run_semantic.asset_layer.selected_asset_keys} == {
        "data_products/golden-semantic-test/customers",
        "data_products/golden-semantic-test/orders",
    }
    healthy = {
        key.asset_key.to_user_string()
        for key in graph.asset_check_keys
        if key.name == "release_healthy"
    }
    assert healthy == {"platform_release", *(f"{p}/jobs_release" for p in names)}
