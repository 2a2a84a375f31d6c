"""``floe-deploy values`` and ``render``: a chart's values and objects, computed without a
cluster. Imported only when one of them runs (or a cluster command, for its values), so
``floe_deploy_assets.cli`` stays light; nothing here imports the Kubernetes client, and only
``render`` imports Helm's renderer."""

from __future__ import annotations

import argparse
import json
import sys

import yaml

from floe_deploy_assets.cli import PROBLEMS_SHOWN, InvalidValuesError
from floe_deploy_assets.helm.charts import check_chart_paths
from floe_deploy_assets.helm.inputs import values_generator
from floe_deploy_assets.models.artifacts import load_compiled_artifacts
from floe_deploy_assets.models.config import ConfigError, load_deployment_config
from floe_deploy_assets.values.generator import HelmValuesGenerator


def validated_generator(args: argparse.Namespace) -> HelmValuesGenerator:
    config = load_deployment_config(args.config)
    source = args.artifacts or config.artifacts_path
    try:
        check_chart_paths(config)  # both charts and their file:// dependencies, before any use
        generator = values_generator(
            config, load_compiled_artifacts(source), args.env, args.chart, str(source)
        )
    except ConfigError as error:
        raise ConfigError(f"{args.config}: {error}") from None
    problems = generator.validate()
    if problems:
        # The values are withheld: a failing secret rule means they may hold a credential.
        print(
            f"values of {args.chart} for {args.env} fail validation ({len(problems)}):",
            file=sys.stderr,
        )
        for problem in problems[:PROBLEMS_SHOWN]:
            print(f"  {problem} [{problem.rule}]", file=sys.stderr)
        if len(problems) > PROBLEMS_SHOWN:
            print(f"  ... and {len(problems) - PROBLEMS_SHOWN} more", file=sys.stderr)
        raise InvalidValuesError
    for secret in generator.required_secrets:
        print(
            f"# requires Secret {secret.name} (keys: {', '.join(secret.keys)}): {secret.why}",
            file=sys.stderr,
        )
    return generator


def values_command(args: argparse.Namespace) -> None:
    generator = validated_generator(args)
    layered = generator.layered
    if not args.provenance:
        print(yaml.safe_dump(generator.generate(), sort_keys=False), end="")
        return
    for pointer in sorted(layered.provenance):
        value = _at(layered.values, pointer)
        print(f"{pointer}  {json.dumps(value)}  # {layered.provenance[pointer]}")


def render_command(args: argparse.Namespace) -> None:
    # Here, not at the top: it loads Helm's native library, which `values` does without.
    from floe_deploy_assets.helm.render import render_chart

    generator = validated_generator(args)
    config = generator.config
    rendered = render_chart(
        config.chart_path(args.chart),
        generator.helm_values(),
        release_name=config.release_name(args.chart, args.env),
        namespace=generator.mapping.namespace_for(args.env),
    )
    if args.output_dir is None:
        print(yaml.safe_dump_all(rendered.objects, sort_keys=False), end="")
        return
    args.output_dir.mkdir(parents=True, exist_ok=True)
    for index, obj in enumerate(rendered.objects):
        name = f"{index:03d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
        (args.output_dir / name).write_text(yaml.safe_dump(obj, sort_keys=False))
    print(f"wrote {len(rendered.objects)} objects to {args.output_dir}", file=sys.stderr)


def _at(values: object, pointer: str) -> object:
    for token in pointer.split("/")[1:]:
        key = token.replace("~1", "/").replace("~0", "~")
        values = values[key]  # type: ignore[index]
    return values
