"""A deployment configuration aimed at a test's namespace, and the Secrets an operator would
provide there, for tests that deploy through the CLI or the Dagster graph."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client

from tests.support.charts import EXAMPLE, ROOT, create_required_secrets


def write_config(
    tmp_path: Path,
    kubeconfig: Path,
    namespace: str,
    overrides: dict[str, Any] | None = None,
    artifacts: Path = EXAMPLE,
    resources: str | dict[str, Any] = "small",
    undeployed: Sequence[str] = (),
    redeploy_cron: str | None = None,
    dbt_projects: dict[str, Path] | None = None,
) -> Path:
    """floe-deploy.yaml with one environment, dev, deployed into ``namespace`` through the
    kubeconfig's current context; the ``undeployed`` environments map to ``namespace-<env>``,
    where no test deploys."""
    context = yaml.safe_load(kubeconfig.read_text())["current-context"]
    document: dict[str, Any] = {
        "apiVersion": "floe.dev/v1alpha1",
        "kind": "DeploymentConfig",
        "artifacts": {
            "path": str(artifacts),
            "dbtProjects": {name: str(path) for name, path in (dbt_projects or {}).items()},
        },
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
                "resources": resources,
            },
            *(
                [
                    {
                        "name": "undeployed",
                        "cluster": context,
                        "environments": list(undeployed),
                        "namespaceTemplate": namespace + "-{{.environment}}",
                        "resources": resources,
                    }
                ]
                if undeployed
                else []
            ),
        ],
    }
    if overrides:
        document["overrides"] = {"dev": overrides}
    if redeploy_cron:
        document["redeploySchedules"] = {"dev": redeploy_cron}
    path = tmp_path / "floe-deploy.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def create_operator_secrets(core: client.CoreV1Api, namespace: str) -> None:
    """The Secrets both charts require, with throwaway values."""
    for chart in ("platform", "jobs"):
        create_required_secrets(core, namespace, chart)


def deploy_through_graph(config: Path, kubeconfig: Path, dagster_home: Path) -> None:
    """Materialize dev's deployment group in-process, stored in the instance at
    ``dagster_home``, as a UI launch of ``deploy_platform`` would."""
    import dagster as dg

    from floe_deploy_assets.defs.build import build_definitions

    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        result = (
            build_definitions(str(config), kubeconfig=str(kubeconfig))
            .resolve_job_def("deploy_platform")
            .execute_in_process(partition_key="dev", instance=instance, raise_on_error=False)
        )
    if not result.success:
        raise AssertionError(f"deploying dev through the graph failed: run {result.run_id}")
