"""Real nodes: a real kubelet on containerd and runc, running real containers.

Simulated nodes stay for what reality cannot do on demand (faults, scale); a real node is for
what only reality shows: a container's real exit code, its real output through the API server,
the kernel's limits. Facts this rests on were checked by hand first (REAL-NODE.md).

Per real node, under ``<state dir>/real-nodes/<node>/`` (configuration, containerd's state),
``/var/lib/floe-localcluster/<tag>/`` (sockets and the kubelet's root, whose paths must stay
short) and ``<cache dir>/containerd/node-<index>/`` (containerd's root: its images, kept across
``down``, and the snapshots of running containers):

- containerd with its own configuration, root, state and socket; the CRI plugin with
  ``restrict_oom_score_adj`` (this VM refuses a negative oom_score_adj, which the kubelet asks for
  every sandbox), the CNI plugins of Debian's package, and a network configuration of its own:
  a bridge with host-local addresses from the node's pod range. No masquerade, and a rule that
  drops what pods send anywhere but other pods: the machine's only way out stays closed to them.
- the kubelet (built with the control plane) at the bridge's own address, with a serving
  certificate from the cluster CA for it, so the API server verifies it and ``pods/log`` works;
  nothing anonymous (the API server presents a client certificate; every caller is authorized
  by the API server); the cgroups of its pods under a root of its own (``/floe-<node>``), so
  two clusters' nodes never share one.
- the images of images.py (pause, busybox, Python with Dagster and this project, dbt,
  PostgreSQL), built without a registry and imported, while the kubelet starts, unless the node
  has them already.

The node is labelled ``node.floe.dev/real=true`` and tainted ``node.floe.dev/real=true:NoSchedule``:
only pods that tolerate the taint land there, and pods that must run for real select the label.
``stop`` stops the kubelet, kills and removes every container through containerd, stops it, and
removes the pods' network namespaces, the bridge, the rule, mounts, cgroups and address leases;
``leftovers`` lists what remains (nothing, after ``stop``).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import yaml

from localcluster import api, process
from localcluster.config import ClusterConfig
from localcluster.dns import CLUSTER_DOMAIN
from localcluster.errors import LocalClusterError
from localcluster.images import PAUSE_IMAGE, ImageRecipe, ctr, import_images
from localcluster.pki import signed_certificate

# Importing a gigabyte of images into an empty store took 31 s here; a loaded machine is slower.
IMPORT_DEADLINE_SECONDS = 300
REAL_NODE_LABEL = "node.floe.dev/real"
REAL_NODE_TAINT = f"{REAL_NODE_LABEL}=true:NoSchedule"
CNI_PLUGINS = Path("/usr/lib/cni")
CGROUP_ROOT = Path("/sys/fs/cgroup")
RUNTIME_ROOT = Path("/var/lib/floe-localcluster")


def pod_range(config: ClusterConfig) -> str:
    """The /16 of a cluster's real pods, chosen by its port base: clusters side by side (each
    has its own port base) do not share addresses."""
    return f"10.{128 + (config.port_base // 10) % 120}.0.0/16"


@dataclass(frozen=True)
class RealNode:
    config: ClusterConfig
    index: int

    @property
    def name(self) -> str:
        return f"{self.config.name}-real-{self.index}"

    @property
    def directory(self) -> Path:
        return self.config.state_dir / "real-nodes" / self.name

    @property
    def runtime_dir(self) -> Path:
        """containerd's sockets and the kubelet's root directory (which holds sockets of its
        own): not under the state directory, whose path may be too long for a unix socket
        (108 bytes); named by the node's tag, unique on the machine."""
        return RUNTIME_ROOT / self.tag

    @property
    def socket_dir(self) -> Path:
        return self.runtime_dir / "run"

    @property
    def kubelet_root(self) -> Path:
        return self.runtime_dir / "kubelet"

    @property
    def image_store(self) -> Path:
        """containerd's root: its images, and the snapshots of containers while they run.
        Kept across ``down`` (with ``--wipe`` too), as the binaries and image archives are, so
        an ``up`` does not import a gigabyte of images again; ``stop`` leaves no container in
        it. Never shared: one cluster with real nodes at a time on a machine (servicenet)."""
        return self.config.cache_dir / "containerd" / f"node-{self.index}"

    @property
    def containerd_socket(self) -> Path:
        return self.socket_dir / "containerd.sock"

    @property
    def kubelet_port(self) -> int:
        # After the cluster's own six ports (port base .. base + 5).
        return self.config.port_base + 6 + 2 * self.index

    @property
    def kubelet_healthz_port(self) -> int:
        return self.kubelet_port + 1

    @property
    def tag(self) -> str:
        """Names the bridge and the CNI network: unique per cluster (its port base) and node,
        and within Linux's 15 characters for an interface."""
        return f"floe{self.config.port_base}r{self.index}"

    @property
    def pod_cidr(self) -> str:
        """One /24 per node, in the cluster's pod range."""
        return pod_range(self.config).replace(".0.0/16", f".{self.index}.0/24")

    @property
    def node_ip(self) -> str:
        """The bridge's own address (the pods' gateway): the kubelet's address, which the API
        server reaches it at. Not loopback, which a kubelet refuses as a node IP."""
        return self.pod_cidr.replace(".0/24", ".1")

    @property
    def cgroup_parent(self) -> str:
        return f"/floe-{self.name}"

    @property
    def process_names(self) -> tuple[str, str]:
        return f"containerd-{self.name}", f"kubelet-{self.name}"


def start(
    node: RealNode,
    binaries: dict[str, Path],
    images: list[tuple[ImageRecipe, Path]],
    deadline_seconds: float,
) -> dict[str, float]:
    """containerd, then the kubelet, until the Node is Ready and untainted, and containerd has
    ``images``. The images are imported while the kubelet starts (it takes its time to report
    Ready, the import of a large image as long), so neither waits for the other."""
    timings: dict[str, float] = {}
    started = time.monotonic()
    containerd_name = node.process_names[0]
    _write_containerd_files(node)
    fresh = not process.running(node.config.run_dir, containerd_name)
    process.ensure_started(
        node.config.run_dir,
        containerd_name,
        ["containerd", "--config", str(node.directory / "containerd" / "config.toml")],
        node.config.log_dir / f"{containerd_name}.log",
    )
    _wait(node, lambda: _ctr_answers(node), deadline_seconds, f"containerd of {node.name}")
    if fresh:  # what a node that ended without stop left in the kept image store
        _remove_containers(node)
    importing = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="import")
    imports = importing.submit(import_images, images, node.containerd_socket)
    importing.shutdown(wait=False)
    try:
        timings.update(_start_kubelet(node, binaries, deadline_seconds, started))
    except BaseException as error:
        # Not a lost import error, nor an import still running into the clean-up.
        with contextlib.suppress(Exception):
            imports.result(timeout=IMPORT_DEADLINE_SECONDS)
        if imports.done() and imports.exception():
            error.add_note(f"importing the images also failed: {imports.exception()}")
        raise
    started = time.monotonic()
    try:
        imports.result(timeout=IMPORT_DEADLINE_SECONDS)
    except concurrent.futures.TimeoutError as exc:
        raise LocalClusterError(
            f"containerd of {node.name} did not import its images within "
            f"{IMPORT_DEADLINE_SECONDS} s (see {node.config.log_dir / (containerd_name + '.log')})"
        ) from exc
    # Only the wait beyond the kubelet's: the timings add up to the time up took.
    timings[f"images-{node.name}"] = time.monotonic() - started
    return timings


def _start_kubelet(
    node: RealNode, binaries: dict[str, Path], deadline_seconds: float, containerd_started: float
) -> dict[str, float]:
    """The pods' network, then the kubelet, until the Node is Ready; seconds per process."""
    containerd_name, kubelet_name = node.process_names
    timings: dict[str, float] = {}
    _create_bridge(node)
    _isolate_pod_network(node)
    timings[containerd_name] = time.monotonic() - containerd_started
    started = time.monotonic()
    _write_kubelet_files(node)
    _create_cgroup_root(node)
    process.ensure_started(
        node.config.run_dir,
        kubelet_name,
        _kubelet_argv(node, binaries),
        node.config.log_dir / f"{kubelet_name}.log",
    )
    _wait(node, lambda: _node_ready(node), deadline_seconds, f"the kubelet of {node.name}")
    timings[kubelet_name] = time.monotonic() - started
    return timings


def _wait(node: RealNode, ready: Callable[[], bool], deadline_seconds: float, what: str) -> None:
    process.wait_until(ready, deadline_seconds, what, node.config.run_dir, node.process_names)


def _ctr(node: RealNode, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return ctr(node.containerd_socket, *args, check=check)


def _ctr_answers(node: RealNode) -> bool:
    if not node.containerd_socket.exists():
        return False
    return _ctr(node, "version", check=False).returncode == 0


def _write_containerd_files(node: RealNode) -> None:
    base = node.directory / "containerd"
    cni_conf = node.directory / "cni"
    for directory in (base, cni_conf, node.socket_dir):
        directory.mkdir(parents=True, exist_ok=True)
    (base / "config.toml").write_text(
        f"""version = 2
root = "{node.image_store}"
state = "{base / "state"}"
[grpc]
  address = "{node.containerd_socket}"
[ttrpc]
  address = "{node.socket_dir / "ttrpc.sock"}"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{CNI_PLUGINS}"
    conf_dir = "{cni_conf}"
"""
    )
    network = {
        "cniVersion": "0.4.0",
        "name": node.tag,
        "plugins": [
            {
                "type": "bridge",
                "bridge": node.tag,
                "isGateway": True,
                "ipMasq": False,  # nothing leaves the machine under its address
                "hairpinMode": True,
                "ipam": {
                    "type": "host-local",
                    "ranges": [[{"subnet": node.pod_cidr}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            },
            {"type": "portmap", "capabilities": {"portMappings": True}},
        ],
    }
    (cni_conf / "10-floe.conflist").write_text(json.dumps(network, indent=2))


def _create_bridge(node: RealNode) -> None:
    """The pods' bridge with its gateway address, before the kubelet starts: that address is
    the node's (the CNI bridge plugin takes the bridge as it finds it)."""
    if subprocess.run(["ip", "link", "show", node.tag], capture_output=True).returncode != 0:
        _ip("link", "add", node.tag, "type", "bridge")
    addresses = subprocess.run(
        ["ip", "-o", "addr", "show", "dev", node.tag], capture_output=True, text=True
    ).stdout
    if f" {node.node_ip}/" not in addresses:
        _ip("addr", "add", f"{node.node_ip}/24", "dev", node.tag)
    _ip("link", "set", node.tag, "up")


def _ip(*args: str) -> None:
    done = subprocess.run(["ip", *args], capture_output=True, text=True)
    if done.returncode != 0:
        raise LocalClusterError(f"ip {' '.join(args)} failed: {done.stderr.strip()}")


def _forward_rule(node: RealNode) -> list[str]:
    """Pods' traffic that would leave through any interface but their bridge is dropped."""
    return ["FORWARD", "-s", node.pod_cidr, "!", "-o", node.tag, "-j", "DROP"]


def _isolate_pod_network(node: RealNode) -> None:
    rule = _forward_rule(node)
    exists = subprocess.run(["iptables", "-C", *rule], capture_output=True).returncode == 0
    if not exists:
        subprocess.run(["iptables", "-I", *rule], capture_output=True, text=True, check=True)


def _write_kubelet_files(node: RealNode) -> None:
    directory = node.directory / "kubelet"
    directory.mkdir(parents=True, exist_ok=True)
    pki = node.config.pki_dir
    serving = f"kubelet-{node.name}"
    if not (pki / f"{serving}.crt").exists():
        signed_certificate(pki, serving, f"/CN=system:node:{node.name}", f"IP:{node.node_ip}")
    configuration = {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": node.node_ip,
        "port": node.kubelet_port,
        "readOnlyPort": 0,
        "healthzBindAddress": "127.0.0.1",
        "healthzPort": node.kubelet_healthz_port,
        "tlsCertFile": str(pki / f"{serving}.crt"),
        "tlsPrivateKeyFile": str(pki / f"{serving}.key"),
        # Its address is the pods' gateway, so nothing is anonymous: the API server presents
        # its client certificate, and every caller is authorized by the API server.
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki / "ca.crt")},
        },
        "authorization": {"mode": "Webhook"},
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": node.cgroup_parent,
        "failSwapOn": False,
        "clusterDomain": CLUSTER_DOMAIN,
        # The cluster's dnsmasq listens on the node's own address (servicenet.py).
        "clusterDNS": [node.node_ip],
        "maxPods": 110,
        # The VM's disk is shared with everything else; a real node must not evict pods
        # because a build elsewhere filled it for a while.
        "evictionHard": {"memory.available": "100Mi", "nodefs.available": "1%"},
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
    }
    (directory / "config.yaml").write_text(yaml.safe_dump(configuration, sort_keys=False))


def _kubelet_argv(node: RealNode, binaries: dict[str, Path]) -> list[str]:
    directory = node.directory / "kubelet"
    return [
        str(binaries["kubelet"]),
        f"--config={directory / 'config.yaml'}",
        f"--kubeconfig={node.config.admin_kubeconfig}",
        "--container-runtime=remote",
        f"--container-runtime-endpoint=unix://{node.containerd_socket}",
        f"--pod-infra-container-image={PAUSE_IMAGE}",
        f"--root-dir={node.kubelet_root}",
        f"--hostname-override={node.name}",
        f"--node-ip={node.node_ip}",
        f"--node-labels={REAL_NODE_LABEL}=true",
        f"--register-with-taints={REAL_NODE_TAINT}",
        "--v=1",
    ]


def _node_ready(node: RealNode) -> bool:
    """Ready, and without the not-ready taint admission gave it at registration (no node
    lifecycle controller runs here to take it off, as for the simulated nodes)."""
    try:
        found = api.request(node.config, "GET", f"/api/v1/nodes/{node.name}")
    except urllib.error.HTTPError as error:
        if error.code == 404:
            return False  # not registered yet
        raise
    if not _reports_ready(found):
        return False
    taints = found.get("spec", {}).get("taints") or []
    kept = [t for t in taints if not t["key"].startswith("node.kubernetes.io/")]
    if len(kept) != len(taints):
        api.request(
            node.config,
            "PATCH",
            f"/api/v1/nodes/{node.name}",
            {"spec": {"taints": kept}},
            api.MERGE_PATCH,
        )
        return False  # seen untainted on the next look
    return True


def _reports_ready(found: dict) -> bool:
    """Whether a Node object's Ready condition is True."""
    conditions = found.get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def health_checks(node: RealNode) -> list[tuple[str, Callable[[], bool]]]:
    """The node's processes and how ``status`` judges each (reading only)."""
    containerd_name, kubelet_name = node.process_names

    def registered_and_ready() -> bool:
        try:
            return _reports_ready(api.request(node.config, "GET", f"/api/v1/nodes/{node.name}"))
        except (urllib.error.URLError, OSError, ValueError):
            return False

    return [(containerd_name, lambda: _ctr_answers(node)), (kubelet_name, registered_and_ready)]


def stop(node: RealNode) -> list[str]:
    """Stop the node and remove everything of it from the machine; the names stopped. The
    whole cluster is going down, so the pods are not deleted through the API (the kubelet
    would give each its grace period): the kubelet stops, then every container is killed
    through containerd, and what the kubelet would have torn down is removed here."""
    containerd_name, kubelet_name = node.process_names
    stopped: list[str] = []
    if process.stop(node.config.run_dir, kubelet_name):
        stopped.append(kubelet_name)
    if process.running(node.config.run_dir, containerd_name):
        _remove_containers(node)
    if process.stop(node.config.run_dir, containerd_name):
        stopped.append(containerd_name)
    _kill_leftover_shims(node)
    for directory in (node.runtime_dir, node.directory, node.image_store):  # sandboxes' /dev/shm
        _unmount_below(directory)
    _remove_network(node)
    _remove_cgroups(node)
    shutil.rmtree(node.runtime_dir, ignore_errors=True)
    return stopped


def _remove_containers(node: RealNode) -> None:
    """What the kubelet did not tear down: every task killed, every container removed."""
    for task in _ctr(node, "tasks", "list", "--quiet", check=False).stdout.split():
        _ctr(node, "tasks", "kill", "--signal", "SIGKILL", task, check=False)
        for _ in range(50):
            if _ctr(node, "tasks", "delete", task, check=False).returncode == 0:
                break
            time.sleep(0.1)
    for container in _ctr(node, "containers", "list", "--quiet", check=False).stdout.split():
        _ctr(node, "containers", "delete", container, check=False)


def _kill_leftover_shims(node: RealNode) -> None:
    """A shim outlives containerd by design; those of this node's containerd are ended (a
    shim is given its containerd's address)."""
    for pid, command in process.processes_naming(str(node.socket_dir)).items():
        if b"containerd-shim" in command:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def _mounts_below(directory: Path) -> list[str]:
    """Mount points at or under ``directory`` (the kubelet bind-mounts its root directory onto
    itself, and mounts each pod's Secret volumes), deepest first."""
    prefix = str(directory)
    points = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        point = line.split()[1].replace("\\040", " ")
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def _unmount_below(directory: Path) -> None:
    for point in _mounts_below(directory):
        if subprocess.run(["umount", point], capture_output=True).returncode != 0:
            subprocess.run(["umount", "--lazy", point], capture_output=True)


def _remove_network(node: RealNode) -> None:
    rule = _forward_rule(node)
    while subprocess.run(["iptables", "-D", *rule], capture_output=True).returncode == 0:
        pass
    for netns in pod_network_namespaces(node):
        subprocess.run(["ip", "netns", "delete", netns], capture_output=True)
    subprocess.run(["ip", "link", "delete", node.tag], capture_output=True)
    # With the bridge gone, the sandboxes' veths are gone: what is left of a sandbox whose
    # network was never set up, or torn down halfway, is a namespace with loopback only.
    for netns in empty_cri_namespaces():
        subprocess.run(["ip", "netns", "delete", netns], capture_output=True)
    shutil.rmtree(Path("/var/lib/cni/networks") / node.tag, ignore_errors=True)


def pod_network_namespaces(node: RealNode) -> list[str]:
    """Network namespaces (named, as the CRI makes them) with a veth on this node's bridge."""
    listed = subprocess.run(["ip", "-json", "netns", "list"], capture_output=True, text=True)
    if listed.returncode != 0 or not listed.stdout.strip():
        return []
    names = [entry["name"] for entry in json.loads(listed.stdout)]
    links = subprocess.run(
        ["ip", "-json", "link", "show", "master", node.tag], capture_output=True, text=True
    )
    if links.returncode != 0 or not links.stdout.strip():
        return []
    peer_ids = {link.get("link_netnsid") for link in json.loads(links.stdout)}
    listed_ids = subprocess.run(["ip", "-json", "netns", "list-id"], capture_output=True, text=True)
    by_id = {e.get("nsid"): e.get("name") for e in json.loads(listed_ids.stdout or "[]")}
    return [by_id[i] for i in peer_ids if by_id.get(i) in names]


def empty_cri_namespaces() -> list[str]:
    """The CRI's network namespaces (``cni-...``) with nothing in them but loopback: left by a
    sandbox whose network was never set up or already torn down; they serve no pod. (One cluster
    with real nodes at a time, so none is another live node's.)"""
    listed = subprocess.run(["ip", "-json", "netns", "list"], capture_output=True, text=True)
    if listed.returncode != 0 or not listed.stdout.strip():
        return []
    empty = []
    for entry in json.loads(listed.stdout):
        name = entry["name"]
        if not name.startswith("cni-"):
            continue
        links = subprocess.run(
            ["ip", "-n", name, "-json", "link", "show"], capture_output=True, text=True
        )
        if links.returncode == 0 and all(
            link.get("ifname") == "lo" for link in json.loads(links.stdout or "[]")
        ):
            empty.append(name)
    return empty


def _cgroup_hierarchies() -> list[Path]:
    """The mounted cgroup v1 hierarchies (``cpu,cpuacct`` once, not through its links)."""
    if not CGROUP_ROOT.is_dir():
        return []
    found = sorted(CGROUP_ROOT.iterdir())
    return [path for path in found if path.is_dir() and not path.is_symlink()]


def _create_cgroup_root(node: RealNode) -> None:
    """The kubelet's ``cgroupRoot`` must exist in every hierarchy before it starts. A new
    cpuset is empty (no CPU, no memory node) and would refuse every task: it is given its
    parent's."""
    for hierarchy in _cgroup_hierarchies():
        top = hierarchy / node.cgroup_parent.lstrip("/")
        top.mkdir(exist_ok=True)
        for setting in ("cpuset.cpus", "cpuset.mems"):
            if (hierarchy / setting).exists() and not (top / setting).read_text().strip():
                (top / setting).write_text((hierarchy / setting).read_text())


def _remove_cgroups(node: RealNode) -> None:
    """The pods' cgroups under the node's own root, deepest first, in every hierarchy."""
    for hierarchy in _cgroup_hierarchies():
        top = hierarchy / node.cgroup_parent.lstrip("/")
        if not top.is_dir():
            continue
        below = [path for path in top.rglob("*") if path.is_dir()]
        for directory in sorted(below, key=lambda path: len(path.parts), reverse=True):
            with contextlib.suppress(OSError):  # a cgroup still in use stays, and is listed
                directory.rmdir()
        with contextlib.suppress(OSError):
            top.rmdir()


def leftovers(node: RealNode) -> list[str]:
    """What of the node is still on the machine (empty after ``stop``): processes (containerd,
    the kubelet, shims: each names the node's directory or sockets), the bridge, the
    forwarding rule, pod network namespaces (on its bridge, or the CRI's left empty), cgroups,
    the sockets' directory."""
    found = []
    naming = process.processes_naming(str(node.directory), str(node.runtime_dir))
    found += [process.process_line(pid, command) for pid, command in naming.items()]
    if subprocess.run(["ip", "link", "show", node.tag], capture_output=True).returncode == 0:
        found.append(f"bridge {node.tag}")
    if (
        subprocess.run(["iptables", "-C", *_forward_rule(node)], capture_output=True).returncode
        == 0
    ):
        found.append("iptables rule " + " ".join(_forward_rule(node)))
    found += [
        f"network namespace {name}"
        for name in sorted({*pod_network_namespaces(node), *empty_cri_namespaces()})
    ]
    if node.runtime_dir.exists():
        found.append(f"directory {node.runtime_dir}")
    for directory in (node.runtime_dir, node.directory, node.image_store):
        found += [f"mount {point}" for point in _mounts_below(directory)]
    for hierarchy in _cgroup_hierarchies():
        if (hierarchy / node.cgroup_parent.lstrip("/")).exists():
            found.append(f"cgroup {hierarchy / node.cgroup_parent.lstrip('/')}")
    return found
