"""Bring a local control plane up, report on it, and take it down.

Components start in dependency order; each must pass its health check within a deadline, and a
component that fails is reported with the end of its log. ``up`` is idempotent: components whose
recorded process is alive are left alone, dead ones are started again.
"""

from __future__ import annotations

import functools
import json
import shutil
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

from localcluster import process, realnode, servicenet
from localcluster.build import (
    ALL_BINARIES,
    CONTROL_PLANE_BINARIES,
    NODE_PACKAGES,
    RUNTIME_PACKAGES,
    ensure_binaries,
    ensure_system_packages,
)
from localcluster.config import ClusterConfig
from localcluster.errors import LocalClusterError
from localcluster.images import node_images
from localcluster.kubeconfig import write_admin_kubeconfig
from localcluster.pki import admin_token, ensure_pki

HEALTH_DEADLINE_SECONDS = 60.0
# TTLAfterFinished is alpha in 1.20 and the DataProductJob relies on ttlSecondsAfterFinished;
# CronJobControllerV2 reacts to schedules at once instead of polling every 10 s.
FEATURE_GATES = "TTLAfterFinished=true,CronJobControllerV2=true"
# Client-side rate limits of the controller manager and the scheduler (queries per second,
# burst). The 1.20 defaults (controller manager 20/30 per controller client, scheduler 50/100)
# are sized for clusters where kubelets, not these two, are the bottleneck; here they were the
# first cap on Jobs per second: the Job controller makes about 5 calls per Job (create the pod,
# two status updates, two events), so 20 QPS held a run to about 4 Jobs/s, and the scheduler's 2
# calls per pod (bind, event) to 25 pods/s. Raised so that a benchmark measures the runner and
# the API server, not a client-side throttle. They only take effect under load: on CI's 2 cores
# a test's few Jobs never come near either.
CONTROLLER_MANAGER_API_QPS, CONTROLLER_MANAGER_API_BURST = 200, 400
SCHEDULER_API_QPS, SCHEDULER_API_BURST = 200, 400


@dataclass(frozen=True)
class Component:
    name: str
    ports: tuple[int, ...]
    argv: Callable[[ClusterConfig, dict[str, Path]], list[str]]
    healthy: Callable[[ClusterConfig], bool]


def _get(url: str, context: ssl.SSLContext | None = None, token: str | None = None) -> bytes:
    request = urllib.request.Request(url)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, context=context, timeout=2) as response:
        return response.read()


def _probe(fetch: Callable[[], bytes], expected: bytes) -> bool:
    try:
        return expected in fetch()
    except (urllib.error.URLError, OSError, ValueError):
        return False


def _ca_context(config: ClusterConfig) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(config.pki_dir / "ca.crt"))


def _unverified_context() -> ssl.SSLContext:
    # The controller manager and scheduler serve health on certificates they generate in memory.
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def _etcd_argv(config: ClusterConfig, _: dict[str, Path]) -> list[str]:
    client = f"http://127.0.0.1:{config.etcd_client_port}"
    peer = f"http://127.0.0.1:{config.etcd_peer_port}"
    return [
        "etcd",
        "--name",
        "floe",
        "--data-dir",
        str(config.etcd_data_dir),
        "--listen-client-urls",
        client,
        "--advertise-client-urls",
        client,
        "--listen-peer-urls",
        peer,
        "--initial-advertise-peer-urls",
        peer,
        "--initial-cluster",
        f"floe={peer}",
        "--listen-metrics-urls",
        "",
        "--log-level",
        "warn",
    ]


def _apiserver_argv(config: ClusterConfig, binaries: dict[str, Path]) -> list[str]:
    pki = config.pki_dir
    return [
        str(binaries["kube-apiserver"]),
        f"--etcd-servers=http://127.0.0.1:{config.etcd_client_port}",
        "--bind-address=127.0.0.1",
        "--advertise-address=127.0.0.1",
        # An Endpoints object may not name loopback, so the API server cannot keep the
        # `kubernetes` Service's: with real nodes the Service network points them at its relay
        # (servicenet.py); without, pods never need them.
        "--endpoint-reconciler-type=none",
        f"--secure-port={config.apiserver_port}",
        "--insecure-port=0",
        f"--tls-cert-file={pki / 'apiserver.crt'}",
        f"--tls-private-key-file={pki / 'apiserver.key'}",
        f"--token-auth-file={pki / 'tokens.csv'}",
        "--authorization-mode=RBAC",
        "--service-account-issuer=https://kubernetes.default.svc.cluster.local",
        f"--service-account-key-file={pki / 'sa.pub'}",
        f"--service-account-signing-key-file={pki / 'sa.key'}",
        f"--service-cluster-ip-range={config.service_cluster_ip_range}",
        f"--kubelet-certificate-authority={pki / 'ca.crt'}",
        f"--kubelet-client-certificate={pki / 'apiserver-kubelet-client.crt'}",
        f"--kubelet-client-key={pki / 'apiserver-kubelet-client.key'}",
        "--kubelet-preferred-address-types=InternalIP",
        "--allow-privileged=true",
        f"--feature-gates={FEATURE_GATES}",
        # Pod objects are written by a simulated kubelet, so events and status churn are
        # high; a shorter event TTL keeps etcd small over long test runs.
        "--event-ttl=30m",
        "--v=1",
    ]


def _controller_manager_argv(config: ClusterConfig, binaries: dict[str, Path]) -> list[str]:
    pki = config.pki_dir
    return [
        str(binaries["kube-controller-manager"]),
        f"--kubeconfig={config.admin_kubeconfig}",
        f"--service-account-private-key-file={pki / 'sa.key'}",
        f"--root-ca-file={pki / 'ca.crt'}",
        "--use-service-account-credentials",
        "--leader-elect=false",
        # Node lifecycle belongs to the simulated kubelet; there is no pod network to
        # allocate ranges for.
        "--controllers=*,-nodeipam,-nodelifecycle,-cloud-node-lifecycle",
        "--bind-address=127.0.0.1",
        f"--secure-port={config.controller_manager_port}",
        "--port=0",
        f"--feature-gates={FEATURE_GATES}",
        f"--kube-api-qps={CONTROLLER_MANAGER_API_QPS}",
        f"--kube-api-burst={CONTROLLER_MANAGER_API_BURST}",
        "--v=1",
    ]


def _scheduler_argv(config: ClusterConfig, binaries: dict[str, Path]) -> list[str]:
    return [
        str(binaries["kube-scheduler"]),
        f"--kubeconfig={config.admin_kubeconfig}",
        "--leader-elect=false",
        "--bind-address=127.0.0.1",
        f"--secure-port={config.scheduler_port}",
        "--port=0",
        f"--kube-api-qps={SCHEDULER_API_QPS}",
        f"--kube-api-burst={SCHEDULER_API_BURST}",
        "--v=1",
    ]


def _kubelet_argv(config: ClusterConfig, _: dict[str, Path]) -> list[str]:
    pki = config.pki_dir
    return [
        sys.executable,
        "-m",
        "localcluster.kubelet",
        "--kubeconfig",
        str(config.admin_kubeconfig),
        "--nodes",
        str(config.nodes.count),
        "--node-cpu",
        config.nodes.cpu,
        "--node-memory",
        config.nodes.memory,
        "--node-pods",
        str(config.nodes.pods),
        "--port",
        str(config.kubelet_port),
        "--cert",
        str(pki / "kubelet.crt"),
        "--key",
        str(pki / "kubelet.key"),
        "--crash-backoff-base",
        str(config.crash_backoff_base),
        "--crash-backoff-cap",
        str(config.crash_backoff_cap),
        "--volumes-dir",
        str(config.volumes_dir),
    ]


def _api_ready(config: ClusterConfig) -> bool:
    return _probe(
        lambda: _get(f"{config.server_url}/readyz", _ca_context(config), admin_token(config)), b"ok"
    )


def _healthz(port: int) -> Callable[[ClusterConfig], bool]:
    return lambda _config: _probe(
        lambda: _get(f"https://127.0.0.1:{port}/healthz", _unverified_context()), b"ok"
    )


COMPONENTS: tuple[Callable[[ClusterConfig], Component], ...] = (
    lambda c: Component(
        "etcd",
        (c.etcd_client_port, c.etcd_peer_port),
        _etcd_argv,
        lambda c: _probe(lambda: _get(f"http://127.0.0.1:{c.etcd_client_port}/health"), b'"true"'),
    ),
    lambda c: Component("kube-apiserver", (c.apiserver_port,), _apiserver_argv, _api_ready),
    lambda c: Component(
        "kube-controller-manager",
        (c.controller_manager_port,),
        _controller_manager_argv,
        _healthz(c.controller_manager_port),
    ),
    lambda c: Component(
        "kube-scheduler", (c.scheduler_port,), _scheduler_argv, _healthz(c.scheduler_port)
    ),
    lambda c: Component(
        "simulated-kubelet",
        (c.kubelet_port,),
        _kubelet_argv,
        lambda c: _probe(
            lambda: _get(f"https://127.0.0.1:{c.kubelet_port}/healthz", _ca_context(c)), b"ok"
        ),
    ),
)


def components(config: ClusterConfig) -> list[Component]:
    return [make(config) for make in COMPONENTS]


def _wait_healthy(
    config: ClusterConfig,
    component: Component,
    record: process.ProcessRecord,
    deadline_seconds: float,
) -> None:
    deadline = time.monotonic() + deadline_seconds
    while not component.healthy(config):
        if not process.is_alive(record):
            raise LocalClusterError(
                f"{component.name} exited during start-up; last lines of {record.log}:\n"
                f"{process.log_tail(record.log)}"
            )
        if time.monotonic() > deadline:
            raise LocalClusterError(
                f"{component.name} not healthy within {deadline_seconds:.0f} s; last lines of "
                f"{record.log}:\n{process.log_tail(record.log)}"
            )
        time.sleep(0.1)


def up(
    config: ClusterConfig, deadline_seconds: float = HEALTH_DEADLINE_SECONDS, real_nodes: int = 0
) -> dict[str, float]:
    """Start every component that is not running, then ``real_nodes`` real nodes; returns
    seconds to healthy per component."""
    if real_nodes:
        servicenet.check_free(config)
    # One apt pass for what is missing.
    ensure_system_packages({**RUNTIME_PACKAGES, **(NODE_PACKAGES if real_nodes else {})})
    binaries = ensure_binaries(config, ALL_BINARIES if real_nodes else CONTROL_PLANE_BINARIES)
    # Built once per machine (minutes), before anything starts; `build` makes them too.
    images = node_images(config.cache_dir, binaries["pause"]) if real_nodes else []
    started = time.monotonic()
    for directory in (config.state_dir, config.log_dir, config.run_dir):
        directory.mkdir(parents=True, exist_ok=True)
    ensure_pki(config)
    write_admin_kubeconfig(config)
    to_start = [c for c in components(config) if not process.running(config.run_dir, c.name)]
    # Every port is checked before anything starts, so a busy port leaves nothing half-started.
    for component in to_start:
        busy = [port for port in component.ports if process.port_in_use(port)]
        if busy:
            raise LocalClusterError(
                f"cannot start {component.name}: port {', '.join(map(str, busy))} on 127.0.0.1 "
                f"is already in use; stop what holds it or choose another --port-base "
                f"(this cluster uses {config.port_base}..{config.port_base + 5})"
            )
    started_now: list[str] = []
    timings: dict[str, float] = {}
    try:
        for component in to_start:
            log = config.log_dir / f"{component.name}.log"
            record = process.start(
                config.run_dir, component.name, component.argv(config, binaries), log
            )
            started_now.append(component.name)
            _wait_healthy(config, component, record, deadline_seconds)
            timings[component.name] = time.monotonic() - started
            started = time.monotonic()
    except LocalClusterError:
        # Leave nothing half-started: what this call started, it stops again.
        for name in reversed(started_now):
            process.stop(config.run_dir, name)
        raise
    _write_cluster_info(config)
    nodes = [realnode.RealNode(config, index) for index in range(real_nodes)]
    try:
        for node in nodes:
            timings.update(realnode.start(node, binaries, images, deadline_seconds))
        if nodes:
            timings.update(servicenet.start(config, nodes, binaries, deadline_seconds))
    except (LocalClusterError, OSError, subprocess.SubprocessError) as error:
        _stop_real_nodes(config, nodes)
        if isinstance(error, LocalClusterError):
            raise
        raise LocalClusterError(f"starting the real nodes failed: {error}") from error
    return timings


def real_nodes(config: ClusterConfig) -> list[realnode.RealNode]:
    """The real nodes this state directory has started (their directories)."""
    directory = config.state_dir / "real-nodes"
    prefix = f"{config.name}-real-"
    found = sorted(directory.glob(prefix + "*")) if directory.is_dir() else []
    return [
        realnode.RealNode(config, int(path.name.removeprefix(prefix)))
        for path in found
        if path.name.removeprefix(prefix).isdigit()
    ]


def _stop_real_nodes(config: ClusterConfig, nodes: list[realnode.RealNode]) -> list[str]:
    """The nodes, then their Service network (whose clean-up needs the kubelets gone); the
    names stopped."""
    stopped: list[str] = []
    try:
        for node in nodes:
            stopped += realnode.stop(node)
    finally:
        stopped += servicenet.stop(config)
    return stopped


def _write_cluster_info(config: ClusterConfig) -> None:
    info = {
        "name": config.name,
        "server": config.server_url,
        "port_base": config.port_base,
        "kubeconfig": str(config.admin_kubeconfig),
        "node_shape": asdict(config.nodes),
    }
    (config.state_dir / "cluster.json").write_text(json.dumps(info, indent=2))


def down(config: ClusterConfig, wipe: bool = False) -> list[str]:
    """Stop every component this state directory started, real nodes first; returns the names
    stopped. The control plane is stopped even when removing a real node failed."""
    stopped: list[str] = []
    try:
        stopped += _stop_real_nodes(config, real_nodes(config))
    finally:
        stopped += [
            component.name
            for component in reversed(components(config))
            if process.stop(config.run_dir, component.name)
        ]
    if wipe:
        shutil.rmtree(config.state_dir, ignore_errors=True)
    return stopped


@dataclass(frozen=True)
class ComponentStatus:
    name: str
    state: str  # healthy, unhealthy, crashed, stopped
    pid: int | None
    detail: str


def status(config: ClusterConfig) -> list[ComponentStatus]:
    """Every process of the cluster: the control plane, then each real node's and, with real
    nodes, the Service network's."""
    checks: list[tuple[str, Callable[[], bool]]] = [
        (component.name, functools.partial(component.healthy, config))
        for component in components(config)
    ]
    nodes = real_nodes(config)
    for node in nodes:
        checks += realnode.health_checks(node)
    if nodes:
        checks += servicenet.health_checks(config, nodes)
    return [_status(config, name, healthy) for name, healthy in checks]


def _status(config: ClusterConfig, name: str, healthy: Callable[[], bool]) -> ComponentStatus:
    record = process.read_record(config.run_dir, name)
    if record is None:
        return ComponentStatus(name, "stopped", None, "")
    if not process.is_alive(record):
        return ComponentStatus(
            name,
            "crashed",
            record.pid,
            f"process {record.pid} is gone; last log line: "
            f"{process.log_tail(record.log, 1)} (log: {record.log})",
        )
    if healthy():
        return ComponentStatus(name, "healthy", record.pid, "")
    return ComponentStatus(
        name, "unhealthy", record.pid, f"health check failed (log: {record.log})"
    )
