"""Services and cluster DNS for a cluster's real nodes: kube-proxy and dnsmasq.

A real node's pods are routed by the machine itself (their bridges are in its network
namespace), so **one kube-proxy** (iptables mode, built with the control plane) serves every real
node of a cluster, and its rules are the machine's: the ``KUBE-*`` chains of iptables, which
every kube-proxy rewrites whole. Two clusters' kube-proxies would delete each other's rules, so
one cluster with real nodes at a time owns the machine's Service network (``OWNER``): ``up`` of a
second one is refused, naming the first. NodePorts answer on the pods' addresses only, never on
the machine's own interfaces.

**The API server within pods' reach**: it listens on loopback only, and an Endpoints object may
not name loopback; a relay (``localcluster.relay``) on the first real node's address passes
connections to it, and the ``kubernetes`` Service's Endpoints name the relay, so in-cluster
clients (a pod's ServiceAccount token, ``KUBERNETES_SERVICE_HOST``) work as on any cluster.

**Cluster DNS** is Debian's dnsmasq (no CoreDNS can be had here), listening on each real node's
bridge address, which is that node's ``clusterDNS``; it answers ``cluster.local`` names from a
hosts file that ``localcluster.dns`` keeps in step with the API, and nothing else (no upstream:
the machine's network is closed to pods).

kube-proxy turns ``route_localnet`` on for the whole machine (for NodePorts on loopback); the
value it found is kept and put back on ``stop``, which also removes every ``KUBE-*`` chain (the
kubelets' and kube-proxy's) once the kubelets are stopped: a kubelet puts its chains back
while it runs.
"""

from __future__ import annotations

import json
import shlex
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
from collections.abc import Callable
from pathlib import Path

from localcluster import api, dns, process
from localcluster.config import ClusterConfig
from localcluster.errors import LocalClusterError
from localcluster.realnode import RUNTIME_ROOT, RealNode, pod_range

OWNER = RUNTIME_ROOT / "service-network-owner.json"
ROUTE_LOCALNET = Path("/proc/sys/net/ipv4/conf/all/route_localnet")
KUBE_PROXY, DNSMASQ, DNS_FEEDER = "kube-proxy", "cluster-dns", "cluster-dns-feeder"
API_RELAY = "api-relay"
PROCESS_NAMES = (DNS_FEEDER, DNSMASQ, API_RELAY, KUBE_PROXY)
IPTABLES_TABLES = ("filter", "nat", "mangle")
KUBERNETES = f"kubernetes.default.svc.{dns.CLUSTER_DOMAIN}"  # the Service every cluster has


def _hosts_dir(config: ClusterConfig) -> Path:
    """dnsmasq's hosts directory: outside the state directory, which may be closed to the
    unprivileged user dnsmasq becomes (a test's temporary directory is)."""
    return RUNTIME_ROOT / f"floe{config.port_base}-dns"


def _hosts_file(config: ClusterConfig) -> Path:
    return _hosts_dir(config) / "hosts.d" / "services"


def start(
    config: ClusterConfig, nodes: list[RealNode], binaries: dict[str, Path], deadline: float
) -> dict[str, float]:
    """kube-proxy, the DNS feeder and dnsmasq, until Services have rules and DNS answers."""
    started = time.monotonic()
    _claim(config)
    _hosts_file(config).parent.mkdir(parents=True, exist_ok=True)
    for opened in (RUNTIME_ROOT, _hosts_dir(config), _hosts_file(config).parent):
        opened.chmod(0o755)
    _start(config, API_RELAY, _relay_argv(config, nodes[0]))
    _point_the_kubernetes_service_at(config, nodes[0])
    _start(config, KUBE_PROXY, _kube_proxy_argv(config, nodes, binaries))
    _start(config, DNS_FEEDER, _feeder_argv(config))
    _start(config, DNSMASQ, _dnsmasq_argv(config, nodes))
    _wait(config, lambda: _relay_answers(config, nodes[0]), deadline, "the API server's relay")
    _wait(config, _kube_proxy_synced, deadline, "kube-proxy's rules")
    _wait(config, lambda: _dns_answers(nodes), deadline, f"cluster DNS to answer {KUBERNETES}")
    return {"service-network": time.monotonic() - started}


def check_free(config: ClusterConfig) -> None:
    """Refuse, naming the owner, when another live cluster owns the machine's Service network
    (``up`` asks before it starts anything)."""
    owner = _owner()
    if owner and not _owned_by(owner, config):
        holder = ClusterConfig(owner["name"], Path(owner["state_dir"]), owner["port_base"])
        if process.running(holder.run_dir, KUBE_PROXY):
            raise LocalClusterError(
                f"cluster {owner['name']!r} (state dir {owner['state_dir']}) has real nodes and "
                "owns this machine's Service rules (iptables KUBE-* chains, which every "
                "kube-proxy rewrites whole): one cluster with real nodes at a time. Take it "
                f"down first: python -m localcluster --name {owner['name']} --state-dir "
                f"{owner['state_dir']} --port-base {owner['port_base']} down"
            )


def _claim(config: ClusterConfig) -> None:
    """Make this cluster the owner of the machine's Service network, or say who is."""
    check_free(config)
    RUNTIME_ROOT.mkdir(parents=True, exist_ok=True)
    owner = _owner()
    if owner is None or not _owned_by(owner, config):
        claim = {
            "name": config.name,
            "state_dir": str(config.state_dir),
            "port_base": config.port_base,
            # What kube-proxy will change, as found before it did (or before a dead owner's did).
            "route_localnet": (owner or {}).get(
                "route_localnet", ROUTE_LOCALNET.read_text().strip()
            ),
        }
        OWNER.write_text(json.dumps(claim))


def _owned_by(owner: dict, config: ClusterConfig) -> bool:
    return Path(owner["state_dir"]) == config.state_dir


def _owner() -> dict | None:
    try:
        return json.loads(OWNER.read_text())
    except (OSError, ValueError):
        return None


def _start(config: ClusterConfig, name: str, argv: list[str]) -> None:
    process.ensure_started(config.run_dir, name, argv, config.log_dir / f"{name}.log")


def _kube_proxy_argv(
    config: ClusterConfig, nodes: list[RealNode], binaries: dict[str, Path]
) -> list[str]:
    return [
        str(binaries["kube-proxy"]),
        f"--kubeconfig={config.admin_kubeconfig}",
        f"--hostname-override={nodes[0].name}",
        "--proxy-mode=iptables",
        # Service traffic from outside the pods' range is masqueraded (the machine's own
        # connections to a ClusterIP get an answer).
        f"--cluster-cidr={pod_range(config)}",
        f"--nodeport-addresses={pod_range(config)}",
        # No servers of its own: readiness is its rules, seen in iptables.
        "--healthz-bind-address=",
        "--metrics-bind-address=",
        # The machine's conntrack settings are not this cluster's to change.
        "--conntrack-max-per-core=0",
        "--conntrack-tcp-timeout-established=0",
        "--conntrack-tcp-timeout-close-wait=0",
        "--v=1",
    ]


def _relay_argv(config: ClusterConfig, node: RealNode) -> list[str]:
    port = config.apiserver_port
    return [
        sys.executable,
        "-m",
        "localcluster.relay",
        f"--listen={node.node_ip}:{port}",
        f"--to=127.0.0.1:{port}",
    ]


def _point_the_kubernetes_service_at(config: ClusterConfig, node: RealNode) -> None:
    """The ``kubernetes`` Service's Endpoints: the relay on the first real node's address (the
    API server keeps none, see cluster.py), so in-cluster clients reach it at its ClusterIP."""
    endpoints = {
        "apiVersion": "v1",
        "kind": "Endpoints",
        "metadata": {"name": "kubernetes", "namespace": "default"},
        "subsets": [
            {
                "addresses": [{"ip": node.node_ip}],
                "ports": [{"name": "https", "port": config.apiserver_port, "protocol": "TCP"}],
            }
        ],
    }
    path = "/api/v1/namespaces/default/endpoints"
    try:
        api.request(config, "PUT", f"{path}/kubernetes", endpoints)
    except urllib.error.HTTPError as error:
        if error.code != 404:
            raise LocalClusterError(f"writing the kubernetes Endpoints failed: {error}") from error
        api.request(config, "POST", path, endpoints)


def _feeder_argv(config: ClusterConfig) -> list[str]:
    return [
        sys.executable,
        "-m",
        "localcluster.dns",
        f"--name={config.name}",
        f"--state-dir={config.state_dir}",
        f"--port-base={config.port_base}",
        f"--hosts={_hosts_file(config)}",
    ]


def _dnsmasq_argv(config: ClusterConfig, nodes: list[RealNode]) -> list[str]:
    return [
        "/usr/sbin/dnsmasq",
        "--keep-in-foreground",
        "--log-facility=-",
        "--pid-file=",
        "--conf-file=/dev/null",
        "--no-resolv",  # no upstream: pods have no way off the machine
        "--no-hosts",
        f"--hostsdir={_hosts_file(config).parent}",  # reloaded when the feeder replaces the file
        f"--local=/{dns.CLUSTER_DOMAIN}/",  # a missing Service is NXDOMAIN, not forwarded
        "--bind-dynamic",
        f"--listen-address={','.join(node.node_ip for node in nodes)}",
        "--local-ttl=1",
        "--no-negcache",  # a Service created a moment ago resolves at once
    ]


def _kube_proxy_synced() -> bool:
    """kube-proxy has written the rules that carry the ``kubernetes`` Service to its
    endpoint (the relay)."""
    saved = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True)
    return any(
        line.startswith("-A KUBE-SEP-") and "default/kubernetes:https" in line and "DNAT" in line
        for line in saved.stdout.splitlines()
    )


def _relay_answers(config: ClusterConfig, node: RealNode) -> bool:
    try:
        with socket.create_connection((node.node_ip, config.apiserver_port), timeout=1):
            return True
    except OSError:
        return False


def _dns_answers(nodes: list[RealNode]) -> bool:
    """dnsmasq gives the ``kubernetes`` Service's address on every node's address."""
    try:
        return all(dns.query(KUBERNETES, node.node_ip, timeout=0.5) for node in nodes)
    except OSError:
        return False


def _wait(config: ClusterConfig, ready: Callable[[], bool], deadline: float, what: str) -> None:
    process.wait_until(ready, deadline, what, config.run_dir, PROCESS_NAMES)


def health_checks(
    config: ClusterConfig, nodes: list[RealNode]
) -> list[tuple[str, Callable[[], bool]]]:
    """The Service network's processes and how ``status`` judges each."""
    return [
        (KUBE_PROXY, _kube_proxy_synced),
        (API_RELAY, lambda: _relay_answers(config, nodes[0])),
        (DNS_FEEDER, _hosts_file(config).exists),
        (DNSMASQ, lambda: _dns_answers(nodes)),
    ]


def stop(config: ClusterConfig) -> list[str]:
    """Stop this cluster's Service network; when it owns the machine's, remove every KUBE-*
    chain and put route_localnet back. Call after the kubelets are stopped."""
    stopped = [name for name in PROCESS_NAMES if process.stop(config.run_dir, name)]
    shutil.rmtree(_hosts_dir(config), ignore_errors=True)
    owner = _owner()
    if owner and _owned_by(owner, config):
        remove_kube_chains()
        ROUTE_LOCALNET.write_text(owner["route_localnet"])
        OWNER.unlink(missing_ok=True)
    return stopped


def _kube_rules(table: str) -> tuple[list[list[str]], list[str]]:
    """In ``table``: the rules of the built-in chains that jump to a KUBE-* chain (as
    ``iptables -D`` arguments), and the KUBE-* chains."""
    saved = subprocess.run(
        ["iptables-save", "-t", table], capture_output=True, text=True, check=True
    ).stdout
    jumps, chains = [], []
    for line in saved.splitlines():
        if line.startswith(":KUBE-"):
            chains.append(line[1:].split()[0])
        elif line.startswith("-A ") and not line.startswith("-A KUBE-") and "-j KUBE-" in line:
            jumps.append(["-D", *shlex.split(line)[1:]])
    return jumps, chains


def remove_kube_chains() -> None:
    for table in IPTABLES_TABLES:
        jumps, chains = _kube_rules(table)
        for rule in jumps:
            subprocess.run(["iptables", "-t", table, *rule], capture_output=True)
        for flag in ("-F", "-X"):  # emptied first: a chain still referenced cannot go
            for chain in chains:
                subprocess.run(["iptables", "-t", table, flag, chain], capture_output=True)


def leftovers(config: ClusterConfig) -> list[str]:
    """What of the Service network remains (empty after ``stop``): its processes, KUBE-* chains
    when no cluster owns them, the ownership record of this cluster."""
    found = [
        process.process_line(pid, command)
        for pid, command in process.processes_naming(
            str(config.state_dir), str(_hosts_dir(config))
        ).items()
        if any(program in command for program in (b"kube-proxy", b"dnsmasq", b"localcluster.dns"))
    ]
    if _hosts_dir(config).exists():
        found.append(f"directory {_hosts_dir(config)}")
    owner = _owner()
    if owner and _owned_by(owner, config):
        found.append(f"ownership record {OWNER}")
    if owner is None:
        for table in IPTABLES_TABLES:
            found += [f"iptables chain {table}/{chain}" for chain in _kube_rules(table)[1]]
    return found
