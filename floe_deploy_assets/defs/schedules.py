"""Scheduled redeploys, one schedule per environment on the cron of ``redeploySchedules``.

A tick asks first whether a deploy would do anything: the desired chart and values digests
against what Helm has deployed, and the live objects against the release manifest. When every
release is in sync the tick is skipped with that reason, so a no-op redeploy writes no run, no
materialization and no check result; otherwise it requests a ``deploy_platform`` run for the
environment, saying what changed.

Building them never stops the code location from loading: the configuration refuses a cron
Dagster would refuse (models/rules.py), and should one still fail, that environment's schedule
is left out with a logged warning and every other environment keeps its own.
"""

import logging

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from floe_deploy_assets.defs.deploy_assets import releases
from floe_deploy_assets.defs.resources import DeploymentConfigResource, KubernetesResource
from floe_deploy_assets.helm.deploy import SyncReport, sync_report
from floe_deploy_assets.helm.sources import chart_dir
from floe_deploy_assets.kube.retry import describe
from floe_deploy_assets.models.config import DeploymentConfig
from floe_deploy_assets.models.rules import echo

REASON_TAG = "floe.dev/redeploy-reason"
log = logging.getLogger(__name__)


def schedule_name(environment: str) -> str:
    """``redeploy_<environment>``; Dagster names allow no '-', which environments may have (and
    environments have no '_', so the names stay distinct)."""
    return f"redeploy_{environment.replace('-', '_')}"


def environment_sync(
    deployment: DeploymentConfigResource, kubernetes: KubernetesResource, environment: str
) -> dict[str, SyncReport]:
    """Each release of the environment (``platform``, ``jobs`` or ``jobs/<product>``): would
    a deploy change it, and why."""
    reports: dict[str, SyncReport] = {}
    for release in releases(deployment.products()):
        ref = release.ref(deployment, environment)
        reports[str(release)] = sync_report(
            kubernetes.helm(ref.cluster),
            ref,
            chart_dir(deployment.config, release.chart),
            release.generator(deployment, environment).helm_values(),
            kubernetes.cluster(ref.cluster),
            deployment.policy(),
        )
    return reports


def redeploy_schedule(
    job: UnresolvedAssetJobDefinition, environment: str, cron: str
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=schedule_name(environment),
        job=job,
        cron_schedule=cron,
        description=f"Redeploy {environment} when its chart or values changed or its live "
        "objects drifted; a tick that finds every release in sync is skipped with that reason "
        "and writes nothing.",
    )
    def redeploy(
        context: dg.ScheduleEvaluationContext,
        deployment: DeploymentConfigResource,
        kubernetes: KubernetesResource,
    ) -> dg.RunRequest | dg.SkipReason:
        try:
            reports = environment_sync(deployment, kubernetes, environment)
        except Exception as error:  # the cluster did not answer: no verdict, no run
            return dg.SkipReason(
                f"could not tell whether {environment} is in sync "
                f"({type(error).__name__}: {describe(error)}); the next tick asks again"
            )
        changed = {chart: report for chart, report in reports.items() if not report.in_sync}
        if not changed:
            return dg.SkipReason(
                f"{environment} is in sync, nothing to deploy: "
                + "; ".join(f"{chart}: {report}" for chart, report in reports.items())
            )
        reason = "; ".join(f"{chart}: {report}" for chart, report in changed.items())
        context.log.info(f"redeploying {environment}: {reason}")
        tick = context.scheduled_execution_time
        return dg.RunRequest(
            run_key=f"redeploy-{environment}-{tick.isoformat() if tick else 'manual'}",
            partition_key=environment,
            tags={REASON_TAG: reason[:1000]},
        )

    return redeploy


def redeploy_schedules(
    job: UnresolvedAssetJobDefinition, config: DeploymentConfig
) -> list[dg.ScheduleDefinition]:
    """Each environment's redeploy schedule; one that cannot be built is left out, with a
    warning naming the environment, and the others are kept."""
    schedules = []
    for environment in config.environments:
        cron = config.redeploy_cron(environment)
        try:
            schedules.append(redeploy_schedule(job, environment, cron))
        except Exception as error:
            log.warning(
                "no redeploy schedule for environment %s: its cron %s was refused (%s: %s); "
                "the other environments' schedules are loaded",
                environment,
                echo(cron),
                type(error).__name__,
                str(error)[:300],
            )
    return schedules
