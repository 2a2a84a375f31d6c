"""``floe-deploy values`` and ``render``: a chart's values and objects, computed without a
cluster. Imported only when one of them runs (or a cluster command, for its values), so
``floe_deploy_assets.cli`` stays light; nothing here imports the Kubernetes client, and only
``render`` imports Helm's renderer."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence

import yaml

from floe_deploy_assets.cli import PROBLEMS_SHOWN, InvalidValuesError
from floe_deploy_assets.helm.charts import CHARTS, check_chart_paths
from floe_deploy_assets.helm.inputs import release_generators
from floe_deploy_assets.models.config import ChartKind, ConfigError, load_deployment_config
from floe_deploy_assets.models.products import load_products, select_products
from floe_deploy_assets.values.generator import HelmValuesGenerator


class _Dumper(getattr(yaml, "CSafeDumper", yaml.SafeDumper)):  # type: ignore[misc]
    """libyaml's emitter when PyYAML has it (several times faster to print), with multi-line
    strings (an inline profiles.yml, a dagster.yaml) as literal blocks that read as the file
    they hold; the emitter quotes a string that a block cannot carry exactly."""


def _block_when_multiline(dumper: yaml.SafeDumper, text: str) -> yaml.Node:
    style = "|" if "\n" in text else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", text, style=style)


_Dumper.add_representer(str, _block_when_multiline)


def _yaml(document: object) -> str:
    return yaml.dump(document, Dumper=_Dumper, sort_keys=False)


def validated_generators(
    args: argparse.Namespace,
    charts: Sequence[ChartKind],
    *,
    announce: bool = True,
    environments: Sequence[str] | None = None,
    checked_charts: Sequence[ChartKind] = CHARTS,
) -> list[HelmValuesGenerator]:
    """The values of every release asked for (per environment, the platform, then each
    selected product's jobs), each checked; raises InvalidValuesError after printing the
    problems of the first that fails, so nothing is applied when any of them would fail.
    ``announce``: then say which Secrets they require (else the caller does, once its own
    work succeeded). ``environments``: these instead of ``args.env`` (empty: every one the
    configuration maps; None: ``args.env``). ``checked_charts``: the charts whose folders are
    checked first (every one by default: a cluster command refuses a broken configuration
    before it touches the cluster)."""
    config = load_deployment_config(args.config)
    try:
        check_chart_paths(config, checked_charts)  # with their file:// dependencies
        products = load_products(config, args.artifacts)
        selected = select_products(products, getattr(args, "product", None))
        wanted = [args.env] if environments is None else environments or config.environments
        generators = [
            generator
            for environment in wanted
            for generator in release_generators(config, products, environment, charts, selected)
        ]
        for generator in generators:
            _check(generator)  # merging the products' platform needs may conflict here
    except ConfigError as error:
        raise ConfigError(f"{args.config}: {error}") from None
    if announce:
        for generator in generators:
            announce_required_secrets(generator)
    return generators


def validated_generator(args: argparse.Namespace) -> HelmValuesGenerator:
    """The values of one chart, as ``values`` and ``render`` show them: the jobs chart needs
    ``--product`` when the configuration has several products."""
    # Only the chart shown is checked: printing the jobs values needs no platform chart.
    charts = (args.chart,)
    generators = validated_generators(args, charts, announce=False, checked_charts=charts)
    if len(generators) > 1:
        names = ", ".join(g.product.name for g in generators)
        raise ConfigError(
            f"{args.config}: the jobs values are per data product, and {len(generators)} are "
            f"selected ({names}); pass --product with one of them"
        )
    return generators[0]


def _check(generator: HelmValuesGenerator) -> None:
    problems = generator.validate()
    if problems:
        # The values are withheld: a failing secret rule means they may hold a credential.
        print(
            f"values of {generator.title} for {generator.environment} fail validation "
            f"({len(problems)}):",
            file=sys.stderr,
        )
        for problem in problems[:PROBLEMS_SHOWN]:
            print(f"  {problem} [{problem.rule}]", file=sys.stderr)
        if len(problems) > PROBLEMS_SHOWN:
            print(f"  ... and {len(problems) - PROBLEMS_SHOWN} more", file=sys.stderr)
        raise InvalidValuesError


def announce_required_secrets(generator: HelmValuesGenerator) -> None:
    for secret in generator.required_secrets:
        print(
            f"# requires Secret {secret.name} (keys: {', '.join(secret.keys)}): {secret.why}",
            file=sys.stderr,
        )


def values_command(args: argparse.Namespace) -> None:
    generator = validated_generator(args)
    layered = generator.layered
    if not args.provenance:
        # What deploy hands Helm: a chart default the layers deleted is an explicit null, so
        # `helm template -f` of this output does not bring the default back.
        print(_yaml(generator.helm_values()), end="")
    else:
        for pointer in sorted(layered.provenance):
            value = _at(layered.values, pointer)
            print(f"{pointer}  {json.dumps(value)}  # {layered.provenance[pointer]}")
    announce_required_secrets(generator)


def render_command(args: argparse.Namespace) -> None:
    # Here, not at the top: it loads Helm's native library, which `values` does without.
    from floe_deploy_assets.helm.render import render_chart
    from floe_deploy_assets.helm.sources import chart_dir

    generator = validated_generator(args)
    config = generator.config
    rendered = render_chart(
        chart_dir(config, args.chart),
        generator.helm_values(),
        release_name=generator.release_name,
        namespace=generator.mapping.namespace_for(args.env),
    )
    if args.output_dir is None:
        print(yaml.dump_all(rendered.objects, Dumper=_Dumper, sort_keys=False), end="")
    else:
        args.output_dir.mkdir(parents=True, exist_ok=True)
        for index, obj in enumerate(rendered.objects):
            name = f"{index:03d}-{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"
            (args.output_dir / name).write_text(_yaml(obj))
        print(f"wrote {len(rendered.objects)} objects to {args.output_dir}", file=sys.stderr)
    # After the output: a render that fails says only why.
    announce_required_secrets(generator)


def _at(values: object, pointer: str) -> object:
    for token in pointer.split("/")[1:]:
        key = token.replace("~1", "/").replace("~0", "~")
        values = values[key]  # type: ignore[index]
    return values


def gitops_command(args: argparse.Namespace) -> None:
    from floe_deploy_assets import gitops

    environments = list(dict.fromkeys(args.env or ()))  # each once, in the order given
    if args.format == "argocd" and (args.product or len(environments) > 1):
        # An ApplicationSet owns its Applications: one made for some products, or for some of
        # the environments under a shared name, committed, would make Argo CD delete the
        # Applications (and their objects) of all the others.
        raise ConfigError(
            "--format argocd writes one ApplicationSet for every environment, or one for a "
            "single --env; leave out --product, and give --env once at most"
        )
    generators = validated_generators(
        args, ("platform", "jobs"), announce=False, environments=environments
    )
    options = gitops.GitOpsOptions(
        registry=gitops.registry_for(args.registry, generators[0].config),
        argocd_namespace=args.argocd_namespace,
        flux_namespace=args.flux_namespace,
        controller_cluster=args.controller_cluster,
    )
    pinned = [c for c in CHARTS if generators[0].config.chart_source(c).digest]
    if args.format == "argocd" and pinned:
        print(
            f"# note: charts.{'/'.join(pinned)} pin a digest; Argo CD installs a Helm chart by "
            "version (its tag), so it follows the tag, not the digest",
            file=sys.stderr,
        )
    single = environments[0] if len(environments) == 1 else None
    written, removed = gitops.write_gitops(args.format, generators, options, args.out, single)
    for path in written:
        print(path)
    for path in removed:
        print(f"removed {path} (its release is no longer generated)")
    secrets = sorted({s.name for g in generators for s in g.required_secrets})
    needs = f"; the namespaces need the Secrets {', '.join(secrets)}" if secrets else ""
    print(
        f"# {len(written)} {args.format} objects for {len(generators)} releases{needs}",
        file=sys.stderr,
    )
