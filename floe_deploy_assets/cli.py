"""``floe-deploy``: the command-line face of the same logic the Dagster assets use.

Exit codes: 0 success, 1 the values fail validation (findings on stderr, nothing rendered),
2 bad input (the configuration, artifacts or chart cannot be used; one message naming the file
and field), 3 a deploy, uninstall or model run did not reach its desired state (it failed and was
remediated, is held by policy, another deploy holds the release, objects outlived the uninstall,
a model failed) or the cluster refused or could not be reached; 130 and 143 stopped by SIGINT
(Ctrl-C) or SIGTERM: a deploy stops before its next write and frees the release's Lease, a
model run deletes its Jobs, and the command ends without a traceback.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import yaml
from kubernetes.client.exceptions import ApiException
from urllib3 import exceptions as urllib3_errors

from floe_deploy_assets.helm.charts import check_chart_paths
from floe_deploy_assets.helm.deploy import (
    DeployOutcome,
    DeployPolicy,
    deploy,
    digest_history,
    plan,
)
from floe_deploy_assets.helm.engine import ChartError, HelmEngineError, ReleaseRef, SdkHelmEngine
from floe_deploy_assets.helm.inputs import values_generator
from floe_deploy_assets.helm.render import RenderError, render_chart
from floe_deploy_assets.helm.uninstall import ObjectsLeftBehindError, uninstall
from floe_deploy_assets.jobs.cli import add_run_models_parser, run_models_command
from floe_deploy_assets.kube.access import ClusterAccess
from floe_deploy_assets.kube.errors import ClusterCallError, cluster_step
from floe_deploy_assets.kube.health import release_health
from floe_deploy_assets.kube.lease import LockLostError, ReleaseBusyError, current_holder
from floe_deploy_assets.kube.retry import RetryDeadlineError, describe
from floe_deploy_assets.kube.secrets import missing_secrets
from floe_deploy_assets.models.artifacts import ArtifactsError, load_compiled_artifacts
from floe_deploy_assets.models.config import ChartKind, ConfigError, load_deployment_config
from floe_deploy_assets.models.deployment import Health
from floe_deploy_assets.release.decide import Action, Remediation, history_table
from floe_deploy_assets.release.diff import manifest_diff
from floe_deploy_assets.values.generator import HelmValuesGenerator

EXIT_INVALID_VALUES = 1
EXIT_BAD_INPUT = 2
EXIT_NOT_DEPLOYED = 3
PROBLEMS_SHOWN = 10  # findings printed when values fail; the rest are counted


class NotDeployedError(Exception):
    """A release did not reach its desired state; the outcome is already printed."""


class InvalidValuesError(Exception):
    """The generated values fail validation; the findings are already printed."""


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGINT, raised in the main thread where it was waiting or working. A
    KeyboardInterrupt, so that no ``except Exception`` swallows it and every ``finally`` and
    ``with`` on the way out runs: the release Lease is freed, a model run's Jobs deleted."""

    def __init__(self, signum: int):
        super().__init__(signal.Signals(signum).name)
        self.signum = signum


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextmanager
def stop_on_signals() -> Iterator[None]:
    """For the block, SIGTERM and SIGINT raise ``Stopped`` in the main thread, once: a signal
    that comes while the command is already stopping is noted and does not cut its clean-up
    short (each clean-up step has a deadline of its own; SIGKILL stops at once). Outside the
    main thread (signals cannot be handled there) the block runs as it is."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    stopping: list[int] = []

    def stop(signum: int, frame: object) -> None:
        if stopping:
            name = signal.Signals(signum).name
            print(f"floe-deploy: {name}: already stopping, cleaning up", file=sys.stderr)
            return
        stopping.append(signum)
        raise Stopped(signum)

    previous = {signum: signal.signal(signum, stop) for signum in STOP_SIGNALS}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _add_input_arguments(
    command: argparse.ArgumentParser, chart_required: bool = True, with_chart: bool = True
) -> None:
    command.add_argument(
        "--config",
        type=Path,
        default=Path("floe-deploy.yaml"),
        help="deployment configuration (default: floe-deploy.yaml)",
    )
    command.add_argument(
        "--artifacts",
        type=Path,
        help="CompiledArtifacts JSON (default: the configuration's artifacts.path)",
    )
    command.add_argument("--env", required=True, help="environment, as named in the configuration")
    if not with_chart:
        return
    if chart_required:
        command.add_argument("--chart", choices=("platform", "jobs"), required=True)
    else:
        command.add_argument(
            "--chart",
            choices=("platform", "jobs"),
            action="append",
            help="only this chart (repeatable; default: platform, then jobs)",
        )


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="floe-deploy", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True)
    values = commands.add_parser("values", help="print a chart's Helm values for an environment")
    _add_input_arguments(values)
    values.add_argument(
        "--provenance", action="store_true", help="show each leaf with the layer that set it"
    )
    render = commands.add_parser("render", help="print the Kubernetes objects a chart renders")
    _add_input_arguments(render)
    render.add_argument(
        "--output-dir", type=Path, help="write one file per object here instead of printing them"
    )
    for name, text in (
        ("deploy", "install or upgrade an environment's releases (one decision each)"),
        ("status", "release status and component health of an environment"),
        ("uninstall", "uninstall an environment's releases (data is kept unless asked)"),
        ("history", "each release's revisions with their chart and values digests"),
    ):
        command = commands.add_parser(name, help=text)
        _add_input_arguments(command, chart_required=False)
        command.add_argument(
            "--kubeconfig",
            type=Path,
            help="kubeconfig (default: $KUBECONFIG or ~/.kube/config); the "
            "environment's cluster mapping names its context",
        )
        if name == "deploy":
            _add_deploy_options(command)
        if name == "uninstall":
            command.add_argument(
                "--delete-data",
                action="store_true",
                help="also delete the releases' PersistentVolumeClaims (the PostgreSQL data)",
            )
    add_run_models_parser(commands)
    return parser


def _add_deploy_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--dry-run",
        action="store_true",
        help="show the decision and the manifest diff for each release; change nothing",
    )
    command.add_argument(
        "--timeout",
        type=int,
        default=300,
        help="seconds each install, upgrade or rollback may take (default 300)",
    )
    command.add_argument(
        "--remediation",
        choices=[r.value for r in Remediation],
        default=Remediation.ROLLBACK.value,
        help="what to do with a failed release: roll back to the last good revision "
        "(default), retry the upgrade, or hold it",
    )
    command.add_argument(
        "--lock-wait",
        type=int,
        default=0,
        help="seconds to wait while another deploy holds a release (default 0: fail at once)",
    )
    command.add_argument(
        "--correct-drift",
        action="store_true",
        help="restore live objects that drifted from the release manifest (default: report)",
    )


def _validated_generator(args: argparse.Namespace) -> HelmValuesGenerator:
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
    generator = _validated_generator(args)
    layered = generator.layered
    if not args.provenance:
        print(yaml.safe_dump(generator.generate(), sort_keys=False), end="")
        return
    for pointer in sorted(layered.provenance):
        value = _at(layered.values, pointer)
        print(f"{pointer}  {json.dumps(value)}  # {layered.provenance[pointer]}")


def render_command(args: argparse.Namespace) -> None:
    generator = _validated_generator(args)
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


def _per_chart(args: argparse.Namespace, charts: Sequence[ChartKind] = ("platform", "jobs")):
    """For each chart asked for (platform first: the jobs use its collector and storage): the
    validated values generator, the release, and the cluster access of the environment."""
    engine: SdkHelmEngine | None = None
    cluster: ClusterAccess | None = None
    # Every chart's values are validated before the first release is touched: values of the
    # jobs that fail a check must not leave the platform deployed (nothing half-applied).
    generators = [
        (chart, _validated_generator(argparse.Namespace(**{**vars(args), "chart": chart})))
        for chart in getattr(args, "chart", None) or charts
    ]
    for chart, generator in generators:
        config, mapping = generator.config, generator.mapping
        if engine is None or cluster is None:
            engine = SdkHelmEngine(args.kubeconfig, context=mapping.cluster)
            cluster = ClusterAccess.from_kubeconfig(args.kubeconfig, context=mapping.cluster)
        ref = ReleaseRef(
            config.release_name(chart, args.env), mapping.namespace_for(args.env), mapping.cluster
        )
        yield chart, generator, ref, engine, cluster


def _policy(args: argparse.Namespace) -> DeployPolicy:
    return DeployPolicy(
        remediation=Remediation(args.remediation),
        timeout=timedelta(seconds=args.timeout),
        lock_wait=timedelta(seconds=args.lock_wait),
        correct_drift=args.correct_drift,
    )


def deploy_command(args: argparse.Namespace) -> None:
    policy = _policy(args)
    for chart, generator, ref, engine, cluster in _per_chart(args):
        chart_dir = generator.config.chart_path(chart)
        values = generator.helm_values()
        if args.dry_run:
            _print_plan(chart, engine, ref, chart_dir, values, policy)
            continue
        with cluster_step("checking the Secrets it needs", ref):
            missing = missing_secrets(cluster.core, ref.namespace, generator.required_secrets)
        if missing:
            raise ConfigError("nothing deployed: " + "; ".join(missing))
        with cluster_step("deploying", ref):
            outcome = deploy(engine, ref, chart_dir, values, cluster=cluster, policy=policy)
        _print_outcome(chart, outcome)
        if not outcome.succeeded:
            # The jobs depend on the platform: nothing more is deployed after a failure.
            raise NotDeployedError


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
    for chart, _, ref, engine, cluster in _per_chart(args):
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
    for chart, _, ref, engine, _ in _per_chart(args):
        print(f"{chart}: {ref}")
        print(history_table(digest_history(engine, ref)))


def uninstall_command(args: argparse.Namespace) -> None:
    # The jobs first: they use the platform's services.
    for chart, _, ref, engine, cluster in _per_chart(args, charts=("jobs", "platform")):
        with cluster_step("uninstalling", ref):
            outcome = uninstall(engine, ref, cluster, delete_data=args.delete_data)
        print(f"{chart}: {ref} {'uninstalled' if outcome.uninstalled else 'was not installed'}")
        for claim in outcome.deleted_claims:
            print(f"  deleted PersistentVolumeClaim {claim}")
        for claim in outcome.kept_claims:
            print(f"  kept PersistentVolumeClaim {claim} (its data); --delete-data deletes it")


COMMANDS = {
    "values": values_command,
    "render": render_command,
    "deploy": deploy_command,
    "status": status_command,
    "uninstall": uninstall_command,
    "history": history_command,
    "run-models": run_models_command,
}


def console() -> None:
    """The ``floe-deploy`` executable. Piped into ``head``, it stops quietly as other
    command-line tools do (the disposition is the process's, so only the executable sets it:
    ``main`` also runs inside other processes, such as the tests)."""
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    sys.exit(main())


AFTER_STOP = {  # what a stopped command leaves, beyond what it printed itself
    "deploy": "stopped before its next write; the release Lease was let go (had that failed, "
    "it expires 30 s after its last renewal); the next deploy takes over a release the stop "
    "left pending",
    "uninstall": "the release Lease was let go; run uninstall again to finish",
}


def _environment(args: argparse.Namespace) -> str:
    """``environment E (namespace N on cluster C)``, as far as the configuration says."""
    try:
        mapping = load_deployment_config(args.config).mapping_for(args.env)
        return (
            f"environment {args.env} (namespace {mapping.namespace_for(args.env)} on cluster "
            f"{mapping.cluster})"
        )
    except Exception:
        return f"environment {args.env}"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with stop_on_signals():
            COMMANDS[args.command](args)
    except KeyboardInterrupt as stop:  # Stopped, or a SIGINT outside the main thread's handler
        signum = stop.signum if isinstance(stop, Stopped) else signal.SIGINT
        after = AFTER_STOP.get(args.command)
        print(
            f"floe-deploy: {args.command} stopped by {signal.Signals(signum).name}"
            + (f": {after}" if after else ""),
            file=sys.stderr,
        )
        return 128 + signum
    except InvalidValuesError:
        return EXIT_INVALID_VALUES
    except NotDeployedError:
        return EXIT_NOT_DEPLOYED
    except (
        ReleaseBusyError,
        LockLostError,
        ObjectsLeftBehindError,
        ClusterCallError,
    ) as error:
        print(f"floe-deploy: {error}", file=sys.stderr)
        return EXIT_NOT_DEPLOYED
    except (ConfigError, ArtifactsError, RenderError, ChartError) as error:
        print(f"floe-deploy: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except HelmEngineError as error:  # the cluster refused or could not be reached
        print(f"floe-deploy: {error}", file=sys.stderr)
        return EXIT_NOT_DEPLOYED
    except (ApiException, urllib3_errors.HTTPError, RetryDeadlineError) as error:
        # A call outside the steps above: the environment and its cluster say where.
        print(
            f"floe-deploy: {args.command} for {_environment(args)} failed: the Kubernetes API: "
            f"{describe(error)}",
            file=sys.stderr,
        )
        return EXIT_NOT_DEPLOYED
    return 0


if __name__ == "__main__":
    console()
