"""Uninstall a release under its lock, and decide what happens to its data.

Helm leaves a StatefulSet's PersistentVolumeClaims behind on purpose (Kubernetes keeps data
unless told otherwise; ``persistentVolumeClaimRetentionPolicy`` only exists from 1.27). We keep
them too unless asked: losing a database to a mistyped environment is worse than a leftover
claim. With ``delete_data`` the release's claims are deleted and waited for, so nothing of the
release is left; without it, the kept claims are named so the operator knows what remains.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta

from floe_deploy_assets.helm.engine import HelmEngine, ReleaseRef
from floe_deploy_assets.kube.access import ClusterAccess
from floe_deploy_assets.kube.health import RELEASE_LABEL
from floe_deploy_assets.kube.lease import ReleaseLock, delete_lease


class DataNotDeletedError(RuntimeError):
    """The release's claims were asked to go but are still there at the deadline."""


@dataclass(frozen=True)
class UninstallOutcome:
    uninstalled: bool  # False: there was no release to uninstall
    kept_claims: list[str]
    deleted_claims: list[str]


def uninstall(
    engine: HelmEngine,
    ref: ReleaseRef,
    cluster: ClusterAccess,
    *,
    delete_data: bool = False,
    timeout: timedelta = timedelta(minutes=5),
    lock_wait: timedelta = timedelta(0),
) -> UninstallOutcome:
    with ReleaseLock(cluster.coordination, ref.namespace, ref.name, wait=lock_wait):
        uninstalled = engine.status(ref) is not None
        if uninstalled:
            engine.uninstall(ref, int(timeout.total_seconds()))
        claims = _claims(cluster, ref)
        if delete_data:
            for name in claims:
                cluster.core.delete_namespaced_persistent_volume_claim(name, ref.namespace)
            _wait_until_gone(cluster, ref, claims, timeout)
    delete_lease(cluster.coordination, ref.namespace, ref.name)
    if delete_data:
        return UninstallOutcome(uninstalled, kept_claims=[], deleted_claims=claims)
    return UninstallOutcome(uninstalled, kept_claims=claims, deleted_claims=[])


def _claims(cluster: ClusterAccess, ref: ReleaseRef) -> list[str]:
    return sorted(
        claim.metadata.name
        for claim in cluster.core.list_namespaced_persistent_volume_claim(
            ref.namespace, label_selector=f"{RELEASE_LABEL}={ref.name}"
        ).items
    )


def _wait_until_gone(
    cluster: ClusterAccess, ref: ReleaseRef, claims: list[str], timeout: timedelta
) -> None:
    deadline = time.monotonic() + timeout.total_seconds()
    while True:
        left = set(_claims(cluster, ref)) & set(claims)
        if not left:
            return
        if time.monotonic() > deadline:
            raise DataNotDeletedError(
                f"PersistentVolumeClaim(s) {', '.join(sorted(left))} of {ref} are still there "
                f"{timeout.total_seconds():.0f} s after deletion; a pod may still use them "
                "(kubernetes.io/pvc-protection): check with `kubectl describe pvc`"
            )
        time.sleep(0.5)
