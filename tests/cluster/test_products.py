"""Several data products on one platform (issue 14), through the CLI against the local control
plane: three CompiledArtifacts documents (the example customer-360 and the upstream v0.5 and
v0.6 fixtures, two of which have models of the same names) in one environment."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from kubernetes import client

from floe_deploy_assets.cli import main
from floe_deploy_assets.helm.inputs import release_generators
from floe_deploy_assets.models.config import load_deployment_config
from floe_deploy_assets.models.products import load_products
from tests.conftest import KubeCluster
from tests.support.charts import EXAMPLE, ROOT
from tests.support.deployment import write_config
from tests.support.rbac import allowed, as_service_account
from tests.support.waits import wait_for

pytestmark = pytest.mark.cluster

FIXTURES = ROOT / "tests" / "fixtures" / "upstream-compiled-artifacts"
SEMANTIC = FIXTURES / "v0.5_compiled_artifacts_with_semantic.json"
INGESTION = FIXTURES / "v0.6_compiled_artifacts_with_ingestion.json"
PRODUCTS = ("customer-360", "golden-semantic-test", "golden-ingestion-test")


def _with_credential_in_profiles(source: Path, target: Path) -> None:
    """The ingestion product's dbt profiles name a password: they become its own Secret."""
    document = json.loads(source.read_text())
    document["dbt_profiles"]["default"]["outputs"]["dev"] = {
        "type": "postgres",
        "host": "warehouse.example",
        "user": "dbt",
        "password": "test-only-password",
        "port": 5432,
        "dbname": "ingestion",
        "schema": "public",
    }
    target.write_text(json.dumps(document))


def _products_config(tmp_path: Path, kube_cluster: KubeCluster, namespace: str) -> Path:
    products = tmp_path / "products"
    products.mkdir()
    shutil.copy(EXAMPLE, products / "a-customer-360.json")
    shutil.copy(SEMANTIC, products / "b-semantic.json")
    path = write_config(tmp_path, kube_cluster.kubeconfig, namespace)
    document = yaml.safe_load(path.read_text())
    document["artifacts"] = {"paths": ["products/*.json"]}
    path.write_text(yaml.safe_dump(document))
    return path


def _operator_secrets(core: client.CoreV1Api, namespace: str, config_path: Path) -> None:
    deployment = load_deployment_config(config_path)
    existing = {s.metadata.name for s in core.list_namespaced_secret(namespace).items}
    for generator in release_generators(deployment, load_products(deployment), "dev"):
        for secret in generator.required_secrets:
            if secret.name not in existing:
                existing.add(secret.name)
                core.create_namespaced_secret(
                    namespace,
                    {
                        "metadata": {"name": secret.name},
                        "stringData": dict.fromkeys(secret.keys, "test-only-value"),
                    },
                )


def _phases(output: str) -> list[tuple[str, str, str]]:
    """(run, model, phase) of each row of run-models' tables."""
    rows, run = [], ""
    for line in output.splitlines():
        if line.startswith("run "):
            run = line.split()[1].rstrip(":")
        elif line and not line.startswith(("MODEL", " ", "-")) and len(line.split()) >= 3:
            rows.append((run, line.split()[0], line.split()[2]))
    return rows


def test_three_products_share_one_platform_and_keep_to_themselves(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    config_path = _products_config(tmp_path, kube_cluster, namespace)
    args = ["--config", str(config_path), "--env", "dev"]
    args += ["--kubeconfig", str(kube_cluster.kubeconfig)]
    core = kube_cluster.core

    # Two products first: the platform and a jobs release for each.
    _operator_secrets(core, namespace, config_path)
    assert main(["deploy", *args, "--timeout", "180"]) == 0
    first = capsys.readouterr().out
    assert "platform: absent -> install" in first
    for product in PRODUCTS[:2]:
        assert f"jobs of {product}: absent -> install" in first

    # A third is added: it is installed, and nothing else is redeployed (no-op by digest).
    _with_credential_in_profiles(INGESTION, tmp_path / "products" / "c-ingestion.json")
    assert main(["deploy", *args]) == 2  # its profiles Secret is not there yet
    assert (
        "Secret floe-dbt-profiles-golden-ingestion-test (keys: profiles.yml) is missing"
        in capsys.readouterr().err
    )
    _operator_secrets(core, namespace, config_path)
    assert main(["deploy", *args, "--timeout", "180"]) == 0
    second = capsys.readouterr().out
    assert "platform: in-sync -> nothing" in second
    for product in PRODUCTS[:2]:
        assert f"jobs of {product}: in-sync -> nothing" in second
    assert "jobs of golden-ingestion-test: absent -> install" in second
    releases = {
        s.metadata.labels["name"]
        for s in core.list_namespaced_secret(namespace, label_selector="owner=helm").items
    }
    assert releases == {"floe-platform", *(f"floe-jobs-{p}" for p in PRODUCTS)}

    # Each product's models run as Jobs, in one run: the two upstream fixtures both have models
    # named customers and orders, whose Jobs and watches must not meet.
    assert main(["run-models", *args, "--run-id", "p1"]) == 0
    rows = _phases(capsys.readouterr().out)
    assert sorted(rows) == sorted(
        [(f"p1-{PRODUCTS[0]}", m, "Succeeded") for m in ("stg_customers", "stg_orders")]
        + [(f"p1-{PRODUCTS[0]}", m, "Succeeded") for m in ("customer_orders", "customer_360")]
        + [(f"p1-{p}", m, "Succeeded") for p in PRODUCTS[1:] for m in ("customers", "orders")]
    )
    jobs = client.BatchV1Api(kube_cluster.api).list_namespaced_job(namespace).items
    by_release = {}
    for job in jobs:
        by_release.setdefault(job.metadata.labels["app.kubernetes.io/instance"], []).append(job)
    assert {r: len(js) for r, js in by_release.items()} == {
        "floe-jobs-customer-360": 4,
        "floe-jobs-golden-semantic-test": 2,
        "floe-jobs-golden-ingestion-test": 2,
    }

    # One product's ServiceAccount reads its own inputs and is denied the others' (403 from the
    # API server's RBAC authorizer).
    def as_product(product: str) -> client.CoreV1Api:
        return as_service_account(kube_cluster.kubeconfig, namespace, f"floe-jobs-{product}-dbt")

    customer, ingestion = as_product(PRODUCTS[0]), as_product(PRODUCTS[2])
    wait_for(
        lambda: allowed(
            lambda: customer.read_namespaced_config_map(
                "floe-jobs-customer-360-artifacts", namespace
            )
        ),
        timeout=10,
        reason="the products' RoleBindings to take effect",
    )
    ingestion_secret = "floe-dbt-profiles-golden-ingestion-test"
    assert allowed(lambda: ingestion.read_namespaced_secret(ingestion_secret, namespace))
    assert not allowed(lambda: customer.read_namespaced_secret(ingestion_secret, namespace))
    assert not allowed(
        lambda: customer.read_namespaced_config_map(
            "floe-jobs-golden-ingestion-test-artifacts", namespace
        )
    )
    assert not allowed(
        lambda: ingestion.read_namespaced_config_map("floe-jobs-customer-360-artifacts", namespace)
    )
    assert not allowed(
        lambda: ingestion.read_namespaced_config_map(
            "floe-jobs-customer-360-dbt-profiles", namespace
        )
    )

    # Uninstalling one product leaves the platform and the other products deployed and healthy.
    assert main(["uninstall", *args, "--product", PRODUCTS[1]]) == 0
    assert f"jobs of {PRODUCTS[1]}: " in capsys.readouterr().out
    assert main(["status", *args]) == 0
    status = capsys.readouterr().out
    assert f"jobs of {PRODUCTS[1]}: " in status and "is not installed" in status
    assert status.count("is not installed") == 1
    assert "platform: " in status and "revision 1 deployed" in status
    assert "unhealthy" not in status and "Degraded" not in status
    for product in (PRODUCTS[0], PRODUCTS[2]):
        assert f"jobs of {product}: " in status
    assert main(["run-models", *args, "--product", PRODUCTS[0], "--run-id", "p2"]) == 0
    assert {phase for _, _, phase in _phases(capsys.readouterr().out)} == {"Succeeded"}
    assert main(["deploy", *args, "--product", PRODUCTS[0], "--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "platform: in-sync -> would nothing" in plan
    assert f"jobs of {PRODUCTS[0]}: in-sync -> would nothing" in plan
    assert PRODUCTS[2] not in plan

    # A product removed from the configuration: the others stay as they are, its release is
    # pointed out, and uninstalled on request.
    (tmp_path / "products" / "c-ingestion.json").unlink()
    assert main(["deploy", *args]) == 0
    removed = capsys.readouterr().out
    assert removed.count("-> nothing") == 2
    assert f"note: release floe-jobs-{PRODUCTS[2]} in namespace {namespace}" in removed
    assert main(["uninstall", *args, "--removed-products", "--product", PRODUCTS[0]]) == 2
    capsys.readouterr()
    assert main(["uninstall", *args, "--removed-products"]) == 0
    assert f"floe-jobs-{PRODUCTS[2]} in namespace" in capsys.readouterr().out
    assert main(["status", *args]) == 0
    status = capsys.readouterr().out
    assert PRODUCTS[2] not in status and "unhealthy" not in status
    assert f"jobs of {PRODUCTS[0]}: release floe-jobs-{PRODUCTS[0]}" in status
    assert main(["deploy", *args]) == 0
    assert "note:" not in capsys.readouterr().out
