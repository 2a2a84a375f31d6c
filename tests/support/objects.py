"""Small builders for the Kubernetes objects the test-bed tests create."""

from __future__ import annotations

from typing import Any

from localcluster.kubelet.behaviour import ANNOTATION_PREFIX

IMAGE = "registry.example/floe/test:1.0"


def sim(**settings: str | int | float) -> dict[str, str]:
    """Simulated-kubelet annotations, e.g. ``sim(fault="crash-loop", run_seconds=1)``."""
    return {
        ANNOTATION_PREFIX + key.replace("_", "-"): str(value) for key, value in settings.items()
    }


def pod_spec(
    restart_policy: str = "Always",
    cpu: str = "50m",
    memory: str = "64Mi",
    readiness_delay: int | None = None,
    image: str = IMAGE,
    **extra: Any,
) -> dict[str, Any]:
    container: dict[str, Any] = {
        "name": "main",
        "image": image,
        "resources": {
            "requests": {"cpu": cpu, "memory": memory},
            "limits": {"cpu": cpu, "memory": memory},
        },
    }
    if readiness_delay is not None:
        container["readinessProbe"] = {
            "httpGet": {"path": "/ready", "port": 8080},
            "initialDelaySeconds": readiness_delay,
        }
    return {"restartPolicy": restart_policy, "containers": [container], **extra}


def pod(name: str, annotations: dict[str, str] | None = None, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "annotations": annotations or {}},
        "spec": pod_spec(**spec),
    }


def job(
    name: str, annotations: dict[str, str] | None = None, backoff_limit: int = 0, **spec: Any
) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {
            "backoffLimit": backoff_limit,
            "template": {
                "metadata": {"annotations": annotations or {}},
                "spec": pod_spec(restart_policy="Never", **spec),
            },
        },
    }


def deployment(
    name: str, replicas: int, annotations: dict[str, str] | None = None, **spec: Any
) -> dict[str, Any]:
    labels = {"app": name}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels, "annotations": annotations or {}},
                "spec": pod_spec(**spec),
            },
        },
    }


def set_fault(api: Any, namespace: str, deployment_name: str, fault: str | None) -> None:
    """Put a simulated-kubelet fault on a Deployment's pod template (a rollout of faulty pods),
    or take it off again with ``None``."""
    from kubernetes import client

    annotations = {ANNOTATION_PREFIX + "fault": fault}
    client.AppsV1Api(api).patch_namespaced_deployment(
        deployment_name,
        namespace,
        {"spec": {"template": {"metadata": {"annotations": annotations}}}},
    )
