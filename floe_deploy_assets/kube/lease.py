"""One writer per release: a ``coordination.k8s.io/v1`` Lease in the release's namespace, held
while a deploy runs and renewed in the background, as Kubernetes' own controllers elect a leader.

Why a Lease and not Helm's pending status: Helm's lock is the latest revision being pending, and
a SIGKILLed process leaves that forever. A Lease expires by itself when its holder stops renewing
it, so a stuck pending revision whose Lease has expired is known to be held by nobody.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from types import TracebackType

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from floe_deploy_assets.kube.retry import call_with_retry

DEFAULT_LEASE_SECONDS = 30
POLL_SECONDS = 1.0
REQUEST_TIMEOUT = (5, 15)  # connect, read: no Lease call may hang the deploy it guards
# Freeing the Lease happens on the way out (also when the deploy is stopped by a signal): it
# must not hold the exit up. Not freed, the Lease expires after its duration anyway.
RELEASE_TIMEOUT = (3, 5)
RENEWER_JOIN_SECONDS = 2.0  # a renewal still in flight loses its compare-and-swap
HOLDER_READ_DEADLINE = 10.0  # current_holder, for status reports


class ReleaseBusyError(RuntimeError):
    """Another live deploy holds the release's Lease and did not let go within the wait."""


class LockLostError(RuntimeError):
    """The Lease lapsed (renewals failed for its whole duration) or was taken over: this deploy
    may no longer write the release."""


@dataclass(frozen=True)
class LeaseHolder:
    identity: str
    renewed_at: datetime
    duration: timedelta

    def alive(self, now: datetime) -> bool:
        return now < self.renewed_at + self.duration


def lease_name(release: str) -> str:
    return f"floe-deploy.{release}"


def default_identity() -> str:
    """Who holds the lock, readable by an operator: host, process and a unique suffix."""
    return f"{socket.gethostname()}/pid-{os.getpid()}/{uuid.uuid4().hex[:8]}"


def _holder(lease: client.V1Lease) -> LeaseHolder | None:
    spec = lease.spec
    if not spec or not spec.holder_identity or not spec.renew_time:
        return None  # released cleanly
    return LeaseHolder(
        spec.holder_identity,
        spec.renew_time,
        timedelta(seconds=spec.lease_duration_seconds or DEFAULT_LEASE_SECONDS),
    )


class ReleaseLock:
    """``with ReleaseLock(...)``: hold the release's Lease for the block. Waits up to ``wait``
    for a live holder to finish, then raises ``ReleaseBusyError`` naming it; takes over a Lease
    whose holder stopped renewing (a crashed deploy). Renewal is a compare-and-swap on the
    Lease's resourceVersion, only while we are its holder; when it cannot renew within the
    Lease's duration, or finds another holder, the lock is lost and ``check`` raises, so the
    deploy stops before its next write. Clocks are compared across machines (as Kubernetes' own
    leader election does): keep them in sync."""

    def __init__(
        self,
        coordination: client.CoordinationV1Api,
        namespace: str,
        release: str,
        *,
        wait: timedelta = timedelta(0),
        duration: timedelta = timedelta(seconds=DEFAULT_LEASE_SECONDS),
        identity: str | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ):
        self.api, self.namespace, self.release = coordination, namespace, release
        self.name = lease_name(release)
        self.wait, self.duration, self.clock = wait, duration, clock
        self.identity = identity or default_identity()
        self._stop = threading.Event()
        self._lost = threading.Event()
        self._lost_because = ""
        self._renewer: threading.Thread | None = None

    def __enter__(self) -> ReleaseLock:
        self.acquire()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        try:
            self.release_lock()
        except Exception:
            if error is None:
                raise
            # The block's own error is the one to report; an unreleased Lease expires anyway.

    def check(self) -> None:
        """Raise LockLostError when this deploy no longer holds the release."""
        if self._lost.is_set():
            raise LockLostError(
                f"release {self.release} in namespace {self.namespace}: this deploy lost its "
                f"Lease {self.name} ({self._lost_because}); it stopped before writing again. "
                "Check the API server's health and run the deploy again"
            )

    def acquire(self) -> None:
        deadline = time.monotonic() + self.wait.total_seconds()
        while True:
            holder = self._try_acquire()
            if holder is None:
                break
            if time.monotonic() >= deadline:
                raise ReleaseBusyError(
                    f"release {self.release} in namespace {self.namespace} is being deployed "
                    f"by {holder.identity} (Lease {self.name}, renewed "
                    f"{holder.renewed_at.isoformat()}); waited "
                    f"{self.wait.total_seconds():.0f} s. Try again when it finishes, or wait "
                    "longer; a crashed holder's Lease expires "
                    f"{holder.duration.total_seconds():.0f} s after its last renewal"
                )
            time.sleep(POLL_SECONDS)
        self._renewer = threading.Thread(
            target=self._renew_until_stopped, name=f"lease-{self.release}", daemon=True
        )
        self._renewer.start()

    def _spec(self, acquire_time: datetime | None = None) -> dict[str, object]:
        now = self.clock()
        return {
            "holderIdentity": self.identity,
            "leaseDurationSeconds": int(self.duration.total_seconds()),
            "acquireTime": _micro(acquire_time or now),
            "renewTime": _micro(now),
        }

    def _try_acquire(self) -> LeaseHolder | None:
        """None when we now hold the Lease; otherwise its live holder."""
        try:
            lease = self.api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=REQUEST_TIMEOUT
            )
        except ApiException as error:
            if error.status != 404:
                raise
            try:
                self.api.create_namespaced_lease(
                    self.namespace,
                    {"metadata": {"name": self.name}, "spec": self._spec()},
                    _request_timeout=REQUEST_TIMEOUT,
                )
                return None
            except ApiException as conflict:
                if conflict.status != 409:  # 409: someone else created it first: read again
                    raise
                return self._try_acquire()
        holder = _holder(lease)
        if holder is not None and holder.identity != self.identity and holder.alive(self.clock()):
            return holder
        try:
            self.api.replace_namespaced_lease(
                self.name,
                self.namespace,
                {
                    "metadata": {
                        "name": self.name,
                        "resourceVersion": lease.metadata.resource_version,
                    },
                    "spec": self._spec(),
                },
                _request_timeout=REQUEST_TIMEOUT,
            )
        except ApiException as conflict:
            if conflict.status != 409:
                raise
            return self._try_acquire()  # another deploy took it between our read and write
        return None

    def _renew_until_stopped(self) -> None:
        interval = self.duration.total_seconds() / 3
        acquired = self.clock()
        renewed = time.monotonic()
        while not self._stop.wait(interval):
            try:
                lease = self.api.read_namespaced_lease(
                    self.name, self.namespace, _request_timeout=REQUEST_TIMEOUT
                )
                holder = _holder(lease)
                if holder is None or holder.identity != self.identity:
                    self._lose(f"now held by {holder.identity if holder else 'nobody'}")
                    return
                lease.spec.renew_time = self.clock()
                lease.spec.acquire_time = acquired
                self.api.replace_namespaced_lease(
                    self.name, self.namespace, lease, _request_timeout=REQUEST_TIMEOUT
                )
                renewed = time.monotonic()
            except Exception as error:  # any failure: retried next interval, until it lapses
                if time.monotonic() - renewed >= self.duration.total_seconds():
                    self._lose(f"not renewed for {self.duration.total_seconds():.0f} s: {error}")
                    return

    def _lose(self, because: str) -> None:
        self._lost_because = because
        self._lost.set()

    def release_lock(self, delete: bool = False) -> None:
        """Let go of the Lease (``delete``: remove it, as an uninstall does), if it is still
        ours: a lapsed Lease another deploy has taken is not ours to clear. Runs on every way
        out of the ``with`` block, a signal's included, with short request timeouts (a renewal
        in flight meanwhile fails its compare-and-swap), so the next deploy need not wait out
        the Lease's duration."""
        self._stop.set()
        if self._renewer is not None:
            self._renewer.join(timeout=RENEWER_JOIN_SECONDS)
        try:
            lease = self.api.read_namespaced_lease(
                self.name, self.namespace, _request_timeout=RELEASE_TIMEOUT
            )
            holder = _holder(lease)
            if holder is None or holder.identity != self.identity:
                return
            if delete:
                self.api.delete_namespaced_lease(
                    self.name,
                    self.namespace,
                    body=client.V1DeleteOptions(
                        preconditions=client.V1Preconditions(
                            resource_version=lease.metadata.resource_version
                        )
                    ),
                    _request_timeout=RELEASE_TIMEOUT,
                )
                return
            lease.spec.holder_identity = None
            lease.spec.renew_time = None
            self.api.replace_namespaced_lease(
                self.name, self.namespace, lease, _request_timeout=RELEASE_TIMEOUT
            )
        except ApiException as error:
            if error.status not in (404, 409):  # gone, or taken over meanwhile: nothing to free
                raise


def _micro(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def current_holder(
    coordination: client.CoordinationV1Api,
    namespace: str,
    release: str,
    deadline: float = HOLDER_READ_DEADLINE,
) -> LeaseHolder | None:
    """The live holder of a release's Lease, if any (for status reports)."""
    try:
        lease = call_with_retry(
            coordination.read_namespaced_lease,
            lease_name(release),
            namespace,
            what=f"reading the Lease {lease_name(release)} in namespace {namespace}",
            deadline=deadline,
        )
    except ApiException as error:
        if error.status == 404:
            return None
        raise
    holder = _holder(lease)
    return holder if holder and holder.alive(datetime.now(UTC)) else None
