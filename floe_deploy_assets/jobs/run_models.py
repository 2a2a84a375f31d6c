"""``floe-deploy run-models``: run an environment's dbt models, one Kubernetes Job each (the
parser is ``floe_deploy_assets.jobs.cli``; this module is imported only when the command runs).

Exit codes as for the other commands (``floe_deploy_assets.cli``): 3 when a model failed or
the run could not go on (``NotDeployedError``: the table or the error is already printed), 2 for
bad input, 130/143 when stopped by SIGINT/SIGTERM (the run's Jobs are deleted first).
"""

from __future__ import annotations

import argparse
import sys

from floe_deploy_assets.cli import NotDeployedError
from floe_deploy_assets.cluster_commands import per_release
from floe_deploy_assets.helm.sources import chart_dir
from floe_deploy_assets.jobs.plan import Outcome, select_models
from floe_deploy_assets.jobs.runner import JobRunner, RunnerError, RunnerSettings, RunReport
from floe_deploy_assets.jobs.spec import JobTemplate, check_run_id, new_run_id, with_job_settings
from floe_deploy_assets.kube.errors import cluster_step
from floe_deploy_assets.models.config import ConfigError
from floe_deploy_assets.values.generator import HelmValuesGenerator


def run_models_command(args: argparse.Namespace) -> None:
    """Each selected product's models in turn (``--select`` names models of any of them)."""
    run_id = check_run_id(args.run_id) if args.run_id else new_run_id()
    releases = list(per_release(args, charts=("jobs",)))
    selections = _selections([generator for generator, *_ in releases], args.select)
    failed = False
    for (generator, ref, _, cluster), models in zip(releases, selections, strict=True):
        if not models:
            continue
        product = generator.product
        values = with_job_settings(generator.helm_values(), command=args.dbt_command)
        settings = RunnerSettings(**_given_settings(args))
        jobs_chart = chart_dir(generator.config, "jobs")
        product_run = product.run_id(run_id)
        with JobTemplate(jobs_chart, values, release_name=ref.name, namespace=ref.namespace) as t:
            print(
                f"run {product_run}: {len(models)} models of {product.name} in namespace "
                f"{ref.namespace}",
                flush=True,
            )
            runner = JobRunner(cluster.api, t, settings)
            try:
                with cluster_step(f"running the models (run {product_run})", ref):
                    report = runner.run(models, product_run)
            except RunnerError as error:
                print(
                    f"floe-deploy: running the models (run {product_run}) for {ref} failed: "
                    f"{error}",
                    file=sys.stderr,
                )
                raise NotDeployedError from None
            except KeyboardInterrupt:  # SIGINT or SIGTERM: the runner cleaned up first
                print(
                    f"floe-deploy: run {product_run}: {runner.abandoned or 'no Job created'}",
                    file=sys.stderr,
                )
                raise
        print_report(report)
        failed = failed or bool(report.failed)
    if failed:
        raise NotDeployedError


def _selections(
    generators: list[HelmValuesGenerator], select: list[str] | None
) -> list[dict[str, tuple[str, ...]]]:
    """The models to run of each product: all, or those named by ``--select`` (each name must
    be a model of at least one of the products)."""
    documents = []
    for generator in generators:
        transforms = generator.artifacts.transforms
        if transforms is None:
            raise ConfigError(
                f"{generator.product.source}: the CompiledArtifacts have no transforms.models"
            )
        documents.append(transforms.models_in_dependency_order())
    if select is None or len(documents) == 1:
        return [select_models(models, select) for models in documents]
    known = {model.name for models in documents for model in models}
    unknown = [name for name in select if name not in known]
    if unknown:
        raise ConfigError(
            f"--select {', '.join(unknown)}: no such model in the selected products' "
            "transforms.models"
        )
    return [
        select_models(models, [m.name for m in models if m.name in set(select)])
        for models in documents
    ]


def _given_settings(args: argparse.Namespace) -> dict[str, int]:
    """The runner settings given on the command line; the parser leaves the others None."""
    names = ("concurrency", "schedule_deadline", "start_deadline")
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def print_report(report: RunReport) -> None:
    rows = [
        (
            r.model,
            r.job_name,
            r.phase,
            f"{r.duration:.1f}s" if r.duration is not None else "-",
            f"{r.reason}: {r.message}" if r.outcome is not Outcome.SUCCEEDED else "",
        )
        for r in report.results
    ]
    header = ("MODEL", "JOB", "PHASE", "DURATION", "REASON")
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(4)]
    for row in [header, *rows]:
        padded = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        print("  ".join([*padded, row[4]]).rstrip())
    for result in report.failed:
        logs = result.job.status.logs if result.job and result.job.status else None
        if logs:
            print(f"\n--- last log lines of {result.model} ({result.job_name}) ---")
            print(logs.rstrip())
