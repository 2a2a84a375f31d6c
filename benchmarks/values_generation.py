"""Benchmark: generate and validate Helm values for 1, 10 and 100 environments.

Anchor (issue 3): under 20 ms per environment, for both charts' values (generate + validate).
Prints wall time, time per environment, the ratio to the anchor, and peak memory (max RSS).

    .venv/bin/python benchmarks/values_generation.py
"""

from __future__ import annotations

import resource
import time
from pathlib import Path

from floe_deploy_assets.helm.charts import CHARTS
from floe_deploy_assets.models.config import DeploymentConfig
from floe_deploy_assets.models.products import load_products
from floe_deploy_assets.values.charts import ChartFiles
from floe_deploy_assets.values.generator import HelmValuesGenerator

ROOT = Path(__file__).resolve().parents[1]
ANCHOR_MS_PER_ENVIRONMENT = 20.0
TIERS = ("small", "medium", "large")


def config_with(environments: int) -> DeploymentConfig:
    mappings = [
        {
            "name": f"mapping-{i}",
            "cluster": "floe-local",
            "environments": [f"env-{i}"],
            "resources": TIERS[i % 3],
        }
        for i in range(environments)
    ]
    config = DeploymentConfig.model_validate(
        {"artifacts": {"path": "examples/compiled-artifacts.json"}, "clusterMappings": mappings}
    )
    config._base_dir = ROOT
    return config


def run(environments: int) -> tuple[float, float]:
    """Seconds to load the inputs once, and seconds to generate and validate both charts'
    values for every environment."""
    started = time.perf_counter()
    config = config_with(environments)
    products = load_products(config)
    charts = {kind: ChartFiles(config.chart_path(kind)) for kind in CHARTS}
    inputs = {kind: (files.defaults(), files.schema()) for kind, files in charts.items()}
    loaded = time.perf_counter()
    for environment in config.environments:
        for kind, (defaults, schema) in inputs.items():
            generator = HelmValuesGenerator(
                products, environment, defaults, config=config, chart=kind, schema=schema
            )
            generator.generate()
            problems = generator.validate()
            assert not problems, problems
    return loaded - started, time.perf_counter() - loaded


def main() -> None:
    run(1)  # warm imports and caches once, as a long-running process would be
    print(
        f"{'environments':>12} {'load ms':>8} {'generate s':>10} {'ms/env':>8} "
        f"{'vs 20 ms':>9} {'max RSS MiB':>12}"
    )
    for environments in (1, 10, 100):
        load, generate = run(environments)
        per_env = generate * 1000 / environments
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        print(
            f"{environments:>12} {load * 1000:>8.1f} {generate:>10.3f} {per_env:>8.2f} "
            f"{per_env / ANCHOR_MS_PER_ENVIRONMENT:>8.2f}x {rss:>12.1f}"
        )


if __name__ == "__main__":
    main()
