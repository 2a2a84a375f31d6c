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
import importlib
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from floe_deploy_assets.jobs.cli import add_run_models_parser
from floe_deploy_assets.release.remediation import Remediation  # --remediation's choices

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


def _add_config_argument(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--config",
        type=Path,
        default=Path("floe-deploy.yaml"),
        help="deployment configuration (default: floe-deploy.yaml)",
    )


def _add_input_arguments(
    command: argparse.ArgumentParser,
    chart_required: bool = True,
    with_chart: bool = True,
    every_environment: bool = False,
) -> None:
    _add_config_argument(command)
    command.add_argument(
        "--artifacts",
        type=Path,
        help="one CompiledArtifacts JSON instead of the configuration's artifacts.path(s)",
    )
    if every_environment:
        command.add_argument(
            "--env", action="append", help="only this environment (repeatable; default: all)"
        )
    else:
        command.add_argument(
            "--env", required=True, help="environment, as named in the configuration"
        )
    command.add_argument(
        "--product",
        action="append",
        metavar="NAME",
        help="only this data product (its metadata.product_name; repeatable; default: all)",
    )
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
            command.add_argument(
                "--removed-products",
                action="store_true",
                help="only the jobs releases of data products no longer in the configuration",
            )
    add_run_models_parser(commands)
    _add_gitops_parser(commands)
    _add_distribution_parsers(commands)
    return parser


def _add_distribution_parsers(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    package = commands.add_parser(
        "package", help="package the charts (with their locked dependencies), signed if asked"
    )
    _add_config_argument(package)
    package.add_argument(
        "--chart",
        choices=("platform", "jobs"),
        action="append",
        help="only this chart (repeatable; default: both)",
    )
    package.add_argument("--out", type=Path, required=True, help="directory for the archives")
    package.add_argument(
        "--sign-key", metavar="NAME", help="sign with this GPG key (a unique part of its user id)"
    )
    package.add_argument(
        "--secret-keyring", type=Path, help="the key's secret keyring (gpg --export-secret-keys)"
    )
    package.add_argument(
        "--passphrase-file", type=Path, help="file whose first line unlocks the key"
    )
    publish = commands.add_parser(
        "publish",
        help="push chart archives (and their provenance files) to an OCI registry; credentials "
        "from FLOE_REGISTRY_USERNAME/FLOE_REGISTRY_PASSWORD or helm registry login",
    )
    publish.add_argument("remote", metavar="oci://HOST[:PORT]/PATH")
    publish.add_argument("archives", type=Path, nargs="+", metavar="ARCHIVE.tgz")
    publish.add_argument(
        "--ca-file", type=Path, help="CA certificate the registry's TLS certificate is signed by"
    )
    publish.add_argument(
        "--plain-http", action="store_true", help="the registry speaks HTTP (a local one)"
    )


def _add_gitops_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    gitops = commands.add_parser(
        "gitops", help="write the Argo CD or Flux objects that deploy every environment"
    )
    _add_input_arguments(gitops, with_chart=False, every_environment=True)
    gitops.add_argument("--format", choices=("argocd", "flux"), required=True)
    gitops.add_argument("--out", type=Path, required=True, help="directory for the files")
    gitops.add_argument(
        "--registry",
        help="oci://HOST[:PORT]/PATH where the charts are published (default: where the "
        "configuration's chart refs are)",
    )
    gitops.add_argument("--argocd-namespace", default="argocd", help="default: argocd")
    gitops.add_argument("--flux-namespace", default="flux-system", help="default: flux-system")
    gitops.add_argument(
        "--controller-cluster",
        default="in-cluster",
        help="the cluster mappings' cluster the controller runs in (default: in-cluster); "
        "Flux reaches the others through a '<cluster>-kubeconfig' Secret",
    )


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


# Each command's module, imported only when it runs: the cluster commands' brings the Kubernetes
# client and Helm's engine, the offline ones' the values generator and its validation, none of
# which the parser or --help needs (and `values` needs no Kubernetes client nor Helm).
COMMANDS = {
    "values": "floe_deploy_assets.offline_commands:values_command",
    "render": "floe_deploy_assets.offline_commands:render_command",
    "deploy": "floe_deploy_assets.cluster_commands:deploy_command",
    "status": "floe_deploy_assets.cluster_commands:status_command",
    "uninstall": "floe_deploy_assets.cluster_commands:uninstall_command",
    "history": "floe_deploy_assets.cluster_commands:history_command",
    "run-models": "floe_deploy_assets.jobs.run_models:run_models_command",
    "gitops": "floe_deploy_assets.offline_commands:gitops_command",
    "package": "floe_deploy_assets.chart_commands:package_command",
    "publish": "floe_deploy_assets.chart_commands:publish_command",
}


def _command(name: str) -> Callable[[argparse.Namespace], None]:
    module, function = COMMANDS[name].split(":")
    return getattr(importlib.import_module(module), function)


def console() -> None:
    """The ``floe-deploy`` executable. Piped into ``head``, it stops quietly as other
    command-line tools do: exit 141, as a shell reports a pipe closed under a writer. Not by
    restoring SIGPIPE's default action, which would also end the process when a connection
    to the API server or Helm's relay breaks under a write (a blip, retried where it
    happens)."""
    try:
        code = main()
        sys.stdout.flush()
    except BrokenPipeError:
        # Point stdout at /dev/null, so that Python's own flush at exit does not fail again.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        code = 128 + signal.SIGPIPE
    sys.exit(code)


AFTER_STOP = {  # what a stopped command leaves, beyond what it printed itself
    "deploy": "stopped before its next write; the release Lease was let go (had that failed, "
    "it expires 30 s after its last renewal); the next deploy takes over a release the stop "
    "left pending",
    "uninstall": "the release Lease was let go; run uninstall again to finish",
}


def _environment(args: argparse.Namespace) -> str:
    """``environment E (namespace N on cluster C)``, as far as the configuration says."""
    try:
        from floe_deploy_assets.models.config import load_deployment_config

        mapping = load_deployment_config(args.config).mapping_for(args.env)
        return (
            f"environment {args.env} (namespace {mapping.namespace_for(args.env)} on cluster "
            f"{mapping.cluster})"
        )
    except Exception:
        return f"environment {args.env}"


# What main makes of an error a command raised, the first match counting: its exit code, after
# the error's message. Classes are named "module:Class" and looked up by _raised, not imported.
ERROR_EXITS: tuple[tuple[tuple[str, ...], int], ...] = (
    (
        (
            "floe_deploy_assets.kube.lease:ReleaseBusyError",
            "floe_deploy_assets.kube.lease:LockLostError",
            "floe_deploy_assets.helm.uninstall:ObjectsLeftBehindError",
            "floe_deploy_assets.kube.errors:ClusterCallError",
        ),
        EXIT_NOT_DEPLOYED,
    ),
    (
        (
            "floe_deploy_assets.models.config:ConfigError",
            "floe_deploy_assets.models.artifacts:ArtifactsError",
            "floe_deploy_assets.helm.render:RenderError",
            "floe_deploy_assets.helm.engine:ChartError",
        ),
        EXIT_BAD_INPUT,
    ),
    # the cluster or a chart registry refused or could not be reached
    (
        (
            "floe_deploy_assets.helm.engine:HelmEngineError",
            "floe_deploy_assets.helm.registry:RegistryError",
        ),
        EXIT_NOT_DEPLOYED,
    ),
)
# A Kubernetes API call outside the steps that name their release: the message names the
# environment and its cluster.
API_ERRORS = (
    "kubernetes.client.exceptions:ApiException",
    "urllib3.exceptions:HTTPError",
    "floe_deploy_assets.kube.retry:RetryDeadlineError",
)


def _raised(error: BaseException, classes: Sequence[str]) -> bool:
    """Whether ``error`` is an instance of one of the ``classes`` ("module:Class"). Only the
    classes of modules already imported are looked up: an error of a class whose module no one
    imported cannot have been raised, and the check then imports none of the libraries (the
    Kubernetes client, Helm's) that the command ran without."""
    for name in classes:
        module, cls = name.split(":")
        if module in sys.modules and isinstance(error, getattr(sys.modules[module], cls)):
            return True
    return False


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        with stop_on_signals():
            _command(args.command)(args)
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
    except Exception as error:
        for classes, code in ERROR_EXITS:
            if _raised(error, classes):
                print(f"floe-deploy: {error}", file=sys.stderr)
                return code
        if not _raised(error, API_ERRORS):
            raise
        from floe_deploy_assets.kube.retry import describe  # the error came from its client

        print(
            f"floe-deploy: {args.command} for {_environment(args)} failed: the Kubernetes API: "
            f"{describe(error)}",
            file=sys.stderr,
        )
        return EXIT_NOT_DEPLOYED
    return 0


if __name__ == "__main__":
    console()
