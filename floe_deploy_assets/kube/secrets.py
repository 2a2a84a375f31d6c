"""Whether the Secrets an environment needs exist before anything is deployed into it.

Each read goes through ``call_with_retry``: a request timeout on every attempt (the TLS
handshake included) and ``deadline`` seconds in all, so a silent API server fails the check
with a deadline instead of hanging the deploy."""

from __future__ import annotations

from collections.abc import Iterable

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from floe_deploy_assets.kube.retry import DEFAULT_DEADLINE, call_with_retry
from floe_deploy_assets.values.mapping import RequiredSecret


def missing_secrets(
    core: client.CoreV1Api,
    namespace: str,
    required: Iterable[RequiredSecret],
    deadline: float = DEFAULT_DEADLINE,
) -> list[str]:
    """One line per Secret (or key) that is missing; empty when everything is there. Only names
    and keys are read back, never values. Raises ``RetryDeadlineError`` when the API server
    does not answer within ``deadline`` seconds (for each Secret)."""
    problems = []
    for secret in required:
        try:
            found = call_with_retry(
                core.read_namespaced_secret,
                secret.name,
                namespace,
                what=f"reading Secret {secret.name} in namespace {namespace}",
                deadline=deadline,
            )
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
