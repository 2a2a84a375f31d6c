"""Uninstall a release under its lock, and decide what happens to its data.

Helm leaves a StatefulSet's PersistentVolumeClaims behind on purpose (Kubernetes keeps data
unless told otherwise; ``persistentVolumeClaimRetentionPolicy`` only exists from 1.27). We keep
them too unless asked: losing a database to a mistyped environment is worse than a leftover
claim. With ``delete_data`` the release's claims are deleted and waited for, so nothing of the
release is left; without it, the kept claims are named so the operator knows what remains. The
model Jobs the runner made for the release go too, and the uninstall waits for every pod.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from floe_deploy_assets.helm.engine import HelmEngine, ReleaseRef
from floe_deploy_assets.kube.access import ClusterAccess
from floe_deploy_assets.kube.health import RELEASE_LABEL
from floe_deploy_assets.kube.lease import ReleaseLock
from floe_deploy_assets.models.jobs import RUN_LABEL


class ObjectsLeftBehindError(RuntimeError):
    """Pods or claims of the release are still there at the uninstall's deadline."""


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
    lock = ReleaseLock(cluster.coordination, ref.namespace, ref.name, wait=lock_wait)
    lock.acquire()
    done = False
    try:
        uninstalled = engine.status(ref) is not None
        if uninstalled:
            engine.uninstall(ref, int(timeout.total_seconds()))
        # Model Jobs the runner made for this release would only fail without it.
        cluster.batch.delete_collection_namespaced_job(
            ref.namespace,
            label_selector=f"{RELEASE_LABEL}={ref.name},{RUN_LABEL}",
            propagation_policy="Background",
        )
        deadline = time.monotonic() + timeout.total_seconds()
        # Helm returns once the objects it made are deleted; their pods go after, through the
        # garbage collector. "Uninstalled" means they are gone too, and a claim is only
        # released once no pod uses it.
        _wait_until_gone(
            ref, "Pod", lambda: _names(cluster.core.list_namespaced_pod, ref), deadline
        )
        claims = _names(cluster.core.list_namespaced_persistent_volume_claim, ref)
        if delete_data:
            lock.check()
            for name in claims:
                cluster.core.delete_namespaced_persistent_volume_claim(name, ref.namespace)
            _wait_until_gone(
                ref,
                "PersistentVolumeClaim",
                lambda: _names(cluster.core.list_namespaced_persistent_volume_claim, ref),
                deadline,
            )
        done = True
    finally:
        # The Lease goes with the release, deleted while still held so no other deploy can
        # take it in between.
        lock.release_lock(delete=done)
    if delete_data:
        return UninstallOutcome(uninstalled, kept_claims=[], deleted_claims=claims)
    return UninstallOutcome(uninstalled, kept_claims=claims, deleted_claims=[])


def _names(lister: Callable[..., Any], ref: ReleaseRef) -> list[str]:
    selector = f"{RELEASE_LABEL}={ref.name}"
    return sorted(
        item.metadata.name for item in lister(ref.namespace, label_selector=selector).items
    )


def _wait_until_gone(
    ref: ReleaseRef, kind: str, remaining: Callable[[], list[str]], deadline: float
) -> None:
    while left := remaining():
        if time.monotonic() > deadline:
            raise ObjectsLeftBehindError(
                f"{kind}(s) {', '.join(left)} of {ref} are still there after the uninstall's "
                "deadline; a finalizer or a pod still using a claim may hold them "
                "(inspect their metadata.finalizers and events)"
            )
        time.sleep(0.5)
