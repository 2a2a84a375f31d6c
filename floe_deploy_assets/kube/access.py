"""Kubernetes API access for one cluster, as the environment's cluster mapping names it."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from kubernetes import client
from kubernetes import config as kube_config


@dataclass(frozen=True)
class ClusterAccess:
    api: client.ApiClient

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path | None, context: str | None = None) -> ClusterAccess:
        """``kubeconfig`` None: $KUBECONFIG or ~/.kube/config; ``context`` None: its current one."""
        return cls(
            kube_config.new_client_from_config(
                str(kubeconfig) if kubeconfig else None, context=context
            )
        )

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api)

    @property
    def coordination(self) -> client.CoordinationV1Api:
        return client.CoordinationV1Api(self.api)
