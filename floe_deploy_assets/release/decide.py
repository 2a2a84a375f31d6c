"""Classify a Helm release, then decide exactly one action, and record why (Flux's
helm-controller does the same: observe, classify, act once).

- absent: no revision -> install;
- pending-locked: the latest revision is pending and a live operation holds it, or it is younger
  than the deadline -> wait;
- pending-stale: pending past the deadline, held by nobody -> unlock (mark it failed); a pending
  revision made by floe-deploy is stale at once when the caller holds the release lock, since
  every floe-deploy write happens under that lock (``kube.lease``);
- failed: by policy, retry the upgrade, roll back to the last good revision, or hold; but a
  revision that failed for a transient reason (the cluster's: a dropped connection, 429, 5xx,
  a conflict on the release record, retries exhausted) is no verdict on the values: its upgrade
  is retried whatever the policy, as for an interrupted pending revision (never rolled back,
  never held); a rollback cut short that way after the desired digests failed for a reason of
  their own is done again (by the policy), not those digests;
- in-sync: deployed with the desired chart and values digests -> nothing (no new revision);
- out-of-sync: deployed with other digests -> upgrade (held instead when exactly these digests
  already failed, not transiently, and were rolled back, unless the policy retries);
- drifted: in sync, but live objects differ from the manifest -> reported; corrected on request
  (observed by the caller, ``helm.deploy``, which reads the live objects).

Pure logic: no Helm, no Kubernetes. The caller observes and acts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from floe_deploy_assets.models.deployment import DeploymentStatus
from floe_deploy_assets.release.remediation import Remediation

PENDING_STATUSES = frozenset({"pending-install", "pending-upgrade", "pending-rollback"})
GOOD_STATUSES = frozenset({"deployed", "superseded"})


class ReleaseState(StrEnum):
    ABSENT = "absent"
    PENDING_LOCKED = "pending-locked"
    PENDING_STALE = "pending-stale"
    FAILED = "failed"
    IN_SYNC = "in-sync"
    OUT_OF_SYNC = "out-of-sync"
    DRIFTED = "drifted"  # in sync by digests, but live objects differ from the manifest


class Action(StrEnum):
    INSTALL = "install"
    WAIT = "wait"
    UNLOCK = "unlock"
    RETRY_UPGRADE = "retry-upgrade"
    ROLLBACK = "rollback"
    HOLD = "hold"
    UPGRADE = "upgrade"
    NOTHING = "nothing"
    CORRECT_DRIFT = "correct-drift"


@dataclass(frozen=True)
class Digests:
    chart: str
    values: str


@dataclass(frozen=True)
class Revision:
    number: int
    status: str  # Helm's status of this revision
    updated_at: datetime
    digests: Digests | None  # None when the revision was not made by us (no digest labels)
    # It failed for a transient reason (the cluster's, not the values'), as recorded by
    # floe-deploy: no verdict on its chart and values.
    transient: bool = False

    @property
    def failed_finally(self) -> bool:
        return self.status == "failed" and not self.transient


@dataclass(frozen=True)
class Decision:
    state: ReleaseState
    action: Action
    reason: str
    # The revision a rollback returns to, or the pending revision an unlock marks failed.
    target_revision: int | None = None


def platform_status(helm_status: str) -> DeploymentStatus:
    """The seed's PlatformDeployment.status for a Helm release status."""
    if helm_status in PENDING_STATUSES or helm_status == "uninstalling":
        return DeploymentStatus.PENDING
    if helm_status in ("deployed", "superseded"):
        return DeploymentStatus(helm_status)
    return DeploymentStatus.FAILED  # failed, unknown, uninstalled: nothing healthy is running


def decide(
    history: list[Revision],
    desired: Digests,
    *,
    now: datetime,
    pending_deadline: timedelta,
    held_by_live_operation: bool,
    remediation: Remediation,
    lock_held: bool = False,
) -> Decision:
    """One decision for a release whose revisions are ``history`` (any order). ``lock_held``:
    the caller holds the release lock, so no other floe-deploy operation is live."""
    if not history:
        return Decision(ReleaseState.ABSENT, Action.INSTALL, "no release exists yet")
    revisions = sorted(history, key=lambda r: r.number)
    latest = revisions[-1]
    if latest.status in PENDING_STATUSES:
        age = now - latest.updated_at
        ours_and_orphaned = lock_held and latest.digests is not None
        if held_by_live_operation or (age < pending_deadline and not ours_and_orphaned):
            holder = (
                "a live operation holds it"
                if held_by_live_operation
                else (
                    f"it is {age.total_seconds():.0f} s old, within its "
                    f"{pending_deadline.total_seconds():.0f} s deadline"
                )
            )
            return Decision(
                ReleaseState.PENDING_LOCKED,
                Action.WAIT,
                f"revision {latest.number} is {latest.status}: {holder}",
            )
        why = (
            "it was made by floe-deploy and no floe-deploy operation holds the release lock"
            if ours_and_orphaned
            else f"past its {pending_deadline.total_seconds():.0f} s deadline"
        )
        return Decision(
            ReleaseState.PENDING_STALE,
            Action.UNLOCK,
            f"revision {latest.number} has been {latest.status} for "
            f"{age.total_seconds():.0f} s, {why}, and no live operation holds it: mark it failed",
            target_revision=latest.number,
        )
    if latest.status == "deployed":
        if latest.digests == desired:
            return Decision(
                ReleaseState.IN_SYNC,
                Action.NOTHING,
                f"revision {latest.number} already has chart {desired.chart[:12]} "
                f"and values {desired.values[:12]}",
            )
        changed = _what_changed(latest.digests, desired)
        failed_before = _last_attempt(revisions, desired)
        if failed_before is not None and remediation is not Remediation.RETRY:
            return Decision(
                ReleaseState.OUT_OF_SYNC,
                Action.HOLD,
                f"revision {latest.number} differs ({changed}), but this chart and these values "
                f"already failed as revision {failed_before.number}: change them, or deploy "
                "with the retry policy to try them again",
            )
        return Decision(
            ReleaseState.OUT_OF_SYNC, Action.UPGRADE, f"revision {latest.number} differs: {changed}"
        )
    if latest.digests is not None and latest.digests != desired:
        failed_before = _last_attempt(revisions, desired)
        if latest.transient and failed_before is not None and remediation is not Remediation.RETRY:
            # The desired digests failed for a reason of their own, and what came after them
            # (a rollback) was cut short by the cluster: that is done again, not the values.
            return _remediate(revisions, latest, remediation)
        # A new desired state deserves its own attempt, whatever became of the last one
        # (Flux resets its failure count when the spec changes).
        return Decision(
            ReleaseState.FAILED,
            Action.UPGRADE,
            f"revision {latest.number} is {latest.status}; "
            f"{_what_changed(latest.digests, desired)} since, so the new state is tried",
        )
    if latest.status == "failed" and latest.transient:
        return Decision(
            ReleaseState.FAILED,
            Action.RETRY_UPGRADE,
            f"revision {latest.number} failed for a transient reason (the cluster's, not the "
            "values'): the upgrade is retried, nothing is rolled back or held",
        )
    return _remediate(revisions, latest, remediation)


def _last_attempt(revisions: list[Revision], desired: Digests) -> Revision | None:
    """The newest revision made with ``desired``, if it failed for a reason of its own (a
    rollback's revision carries its target's digests, so only revisions whose status is failed
    count; a transient failure is no verdict on the values)."""
    attempts = [r for r in revisions if r.digests == desired]
    return attempts[-1] if attempts and attempts[-1].failed_finally else None


def _what_changed(current: Digests | None, desired: Digests) -> str:
    if current is None:
        return "it carries no digests (made outside floe-deploy)"
    parts = [
        name
        for name, old, new in (
            ("chart", current.chart, desired.chart),
            ("values", current.values, desired.values),
        )
        if old != new
    ]
    return " and ".join(parts) + " changed"


def _remediate(revisions: list[Revision], latest: Revision, remediation: Remediation) -> Decision:
    reason = f"revision {latest.number} is {latest.status}"
    if remediation is Remediation.HOLD:
        return Decision(ReleaseState.FAILED, Action.HOLD, f"{reason}; the policy holds it")
    if remediation is Remediation.RETRY:
        return Decision(
            ReleaseState.FAILED, Action.RETRY_UPGRADE, f"{reason}; the policy retries the upgrade"
        )
    good = [r for r in revisions[:-1] if r.status in GOOD_STATUSES]
    if not good:
        return Decision(
            ReleaseState.FAILED,
            Action.HOLD,
            f"{reason} and no earlier revision was ever deployed to roll back to: deploy "
            "with the retry remediation to try again, or uninstall it",
        )
    target = good[-1].number
    return Decision(
        ReleaseState.FAILED,
        Action.ROLLBACK,
        f"{reason}; the policy rolls back to revision {target}, the last good one",
        target_revision=target,
    )


def history_table(history: list[Revision]) -> str:
    """The revisions as a markdown table, newest first: the per-environment history of chart
    and values digests (kept by Helm's own revision records, which carry them as labels)."""
    rows = [
        f"| {r.number} | {r.status}{' (transient)' if r.transient else ''} "
        f"| {r.updated_at.isoformat()} "
        f"| {r.digests.chart[:12] if r.digests else '(not floe-deploy)'} "
        f"| {r.digests.values[:12] if r.digests else ''} |"
        for r in sorted(history, key=lambda r: r.number, reverse=True)
    ]
    header = "| revision | status | updated | chart digest | values digest |\n|---|---|---|---|---|"
    return "\n".join([header, *rows])
