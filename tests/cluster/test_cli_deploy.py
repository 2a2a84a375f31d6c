"""`floe-deploy deploy` and `floe-deploy status` against the local control plane."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from kubernetes import client

from floe_deploy_assets.cli import main
from floe_deploy_assets.helm.inputs import release_generators
from floe_deploy_assets.kube.secrets import missing_secrets
from floe_deploy_assets.models.config import load_deployment_config
from floe_deploy_assets.models.products import load_products
from tests.conftest import KubeCluster
from tests.support.charts import ROOT
from tests.support.deployment import create_operator_secrets, write_config

pytestmark = pytest.mark.cluster


def _config(
    tmp_path: Path, kube_cluster: KubeCluster, namespace: str, overrides: dict | None = None
) -> str:
    return str(write_config(tmp_path, kube_cluster.kubeconfig, namespace, overrides))


def test_deploy_refuses_without_secrets_then_installs_then_is_a_no_op(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    config = _config(tmp_path, kube_cluster, namespace)
    args = ["--config", config, "--env", "dev", "--kubeconfig", str(kube_cluster.kubeconfig)]

    assert main(["deploy", *args]) == 2
    refused = capsys.readouterr().err
    assert "nothing deployed: Secret floe-postgresql (keys: password) is missing" in refused
    assert main(["status", *args]) == 0
    assert "is not installed" in capsys.readouterr().out

    _operator_secrets(kube_cluster, namespace)
    assert main(["deploy", *args, "--timeout", "120"]) == 0
    installed = capsys.readouterr().out
    assert "platform: absent -> install" in installed and "jobs: absent -> install" in installed

    assert main(["deploy", *args, "--dry-run"]) == 0
    assert "platform: in-sync -> would nothing" in capsys.readouterr().out
    assert main(["deploy", *args]) == 0
    again = capsys.readouterr().out
    assert "platform: in-sync -> nothing" in again and "(revision 1 deployed)" in again

    assert main(["status", *args]) == 0
    status = capsys.readouterr().out
    assert "floe-platform-dagster-webserver" in status and "unhealthy" not in status

    assert main(["run-models", *args, "--run-id", "cli-1"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split() == ["MODEL", "JOB", "PHASE", "DURATION", "REASON"]
    phases = {line.split()[0]: line.split()[2] for line in table[2:]}
    assert phases == dict.fromkeys(
        ["stg_customers", "stg_orders", "customer_orders", "customer_360"], "Succeeded"
    )
    assert main(["run-models", *args, "--select", "nope"]) == 2
    assert "--select nope: no such model" in capsys.readouterr().err


def _operator_secrets(kube_cluster: KubeCluster, namespace: str) -> None:
    create_operator_secrets(kube_cluster.core, namespace)


RELEASE_KINDS = (
    "list_namespaced_pod",
    "list_namespaced_service",
    "list_namespaced_config_map",
    "list_namespaced_secret",
    "list_namespaced_service_account",
    "list_namespaced_persistent_volume_claim",
)


def _left_behind(kube_cluster: KubeCluster, namespace: str) -> list[str]:
    """Everything of either release still in the namespace: its objects, claims, Helm's
    release records and the deploy lock."""
    core = kube_cluster.core
    found = []
    for release in ("floe-platform", "floe-jobs"):
        selector = f"app.kubernetes.io/instance={release}"
        for lister in RELEASE_KINDS:
            items = getattr(core, lister)(namespace, label_selector=selector).items
            found += [f"{lister}: {item.metadata.name}" for item in items]
        records = core.list_namespaced_secret(namespace, label_selector=f"name={release}").items
        found += [f"helm record {r.metadata.name}" for r in records]
    leases = client.CoordinationV1Api(kube_cluster.api).list_namespaced_lease(namespace).items
    return found + [f"lease {lease.metadata.name}" for lease in leases]


def test_dry_run_shows_the_manifest_diff_and_uninstall_keeps_data_unless_asked(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    _operator_secrets(kube_cluster, namespace)
    kubeconfig = ["--kubeconfig", str(kube_cluster.kubeconfig), "--env", "dev"]
    args = ["--config", _config(tmp_path, kube_cluster, namespace), *kubeconfig]
    assert main(["deploy", *args, "--timeout", "120"]) == 0
    capsys.readouterr()

    bigger = {"platform": {"postgresql": {"resources": {"limits": {"memory": "3Gi"}}}}}
    changed = ["--config", _config(tmp_path, kube_cluster, namespace, bigger), *kubeconfig]
    assert main(["deploy", *changed, "--dry-run", "--chart", "platform"]) == 0
    plan = capsys.readouterr().out
    assert "platform: out-of-sync -> would upgrade: revision 1 differs: values changed" in plan
    assert "StatefulSet/floe-platform-postgresql changed" in plan and "+ " in plan
    assert "3Gi" in plan and "ConfigMap" not in plan  # only what changes
    assert main(["status", *args]) == 0
    assert "revision 1 deployed" in capsys.readouterr().out  # the dry run changed nothing
    assert main(["history", *args, "--chart", "platform"]) == 0
    history = capsys.readouterr().out.splitlines()
    assert history[1:3] == [
        "| revision | status | updated | chart digest | values digest |",
        "|---|---|---|---|---|",
    ]
    assert history[3].startswith("| 1 | deployed | ") and len(history) == 4

    assert main(["uninstall", *args]) == 0
    kept = capsys.readouterr().out
    assert "jobs: release floe-jobs" in kept and "uninstalled" in kept
    assert "kept PersistentVolumeClaim data-floe-platform-postgresql-0" in kept
    assert _left_behind(kube_cluster, namespace) == [
        "list_namespaced_persistent_volume_claim: data-floe-platform-postgresql-0"
    ]

    assert main(["uninstall", *args, "--delete-data"]) == 0
    assert "deleted PersistentVolumeClaim data-floe-platform-postgresql-0" in (
        capsys.readouterr().out
    )
    assert _left_behind(kube_cluster, namespace) == []


def test_a_preset_too_large_for_every_node_fails_naming_the_component_and_the_scheduler(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    _operator_secrets(kube_cluster, namespace)
    fits = {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "200m", "memory": "512Mi"},
    }
    huge = {"requests": {"cpu": "64", "memory": "1Gi"}, "limits": {"cpu": "64", "memory": "2Gi"}}
    preset = {"name": "custom", "webserver": fits, "daemon": huge, "userCode": fits, "jobs": fits}
    config = write_config(tmp_path, kube_cluster.kubeconfig, namespace, resources=preset)
    args = ["--config", str(config), "--env", "dev", "--kubeconfig", str(kube_cluster.kubeconfig)]

    assert main(["deploy", *args, "--timeout", "20"]) == 3
    out = capsys.readouterr().out
    assert "platform: absent -> install" in out and "platform: FAILED: install of release" in out
    assert (
        "Deployment floe-platform-dagster-daemon: unhealthy Unschedulable: 0/2 nodes are "
        "available: 2 Insufficient cpu." in out
    )
    assert "jobs:" not in out  # nothing deployed after the platform failed


def test_the_demo_provides_every_secret_deploy_requires(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path
):
    # `make demo` creates the Secrets with examples/demo_secrets.py before it deploys: they
    # must be the ones deploy checks for, for every release it installs.
    config = _config(tmp_path, kube_cluster, namespace)
    deployment = load_deployment_config(config)
    generators = release_generators(deployment, load_products(deployment), "dev")
    required = [secret for generator in generators for secret in generator.required_secrets]
    assert required and missing_secrets(kube_cluster.core, namespace, required)
    command = [sys.executable, str(ROOT / "examples/demo_secrets.py"), "--env", "dev"]
    environment = {**os.environ, "KUBECONFIG": str(kube_cluster.kubeconfig)}
    for _ in range(2):  # the second run finds them all and keeps their values
        result = subprocess.run(
            [*command, "--config", config],
            env=environment,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 0, result.stderr
    assert "left as it is" in result.stdout
    assert "created" not in result.stdout and "added" not in result.stdout
    assert missing_secrets(kube_cluster.core, namespace, required) == []
