"""Helm's release storage (Secrets ``sh.helm.release.v1.<name>.v<revision>``), read and written
directly for the one thing Helm leaves to its user: a revision stuck in ``pending-*`` after the
process that held it died. Unlocking marks that revision failed, with the reason, as Flux's
helm-controller does, so the next operation may proceed. No revision is removed.

A failed revision of floe-deploy's carries the verdict on it: failed for a transient reason
(the cluster's, not the values': see ``helm.engine.is_transient``), its description starting
``transient:`` and the label ``floe.dev/transient-failure: "<revision>"``; or failed for a
reason of its own (``floe.dev/final-failure: "<revision>"``). Helm returns the labels with the
revision. A label names its own revision because Helm copies the last revision's custom labels
into the next one: a copy names another revision and means nothing.
"""

from __future__ import annotations

import base64
import gzip
import json
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from floe_deploy_assets.kube.retry import call_with_retry

CONFLICT_ATTEMPTS = 3
TRANSIENT_FAILURE_LABEL = "floe.dev/transient-failure"
FINAL_FAILURE_LABEL = "floe.dev/final-failure"
TRANSIENT_PREFIX = "transient: "


def failed_transiently(revision: int, labels: dict[str, str], description: str = "") -> bool:
    """Whether revision ``revision`` (its Helm labels and description) was marked as failed
    for a transient reason."""
    return labels.get(TRANSIENT_FAILURE_LABEL) == str(revision) or description.startswith(
        TRANSIENT_PREFIX
    )


def failed_finally(revision: int, labels: dict[str, str]) -> bool:
    """Whether revision ``revision`` was marked as failed for a reason of its own."""
    return labels.get(FINAL_FAILURE_LABEL) == str(revision)


def _secret_name(release: str, revision: int) -> str:
    return f"sh.helm.release.v1.{release}.v{revision}"


def _decode(encoded: str) -> dict[str, Any]:
    # The Secret's data is base64 (Kubernetes) of base64 (Helm) of gzip of the release JSON.
    return json.loads(gzip.decompress(base64.b64decode(base64.b64decode(encoded))))


def _encode(release: dict[str, Any]) -> str:
    packed = base64.b64encode(gzip.compress(json.dumps(release).encode()))
    return base64.b64encode(packed).decode()


class ReleaseStorage:
    def __init__(self, core: client.CoreV1Api):
        self.core = core

    def set_status(
        self,
        namespace: str,
        release: str,
        revision: int,
        status: str,
        description: str,
        *,
        transient: bool | None = None,
    ) -> None:
        """Rewrite one revision's status (and the storage label Helm queries by); ``transient``
        True marks a failure as the cluster's (``TRANSIENT_PREFIX`` before the description, and
        the ``TRANSIENT_FAILURE_LABEL``), False as the release's own (``FINAL_FAILURE_LABEL``),
        None says nothing. Transient API failures are retried; a conflict (the record changed
        since it was read) is read and applied again, a few times."""
        if transient and not description.startswith(TRANSIENT_PREFIX):
            description = TRANSIENT_PREFIX + description
        labels: dict[str, str | None] = {"status": status}
        if transient is not None:
            verdict, other = (
                (TRANSIENT_FAILURE_LABEL, FINAL_FAILURE_LABEL)
                if transient
                else (FINAL_FAILURE_LABEL, TRANSIENT_FAILURE_LABEL)
            )
            labels[verdict] = str(revision)
            labels[other] = None  # a copy of the last revision's (see the module): removed
        name = _secret_name(release, revision)
        what = f"marking {name} in {namespace} {status}"
        for attempt in range(CONFLICT_ATTEMPTS):
            secret = call_with_retry(self.core.read_namespaced_secret, name, namespace, what=what)
            document = _decode(secret.data["release"])
            document["info"]["status"] = status
            document["info"]["description"] = description
            patch = {
                "metadata": {
                    "labels": labels,
                    "resourceVersion": secret.metadata.resource_version,
                },
                "data": {"release": _encode(document)},
            }
            try:
                call_with_retry(
                    self.core.patch_namespaced_secret, name, namespace, patch, what=what
                )
                return
            except ApiException as error:
                if error.status != 409 or attempt == CONFLICT_ATTEMPTS - 1:
                    raise

    def unlock(self, namespace: str, release: str, revision: int, reason: str) -> None:
        self.set_status(
            namespace, release, revision, "failed", f"unlocked by floe-deploy: {reason}"
        )
