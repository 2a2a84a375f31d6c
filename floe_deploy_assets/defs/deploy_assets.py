"""The deployment assets, partitioned by environment: the CompiledArtifacts input, then per chart
(platform, jobs) its values, its rendered manifests and its Helm release.

The values and manifest checks are blocking: in the run that materializes them, a failing check
stops the release step, and the releases' automation waits for them to pass. The release asset
validates its inputs again before applying, so a release materialized on its own never applies
values that fail a check either.
"""

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import dagster as dg

from floe_deploy_assets.checks.manifests import validate_manifests
from floe_deploy_assets.checks.pod_policy import check_pod_policy
from floe_deploy_assets.defs.resources import DeploymentConfigResource, KubernetesResource
from floe_deploy_assets.helm.deploy import DeployOutcome, deploy, digest_history
from floe_deploy_assets.helm.inputs import values_generator
from floe_deploy_assets.helm.render import render_chart
from floe_deploy_assets.kube.secrets import missing_secrets
from floe_deploy_assets.models.config import ChartKind, DeploymentConfig
from floe_deploy_assets.models.deployment import DeployedComponent, Health
from floe_deploy_assets.release.decide import history_table
from floe_deploy_assets.release.diff import manifest_diff
from floe_deploy_assets.release.digests import (
    CHART_DIGEST_LABEL,
    VALUES_DIGEST_LABEL,
    values_digest,
)
from floe_deploy_assets.values.generator import HelmValuesGenerator

CHARTS: tuple[ChartKind, ...] = ("platform", "jobs")
KUBERNETES_VERSIONS = ("1.28", "1.33")  # the versions manifests must be valid for
COMPILED_ARTIFACTS = dg.AssetKey("compiled_artifacts")
GROUP = "deployment"


def values_key(chart: ChartKind) -> dg.AssetKey:
    return dg.AssetKey(f"{chart}_values")


def manifests_key(chart: ChartKind) -> dg.AssetKey:
    return dg.AssetKey(f"{chart}_manifests")


def release_key(chart: ChartKind) -> dg.AssetKey:
    return dg.AssetKey(f"{chart}_release")


def environments(config: DeploymentConfig) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition(config.environments)


def generator_for(
    settings: DeploymentConfigResource, environment: str, chart: ChartKind
) -> HelmValuesGenerator:
    return values_generator(
        settings.config,
        settings.artifacts(),
        environment,
        chart,
        str(settings.config.artifacts_path),
    )


def components_table(components: Sequence[DeployedComponent]) -> str:
    rows = [
        f"| {c.type} | {c.name} | {c.replicas.ready}/{c.replicas.desired} | {c.health} "
        f"| {'yes' if c.progressing else ''} | {c.reason or ''} |"
        for c in components
    ]
    header = "| kind | name | ready | health | progressing | reason |\n|---|---|---|---|---|---|"
    return "\n".join([header, *rows]) if rows else "(no workloads)"


def unhealthy(components: Sequence[DeployedComponent]) -> list[str]:
    """The components that are not healthy (none: the release is healthy, even with no
    workloads, as floe-jobs has while no model runs)."""
    return [c.name for c in components if c.health is not Health.HEALTHY]


def release_healthy_metadata(components: Sequence[DeployedComponent]) -> dict[str, Any]:
    """The metadata of a ``release_healthy`` check, from the deploy or the health sensor."""
    return {
        "unhealthy": dg.MetadataValue.json(unhealthy(components)),
        "components": dg.MetadataValue.md(components_table(components)),
    }


def _compiled_artifacts_asset(partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=COMPILED_ARTIFACTS,
        partitions_def=partitions,
        group_name=GROUP,
        kinds={"json"},
        description="The validated CompiledArtifacts document; its data version is its digest.",
    )
    def compiled_artifacts(
        context: dg.AssetExecutionContext, deployment: DeploymentConfigResource
    ) -> dg.MaterializeResult:
        artifacts = deployment.artifacts()
        if artifacts.newer_than_known:
            context.log.warning(
                f"CompiledArtifacts {artifacts.version} is newer than this tool knows; read as 0.x"
            )
        return dg.MaterializeResult(
            data_version=dg.DataVersion(artifacts.digest),
            metadata={
                "version": artifacts.version,
                "product": artifacts.metadata.product_name,
                "digest": artifacts.digest,
                "models": len(artifacts.transforms.models) if artifacts.transforms else 0,
                "path": str(deployment.config.artifacts_path),
            },
        )

    return compiled_artifacts


def _values_asset(chart: ChartKind, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    @dg.asset(
        key=values_key(chart),
        deps=[COMPILED_ARTIFACTS],
        partitions_def=partitions,
        group_name=GROUP,
        kinds={"helm"},
        description=f"Helm values of the floe-{chart} chart for the environment.",
        check_specs=[
            dg.AssetCheckSpec("values_match_schema", asset=values_key(chart), blocking=True),
            dg.AssetCheckSpec("no_plaintext_secrets", asset=values_key(chart), blocking=True),
        ],
    )
    def values(
        context: dg.AssetExecutionContext, deployment: DeploymentConfigResource
    ) -> dg.MaterializeResult:
        generator = generator_for(deployment, context.partition_key, chart)
        problems = generator.validate()
        by_rule = {
            "values_match_schema": [p for p in problems if p.rule == "schema"],
            "no_plaintext_secrets": [p for p in problems if p.rule != "schema"],
        }
        metadata: dict[str, Any] = {
            "required_secrets": dg.MetadataValue.json(
                {s.name: list(s.keys) for s in generator.required_secrets}
            ),
        }
        if not problems:  # values that fail a secret rule may hold one: never shown
            metadata["values_digest"] = values_digest(generator.helm_values())
            metadata["leaves"] = len(generator.layered.provenance)
        return dg.MaterializeResult(
            metadata=metadata,
            check_results=[
                dg.AssetCheckResult(
                    check_name=name,
                    passed=not found,
                    severity=dg.AssetCheckSeverity.ERROR,
                    # Pointers and rules only, never the values themselves.
                    metadata={"problems": dg.MetadataValue.json([str(p) for p in found])},
                )
                for name, found in by_rule.items()
            ],
        )

    return values


def _manifests_asset(chart: ChartKind, partitions: dg.PartitionsDefinition) -> dg.AssetsDefinition:
    key = manifests_key(chart)

    @dg.asset(
        key=key,
        deps=[values_key(chart)],
        partitions_def=partitions,
        group_name=GROUP,
        kinds={"helm", "kubernetes"},
        description=f"The Kubernetes objects the floe-{chart} chart renders for the environment.",
        check_specs=[
            dg.AssetCheckSpec("manifests_valid", asset=key, blocking=True),
            dg.AssetCheckSpec("pod_security_restricted", asset=key, blocking=True),
        ],
    )
    def manifests(
        context: dg.AssetExecutionContext, deployment: DeploymentConfigResource
    ) -> dg.MaterializeResult:
        environment = context.partition_key
        generator = generator_for(deployment, environment, chart)
        ref = deployment.release(chart, environment)
        objects = render_chart(
            deployment.config.chart_path(chart),
            generator.helm_values(),
            release_name=ref.name,
            namespace=ref.namespace,
        ).objects
        invalid = validate_manifests(objects, KUBERNETES_VERSIONS)
        violations = check_pod_policy(objects)
        kinds: dict[str, int] = {}
        for obj in objects:
            kinds[obj["kind"]] = kinds.get(obj["kind"], 0) + 1
        return dg.MaterializeResult(
            metadata={"objects": len(objects), "kinds": dg.MetadataValue.json(kinds)},
            check_results=[
                dg.AssetCheckResult(
                    check_name="manifests_valid",
                    passed=not invalid,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={
                        "kubernetes_versions": ", ".join(KUBERNETES_VERSIONS),
                        "problems": dg.MetadataValue.json(
                            [
                                f"{p.object} ({p.kube_version}) {p.path}: {p.message}"
                                for p in invalid
                            ]
                        ),
                    },
                ),
                dg.AssetCheckResult(
                    check_name="pod_security_restricted",
                    passed=not violations,
                    severity=dg.AssetCheckSeverity.ERROR,
                    metadata={
                        "violations": dg.MetadataValue.json(
                            [
                                f"{v.object} {v.container or '(pod)'} [{v.rule}]: {v.message}"
                                for v in violations
                            ]
                        )
                    },
                ),
            ],
        )

    return manifests


def release_metadata(
    outcome: DeployOutcome, before_manifest: str, record: Mapping[str, Any] | None
) -> dict[str, Any]:
    release = outcome.release
    metadata: dict[str, Any] = {
        "action": str(outcome.decision.action),
        "state": str(outcome.decision.state),
        "reason": outcome.decision.reason,
        "revision": release.revision if release else 0,
        "helm_status": release.status if release else "absent",
        "chart_digest": release.labels.get(CHART_DIGEST_LABEL, "") if release else "",
        "values_digest": release.labels.get(VALUES_DIGEST_LABEL, "") if release else "",
        "components": dg.MetadataValue.md(components_table(outcome.components)),
        "manifest_diff": dg.MetadataValue.md(
            "```diff\n"
            + (manifest_diff(before_manifest, release.manifest) or "(no change)")
            + "\n```"
            if release
            else "(no release)"
        ),
    }
    if record is not None:
        metadata["platform_deployment"] = dg.MetadataValue.json(dict(record))
    if outcome.unlocked:
        metadata["unlocked"] = outcome.unlocked.reason
    if outcome.error:
        metadata["error"] = str(outcome.error)
    if outcome.remediation:
        metadata["remediation"] = f"{outcome.remediation.action}: {outcome.remediation.reason}"
    if outcome.drift:
        metadata["drift"] = dg.MetadataValue.json([str(d) for d in outcome.drift])
    return metadata


def _release_asset(
    chart: ChartKind, partitions: dg.PartitionsDefinition, upstream: Sequence[dg.AssetKey]
) -> dg.AssetsDefinition:
    key = release_key(chart)

    @dg.asset(
        key=key,
        deps=[manifests_key(chart), *upstream],
        partitions_def=partitions,
        group_name=GROUP,
        kinds={"helm", "kubernetes"},
        pool=f"floe-release-{chart}",  # one run at a time per release (and the Lease besides)
        automation_condition=dg.AutomationCondition.eager()
        & dg.AutomationCondition.all_deps_blocking_checks_passed(),
        description=f"The floe-{chart} Helm release of the environment: install, upgrade or "
        "nothing, decided from the chart and values digests, under the release lock.",
        check_specs=[dg.AssetCheckSpec("release_healthy", asset=key)],
    )
    def release(
        context: dg.AssetExecutionContext,
        deployment: DeploymentConfigResource,
        kubernetes: KubernetesResource,
    ) -> dg.MaterializeResult:
        environment = context.partition_key
        generator = generator_for(deployment, environment, chart)
        problems = generator.validate()
        if problems:
            raise dg.Failure(
                f"floe-{chart} values for {environment} fail {len(problems)} check(s); "
                "nothing was applied (see the values asset's checks)",
                metadata={"problems": dg.MetadataValue.json([str(p) for p in problems])},
            )
        ref = deployment.release(chart, environment)
        engine, cluster = kubernetes.helm(ref.cluster), kubernetes.cluster(ref.cluster)
        missing = missing_secrets(cluster.core, ref.namespace, generator.required_secrets)
        if missing:
            raise dg.Failure("nothing deployed: " + "; ".join(missing))
        before = engine.status(ref)
        outcome = deploy(
            engine,
            ref,
            deployment.config.chart_path(chart),
            generator.helm_values(),
            cluster=cluster,
            policy=deployment.policy(),
        )
        record = None
        if outcome.release is not None:
            record = outcome.platform_deployment(
                environment,
                generator.artifacts.version,  # the document these values came from
                deployed_by=f"dagster run {context.run.run_id}",
            ).model_dump(mode="json", by_alias=True)
        metadata = release_metadata(outcome, before.manifest if before else "", record)
        metadata["history"] = dg.MetadataValue.md(history_table(digest_history(engine, ref)))
        if not outcome.succeeded:
            raise dg.Failure(
                f"{ref}: {outcome.decision.action} did not reach the desired state: "
                f"{metadata.get('error') or outcome.decision.reason}",
                metadata=metadata,
            )
        return dg.MaterializeResult(
            metadata=metadata,
            check_results=[
                dg.AssetCheckResult(
                    check_name="release_healthy",
                    passed=not unhealthy(outcome.components),
                    metadata=release_healthy_metadata(outcome.components),
                )
            ],
        )

    return release


def deploy_assets(config: DeploymentConfig) -> Iterator[dg.AssetsDefinition]:
    partitions = environments(config)
    yield _compiled_artifacts_asset(partitions)
    for chart in CHARTS:
        yield _values_asset(chart, partitions)
        yield _manifests_asset(chart, partitions)
    yield _release_asset("platform", partitions, upstream=[])
    # The jobs run against the platform's collector and storage: released after it.
    yield _release_asset("jobs", partitions, upstream=[release_key("platform")])
