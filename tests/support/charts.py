"""Generated values and rendered charts for the chart tests."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml
from kubernetes import client

from floe_deploy_assets.helm import sources
from floe_deploy_assets.helm.render import RenderedChart, build_dependencies, render_chart
from floe_deploy_assets.models.artifacts import load_compiled_artifacts
from floe_deploy_assets.models.config import ChartKind, DeploymentConfig, load_deployment_config
from floe_deploy_assets.models.products import single_product
from floe_deploy_assets.values.charts import ChartFiles
from floe_deploy_assets.values.generator import HelmValuesGenerator

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_deployment_config(ROOT / "floe-deploy.yaml")
EXAMPLE = ROOT / "examples" / "compiled-artifacts.json"


def values_generator(
    chart: ChartKind,
    environment: str = "dev",
    artifacts: Path = EXAMPLE,
    config: DeploymentConfig = CONFIG,
) -> HelmValuesGenerator:
    files = ChartFiles(config.chart_path(chart))
    return HelmValuesGenerator(
        [single_product(load_compiled_artifacts(artifacts), artifacts)],
        environment,
        files.defaults(),
        config=config,
        chart=chart,
        schema=files.schema(),
    )


def generated_values(
    chart: ChartKind,
    environment: str = "dev",
    artifacts: Path = EXAMPLE,
    config: DeploymentConfig = CONFIG,
) -> dict[str, Any]:
    """The values ``floe-deploy values`` gives (``config``'s overrides included)."""
    generator = values_generator(chart, environment, artifacts, config)
    assert generator.validate() == []
    return generator.helm_values()


def render(
    chart: ChartKind,
    values: dict[str, Any],
    namespace: str = "floe-dev",
    release: str | None = None,
) -> RenderedChart:
    return render_chart(
        CONFIG.chart_path(chart),
        values,
        release_name=release or CONFIG.release_name(chart, "dev"),
        namespace=namespace,
    )


def create_required_secrets(core: client.CoreV1Api, namespace: str, chart: ChartKind) -> None:
    """The Secrets ``chart``'s generated dev values require, as an operator provides them (with
    throwaway values): the model pods read the dbt profiles' credential from one."""
    for secret in values_generator(chart).required_secrets:
        core.create_namespaced_secret(
            namespace,
            {
                "metadata": {"name": secret.name},
                "stringData": dict.fromkeys(secret.keys, "test-only-value"),
            },
        )


def install_jobs_release(
    helm: helm_python.Config, core: client.CoreV1Api, namespace: str
) -> dict[str, Any]:
    """The floe-jobs release with generated dev values, installed straight through Helm, after
    the Secrets they require."""
    create_required_secrets(core, namespace, "jobs")
    chart = CONFIG.chart_path("jobs")
    build_dependencies(chart)
    return helm.install(
        str(chart),
        CONFIG.release_name("jobs", "dev"),
        generated_values("jobs"),
        namespace=namespace,
        wait="watcher",
        timeout=60,
    )


GITOPS_REGISTRY = "oci://registry.example.com/floe/charts"


def example_config() -> dict[str, Any]:
    """The example configuration, its paths made absolute (to be written elsewhere)."""
    config = yaml.safe_load((ROOT / "floe-deploy.yaml").read_text())
    config["artifacts"]["path"] = str(ROOT / config["artifacts"]["path"])
    config["artifacts"]["dbtProjects"] = {
        name: str(ROOT / path) for name, path in config["artifacts"]["dbtProjects"].items()
    }
    for chart in config["charts"].values():
        chart["path"] = str(ROOT / chart["path"])
    return config


def run_gitops(out: Path, fmt: str, *extra: str) -> int:
    """``floe-deploy gitops`` for the example configuration, its files written to ``out``."""
    from floe_deploy_assets.cli import main

    config = str(ROOT / "floe-deploy.yaml")
    return main(
        [
            "gitops",
            "--config",
            config,
            "--format",
            fmt,
            "--out",
            str(out),
            "--registry",
            GITOPS_REGISTRY,
            *extra,
        ]
    )


def pinned_digest(chart_name: str) -> str:
    """A made-up manifest digest for the chart (no registry is asked: see below)."""
    return "sha256:" + hashlib.sha256(chart_name.encode()).hexdigest()


def pinned_registry_config(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The example configuration with both charts named by ref in GITOPS_REGISTRY, pinned to
    ``pinned_digest`` and already in a chart cache of this test's: what a configuration of
    published charts gives, without a registry."""
    monkeypatch.setenv(sources.CACHE_VARIABLE, str(tmp_path / "cache"))
    monkeypatch.setattr(sources, "_pulled", {})
    config = example_config()
    for kind, name in (("platform", "floe-platform"), ("jobs", "floe-jobs")):
        archive = helm_python.package(ROOT / "charts" / name, destination=tmp_path)
        helm_python.expand(tmp_path / "cache" / pinned_digest(name).replace(":", "-"), archive)
        config["charts"][kind] = {
            "ref": f"{GITOPS_REGISTRY}/{name}",
            "version": "0.1.0",
            "digest": pinned_digest(name),
            "releaseName": name,
        }
    path = tmp_path / "from-registry.yaml"
    path.write_text(yaml.safe_dump(config))
    return path
