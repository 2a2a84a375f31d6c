"""What a release is made from, for one environment and chart: the values generator over the
validated CompiledArtifacts and the chart's own defaults and schema. The CLI and the Dagster
assets both start here, so a broken input fails both with the same message."""

from __future__ import annotations

from floe_deploy_assets.helm.charts import check_compatibility, load_floe_chart
from floe_deploy_assets.models.artifacts import CompiledArtifacts
from floe_deploy_assets.models.config import ChartKind, ConfigError, DeploymentConfig
from floe_deploy_assets.values.charts import ChartFiles
from floe_deploy_assets.values.generator import HelmValuesGenerator


def values_generator(
    config: DeploymentConfig,
    artifacts: CompiledArtifacts,
    environment: str,
    chart: ChartKind,
    artifacts_source: str = "the CompiledArtifacts",
) -> HelmValuesGenerator:
    """Raises ConfigError for an unknown environment or a chart that does not support the
    artifacts' floe version."""
    if environment not in config.environments:
        raise ConfigError(
            f"environment {environment!r} is in no cluster mapping; known environments: "
            f"{', '.join(config.environments)}"
        )
    incompatible = check_compatibility(load_floe_chart(config.chart_path(chart)), artifacts.version)
    if incompatible:
        raise ConfigError(f"{artifacts_source}: {incompatible}")
    files = ChartFiles.for_chart(config, chart)
    return HelmValuesGenerator(
        artifacts, environment, files.defaults(), config=config, chart=chart, schema=files.schema()
    )
