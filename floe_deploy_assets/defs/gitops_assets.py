"""The ``gitops_files`` asset: per environment (partition), the Argo CD or Flux files that
deploy its releases, written where the configuration's ``gitops`` section says, the same files
``floe-deploy gitops --env <environment>`` writes. Only when that section is there: a
configuration without it deploys with the release engine alone."""

from collections.abc import Sequence

import dagster as dg

from floe_deploy_assets import gitops
from floe_deploy_assets.defs.deploy_assets import OWNERS, environments, releases
from floe_deploy_assets.defs.resources import DeploymentConfigResource
from floe_deploy_assets.models.config import DeploymentConfig
from floe_deploy_assets.models.products import DataProduct

GITOPS_GROUP = "gitops"
GITOPS_FILES = dg.AssetKey("gitops_files")


def gitops_asset(
    config: DeploymentConfig, products: Sequence[DataProduct]
) -> dg.AssetsDefinition | None:
    settings = config.gitops
    if settings is None:
        return None

    @dg.asset(
        key=GITOPS_FILES,
        # The values of every release: their blocking checks stop a run before this asset.
        deps=[release.values_key for release in releases(products)],
        partitions_def=environments(config),
        group_name=GITOPS_GROUP,
        owners=OWNERS,
        kinds={settings.format, "yaml"},
        description=f"The {settings.format} files of the environment's releases, in "
        f"{settings.out}/<environment>/ (what `floe-deploy gitops --env` writes): commit them "
        "to the repository the controller watches.",
    )
    def gitops_files(
        context: dg.AssetExecutionContext, deployment: DeploymentConfigResource
    ) -> dg.MaterializeResult:
        environment = context.partition_key
        current = deployment.config
        wanted = current.gitops
        if wanted is None:
            raise dg.Failure(f"{deployment.path} no longer has a gitops section: reload")
        generators = [r.generator(deployment, environment) for r in releases(deployment.products())]
        for generator in generators:
            problems = generator.validate()
            if problems:  # pointers and rules only: values failing a secret rule may hold one
                raise dg.Failure(
                    f"values of {generator.release_name} for {environment} fail validation; "
                    "nothing written",
                    metadata={"problems": dg.MetadataValue.json([str(p) for p in problems])},
                )
        options = gitops.GitOpsOptions(
            registry=gitops.registry_for(wanted.registry, current),
            argocd_namespace=wanted.argocd_namespace,
            flux_namespace=wanted.flux_namespace,
            controller_cluster=wanted.controller_cluster,
        )
        out = current.resolve(wanted.out) / environment
        written, removed = gitops.write_gitops(wanted.format, generators, options, out, environment)
        context.log.info(f"wrote {len(written)} {wanted.format} files to {out}")
        return dg.MaterializeResult(
            metadata={
                "directory": dg.MetadataValue.path(str(out)),
                "files": dg.MetadataValue.json(sorted(p.name for p in written)),
                "removed": dg.MetadataValue.json(sorted(p.name for p in removed)),
                "required_secrets": dg.MetadataValue.json(
                    sorted({s.name for g in generators for s in g.required_secrets})
                ),
            }
        )

    return gitops_files
