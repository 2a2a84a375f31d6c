"""Deploy one release: take its lock, observe it through the Helm engine, decide with
``release.decide``, take that one action, and report the decision with the release as it ended
up, its workloads' health and, when nothing had to change, any drift of its live objects.

A failed install or upgrade is remediated in the same run when the policy says roll back (as
Flux does); the health of the workloads is captured *before* that, so the outcome names what
failed (an image that cannot be pulled, a pod that cannot be scheduled), not the healthy state
the rollback restored.
"""

from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import yaml
from kubernetes.client.exceptions import ApiException

from floe_deploy_assets.helm.engine import (
    ChartError,
    HelmEngine,
    HelmEngineError,
    Release,
    ReleaseRef,
)
from floe_deploy_assets.helm.storage import ReleaseStorage
from floe_deploy_assets.kube.access import ClusterAccess
from floe_deploy_assets.kube.health import release_health
from floe_deploy_assets.kube.lease import DEFAULT_LEASE_SECONDS, ReleaseLock
from floe_deploy_assets.kube.objects import read_live, restore
from floe_deploy_assets.models.deployment import (
    DeployedComponent,
    DeploymentStatus,
    PlatformDeployment,
)
from floe_deploy_assets.release.decide import (
    PENDING_STATUSES,
    Action,
    Decision,
    Digests,
    ReleaseState,
    Remediation,
    Revision,
    decide,
)
from floe_deploy_assets.release.digests import (
    CHART_DIGEST_LABEL,
    VALUES_DIGEST_LABEL,
    chart_digest,
    values_digest,
)
from floe_deploy_assets.release.drift import DriftedObject, drifted

DEFAULT_PENDING_DEADLINE = timedelta(minutes=15)
WRITES = frozenset({Action.INSTALL, Action.UPGRADE, Action.RETRY_UPGRADE, Action.ROLLBACK})


@dataclass(frozen=True)
class DeployPolicy:
    remediation: Remediation = Remediation.ROLLBACK
    timeout: timedelta = timedelta(minutes=5)  # each install, upgrade or rollback
    # A pending revision not made by floe-deploy (no digests) is stale only after this.
    pending_deadline: timedelta = DEFAULT_PENDING_DEADLINE
    lock_wait: timedelta = timedelta(0)  # how long to wait for another deploy of the release
    lock_duration: timedelta = timedelta(seconds=DEFAULT_LEASE_SECONDS)
    correct_drift: bool = False  # drift is reported; correcting it is opt-in


@dataclass(frozen=True)
class DeployOutcome:
    decision: Decision  # the action that settled the release
    release: Release | None  # the release as it ended up
    unlocked: Decision | None = None  # set when a stale pending revision was unlocked first
    error: HelmEngineError | None = None  # the action failed (after any remediation below)
    remediation: Decision | None = None  # what was done about that failure
    components: list[DeployedComponent] = field(default_factory=list)
    drift: list[DriftedObject] = field(default_factory=list)

    @property
    def succeeded(self) -> bool:
        """The desired chart and values are deployed. A rollback is a remediation: the release
        is healthy again, but not in the desired state."""
        return self.error is None and self.decision.action not in (
            Action.HOLD,
            Action.WAIT,
            Action.ROLLBACK,
            Action.UNLOCK,
        )

    def platform_deployment(
        self, environment: str, artifact_version: str, deployed_by: str | None = None
    ) -> PlatformDeployment:
        """The seed's PlatformDeployment for this deploy, reached through the seed's
        transitions: pending, then deployed, or failed when the desired state was not reached
        (the action failed, or the policy held it); pending still when another operation
        holds the release."""
        if self.release is None:
            raise ValueError("no release exists to describe (nothing was installed)")
        record = PlatformDeployment(
            release_name=self.release.name,
            namespace=self.release.namespace,
            chart_version=self.release.chart_version,
            artifact_version=artifact_version,
            environment=environment,
            status=DeploymentStatus.PENDING,
            components=self.components,
            deployed_at=_timestamp(self.release.deployed_at),
            deployed_by=deployed_by,
        )
        if self.decision.action is Action.WAIT:
            return record
        if not self.succeeded:
            return record.transition_to(DeploymentStatus.FAILED)
        return record.transition_to(DeploymentStatus.DEPLOYED)


def desired_digests(chart: Path, values: dict[str, Any]) -> Digests:
    return Digests(chart_digest(chart), values_digest(values))


def _revision(release: Release) -> Revision:
    labels = release.labels
    digests = None
    if CHART_DIGEST_LABEL in labels and VALUES_DIGEST_LABEL in labels:
        digests = Digests(labels[CHART_DIGEST_LABEL], labels[VALUES_DIGEST_LABEL])
    return Revision(release.revision, release.status, _timestamp(release.deployed_at), digests)


def _timestamp(helm_time: str) -> datetime:
    return datetime.fromisoformat((helm_time or "1970-01-01T00:00:00Z").replace("Z", "+00:00"))


def digest_history(engine: HelmEngine, ref: ReleaseRef) -> list[Revision]:
    """Every revision Helm keeps for the release, oldest first, with the digests it was made
    from (None for revisions made outside floe-deploy)."""
    return [_revision(r) for r in engine.history(ref)]


def plan(
    engine: HelmEngine,
    ref: ReleaseRef,
    chart: Path,
    values: dict[str, Any],
    policy: DeployPolicy = DeployPolicy(),
) -> Decision:
    """What ``deploy`` would do now, without doing it (and without taking the lock)."""
    return _decide(engine, ref, desired_digests(chart, values), policy, lock_held=False)


@dataclass(frozen=True)
class SyncReport:
    """What a deploy of one release would find now: its decision and, when it would change
    nothing, the live objects that drifted from the release manifest."""

    decision: Decision
    drift: list[DriftedObject] = field(default_factory=list)

    @property
    def in_sync(self) -> bool:
        return self.decision.action is Action.NOTHING and not self.drift

    def __str__(self) -> str:
        if self.drift:
            return f"{len(self.drift)} live object(s) drifted: " + "; ".join(map(str, self.drift))
        return self.decision.reason


def sync_report(
    engine: HelmEngine,
    ref: ReleaseRef,
    chart: Path,
    values: dict[str, Any],
    cluster: ClusterAccess,
    policy: DeployPolicy = DeployPolicy(),
) -> SyncReport:
    """Whether a deploy would do anything, without the lock and without acting: the decision
    ``deploy`` would take and, when that is nothing, the drift it would report."""
    decision = plan(engine, ref, chart, values, policy)
    if decision.action is not Action.NOTHING:
        return SyncReport(decision)
    release = engine.status(ref)
    return SyncReport(decision, _drift(cluster, release, correct=False) if release else [])


def deploy(
    engine: HelmEngine,
    ref: ReleaseRef,
    chart: Path,
    values: dict[str, Any],
    *,
    cluster: ClusterAccess | None = None,
    policy: DeployPolicy = DeployPolicy(),
) -> DeployOutcome:
    """Observe, decide, act once. With ``cluster``, the release's Lease is held throughout, a
    stale pending revision is unlocked (marked failed) and the release decided again, and the
    outcome carries workload health and drift. Raises ``ReleaseBusyError`` when another deploy
    holds the release, ``ChartError`` when the chart or values are refused (nothing applied)."""
    desired = desired_digests(chart, values)
    lock = None
    if cluster is not None:
        _ensure_namespace(cluster, ref.namespace)
        lock = ReleaseLock(
            cluster.coordination,
            ref.namespace,
            ref.name,
            wait=policy.lock_wait,
            duration=policy.lock_duration,
        )
    with lock or nullcontext():
        decision = _decide(engine, ref, desired, policy, lock_held=cluster is not None)
        unlocked = None
        if decision.action is Action.UNLOCK and cluster is not None and lock is not None:
            assert decision.target_revision is not None  # decide names the pending revision
            lock.check()
            ReleaseStorage(cluster.core).unlock(
                ref.namespace, ref.name, decision.target_revision, decision.reason
            )
            unlocked = decision
            # The interrupted revision never had a fair attempt: retry it rather than
            # treating it as a failure of the chart or values.
            decision = _decide(
                engine,
                ref,
                desired,
                replace(policy, remediation=Remediation.RETRY),
                lock_held=True,
            )
        outcome = _act(engine, ref, chart, values, desired, decision, _Guard(cluster, lock), policy)
        return replace(outcome, unlocked=unlocked)


@dataclass(frozen=True)
class _Guard:
    """Cluster access and the release lock: every write of ours checks the lock first, so a
    deploy that lost its Lease stops rather than writing beside another deploy."""

    cluster: ClusterAccess | None
    lock: ReleaseLock | None

    def check(self) -> None:
        if self.lock is not None:
            self.lock.check()


def _act(
    engine: HelmEngine,
    ref: ReleaseRef,
    chart: Path,
    values: dict[str, Any],
    desired: Digests,
    decision: Decision,
    guard: _Guard,
    policy: DeployPolicy,
) -> DeployOutcome:
    cluster = guard.cluster
    timeout = int(policy.timeout.total_seconds())
    labels = {CHART_DIGEST_LABEL: desired.chart, VALUES_DIGEST_LABEL: desired.values}
    release: Release | None
    if decision.action in WRITES:
        guard.check()
    try:
        if decision.action is Action.INSTALL:
            release = engine.install(ref, chart, values, timeout, labels)
        elif decision.action in (Action.UPGRADE, Action.RETRY_UPGRADE):
            release = engine.upgrade(ref, chart, values, timeout, labels)
        elif decision.action is Action.ROLLBACK and decision.target_revision is not None:
            release = engine.rollback(ref, decision.target_revision, timeout)
        else:  # NOTHING, WAIT, HOLD, or UNLOCK without cluster access to do it with
            release = engine.status(ref)
    except ChartError:
        raise  # refused before anything was applied
    except HelmEngineError as error:
        _settle(engine, ref, guard, None, error)
        components = _health(cluster, ref)  # before a rollback hides the cause
        remediation = _remediate(engine, ref, desired, policy, guard)
        return DeployOutcome(
            decision,
            engine.status(ref),
            error=error,
            remediation=remediation,
            components=components,
        )
    if decision.action in WRITES and _settle(engine, ref, guard, release, None):
        release = engine.status(ref)  # the record as settled
    drift: list[DriftedObject] = []
    if decision.action is Action.NOTHING and cluster is not None and release is not None:
        if policy.correct_drift:
            guard.check()
        drift = _drift(cluster, release, policy.correct_drift)
        if drift:
            decision = Decision(
                ReleaseState.DRIFTED,
                Action.CORRECT_DRIFT if policy.correct_drift else Action.NOTHING,
                f"{decision.reason}, but {len(drift)} live object(s) drifted: "
                + "; ".join(str(d) for d in drift)
                + ("; restored from the manifest" if policy.correct_drift else ""),
            )
    return DeployOutcome(decision, release, components=_health(cluster, ref), drift=drift)


def _remediate(
    engine: HelmEngine,
    ref: ReleaseRef,
    desired: Digests,
    policy: DeployPolicy,
    guard: _Guard,
) -> Decision | None:
    """After a failed action, what the policy says now: only a rollback is done in this run
    (a retry waits for the next run, so a failing upgrade is not hammered)."""
    decision = _decide(engine, ref, desired, policy, lock_held=guard.cluster is not None)
    if decision.action is not Action.ROLLBACK or decision.target_revision is None:
        return decision
    guard.check()
    try:
        rolled_back = engine.rollback(
            ref, decision.target_revision, int(policy.timeout.total_seconds())
        )
    except HelmEngineError as error:
        _settle(engine, ref, guard, None, error)
        return replace(decision, reason=f"{decision.reason}; the rollback failed too: {error}")
    _settle(engine, ref, guard, rolled_back, None)
    return decision


def _settle(
    engine: HelmEngine,
    ref: ReleaseRef,
    guard: _Guard,
    reported: Release | None,
    error: HelmEngineError | None,
) -> bool:
    """Make Helm's record say what happened; True when it had to be rewritten. Helm logs,
    rather than returns, a failure to write its release record after applying (a 503 or a
    dropped connection on that last update): the operation "succeeds" and its revision stays
    pending, or an older revision stays deployed beside the new one. We hold the release
    lock, so no floe-deploy operation owns a pending revision of ours here: it gets the status
    Helm reported, or failed, with why. A pending revision made outside floe-deploy (no digest
    labels) is left to its owner."""
    if guard.cluster is None:
        return False
    history = engine.history(ref)
    if not history:
        return False
    rewritten = False
    storage, latest = ReleaseStorage(guard.cluster.core), history[-1]
    if latest.status in PENDING_STATUSES and CHART_DIGEST_LABEL in latest.labels:
        recorded = reported is not None and reported.revision == latest.revision
        status = reported.status if reported is not None and recorded else "failed"
        why = (
            f"floe-deploy: Helm reported {status} but could not record it"
            if recorded
            else f"floe-deploy: the {error.operation if error else 'operation'} ended before "
            f"Helm recorded its outcome: {error.detail if error else 'unknown'}"
        )
        guard.check()
        storage.set_status(ref.namespace, ref.name, latest.revision, status, why)
        latest, rewritten = replace(latest, status=status), True
    if latest.status == "deployed":
        for older in history[:-1]:
            if older.status == "deployed":
                guard.check()
                storage.set_status(
                    ref.namespace,
                    ref.name,
                    older.revision,
                    "superseded",
                    "floe-deploy: superseded (Helm could not record it)",
                )
                rewritten = True
    return rewritten


def _decide(
    engine: HelmEngine, ref: ReleaseRef, desired: Digests, policy: DeployPolicy, lock_held: bool
) -> Decision:
    return decide(
        digest_history(engine, ref),
        desired,
        now=datetime.now(UTC),
        pending_deadline=policy.pending_deadline,
        held_by_live_operation=False,
        remediation=policy.remediation,
        lock_held=lock_held,
    )


def _health(cluster: ClusterAccess | None, ref: ReleaseRef) -> list[DeployedComponent]:
    return release_health(cluster.api, ref.namespace, ref.name) if cluster else []


def _drift(cluster: ClusterAccess, release: Release, correct: bool) -> list[DriftedObject]:
    manifest = [obj for obj in yaml.safe_load_all(release.manifest) if obj]
    live = read_live(cluster.api, manifest, release.namespace, release.name)
    found = drifted(manifest, live)
    if correct:
        by_name = {(o["kind"], o["metadata"]["name"]): o for o in manifest}
        for item in found:
            restore(
                cluster.api, by_name[(item.kind, item.name)], release.namespace, not item.missing
            )
    return found


def _ensure_namespace(cluster: ClusterAccess, namespace: str) -> None:
    """The release's Lease lives in its namespace, so that must exist before the lock is taken
    (Helm would create it on install anyway)."""
    try:
        cluster.core.create_namespace({"metadata": {"name": namespace}})
    except ApiException as error:
        if error.status not in (409, 403):  # exists, or we may not create (then it must exist)
            raise
