"""Classify a Helm release, then decide exactly one action, and record why (Flux's
helm-controller does the same: observe, classify, act once).

- absent: no revision -> install;
- pending-locked: the latest revision is pending and a live operation holds it, or it is younger
  than the deadline -> wait;
- pending-stale: pending past the deadline, held by nobody -> unlock (mark it failed);
- failed: by policy, retry the upgrade, roll back to the last good revision, or hold;
- in-sync: deployed with the desired chart and values digests -> nothing (no new revision);
- out-of-sync: deployed with other digests -> upgrade.

Pure logic: no Helm, no Kubernetes. The caller observes and acts.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from floe_deploy_assets.models.deployment import DeploymentStatus

PENDING_STATUSES = frozenset({"pending-install", "pending-upgrade", "pending-rollback"})
GOOD_STATUSES = frozenset({"deployed", "superseded"})


class ReleaseState(StrEnum):
    ABSENT = "absent"
    PENDING_LOCKED = "pending-locked"
    PENDING_STALE = "pending-stale"
    FAILED = "failed"
    IN_SYNC = "in-sync"
    OUT_OF_SYNC = "out-of-sync"


class Action(StrEnum):
    INSTALL = "install"
    WAIT = "wait"
    UNLOCK = "unlock"
    RETRY_UPGRADE = "retry-upgrade"
    ROLLBACK = "rollback"
    HOLD = "hold"
    UPGRADE = "upgrade"
    NOTHING = "nothing"


class Remediation(StrEnum):
    """What to do with a failed release."""

    RETRY = "retry"
    ROLLBACK = "rollback"
    HOLD = "hold"


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


@dataclass(frozen=True)
class Decision:
    state: ReleaseState
    action: Action
    reason: str
    target_revision: int | None = None  # the revision a rollback returns to


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
) -> Decision:
    """One decision for a release whose revisions are ``history`` (any order)."""
    if not history:
        return Decision(ReleaseState.ABSENT, Action.INSTALL, "no release exists yet")
    revisions = sorted(history, key=lambda r: r.number)
    latest = revisions[-1]
    if latest.status in PENDING_STATUSES:
        age = now - latest.updated_at
        if held_by_live_operation or age < pending_deadline:
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
        return Decision(
            ReleaseState.PENDING_STALE,
            Action.UNLOCK,
            f"revision {latest.number} has been {latest.status} for "
            f"{age.total_seconds():.0f} s, past its "
            f"{pending_deadline.total_seconds():.0f} s deadline, and no live "
            "operation holds it: mark it failed",
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
        return Decision(
            ReleaseState.OUT_OF_SYNC, Action.UPGRADE, f"revision {latest.number} differs: {changed}"
        )
    return _remediate(revisions, latest, remediation)


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
            f"{reason} and no earlier revision was ever deployed to roll back to",
        )
    target = good[-1].number
    return Decision(
        ReleaseState.FAILED,
        Action.ROLLBACK,
        f"{reason}; the policy rolls back to revision {target}, the last good one",
        target_revision=target,
    )
