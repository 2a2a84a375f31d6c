"""``floe-deploy package`` and ``publish``: the charts as archives (with their locked
dependencies, signed when a key is given), and those archives pushed to an OCI registry with
Helm's registry client. Imported only when one of them runs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from floe_deploy_assets.helm.charts import CHARTS
from floe_deploy_assets.helm.packaging import SigningKey, package_chart
from floe_deploy_assets.helm.registry import RegistrySettings, push_chart, registry_client
from floe_deploy_assets.helm.sources import split_ref
from floe_deploy_assets.models.config import ConfigError, load_deployment_config


def package_command(args: argparse.Namespace) -> None:
    config = load_deployment_config(args.config)
    key = None
    if args.sign_key or args.secret_keyring:
        if not (args.sign_key and args.secret_keyring):
            raise ConfigError("--sign-key and --secret-keyring go together (the key, and where)")
        key = SigningKey(args.sign_key, args.secret_keyring, args.passphrase_file)
    for chart in args.chart or CHARTS:
        source = config.chart_source(chart)
        if source.path is None:
            raise ConfigError(
                f"{args.config}: charts.{chart} is {source.ref}, a published chart; package "
                "packages chart folders (charts.<chart>.path)"
            )
        packaged = package_chart(config.chart_path(chart), args.out, key)
        signed = f" (signed: {packaged.provenance.name})" if packaged.provenance else ""
        print(f"{packaged.archive}{signed}")


def publish_command(args: argparse.Namespace) -> None:
    remote: str = args.remote.rstrip("/")
    if not remote.startswith("oci://") or not split_ref(remote)[1]:
        raise ConfigError(f"{remote}: a registry path is oci://HOST[:PORT]/PATH")
    archives = sorted(args.archives)
    if not archives:
        raise ConfigError("no chart archive given; floe-deploy package --out DIR writes them")
    for archive in archives:
        if not archive.is_file() or not archive.name.endswith(".tgz"):
            raise ConfigError(f"{archive}: not a chart archive (.tgz) file")
    host = split_ref(remote)[0]
    settings = RegistrySettings(
        ca_file=args.ca_file, plain_http=args.plain_http, registries=(host,)
    )
    published = []
    with registry_client(host, settings) as client:
        for archive in archives:
            chart = push_chart(client, archive, remote)
            signed = " with its provenance" if Path(f"{archive}.prov").is_file() else " unsigned"
            print(f"pushed {archive.name}{signed}", file=sys.stderr)
            published.append(chart)
    # What a configuration names (charts.<chart>: ref, version, and the digest to pin).
    for chart in published:
        print(f"{chart.ref} {chart.version} {chart.digest}")
