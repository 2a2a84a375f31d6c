"""What a release is made from, for one environment: the values generator over the validated
CompiledArtifacts of the data products and the chart's own defaults and schema. The CLI and the
Dagster assets both start here, so a broken input fails both with the same message."""

from __future__ import annotations

from collections.abc import Sequence

from floe_deploy_assets.helm.charts import check_compatibility, load_floe_chart
from floe_deploy_assets.helm.sources import chart_dir
from floe_deploy_assets.models.config import ChartKind, ConfigError, DeploymentConfig
from floe_deploy_assets.models.products import DataProduct
from floe_deploy_assets.values.charts import ChartFiles
from floe_deploy_assets.values.generator import HelmValuesGenerator


def values_generator(
    config: DeploymentConfig,
    products: Sequence[DataProduct],
    environment: str,
    chart: ChartKind,
) -> HelmValuesGenerator:
    """The platform's values from every product of the environment, or one product's jobs
    values (``products`` is that one). Raises ConfigError for an unknown environment, a chart
    that does not support a product's floe version, or products that need different platform
    settings."""
    if environment not in config.environments:
        raise ConfigError(
            f"environment {environment!r} is in no cluster mapping; known environments: "
            f"{', '.join(config.environments)}"
        )
    folder = chart_dir(config, chart)
    floe_chart = load_floe_chart(folder)
    for product in products:
        incompatible = check_compatibility(floe_chart, product.artifacts.version)
        if incompatible:
            raise ConfigError(f"{product.source}: {incompatible}")
    files = ChartFiles(folder)
    return HelmValuesGenerator(
        products, environment, files.defaults(), config=config, chart=chart, schema=files.schema()
    )


def release_generators(
    config: DeploymentConfig,
    products: Sequence[DataProduct],
    environment: str,
    charts: Sequence[ChartKind] = ("platform", "jobs"),
    selected: Sequence[DataProduct] | None = None,
) -> list[HelmValuesGenerator]:
    """One generator per release, in the order they are deployed: the platform (from every
    product: a selection never changes it), then the jobs of each selected product."""
    generators = []
    for chart in charts:
        if chart == "platform":
            generators.append(values_generator(config, products, environment, chart))
        else:
            generators += [
                values_generator(config, [product], environment, chart)
                for product in (products if selected is None else selected)
            ]
    return generators
