"""Deploy one release: take its lock, observe it through the Helm engine, decide with
``release.decide``, take that one action, and report the decision with the release as it ended
up, its workloads' health and, when nothing had to change, any drift of its live objects.

A failed install or upgrade is remediated in the same run when the policy says roll back (as
Flux does); the health of the workloads is captured *before* that, so the outcome names what
failed (an image that cannot be pulled, a pod that cannot be scheduled), not the healthy state
the rollback restored.

A transient failure (``HelmEngineError.transient``: the cluster's, not the values') is no
verdict: Helm's record of the attempt is settled (marked failed, "transient: ...") and the
action is taken again, as ``decide`` then says (an install whose record exists continues as an
upgrade), with backoff, under the Lease and within the action's deadline. When the retries run
out the revision stays marked transient, nothing is rolled back or held, and the next deploy
retries it. The first error is the one reported: a failure while settling, reading history or
remediating is added after it (``HelmEngineError.later``), never in its place.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import yaml
from kubernetes.client.exceptions import ApiException

from floe_deploy_assets.helm.engine import (
    ChartError,
    HelmEngine,
    HelmEngineError,
    Release,
    ReleaseRef,
)
from floe_deploy_assets.helm.packaging import chart_digest
from floe_deploy_assets.helm.storage import (
    ReleaseStorage,
    failed_finally,
    failed_transiently,
)
from floe_deploy_assets.kube.access import ClusterAccess
from floe_deploy_assets.kube.health import release_health
from floe_deploy_assets.kube.lease import DEFAULT_LEASE_SECONDS, ReleaseLock
from floe_deploy_assets.kube.objects import read_live, restore
from floe_deploy_assets.kube.retry import RetryPolicy, call_with_retry
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
    values_digest,
)
from floe_deploy_assets.release.drift import DriftedObject, drifted

T = TypeVar("T")

DEFAULT_PENDING_DEADLINE = timedelta(minutes=15)
WRITES = frozenset({Action.INSTALL, Action.UPGRADE, Action.RETRY_UPGRADE, Action.ROLLBACK})
APPLIES = frozenset({Action.INSTALL, Action.UPGRADE, Action.RETRY_UPGRADE})
# Between attempts of an action after a transient failure: 1 s doubling up to 10 s, jittered.
ACTION_RETRY = RetryPolicy(initial_backoff=1.0, max_backoff=10.0)
MIN_ATTEMPT_SECONDS = 10.0  # a retry needs at least this much of the action's deadline left


@dataclass(frozen=True)
class DeployPolicy:
    remediation: Remediation = Remediation.ROLLBACK
    # Each install, upgrade or rollback, its retries after transient failures included.
    timeout: timedelta = timedelta(minutes=5)
    transient_attempts: int = 6  # attempts of one action, the first included
    retry: RetryPolicy = ACTION_RETRY
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
    # Transient failures of the action that were retried in this run, oldest first.
    retried: tuple[HelmEngineError, ...] = ()

    @property
    def message(self) -> str:
        """The error (the first cause first, then what else failed while handling it) or,
        without one, the decision's reason."""
        return str(self.error) if self.error is not None else self.decision.reason

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


def _revision(release: Release, verdicts: Mapping[int, bool] | None = None) -> Revision:
    """Our view of a Helm revision. A failed revision of ours is a verdict on its values only
    when it is known to be one: from this run (``verdicts``: revision -> transient), or marked
    final (``storage.FINAL_FAILURE_LABEL``). Marked transient, or never marked (the deploy lost
    its Lease or was stopped before it could say why), it gets another attempt."""
    labels = release.labels
    digests = None
    if CHART_DIGEST_LABEL in labels and VALUES_DIGEST_LABEL in labels:
        digests = Digests(labels[CHART_DIGEST_LABEL], labels[VALUES_DIGEST_LABEL])
    transient = False
    if release.status == "failed" and digests is not None:
        known = (verdicts or {}).get(release.revision)
        transient = known if known is not None else not failed_finally(release.revision, labels)
    return Revision(
        release.revision, release.status, _timestamp(release.deployed_at), digests, transient
    )


def _timestamp(helm_time: str) -> datetime:
    return datetime.fromisoformat((helm_time or "1970-01-01T00:00:00Z").replace("Z", "+00:00"))


def digest_history(
    engine: HelmEngine, ref: ReleaseRef, verdicts: Mapping[int, bool] | None = None
) -> list[Revision]:
    """Every revision Helm keeps for the release, oldest first, with the digests it was made
    from (None for revisions made outside floe-deploy)."""
    return [_revision(r, verdicts) for r in engine.history(ref)]


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
    with _holding(lock):
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


@contextmanager
def _holding(lock: ReleaseLock | None) -> Iterator[None]:
    """``lock`` (if any) held for the block, as ``with lock`` does, but taking the Lease, and
    freeing it after a block that ended normally, are repeated on a transient API failure (both
    are idempotent: read, then create or compare-and-swap), so one 500 on the Lease does not
    fail a deploy. After an error (or a signal) it is freed once, as ``with lock`` does: the
    way out is not held up, and an unfreed Lease expires anyway."""
    if lock is None:
        yield
        return
    what = f"the Lease {lock.name} in namespace {lock.namespace}"
    call_with_retry(lock.acquire, what=f"taking {what}", request_timeout=None)
    try:
        yield
    except BaseException as error:
        lock.__exit__(type(error), error, error.__traceback__)  # the block's error is reported
        raise
    call_with_retry(lock.release_lock, what=f"freeing {what}", request_timeout=None)


@dataclass(frozen=True)
class _Guard:
    """Cluster access and the release lock: every write of ours checks the lock first, so a
    deploy that lost its Lease stops rather than writing beside another deploy."""

    cluster: ClusterAccess | None
    lock: ReleaseLock | None
    # What this run knows of the failures of the revisions it made: revision -> transient.
    verdicts: dict[int, bool] = field(default_factory=dict)

    def check(self) -> None:
        if self.lock is not None:
            self.lock.check()

    def decide(
        self, engine: HelmEngine, ref: ReleaseRef, desired: Digests, policy: DeployPolicy
    ) -> Decision:
        """What ``decide`` says now, with this run's verdicts on its own revisions."""
        return _decide(engine, ref, desired, policy, self.cluster is not None, self.verdicts)


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
    labels = {CHART_DIGEST_LABEL: desired.chart, VALUES_DIGEST_LABEL: desired.values}
    done = _attempt(engine, ref, chart, values, labels, desired, decision, guard, policy)
    decision = _noting_retries(decision, done.retried)
    if done.error is not None:
        error = done.error
        components: list[DeployedComponent] = _secondary(
            error, "reading the workloads' health", lambda: [], _health, cluster, ref
        )
        remediation: Decision | None
        if error.transient:
            # No verdict on the values: nothing is rolled back or held; say what comes next.
            following = _decide_while_handling(
                error, "deciding what follows", engine, ref, desired, policy, guard
            )
            remediation = following and replace(
                following,
                reason=f"the failure was transient (the cluster's, not the values'; "
                f"{len(done.retried) + 1} attempt(s)), so nothing is rolled back or held now; "
                f"the next deploy: {following.reason}",
            )
        else:
            remediation = _secondary(
                error, "remediating", lambda: None, _remediate, engine, ref, desired, policy, guard
            )
        release = _secondary(error, "reading the release", lambda: None, engine.status, ref)
        return DeployOutcome(
            decision,
            release,
            error=error,
            remediation=remediation,
            components=components,
            retried=tuple(done.retried),
        )
    release = done.release
    drift: list[DriftedObject] = []
    if done.decision.action is Action.NOTHING and cluster is not None and release is not None:
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
    return DeployOutcome(
        decision,
        release,
        components=_health(cluster, ref),
        drift=drift,
        retried=tuple(done.retried),
    )


@dataclass(frozen=True)
class _Done:
    """One action with its retries: the decision last acted on, and the release it left or
    the error of its last attempt."""

    decision: Decision
    release: Release | None
    error: HelmEngineError | None
    retried: list[HelmEngineError]


def _attempt(
    engine: HelmEngine,
    ref: ReleaseRef,
    chart: Path,
    values: dict[str, Any],
    labels: dict[str, str],
    desired: Digests,
    decision: Decision,
    guard: _Guard,
    policy: DeployPolicy,
) -> _Done:
    """Take ``decision``'s action; after a transient failure, settle Helm's record of the
    attempt and take it again while the action's deadline and ``policy.transient_attempts``
    allow: an install or upgrade as ``decide`` says once the record is settled (an install
    whose record exists continues as an upgrade; a record settled as deployed needs nothing
    more), a rollback to the same revision. Raises ``ChartError`` (nothing was applied)."""
    clock, budget = policy.retry.clock, policy.timeout.total_seconds()
    start = clock()
    retried: list[HelmEngineError] = []
    current = decision
    while True:
        # The first attempt has the whole deadline, a retry what is left of it.
        timeout = max(1, int(budget - (clock() - start))) if retried else int(budget)
        before = 0
        if current.action in WRITES:
            try:
                guard.check()
                history = engine.history(ref)
            except Exception as later:
                if not retried:
                    raise
                last = retried.pop()  # it was not retried after all: it is the error
                last.add_later(f"retrying failed: {later}")
                return _Done(current, None, last, retried)
            before = history[-1].revision if history else 0
        try:
            release = _perform(engine, ref, chart, values, labels, current, timeout)
        except ChartError:
            raise  # refused before anything was applied
        except HelmEngineError as error:
            _secondary(
                error,
                "recording the failed attempt",
                lambda: False,
                _settle,
                engine,
                ref,
                guard,
                None,
                error,
                before,
            )
            wait = policy.retry.backoff(len(retried) + 1)
            if (
                not error.transient
                or current.action not in WRITES
                or len(retried) + 1 >= policy.transient_attempts
                or clock() + wait + MIN_ATTEMPT_SECONDS - start >= budget
                or error.later  # the record of the attempt may be wrong: stop here
            ):
                return _Done(current, None, error, retried)
            retried.append(error)
            policy.retry.sleep(wait)
            if current.action is Action.ROLLBACK:
                continue  # to the same good revision
            following = _decide_while_handling(
                error, "deciding the retry", engine, ref, desired, policy, guard
            )
            if following is not None and following.action is Action.NOTHING:
                # The attempt was recorded as deployed after all: nothing more to do.
                return _Done(current, engine.status(ref), None, retried)
            if following is None or following.action not in APPLIES:
                retried.pop()
                return _Done(current, None, error, retried)
            current = following
            continue
        if current.action in WRITES and _settle(engine, ref, guard, release, None, before):
            release = engine.status(ref)  # the record as settled
        return _Done(current, release, None, retried)


def _perform(
    engine: HelmEngine,
    ref: ReleaseRef,
    chart: Path,
    values: dict[str, Any],
    labels: dict[str, str],
    decision: Decision,
    timeout: int,
) -> Release | None:
    if decision.action is Action.INSTALL:
        return engine.install(ref, chart, values, timeout, labels)
    if decision.action in (Action.UPGRADE, Action.RETRY_UPGRADE):
        return engine.upgrade(ref, chart, values, timeout, labels)
    if decision.action is Action.ROLLBACK and decision.target_revision is not None:
        return engine.rollback(ref, decision.target_revision, timeout)
    # NOTHING, WAIT, HOLD, or UNLOCK without cluster access to do it with
    return engine.status(ref)


def _noting_retries(decision: Decision, retried: list[HelmEngineError]) -> Decision:
    if not retried:
        return decision
    return replace(
        decision,
        reason=f"{decision.reason}; {len(retried)} transient failure(s) retried "
        f"(the first: {retried[0].detail})",
    )


def _secondary(
    error: HelmEngineError, what: str, fallback: Callable[[], T], fn: Callable[..., T], *args: Any
) -> T:
    """``fn(*args)`` while handling ``error``: a failure here is added after ``error`` (the
    first cause stays first) and ``fallback()`` stands in for the result."""
    try:
        return fn(*args)
    except Exception as later:  # any of them: it must not hide the first error
        error.add_later(f"{what} failed: {later}")
        return fallback()


def _decide_while_handling(
    error: HelmEngineError,
    what: str,
    engine: HelmEngine,
    ref: ReleaseRef,
    desired: Digests,
    policy: DeployPolicy,
    guard: _Guard,
) -> Decision | None:
    """What ``decide`` says now, with this run's verdicts, while ``error`` is being handled:
    None when deciding fails (that failure is added after ``error``)."""
    return _secondary(error, what, lambda: None, guard.decide, engine, ref, desired, policy)


def _remediate(
    engine: HelmEngine,
    ref: ReleaseRef,
    desired: Digests,
    policy: DeployPolicy,
    guard: _Guard,
) -> Decision | None:
    """After a failed action, what the policy says now: only a rollback is done in this run
    (a retry waits for the next run, so a failing upgrade is not hammered). The rollback is
    retried after transient failures, as any action."""
    decision = guard.decide(engine, ref, desired, policy)
    if decision.action is not Action.ROLLBACK or decision.target_revision is None:
        return decision
    done = _attempt(engine, ref, Path(), {}, {}, desired, decision, guard, policy)
    decision = _noting_retries(decision, done.retried)
    if done.error is not None:
        return replace(decision, reason=f"{decision.reason}; the rollback failed too: {done.error}")
    return decision


def _settle(
    engine: HelmEngine,
    ref: ReleaseRef,
    guard: _Guard,
    reported: Release | None,
    error: HelmEngineError | None,
    before: int = 0,
) -> bool:
    """Make Helm's record say what happened; True when it had to be rewritten. Helm logs,
    rather than returns, a failure to write its release record after applying (a 503 or a
    dropped connection on that last update): the operation "succeeds" and its revision stays
    pending, or an older revision stays deployed beside the new one. We hold the release
    lock, so no floe-deploy operation owns a pending revision of ours here: it gets the status
    Helm reported, or failed, with why. A failed revision this attempt made (newer than
    ``before``) gets the verdict of ``error``: transient (the cluster's failure) or final (its
    own), in ``guard.verdicts`` for the rest of the run and on the record for the next runs. A
    pending revision made outside floe-deploy (no digest labels) is left to its owner."""
    if guard.cluster is None and error is None:
        return False
    history = engine.history(ref)
    if not history:
        return False
    latest = history[-1]
    ours = CHART_DIGEST_LABEL in latest.labels
    made_now = ours and latest.revision > before
    if error is not None and made_now:
        guard.verdicts[latest.revision] = error.transient
    if guard.cluster is None:
        return False
    rewritten = False
    storage = ReleaseStorage(guard.cluster.core)
    if latest.status in PENDING_STATUSES and ours:
        recorded = reported is not None and reported.revision == latest.revision
        status = reported.status if reported is not None and recorded else "failed"
        why = (
            f"floe-deploy: Helm reported {status} but could not record it"
            if recorded
            else f"floe-deploy: the {error.operation if error else 'operation'} ended before "
            f"Helm recorded its outcome: {error.detail if error else 'unknown'}"
        )
        guard.check()
        storage.set_status(
            ref.namespace,
            ref.name,
            latest.revision,
            status,
            why,
            transient=(error is None or error.transient) if status == "failed" else None,
        )
        latest, rewritten = replace(latest, status=status), True
    elif latest.status == "failed" and made_now and error is not None:
        marked = (
            failed_transiently(latest.revision, latest.labels, latest.description)
            if error.transient
            else failed_finally(latest.revision, latest.labels)
        )
        if not marked:
            guard.check()
            storage.set_status(
                ref.namespace,
                ref.name,
                latest.revision,
                "failed",
                f"floe-deploy: the {error.operation} failed: {error.detail}",
                transient=error.transient,
            )
            rewritten = True
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
    engine: HelmEngine,
    ref: ReleaseRef,
    desired: Digests,
    policy: DeployPolicy,
    lock_held: bool,
    verdicts: Mapping[int, bool] | None = None,
) -> Decision:
    return decide(
        digest_history(engine, ref, verdicts),
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
    """The drifted objects (restored when ``correct``); reading and restoring are repeated on a
    transient API failure (a merge patch of the manifest's fields is the same every time)."""
    return call_with_retry(
        _drift_once,
        cluster,
        release,
        correct,
        what=f"comparing the live objects of {release.name} with its manifest",
        request_timeout=None,
    )


def _drift_once(cluster: ClusterAccess, release: Release, correct: bool) -> list[DriftedObject]:
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
        call_with_retry(
            cluster.core.create_namespace,
            {"metadata": {"name": namespace}},
            what=f"creating namespace {namespace}",
        )
    except ApiException as error:
        if error.status not in (409, 403):  # exists, or we may not create (then it must exist)
            raise
