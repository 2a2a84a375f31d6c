"""The deployment assets, partitioned by environment: the CompiledArtifacts input, then per chart
(platform, jobs) its values, its rendered manifests and its Helm release.

The values and manifest checks are blocking: in the run that materializes them, a failing check
stops the release step, and the releases' automation waits for them to pass. The release asset
validates its inputs again before applying, so a release materialized on its own never applies
values that fail a check either.
"""

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import dagster as dg

from floe_deploy_assets.checks.manifest_secrets import find_manifest_secrets
from floe_deploy_assets.checks.manifests import validate_manifests
from floe_deploy_assets.checks.pod_policy import check_pod_policy
from floe_deploy_assets.defs.resources import DeploymentConfigResource, KubernetesResource
from floe_deploy_assets.helm.deploy import DeployOutcome, deploy, digest_history
from floe_deploy_assets.helm.engine import ReleaseRef
from floe_deploy_assets.helm.inputs import values_generator
from floe_deploy_assets.helm.packaging import chart_digest
from floe_deploy_assets.helm.render import render_chart
from floe_deploy_assets.helm.sources import chart_dir
from floe_deploy_assets.kube.health import release_health
from floe_deploy_assets.kube.secrets import missing_secrets
from floe_deploy_assets.models.config import ChartKind, DeploymentConfig
from floe_deploy_assets.models.deployment import DeployedComponent, Health
from floe_deploy_assets.models.products import DataProduct
from floe_deploy_assets.release.decide import history_table
from floe_deploy_assets.release.diff import release_change_markdown
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
RELEASE_HEALTH_JOB = "release_health"  # the release_healthy checks alone, for the health sensor
OWNERS = ["team:platform"]
RELEASE_HEALTHY = "release_healthy"
# What each check means, shown beside its result in the UI.
CHECK_DESCRIPTIONS = {
    "values_match_schema": "The values validate against the chart's values.schema.json (generated "
    "from the pydantic values models); findings name the JSON pointer.",
    "no_plaintext_secrets": "No credential literal anywhere in the values, only references to "
    "Secrets the operator provides; findings name the pointer, never the value.",
    "manifests_valid": "Every rendered object validates strictly against the Kubernetes "
    f"versions {', '.join(KUBERNETES_VERSIONS)}.",
    "pod_security_restricted": "Every pod spec passes Pod Security 'restricted', has requests "
    "and limits, probes on long-running containers, pinned images and a read-only root "
    "filesystem (Kubernetes 1.20 has no Pod Security admission to enforce it).",
    "manifests_hold_no_credentials": "No rendered object but a Secret's payload carries a "
    "credential (the secret rules over every string: ConfigMaps, annotations, labels, env "
    "values, arguments); findings name the object and pointer, never the value.",
    RELEASE_HEALTHY: "Every workload of the release is healthy (kstatus rules, strict on Jobs "
    "and Pods), evaluated after each deploy and whenever the health sensor sees a change; "
    "an environment with no release fails with a warning, never passes.",
}


@dataclass(frozen=True)
class Release:
    """One of the Helm releases each environment has in the graph: the platform, or the jobs
    of a data product. ``product`` is the product's slug when products are named
    (``artifacts.paths``): its assets are then keyed under it (``customer-360/jobs_release``);
    the one product of ``artifacts.path`` keeps the plain keys (``jobs_release``)."""

    chart: ChartKind
    product: str | None = None

    def _key(self, name: str) -> dg.AssetKey:
        return dg.AssetKey([self.product, name]) if self.product else dg.AssetKey(name)

    @property
    def values_key(self) -> dg.AssetKey:
        return self._key(f"{self.chart}_values")

    @property
    def manifests_key(self) -> dg.AssetKey:
        return self._key(f"{self.chart}_manifests")

    @property
    def release_key(self) -> dg.AssetKey:
        return self._key(f"{self.chart}_release")

    @property
    def healthy_key(self) -> dg.AssetCheckKey:
        return dg.AssetCheckKey(self.release_key, RELEASE_HEALTHY)

    @property
    def artifacts_key(self) -> dg.AssetKey:
        """The CompiledArtifacts asset of the product (of the only one, for the platform of
        ``artifacts.path``)."""
        return self._key(COMPILED_ARTIFACTS.path[0])

    @property
    def title(self) -> str:
        return f"floe-{self.chart}" + (f" of {self.product}" if self.product else "")

    def __str__(self) -> str:  # in cursors, run keys and messages: platform, jobs, jobs/<p>
        return f"{self.chart}/{self.product}" if self.product else self.chart

    def ref(self, deployment: DeploymentConfigResource, environment: str) -> ReleaseRef:
        return deployment.release(self.chart, environment, self.product)

    def data_product(self, deployment: DeploymentConfigResource) -> DataProduct:
        """The product of these jobs, as its document is now."""
        products = deployment.products()
        found = [p for p in products if self.product in (None, p.slug)]
        if self.chart != "jobs" or not found:
            raise dg.Failure(
                f"data product {self.product} is no longer in {deployment.path}: reload the "
                "code location"
            )
        return found[0]

    def generator(
        self, deployment: DeploymentConfigResource, environment: str
    ) -> HelmValuesGenerator:
        """The values of this release in ``environment``, from the products as they are now:
        the platform's from all of them, the jobs' from their product's."""
        products = (
            [self.data_product(deployment)] if self.chart == "jobs" else deployment.products()
        )
        return values_generator(deployment.config, products, environment, self.chart)


def releases(products: Sequence[DataProduct]) -> list[Release]:
    """The releases of every environment, in deploy order: the platform, then each product's
    jobs."""
    return [
        Release("platform"),
        *(Release("jobs", p.slug if p.named_objects else None) for p in products),
    ]


def values_key(chart: ChartKind, product: str | None = None) -> dg.AssetKey:
    return Release(chart, product).values_key


def manifests_key(chart: ChartKind, product: str | None = None) -> dg.AssetKey:
    return Release(chart, product).manifests_key


def release_key(chart: ChartKind, product: str | None = None) -> dg.AssetKey:
    return Release(chart, product).release_key


def release_healthy_key(chart: ChartKind, product: str | None = None) -> dg.AssetCheckKey:
    return Release(chart, product).healthy_key


def check_spec(
    name: str, asset: dg.AssetKey, partitions: dg.PartitionsDefinition
) -> dg.AssetCheckSpec:
    """A blocking check of one environment: its results carry the environment's partition, so
    the UI shows each environment's state on its own."""
    return dg.AssetCheckSpec(
        name,
        asset=asset,
        blocking=True,
        description=CHECK_DESCRIPTIONS[name],
        partitions_def=partitions,
    )


def _common(partitions: dg.PartitionsDefinition, *kinds: str) -> dict[str, Any]:
    """What every deployment asset declares: the environment partitions, group, owners, kinds."""
    return {
        "partitions_def": partitions,
        "group_name": GROUP,
        "owners": OWNERS,
        "kinds": set(kinds),
    }


def environments(config: DeploymentConfig) -> dg.StaticPartitionsDefinition:
    return dg.StaticPartitionsDefinition(config.environments)


def components_table(components: Sequence[DeployedComponent]) -> str:
    rows = [
        f"| {c.type} | {c.name} | {c.replicas.ready}/{c.replicas.desired} | {c.health} "
        f"| {'yes' if c.progressing else ''} | {c.reason or ''} |"
        for c in components
    ]
    header = "| kind | name | ready | health | progressing | reason |\n|---|---|---|---|---|---|"
    return "\n".join([header, *rows]) if rows else "(no workloads)"


def release_healthy_result(
    kubernetes: KubernetesResource,
    deployment: DeploymentConfigResource,
    release: Release,
    environment: str,
) -> dg.AssetCheckResult:
    """The release's health as it is now. No release is a failure (a warning: nothing was
    deployed there), never a pass: "(no workloads)" of a release that does not exist is not
    health. A cluster that cannot be reached raises (the retries inside are spent): an error of
    the check's execution, not a verdict on the release."""
    ref = release.ref(deployment, environment)
    helm_release = kubernetes.helm(ref.cluster).status(ref)
    if helm_release is None:
        return dg.AssetCheckResult(
            passed=False,
            severity=dg.AssetCheckSeverity.WARN,
            description=f"no release {ref.name} in namespace {ref.namespace}: not deployed",
            metadata={"release": "absent", "namespace": ref.namespace},
        )
    components = release_health(kubernetes.cluster(ref.cluster).api, ref.namespace, ref.name)
    unhealthy = [c for c in components if c.health is not Health.HEALTHY]
    return dg.AssetCheckResult(
        passed=not unhealthy,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            "; ".join(f"{c.type} {c.name}: {c.health} {c.reason or ''}".strip() for c in unhealthy)
            if unhealthy
            else f"{len(components)} workload(s) healthy"
            if components
            else "healthy: the release runs no workload (floe-jobs does while no model runs)"
        ),
        metadata={
            "revision": helm_release.revision,
            "helm_status": helm_release.status,
            "unhealthy": dg.MetadataValue.json([c.name for c in unhealthy]),
            "components": dg.MetadataValue.md(components_table(components)),
        },
    )


def _release_healthy_check(
    release: Release, partitions: dg.PartitionsDefinition
) -> dg.AssetChecksDefinition:
    @dg.asset_check(
        asset=release.release_key,
        name=RELEASE_HEALTHY,
        partitions_def=partitions,
        description=CHECK_DESCRIPTIONS[RELEASE_HEALTHY],
    )
    def release_healthy(
        context: dg.AssetCheckExecutionContext,
        deployment: DeploymentConfigResource,
        kubernetes: KubernetesResource,
    ) -> dg.AssetCheckResult:
        return release_healthy_result(kubernetes, deployment, release, context.partition_key)

    return release_healthy


def _compiled_artifacts_asset(
    jobs: Release, partitions: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    """The document of the product whose jobs release is ``jobs``."""

    @dg.asset(
        key=jobs.artifacts_key,
        **_common(partitions, "json"),
        description="The validated CompiledArtifacts document of the data product; its data "
        "version is its digest.",
    )
    def compiled_artifacts(
        context: dg.AssetExecutionContext, deployment: DeploymentConfigResource
    ) -> dg.MaterializeResult:
        product = jobs.data_product(deployment)
        artifacts = product.artifacts
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
                "path": str(product.source),
            },
        )

    return compiled_artifacts


def _values_asset(
    release: Release,
    partitions: dg.PartitionsDefinition,
    chart_version: str,
    documents: Sequence[dg.AssetKey],
) -> dg.AssetsDefinition:
    """``documents``: the CompiledArtifacts assets the values are made from."""

    @dg.asset(
        key=release.values_key,
        deps=documents,
        **_common(partitions, "helm"),
        code_version=chart_version,
        description=f"Helm values of {release.title} for the environment.",
        check_specs=[
            check_spec("values_match_schema", release.values_key, partitions),
            check_spec("no_plaintext_secrets", release.values_key, partitions),
        ],
    )
    def values(
        context: dg.AssetExecutionContext, deployment: DeploymentConfigResource
    ) -> dg.MaterializeResult:
        generator = release.generator(deployment, context.partition_key)
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
        digest = None
        if not problems:  # values that fail a secret rule may hold one: never shown
            digest = values_digest(generator.helm_values())
            metadata["values_digest"] = digest
            metadata["leaves"] = len(generator.layered.provenance)
        return dg.MaterializeResult(
            metadata=metadata,
            data_version=dg.DataVersion(digest) if digest else None,
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


def _manifests_asset(
    release: Release, partitions: dg.PartitionsDefinition, chart_version: str
) -> dg.AssetsDefinition:
    key = release.manifests_key

    @dg.asset(
        key=key,
        deps=[release.values_key],
        **_common(partitions, "helm", "kubernetes"),
        code_version=chart_version,
        description=f"The Kubernetes objects {release.title} renders for the environment.",
        check_specs=[
            check_spec("manifests_valid", key, partitions),
            check_spec("pod_security_restricted", key, partitions),
            check_spec("manifests_hold_no_credentials", key, partitions),
        ],
    )
    def manifests(
        context: dg.AssetExecutionContext, deployment: DeploymentConfigResource
    ) -> dg.MaterializeResult:
        environment = context.partition_key
        generator = release.generator(deployment, environment)
        ref = release.ref(deployment, environment)
        objects = render_chart(
            chart_dir(deployment.config, release.chart),
            generator.helm_values(),
            release_name=ref.name,
            namespace=ref.namespace,
        ).objects
        invalid = validate_manifests(objects, KUBERNETES_VERSIONS)
        violations = check_pod_policy(objects)
        credentials = find_manifest_secrets(objects)
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
                dg.AssetCheckResult(
                    check_name="manifests_hold_no_credentials",
                    passed=not credentials,
                    severity=dg.AssetCheckSeverity.ERROR,
                    # Object, pointer and rule only, never the value.
                    metadata={"findings": dg.MetadataValue.json([str(f) for f in credentials])},
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
        # An install: the objects it created by kind, then the manifest; an upgrade: the
        # objects added, changed and removed, then each one's diff.
        "manifest_diff": dg.MetadataValue.md(
            release_change_markdown(before_manifest, release.manifest)
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


def launched_by(run: dg.DagsterRun) -> str:
    """What started the run, in words: a schedule, a sensor or automation, or a launch of a job
    (the UI's asset pages launch Dagster's hidden asset job, whose runs show "Job: None")."""
    tags = run.tags
    if "dagster/schedule_name" in tags:
        return f"schedule {tags['dagster/schedule_name']}"
    if "dagster/sensor_name" in tags:
        return f"sensor {tags['dagster/sensor_name']}"
    if run.job_name.startswith("__ASSET_JOB"):
        return "a launch from an asset page (Dagster's asset job)"
    return f"job {run.job_name}"


def _release_asset(
    release: Release,
    partitions: dg.PartitionsDefinition,
    chart_version: str,
    upstream: Sequence[dg.AssetKey],
) -> dg.AssetsDefinition:
    key = release.release_key

    @dg.asset(
        key=key,
        deps=[release.manifests_key, *upstream],
        **_common(partitions, "helm", "kubernetes"),
        code_version=chart_version,
        # One run at a time per release (and the Lease besides).
        pool=f"floe-release-{release.chart}" + (f"-{release.product}" if release.product else ""),
        automation_condition=dg.AutomationCondition.eager()
        & dg.AutomationCondition.all_deps_blocking_checks_passed(),
        description=f"The Helm release of {release.title} in the environment: install, "
        "upgrade or nothing, decided from the chart and values digests, under the release lock.",
    )
    def deploy_release(
        context: dg.AssetExecutionContext,
        deployment: DeploymentConfigResource,
        kubernetes: KubernetesResource,
    ) -> dg.MaterializeResult:
        environment = context.partition_key
        generator = release.generator(deployment, environment)
        problems = generator.validate()
        if problems:
            raise dg.Failure(
                f"{release.title} values for {environment} fail {len(problems)} check(s); "
                "nothing was applied (see the values asset's checks)",
                metadata={"problems": dg.MetadataValue.json([str(p) for p in problems])},
            )
        ref = release.ref(deployment, environment)
        engine, cluster = kubernetes.helm(ref.cluster), kubernetes.cluster(ref.cluster)
        missing = missing_secrets(cluster.core, ref.namespace, generator.required_secrets)
        if missing:
            raise dg.Failure("nothing deployed: " + "; ".join(missing))
        before = engine.status(ref)
        outcome = deploy(
            engine,
            ref,
            chart_dir(deployment.config, release.chart),
            generator.helm_values(),
            cluster=cluster,
            policy=deployment.policy(),
        )
        record = None
        if outcome.release is not None:
            record = outcome.platform_deployment(
                environment,
                generator.artifacts_version,  # the documents these values came from
                deployed_by=f"dagster run {context.run.run_id}",
            ).model_dump(mode="json", by_alias=True)
        metadata = release_metadata(outcome, before.manifest if before else "", record)
        metadata["history"] = dg.MetadataValue.md(history_table(digest_history(engine, ref)))
        metadata["launched_by"] = launched_by(context.run)
        if not outcome.succeeded:
            raise dg.Failure(
                f"{ref}: {outcome.decision.action} did not reach the desired state: "
                f"{metadata.get('error') or outcome.decision.reason}",
                metadata=metadata,
            )
        return dg.MaterializeResult(metadata=metadata)

    return deploy_release


def deploy_assets(
    config: DeploymentConfig, products: Sequence[DataProduct]
) -> Iterator[dg.AssetsDefinition | dg.AssetChecksDefinition]:
    partitions = environments(config)
    # A chart's digest is the code version of what is made from it: a changed chart shows as
    # changed code in the UI (the values digest of each environment is its data version).
    versions = {chart: chart_digest(chart_dir(config, chart)) for chart in CHARTS}
    platform, *jobs = releases(products)
    documents = [release.artifacts_key for release in jobs]
    for release in jobs:
        yield _compiled_artifacts_asset(release, partitions)
    for release in (platform, *jobs):
        version = versions[release.chart]
        own = documents if release is platform else [release.artifacts_key]
        yield _values_asset(release, partitions, version, own)
        yield _manifests_asset(release, partitions, version)
        yield _release_healthy_check(release, partitions)
        # The jobs run against the platform's collector and storage: released after it.
        upstream = [] if release is platform else [platform.release_key]
        yield _release_asset(release, partitions, version, upstream)
