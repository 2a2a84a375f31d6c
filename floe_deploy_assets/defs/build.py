"""The whole graph, built from the deployment configuration and the CompiledArtifacts when the
code location loads: environments become partitions, dbt models become assets."""

import warnings

import dagster as dg

from floe_deploy_assets.defs.data_products import GROUP as DATA_PRODUCTS
from floe_deploy_assets.defs.data_products import (
    RUN_DATA_PRODUCTS,
    DataProductsResource,
    model_assets,
    product_jobs,
    rerun_sensor,
)
from floe_deploy_assets.defs.deploy_assets import (
    GROUP,
    RELEASE_HEALTH_JOB,
    deploy_assets,
    environments,
    releases,
)
from floe_deploy_assets.defs.gitops_assets import gitops_asset
from floe_deploy_assets.defs.resources import DeploymentConfigResource, KubernetesResource
from floe_deploy_assets.defs.schedules import redeploy_schedules
from floe_deploy_assets.defs.sensors import release_status_sensor, workload_health_sensor
from floe_deploy_assets.helm.charts import ChartPathError, check_chart_paths


def build_definitions(
    config_path: str,
    kubeconfig: str | None = None,
    data_products: DataProductsResource | None = None,
    *,
    in_cluster: bool = False,
) -> dg.Definitions:
    """``in_cluster``: reach the cluster as the pod's ServiceAccount (the graph hosted by the
    platform's own Dagster), whatever the mappings' cluster names.

    Raises the configuration's own error (ConfigError, ArtifactsError; ChartPathError, a
    ConfigError, for a chart path) when it is broken, with the message `floe-deploy` prints."""
    deployment = DeploymentConfigResource(path=config_path)
    config = deployment.config
    try:
        check_chart_paths(config)  # before anything reads the charts (their digests)
    except ChartPathError as error:
        raise ChartPathError(f"{config_path}: {error}") from None
    products = deployment.products()  # a broken document fails loading, not the first run
    release_health = dg.define_asset_job(
        RELEASE_HEALTH_JOB,
        selection=dg.AssetSelection.checks(*(r.healthy_key for r in releases(products))),
        description="The release_healthy check of an environment's releases, on its own: what "
        "the workload_health sensor runs when the health it sees changed.",
    )
    deploy_platform = dg.define_asset_job(
        "deploy_platform",
        selection=dg.AssetSelection.groups(GROUP),
        description="Values, manifests and releases of an environment, checks first.",
    )
    run_data_products = dg.define_asset_job(
        RUN_DATA_PRODUCTS,
        selection=dg.AssetSelection.groups(DATA_PRODUCTS),
        description="The environment's dbt models, one Kubernetes Job each, in dependency order.",
    )
    # One environment's schedule failing to build never stops the others (nor the location).
    schedules = redeploy_schedules(deploy_platform, config)
    with warnings.catch_warnings():
        # Partitioned checks are a preview in Dagster 1.13, and what keeps each environment's
        # check results apart; the warning would greet every load of the code location.
        warnings.filterwarnings("ignore", category=dg.PreviewWarning, message=".*partitions_def")
        deployment_defs = list(deploy_assets(config, products))
        model_defs = list(model_assets(products, environments(config)))  # dbt tests' checks
    gitops_files = gitops_asset(config, products)
    return dg.Definitions(
        assets=[*deployment_defs, *model_defs, *([gitops_files] if gitops_files else [])],
        jobs=[
            deploy_platform,
            run_data_products,
            release_health,
            *(job for product in products for job in product_jobs(product)),
        ],
        schedules=schedules,
        sensors=[
            release_status_sensor,
            workload_health_sensor,
            rerun_sensor(products, run_data_products),
            # Declared here, running: Dagster's implicit one would be created stopped.
            dg.AutomationConditionSensorDefinition(
                "release_automation",
                target=dg.AssetSelection.groups(GROUP),
                default_status=dg.DefaultSensorStatus.RUNNING,
                description="Releases an environment when its manifests change and their "
                "blocking checks passed.",
            ),
        ],
        resources={
            "deployment": deployment,
            "kubernetes": KubernetesResource(kubeconfig=kubeconfig, in_cluster=in_cluster),
            "data_products": data_products or DataProductsResource(),
        },
    )
