"""Where a local cluster keeps its state and which ports it listens on.

Every port is derived from one base port so that two clusters run side by side by choosing two
bases (``--port-base``) and two state directories (``--state-dir``).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

KUBERNETES_VERSION = "v1.20.2"
# Bumped when the build changes what the binaries do, so every cache builds them again:
# r2 vendors reflect2 1.0.2 (build.py, _patch_vendor).
BUILD_REVISION = "r2"
DEFAULT_PORT_BASE = 16440
DEFAULT_CLUSTER_NAME = "floe-local"


def default_state_root() -> Path:
    configured = os.environ.get("FLOE_LOCALCLUSTER_STATE")
    if configured:
        return Path(configured)
    return Path.home() / ".local" / "state" / "floe-deploy" / "localcluster"


def default_cache_dir() -> Path:
    """Built binaries live outside the repository so every clone and CI run reuses them."""
    configured = os.environ.get("FLOE_LOCALCLUSTER_CACHE")
    if configured:
        return Path(configured)
    return Path.home() / ".cache" / "floe-deploy"


@dataclass(frozen=True)
class NodeShape:
    """Capacity each simulated node advertises to the scheduler."""

    count: int = 2
    cpu: str = "4"
    memory: str = "8Gi"
    pods: int = 110


@dataclass(frozen=True)
class ClusterConfig:
    name: str = DEFAULT_CLUSTER_NAME
    state_dir: Path = field(default_factory=lambda: default_state_root() / DEFAULT_CLUSTER_NAME)
    port_base: int = DEFAULT_PORT_BASE
    nodes: NodeShape = field(default_factory=NodeShape)
    cache_dir: Path = field(default_factory=default_cache_dir)
    # Seconds the simulated kubelet waits before the first restart of a crashed container; it
    # doubles per restart up to crash_backoff_cap (a real kubelet uses 10 s and 300 s).
    crash_backoff_base: float = 2.0
    crash_backoff_cap: float = 60.0
    service_cluster_ip_range: str = "10.96.0.0/16"

    @property
    def apiserver_port(self) -> int:
        return self.port_base

    @property
    def etcd_client_port(self) -> int:
        return self.port_base + 1

    @property
    def etcd_peer_port(self) -> int:
        return self.port_base + 2

    @property
    def kubelet_port(self) -> int:
        return self.port_base + 3

    @property
    def controller_manager_port(self) -> int:
        return self.port_base + 4

    @property
    def scheduler_port(self) -> int:
        return self.port_base + 5

    @property
    def server_url(self) -> str:
        return f"https://127.0.0.1:{self.apiserver_port}"

    @property
    def pki_dir(self) -> Path:
        return self.state_dir / "pki"

    @property
    def volumes_dir(self) -> Path:
        """Where the default StorageClass's volumes are (a directory per claim)."""
        return self.state_dir / "volumes"

    @property
    def log_dir(self) -> Path:
        return self.state_dir / "logs"

    @property
    def run_dir(self) -> Path:
        return self.state_dir / "run"

    @property
    def etcd_data_dir(self) -> Path:
        return self.state_dir / "etcd"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.state_dir / "admin.kubeconfig"

    @property
    def binaries_dir(self) -> Path:
        return self.cache_dir / f"kubernetes-{KUBERNETES_VERSION}-{BUILD_REVISION}" / "bin"
