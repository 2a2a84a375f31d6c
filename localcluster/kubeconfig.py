"""Kubeconfig files: the admin's, and one minted for a ServiceAccount so RBAC can be tested."""

from __future__ import annotations

import base64
import time
from pathlib import Path

import yaml

from localcluster.config import ClusterConfig
from localcluster.errors import LocalClusterError
from localcluster.pki import admin_token


def render_kubeconfig(config: ClusterConfig, user: str, token: str) -> str:
    context = f"{config.name}-{user}" if user != "admin" else config.name
    document = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": config.name,
                "cluster": {
                    "server": config.server_url,
                    "certificate-authority": str(config.pki_dir / "ca.crt"),
                },
            }
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": config.name, "user": user}}],
        "current-context": context,
    }
    return yaml.safe_dump(document, sort_keys=False)


def write_admin_kubeconfig(config: ClusterConfig) -> Path:
    path = config.admin_kubeconfig
    path.write_text(render_kubeconfig(config, "admin", admin_token(config)))
    path.chmod(0o600)
    return path


def mint_service_account_kubeconfig(
    admin_kubeconfig: Path, namespace: str, service_account: str, timeout: float = 30.0
) -> str:
    """A kubeconfig for the same cluster as ``admin_kubeconfig`` that authenticates as
    ``namespace/service_account``.

    Kubernetes 1.20's token controller stores each ServiceAccount's token in a Secret; we wait
    (bounded) for it to appear, since the controller fills it in shortly after the account exists.
    """
    from kubernetes import client
    from kubernetes import config as kube_config

    admin = yaml.safe_load(Path(admin_kubeconfig).read_text())
    api = client.CoreV1Api(kube_config.new_client_from_config(str(admin_kubeconfig)))
    deadline = time.monotonic() + timeout
    while True:
        account = api.read_namespaced_service_account(service_account, namespace)
        for ref in account.secrets or []:
            secret = api.read_namespaced_secret(ref.name, namespace)
            if secret.type == "kubernetes.io/service-account-token" and secret.data:
                token = base64.b64decode(secret.data["token"]).decode()
                user = f"{namespace}-{service_account}"
                document = {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": admin["clusters"],
                    "users": [{"name": user, "user": {"token": token}}],
                    "contexts": [
                        {
                            "name": user,
                            "context": {"cluster": admin["clusters"][0]["name"], "user": user},
                        }
                    ],
                    "current-context": user,
                }
                return yaml.safe_dump(document, sort_keys=False)
        if time.monotonic() > deadline:
            raise LocalClusterError(
                f"ServiceAccount {namespace}/{service_account} got no token Secret within "
                f"{timeout:.0f} s: is the controller manager running? (localcluster status)"
            )
        time.sleep(0.2)
