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
from floe_deploy_assets.cluster_commands import per_chart
from floe_deploy_assets.jobs.plan import Outcome, select_models
from floe_deploy_assets.jobs.runner import JobRunner, RunnerError, RunnerSettings, RunReport
from floe_deploy_assets.jobs.spec import JobTemplate, check_run_id, new_run_id, with_job_settings
from floe_deploy_assets.kube.errors import cluster_step
from floe_deploy_assets.models.config import ConfigError


def run_models_command(args: argparse.Namespace) -> None:
    run_id = check_run_id(args.run_id) if args.run_id else new_run_id()
    for _, generator, ref, _, cluster in per_chart(args, charts=("jobs",)):
        transforms = generator.artifacts.transforms
        if transforms is None:
            raise ConfigError(f"the CompiledArtifacts for {args.env} have no transforms.models")
        models = select_models(transforms.models_in_dependency_order(), args.select)
        values = with_job_settings(generator.helm_values(), command=args.dbt_command)
        settings = RunnerSettings(**_given_settings(args))
        chart_dir = generator.config.chart_path("jobs")
        with JobTemplate(chart_dir, values, release_name=ref.name, namespace=ref.namespace) as t:
            print(f"run {run_id}: {len(models)} models in namespace {ref.namespace}", flush=True)
            runner = JobRunner(cluster.api, t, settings)
            try:
                with cluster_step(f"running the models (run {run_id})", ref):
                    report = runner.run(models, run_id)
            except RunnerError as error:
                print(
                    f"floe-deploy: running the models (run {run_id}) for {ref} failed: {error}",
                    file=sys.stderr,
                )
                raise NotDeployedError from None
            except KeyboardInterrupt:  # SIGINT or SIGTERM: the runner cleaned up first
                print(
                    f"floe-deploy: run {run_id}: {runner.abandoned or 'no Job created'}",
                    file=sys.stderr,
                )
                raise
        print_report(report)
        if report.failed:
            raise NotDeployedError


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
