"""The parser of ``floe-deploy run-models``. ``floe_deploy_assets.cli`` builds it for every
command, ``--help`` and ``values`` included, so it imports nothing heavy: the command itself,
which needs the Kubernetes client and Helm's renderer, is ``floe_deploy_assets.jobs.run_models``,
imported only when it runs.
``floe_deploy_assets.cli`` is only read when a function here runs, never at import,
so that module may import this one at its top.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

import floe_deploy_assets.cli as base_cli


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def add_run_models_parser(subparsers: Any) -> None:
    """The runner's settings are left None when not given: ``run_models_command`` fills in
    ``RunnerSettings``' defaults, whose module the parser does not import."""
    command = subparsers.add_parser(
        "run-models", help="run an environment's dbt models as Jobs, in dependency order"
    )
    base_cli._add_input_arguments(command, with_chart=False)  # the models are the jobs chart's
    command.add_argument(
        "--kubeconfig",
        type=Path,
        help="kubeconfig (default: $KUBECONFIG or ~/.kube/config); the environment's cluster "
        "mapping names its context",
    )
    command.add_argument(
        "--select", nargs="+", metavar="MODEL", help="only these models (default: all)"
    )
    command.add_argument(
        "--run-id", help="run id, recorded as a label; the same id adopts the run's Jobs"
    )
    command.add_argument("--concurrency", type=_positive, help="Jobs at once")
    command.add_argument(
        "--dbt-command", choices=("run", "build", "test"), help="default: the chart's job.command"
    )
    command.add_argument(
        "--schedule-deadline",
        type=_positive,
        help="seconds a pod may stay unscheduled before its model fails",
    )
    command.add_argument(
        "--start-deadline",
        type=_positive,
        help="seconds a scheduled pod may take to start before its model fails",
    )
