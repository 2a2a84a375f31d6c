"""The charts as the seed's FloeHelmChart entities: names, semver, dependencies, schema, and the
compatibility matrix."""

from __future__ import annotations

import pytest

from floe_deploy_assets.helm.charts import check_compatibility, load_floe_chart, satisfies
from tests.support.charts import CONFIG


@pytest.mark.parametrize("kind", ["platform", "jobs"])
def test_charts_are_valid_floe_helm_charts(kind: str):
    chart = load_floe_chart(CONFIG.chart_path(kind))

    assert chart.name == f"floe-{kind}"
    assert chart.values_schema["additionalProperties"] is False
    assert all(d.repository.startswith("file://") for d in chart.dependencies)
    assert chart.compatibility_matrix[chart.version]


def test_platform_components_are_switchable_subcharts():
    chart = load_floe_chart(CONFIG.chart_path("platform"))
    components = {d.alias: d.condition for d in chart.dependencies if d.alias}

    assert components == {
        name: f"{name}.enabled"
        for name in ("postgresql", "otel", "dagster", "polaris", "marquez", "minio")
    }


@pytest.mark.parametrize(
    ("version", "compatible"),
    [("0.1.0", True), ("0.6.0", True), ("0.10.3", True), ("0.11.0", False), ("1.0.0", False)],
)
def test_artifacts_versions_are_checked_against_the_matrix(version: str, compatible: bool):
    chart = load_floe_chart(CONFIG.chart_path("platform"))
    problem = check_compatibility(chart, version)
    assert (problem is None) is compatible
    if problem:
        assert f"CompiledArtifacts are version {version}" in problem


def test_constraint_parsing():
    assert satisfies("1.2.3", ">=1.0.0, <2.0.0") and satisfies("1.2.3", "1.2.3")
    assert not satisfies("2.0.0", ">=1.0.0, <2.0.0")
    with pytest.raises(ValueError, match="unsupported version constraint '~1.2'"):
        satisfies("1.2.3", "~1.2")


def test_cli_refuses_artifacts_newer_than_the_chart_supports(tmp_path, capsys):
    import json

    from floe_deploy_assets.cli import main
    from tests.support.charts import EXAMPLE, ROOT

    newer = tmp_path / "artifacts.json"
    newer.write_text(json.dumps({**json.loads(EXAMPLE.read_text()), "version": "0.12.0"}))

    code = main(
        [
            "values",
            "--config",
            str(ROOT / "floe-deploy.yaml"),
            "--artifacts",
            str(newer),
            "--env",
            "dev",
            "--chart",
            "platform",
        ]
    )

    assert code == 2
    assert "supports floe-core >=0.1.0, <0.11.0" in capsys.readouterr().err
