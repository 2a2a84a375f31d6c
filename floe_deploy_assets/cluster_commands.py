"""The commands that work on a cluster: ``floe-deploy deploy``, ``status``, ``history`` and
``uninstall`` (``run-models`` runs through ``per_release`` too). Imported only when one of them
runs: this module brings the Kubernetes client and Helm's engine, which ``values``, ``render``
and ``--help`` do without."""

from __future__ import annotations

import argparse
from collections.abc import Iterator, Sequence
from datetime import timedelta
from pathlib import Path

from kubernetes import config as kube_config

from floe_deploy_assets.cli import NotDeployedError
from floe_deploy_assets.helm.deploy import (
    DeployOutcome,
    DeployPolicy,
    deploy,
    digest_history,
    plan,
)
from floe_deploy_assets.helm.engine import ReleaseRef, SdkHelmEngine
from floe_deploy_assets.helm.sources import chart_dir as source_dir
from floe_deploy_assets.helm.uninstall import uninstall
from floe_deploy_assets.kube.access import ClusterAccess
from floe_deploy_assets.kube.errors import cluster_step
from floe_deploy_assets.kube.health import release_health
from floe_deploy_assets.kube.lease import current_holder
from floe_deploy_assets.kube.secrets import missing_secrets
from floe_deploy_assets.models.config import ChartKind, ConfigError
from floe_deploy_assets.models.deployment import Health
from floe_deploy_assets.offline_commands import validated_generators
from floe_deploy_assets.release.decide import Action, Remediation, history_table
from floe_deploy_assets.release.diff import manifest_diff
from floe_deploy_assets.values.generator import HelmValuesGenerator


def per_release(
    args: argparse.Namespace, charts: Sequence[ChartKind] = ("platform", "jobs")
) -> Iterator[tuple[HelmValuesGenerator, ReleaseRef, SdkHelmEngine, ClusterAccess]]:
    """For each release asked for (the platform first: the jobs use its collector and storage;
    then each selected data product's jobs): the validated values generator, the release, and
    the cluster access of the environment."""
    # Every release's values are validated before the first release is touched: values of the
    # jobs that fail a check must not leave the platform deployed (nothing half-applied).
    generators = validated_generators(args, getattr(args, "chart", None) or charts)
    mapping = generators[0].mapping
    cluster = _cluster_access(args.kubeconfig, mapping.cluster, args.env)
    engine = SdkHelmEngine(args.kubeconfig, context=mapping.cluster)
    for generator in generators:
        ref = ReleaseRef(generator.release_name, mapping.namespace_for(args.env), mapping.cluster)
        yield generator, ref, engine, cluster


def _cluster_access(kubeconfig: Path | None, context: str, environment: str) -> ClusterAccess:
    """The environment's cluster, or ConfigError (bad input, exit 2) naming the kubeconfig and
    context when the kubeconfig cannot be read or has no such context."""
    try:
        return ClusterAccess.from_kubeconfig(kubeconfig, context=context)
    except (kube_config.ConfigException, OSError) as error:
        where = str(kubeconfig) if kubeconfig else "$KUBECONFIG or ~/.kube/config"
        raise ConfigError(
            f"kubeconfig {where} cannot be used for context {context!r} (the cluster of "
            f"environment {environment}): {error}; pass --kubeconfig with a kubeconfig that "
            "has this context"
        ) from None


def _policy(args: argparse.Namespace) -> DeployPolicy:
    return DeployPolicy(
        remediation=Remediation(args.remediation),
        timeout=timedelta(seconds=args.timeout),
        lock_wait=timedelta(seconds=args.lock_wait),
        correct_drift=args.correct_drift,
    )


def deploy_command(args: argparse.Namespace) -> None:
    policy = _policy(args)
    platform = None  # the platform's values, release and cluster, once it is deployed
    for generator, ref, engine, cluster in per_release(args):
        chart_dir = source_dir(generator.config, generator.chart)
        values = generator.helm_values()
        if args.dry_run:
            _print_plan(generator.title, engine, ref, chart_dir, values, policy)
            continue
        with cluster_step("checking the Secrets it needs", ref):
            missing = missing_secrets(cluster.core, ref.namespace, generator.required_secrets)
        if missing:
            raise ConfigError("nothing deployed: " + "; ".join(missing))
        with cluster_step("deploying", ref):
            outcome = deploy(engine, ref, chart_dir, values, cluster=cluster, policy=policy)
        _print_outcome(generator.title, outcome)
        if not outcome.succeeded:
            # The jobs depend on the platform: nothing more is deployed after a failure.
            raise NotDeployedError
        if generator.chart == "platform" and not args.dry_run:
            platform = (generator, ref, cluster)
    if platform is not None and not args.product:  # every product's release is deployed
        for removed in _removed_products(*platform):
            print(
                f"note: {removed} belongs to no data product of {args.config} (was its product "
                f"removed?); `floe-deploy uninstall --env {args.env} --removed-products` "
                "uninstalls it"
            )


def _print_plan(
    chart: str,
    engine: SdkHelmEngine,
    ref: ReleaseRef,
    chart_dir: Path,
    values: dict,
    policy: DeployPolicy,
) -> None:
    decision = plan(engine, ref, chart_dir, values, policy)
    print(f"{chart}: {decision.state} -> would {decision.action}: {decision.reason}")
    if decision.action in (Action.INSTALL, Action.UPGRADE, Action.RETRY_UPGRADE):
        current = engine.status(ref)
        diff = manifest_diff(
            current.manifest if current else "", engine.preview(ref, chart_dir, values)
        )
        print(diff or "  (the manifest is unchanged)")


def _print_outcome(chart: str, outcome: DeployOutcome) -> None:
    if outcome.unlocked:
        print(f"{chart}: unlocked: {outcome.unlocked.reason}")
    release = outcome.release
    where = f"revision {release.revision} {release.status}" if release else "no release"
    decision = outcome.decision
    print(f"{chart}: {decision.state} -> {decision.action}: {decision.reason} ({where})")
    if outcome.error is not None:
        print(f"{chart}: FAILED: {outcome.error}")
        remediation = outcome.remediation
        # Only what was done in this run: a rollback (a retry or a hold is the next run's).
        if remediation is not None and remediation.action is Action.ROLLBACK:
            print(f"{chart}: remediation {remediation.action}: {remediation.reason}")
        for component in outcome.components:
            if component.health != Health.HEALTHY:
                reason = component.reason or ""
                print(f"  {component.type} {component.name}: {component.health} {reason}")


def status_command(args: argparse.Namespace) -> None:
    for generator, ref, engine, cluster in per_release(args):
        chart = generator.title
        release = engine.status(ref)
        if release is None:
            print(f"{chart}: {ref} is not installed")
            continue
        print(
            f"{chart}: {ref}: revision {release.revision} {release.status} "
            f"(chart {release.chart_version})"
        )
        with cluster_step("reading the release's Lease", ref):
            holder = current_holder(cluster.coordination, ref.namespace, ref.name)
        if holder is not None:
            print(f"  being deployed by {holder.identity} (lock renewed {holder.renewed_at})")
        with cluster_step("reading the workloads' health", ref):
            components = release_health(cluster.api, ref.namespace, ref.name)
        for component in components:
            counts = component.replicas
            print(
                f"  {component.type:<12} {component.name:<40} "
                f"{counts.ready}/{counts.desired} ready  {component.health:<9} "
                f"{component.reason or ''}"
            )


def history_command(args: argparse.Namespace) -> None:
    for generator, ref, engine, _ in per_release(args):
        print(f"{generator.title}: {ref}")
        print(history_table(digest_history(engine, ref)))


def _removed_products(
    platform: HelmValuesGenerator, known: ReleaseRef, cluster: ClusterAccess
) -> list[ReleaseRef]:
    """The jobs releases in the environment's namespace whose data product the configuration
    no longer lists: named as a product's would be (``<releaseName>-<product>``, with
    ``artifacts.paths``) and not one of the products' now. ``platform``: the platform's values
    (made from every product), ``known``: its release."""
    config, environment = platform.config, platform.environment
    if not config.artifacts.per_product_names:
        return []
    current = {config.release_name("jobs", environment, p.slug) for p in platform.products}
    # What a product's release name has around the product's slug.
    prefix, suffix = config.release_name("jobs", environment, "\0").split("\0")
    with cluster_step("listing Helm's releases", known):
        records = cluster.core.list_namespaced_secret(known.namespace, label_selector="owner=helm")
    names = {record.metadata.labels.get("name", "") for record in records.items}
    return [
        ReleaseRef(name, known.namespace, known.cluster)
        for name in sorted(names - current)
        if name.startswith(prefix) and name.endswith(suffix) and len(name) > len(prefix + suffix)
    ]


def uninstall_command(args: argparse.Namespace) -> None:
    if args.removed_products:
        _uninstall_removed_products(args)
        return
    # The jobs first: they use the platform's services. With --product, only those products'
    # jobs: the platform serves the others.
    charts: tuple[ChartKind, ...] = ("jobs",) if args.product else ("jobs", "platform")
    for generator, ref, engine, cluster in per_release(args, charts=charts):
        chart = generator.title
        with cluster_step("uninstalling", ref):
            outcome = uninstall(engine, ref, cluster, delete_data=args.delete_data)
        print(f"{chart}: {ref} {'uninstalled' if outcome.uninstalled else 'was not installed'}")
        for claim in outcome.deleted_claims:
            print(f"  deleted PersistentVolumeClaim {claim}")
        for claim in outcome.kept_claims:
            print(f"  kept PersistentVolumeClaim {claim} (its data); --delete-data deletes it")


def _uninstall_removed_products(args: argparse.Namespace) -> None:
    if args.product or args.chart:
        raise ConfigError(
            "--removed-products uninstalls the jobs releases of products no longer configured; "
            "it takes no --product or --chart"
        )
    generator, platform, engine, cluster = next(per_release(args, charts=("platform",)))
    removed = _removed_products(generator, platform, cluster)
    if not removed:
        print(f"no jobs release of a removed data product in namespace {platform.namespace}")
    for ref in removed:
        with cluster_step("uninstalling", ref):
            uninstall(engine, ref, cluster, delete_data=args.delete_data)
        print(f"jobs: {ref} uninstalled (its data product is no longer configured)")
