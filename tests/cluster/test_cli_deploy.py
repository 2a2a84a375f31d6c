"""`floe-deploy deploy` and `floe-deploy status` against the local control plane."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from floe_deploy_assets.cli import main
from tests.conftest import KubeCluster
from tests.support.charts import EXAMPLE, ROOT, values_generator

pytestmark = pytest.mark.cluster


def _config(tmp_path: Path, kube_cluster: KubeCluster, namespace: str) -> str:
    context = yaml.safe_load(kube_cluster.kubeconfig.read_text())["current-context"]
    document = {
        "apiVersion": "floe.dev/v1alpha1",
        "kind": "DeploymentConfig",
        "artifacts": {"path": str(EXAMPLE)},
        "charts": {
            "platform": {
                "path": str(ROOT / "charts/floe-platform"),
                "releaseName": "floe-platform",
            },
            "jobs": {"path": str(ROOT / "charts/floe-jobs"), "releaseName": "floe-jobs"},
        },
        "clusterMappings": [
            {
                "name": "test",
                "cluster": context,
                "environments": ["dev"],
                "namespaceTemplate": namespace,
                "resources": "small",
            }
        ],
    }
    path = tmp_path / "floe-deploy.yaml"
    path.write_text(yaml.safe_dump(document))
    return str(path)


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

    for chart in ("platform", "jobs"):
        for secret in values_generator(chart).required_secrets:
            kube_cluster.core.create_namespaced_secret(
                namespace,
                {
                    "metadata": {"name": secret.name},
                    "stringData": {key: "test-only-value" for key in secret.keys},
                },
            )
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
