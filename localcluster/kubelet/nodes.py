"""Register simulated Nodes and keep them Ready and free of not-ready taints.

The node lifecycle controller is off in the local control plane, so nobody but us judges node
health; the taint that admission puts on every new Node must be removed here, or the scheduler
refuses every pod.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

MERGE_PATCH = "application/merge-patch+json"
KUBELET_VERSION = "v1.20.2"


@dataclass(frozen=True)
class NodeSpec:
    name: str
    cpu: str
    memory: str
    pods: int
    kubelet_port: int


def now_stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _node_status(spec: NodeSpec) -> dict[str, Any]:
    stamp = now_stamp()
    capacity = {
        "cpu": spec.cpu,
        "memory": spec.memory,
        "pods": str(spec.pods),
        "ephemeral-storage": "100Gi",
    }

    def condition(kind: str, ok: bool, reason: str, message: str) -> dict[str, str]:
        return {
            "type": kind,
            "status": "True" if ok else "False",
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": stamp,
        }

    return {
        "capacity": capacity,
        "allocatable": capacity,
        "conditions": [
            condition(
                "MemoryPressure",
                False,
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            condition(
                "DiskPressure", False, "KubeletHasNoDiskPressure", "kubelet has no disk pressure"
            ),
            condition(
                "PIDPressure",
                False,
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            condition("Ready", True, "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": spec.name},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": spec.kubelet_port}},
        "nodeInfo": {
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
            "operatingSystem": "linux",
            "architecture": "amd64",
            "containerRuntimeVersion": "containerd://simulated",
            "osImage": "floe localcluster simulated kubelet",
            "kernelVersion": "simulated",
            "machineID": spec.name,
            "systemUUID": spec.name,
            "bootID": spec.name,
        },
    }


def register(core: client.CoreV1Api, spec: NodeSpec) -> None:
    labels = {
        "kubernetes.io/hostname": spec.name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "node.floe.dev/simulated": "true",
    }
    try:
        core.create_node(
            {"apiVersion": "v1", "kind": "Node", "metadata": {"name": spec.name, "labels": labels}}
        )
    except ApiException as exc:
        if exc.status != 409:
            raise
    heartbeat(core, spec)


def heartbeat(core: client.CoreV1Api, spec: NodeSpec) -> None:
    core.patch_node_status(spec.name, {"status": _node_status(spec)}, _content_type=MERGE_PATCH)
    node = core.read_node(spec.name)
    taints = [t for t in node.spec.taints or [] if not t.key.startswith("node.kubernetes.io/")]
    if len(taints) != len(node.spec.taints or []):
        kept = [core.api_client.sanitize_for_serialization(t) for t in taints]
        core.patch_node(spec.name, {"spec": {"taints": kept or None}}, _content_type=MERGE_PATCH)
