"""Pods and Jobs for the real node's tests: busybox, placed on the real node."""

from __future__ import annotations

from localcluster import realnode

BUSYBOX = "docker.io/local/busybox:debian-bookworm"
TOLERATE_THE_REAL_NODE = {
    "key": realnode.REAL_NODE_LABEL,
    "operator": "Exists",
    "effect": "NoSchedule",
}


def _pod_spec_on_the_real_node(script: str, restart_policy: str, **container: object) -> dict:
    """A pod spec whose one container runs ``script`` in busybox on the real node; ``container``
    adds fields to the container (resources, securityContext, probes)."""
    return {
        "restartPolicy": restart_policy,
        "nodeSelector": {realnode.REAL_NODE_LABEL: "true"},
        "tolerations": [TOLERATE_THE_REAL_NODE],
        "terminationGracePeriodSeconds": 1,
        "containers": [
            {
                "name": "main",
                "image": BUSYBOX,
                "imagePullPolicy": "Never",
                "command": ["sh", "-c", script],
                **container,
            }
        ],
    }


def job_on_the_real_node(name: str, script: str, **container: object) -> dict:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": 0,
            "template": {"spec": _pod_spec_on_the_real_node(script, "Never", **container)},
        },
    }


def pod_on_the_real_node(name: str, script: str, **container: object) -> dict:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": _pod_spec_on_the_real_node(script, "Always", **container),
    }
