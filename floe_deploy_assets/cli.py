"""``floe-deploy``: the command-line face of the same logic the Dagster assets use.

Exit codes: 0 success, 1 the values fail validation (findings on stderr), 2 bad input (the
configuration or artifacts cannot be read; one message naming the file and field).
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

import yaml

from floe_deploy_assets.models.artifacts import ArtifactsError, load_compiled_artifacts
from floe_deploy_assets.models.config import ConfigError, load_deployment_config
from floe_deploy_assets.values.charts import ChartFiles
from floe_deploy_assets.values.generator import HelmValuesGenerator

EXIT_INVALID_VALUES = 1
EXIT_BAD_INPUT = 2


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="floe-deploy", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    values = commands.add_parser(
        "values", help="print the Helm values of a chart for an environment"
    )
    values.add_argument(
        "--config",
        type=Path,
        default=Path("floe-deploy.yaml"),
        help="deployment configuration (default: floe-deploy.yaml)",
    )
    values.add_argument(
        "--artifacts",
        type=Path,
        help="CompiledArtifacts JSON (default: the configuration's artifacts.path)",
    )
    values.add_argument("--env", required=True, help="environment, as named in the configuration")
    values.add_argument("--chart", choices=("platform", "jobs"), required=True)
    values.add_argument(
        "--provenance", action="store_true", help="show each leaf with the layer that set it"
    )
    return parser


def values_command(args: argparse.Namespace) -> int:
    config = load_deployment_config(args.config)
    if args.env not in config.environments:
        raise ConfigError(
            f"{args.config}: environment {args.env!r} is in no cluster mapping; known "
            f"environments: {', '.join(config.environments)}"
        )
    artifacts = load_compiled_artifacts(args.artifacts or config.artifacts_path)
    chart = ChartFiles.for_chart(config, args.chart)
    generator = HelmValuesGenerator(
        artifacts,
        args.env,
        chart.defaults(),
        config=config,
        chart=args.chart,
        schema=chart.schema(),
    )
    problems = generator.validate()
    if problems:
        # The values are withheld: a failing secret rule means they may hold a credential.
        print(
            f"values of {args.chart} for {args.env} fail validation ({len(problems)}):",
            file=sys.stderr,
        )
        for problem in problems:
            print(f"  {problem} [{problem.rule}]", file=sys.stderr)
        return EXIT_INVALID_VALUES
    layered = generator.layered
    if args.provenance:
        for pointer in sorted(layered.provenance):
            value = _at(layered.values, pointer)
            print(f"{pointer}  {json.dumps(value)}  # {layered.provenance[pointer]}")
    else:
        print(yaml.safe_dump(generator.generate(), sort_keys=False), end="")
    for secret in generator.required_secrets:
        print(
            f"# requires Secret {secret.name} (keys: {', '.join(secret.keys)}): {secret.why}",
            file=sys.stderr,
        )
    return 0


def _at(values: object, pointer: str) -> object:
    for token in pointer.split("/")[1:]:
        key = token.replace("~1", "/").replace("~0", "~")
        values = values[key]  # type: ignore[index]
    return values


def main(argv: Sequence[str] | None = None) -> int:
    # Piped into `head`, stop quietly as other command-line tools do.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    args = _parser().parse_args(argv)
    try:
        if args.command == "values":
            return values_command(args)
    except (ConfigError, ArtifactsError) as error:
        print(f"floe-deploy: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


if __name__ == "__main__":
    sys.exit(main())
