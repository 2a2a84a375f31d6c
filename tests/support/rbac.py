"""Acting as a ServiceAccount against the real API server, to see what its RBAC allows."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import yaml
from kubernetes import client, config

from localcluster.kubeconfig import mint_service_account_kubeconfig


def as_service_account(kubeconfig: Path, namespace: str, name: str) -> client.CoreV1Api:
    """The core API as ServiceAccount ``name`` of ``namespace`` (a token minted for it)."""
    document = mint_service_account_kubeconfig(kubeconfig, namespace, name)
    return client.CoreV1Api(config.new_client_from_config_dict(yaml.safe_load(document)))


def allowed(call: Callable[[], object]) -> bool:
    """Whether the API server lets ``call`` through: False on 403, any other error raised."""
    try:
        call()
        return True
    except client.ApiException as exc:
        if exc.status == 403:
            return False
        raise
