"""Whether the Secrets an environment needs exist before anything is deployed into it."""

from __future__ import annotations

from collections.abc import Iterable

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from floe_deploy_assets.values.mapping import RequiredSecret


def missing_secrets(
    core: client.CoreV1Api, namespace: str, required: Iterable[RequiredSecret]
) -> list[str]:
    """One line per Secret (or key) that is missing; empty when everything is there. Only names
    and keys are read back, never values."""
    problems = []
    for secret in required:
        try:
            found = core.read_namespaced_secret(secret.name, namespace)
        except ApiException as exc:
            if exc.status != 404:
                raise
            problems.append(
                f"Secret {secret.name} (keys: {', '.join(secret.keys)}) is missing "
                f"in namespace {namespace}: {secret.why}"
            )
            continue
        keys = set(found.data or {}) | {k for k, v in (found.string_data or {}).items() if v}
        absent = [key for key in secret.keys if key not in keys]
        if absent:
            problems.append(
                f"Secret {secret.name} in namespace {namespace} lacks key {', '.join(absent)}"
            )
    return problems
