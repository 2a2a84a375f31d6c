"""``python -m localcluster up|down|status|kubeconfig|build``."""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

from localcluster import cluster
from localcluster.build import (
    ALL_BINARIES,
    NODE_PACKAGES,
    RUNTIME_PACKAGES,
    TEST_PACKAGES,
    ensure_binaries,
    ensure_system_packages,
)
from localcluster.config import DEFAULT_CLUSTER_NAME, ClusterConfig, NodeShape, default_state_root
from localcluster.errors import LocalClusterError
from localcluster.images import node_images
from localcluster.kubeconfig import mint_service_account_kubeconfig


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m localcluster",
        description="A real Kubernetes 1.20 control plane with a simulated kubelet.",
    )
    parser.add_argument("--name", default=DEFAULT_CLUSTER_NAME, help="cluster name")
    parser.add_argument(
        "--state-dir",
        type=Path,
        help="state directory (default: $FLOE_LOCALCLUSTER_STATE or "
        "~/.local/state/floe-deploy/localcluster/NAME)",
    )
    parser.add_argument(
        "--port-base",
        type=int,
        help="first of six consecutive ports (default 16440, or what `up` used)",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    up = commands.add_parser("up", help="start the cluster (idempotent)")
    up.add_argument("--nodes", type=int, help="simulated nodes (default 2)")
    up.add_argument("--node-cpu", help="CPU per node (default 4)")
    up.add_argument("--node-memory", help="memory per node (default 8Gi)")
    up.add_argument("--node-pods", type=int, help="pods per node (default 110)")
    up.add_argument(
        "--real-nodes",
        type=int,
        default=0,
        help="real nodes: a real kubelet on containerd running real containers (default 0); "
        "pods need to tolerate the node.floe.dev/real taint to land there",
    )
    down = commands.add_parser("down", help="stop every process `up` started")
    down.add_argument("--wipe", action="store_true", help="also delete the state directory")
    commands.add_parser("status", help="health of each component; exit 1 unless all healthy")
    kubeconfig = commands.add_parser("kubeconfig", help="print a kubeconfig path or document")
    kubeconfig.add_argument(
        "--service-account",
        metavar="NAMESPACE/NAME",
        help="print a kubeconfig that authenticates as this ServiceAccount",
    )
    commands.add_parser(
        "build",
        help="install the system packages and build (or find cached) the control plane, "
        "what a real node runs (kubelet, kube-proxy, pause) and its images",
    )
    return parser


def resolve_config(args: argparse.Namespace) -> ClusterConfig:
    """Flags first, then what `up` recorded in the state directory, then the defaults."""
    state_dir = args.state_dir or default_state_root() / args.name
    recorded: dict = {}
    info = state_dir / "cluster.json"
    if info.exists():
        recorded = json.loads(info.read_text())
    config = ClusterConfig(
        name=args.name,
        state_dir=state_dir,
        port_base=args.port_base or recorded.get("port_base") or ClusterConfig().port_base,
    )
    shape = NodeShape(**recorded.get("node_shape", {}))
    overrides = {
        key: getattr(args, flag)
        for key, flag in (
            ("count", "nodes"),
            ("cpu", "node_cpu"),
            ("memory", "node_memory"),
            ("pods", "node_pods"),
        )
        if getattr(args, flag, None) is not None
    }
    return replace(config, nodes=replace(shape, **overrides))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    config = resolve_config(args)
    try:
        if args.command == "build":
            ensure_system_packages({**RUNTIME_PACKAGES, **NODE_PACKAGES, **TEST_PACKAGES})
            binaries = ensure_binaries(config, ALL_BINARIES)
            for name, path in binaries.items():
                print(f"{name}: {path}")
            for recipe, archive in node_images(config.cache_dir, binaries["pause"]):
                print(f"{recipe.reference}: {archive}")
        elif args.command == "up":
            timings = cluster.up(config, real_nodes=args.real_nodes)
            for name, seconds in timings.items():
                print(f"  {name:<25} healthy after {seconds:.1f} s")
            total = sum(timings.values())
            print(f"cluster {config.name} is up at {config.server_url} ({total:.1f} s)")
            print(f"export KUBECONFIG={config.admin_kubeconfig}")
        elif args.command == "down":
            stopped = cluster.down(config, wipe=args.wipe)
            print(f"stopped: {', '.join(stopped)}" if stopped else "nothing was running")
        elif args.command == "status":
            report = cluster.status(config)
            width = max(len(entry.name) for entry in report)
            for entry in report:
                pid = entry.pid if entry.pid is not None else "-"
                print(f"{entry.name:<{width}}  {entry.state:<10} pid {pid:<8} {entry.detail}")
            return 0 if all(entry.state == "healthy" for entry in report) else 1
        elif args.command == "kubeconfig":
            if args.service_account:
                namespace, _, name = args.service_account.partition("/")
                print(
                    mint_service_account_kubeconfig(config.admin_kubeconfig, namespace, name),
                    end="",
                )
            else:
                print(config.admin_kubeconfig)
    except LocalClusterError as exc:
        print(f"localcluster: {exc}", file=sys.stderr)
        return 1
    return 0
