"""Deploy one release: observe it through the Helm engine, decide with ``release.decide``, take
that one action, and report the decision with the release as it ended up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from floe_deploy_assets.helm.engine import HelmEngine, Release, ReleaseRef
from floe_deploy_assets.helm.storage import ReleaseStorage
from floe_deploy_assets.release.decide import (
    Action,
    Decision,
    Digests,
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

DEFAULT_PENDING_DEADLINE = timedelta(minutes=15)


@dataclass(frozen=True)
class DeployOutcome:
    decision: Decision  # the action that settled the release
    release: Release | None
    unlocked: Decision | None = None  # set when a stale pending revision was unlocked first


def _revision(release: Release) -> Revision:
    labels = release.labels
    digests = None
    if CHART_DIGEST_LABEL in labels and VALUES_DIGEST_LABEL in labels:
        digests = Digests(labels[CHART_DIGEST_LABEL], labels[VALUES_DIGEST_LABEL])
    updated = release.deployed_at or "1970-01-01T00:00:00Z"
    return Revision(
        release.revision,
        release.status,
        datetime.fromisoformat(updated.replace("Z", "+00:00")),
        digests,
    )


def plan(
    engine: HelmEngine,
    ref: ReleaseRef,
    chart: Path,
    values: dict[str, Any],
    *,
    remediation: Remediation = Remediation.ROLLBACK,
    pending_deadline: timedelta = DEFAULT_PENDING_DEADLINE,
) -> Decision:
    """What ``deploy`` would do now, without doing it."""
    desired = Digests(chart_digest(chart), values_digest(values))
    return _decide(engine, ref, desired, remediation, pending_deadline, False)


def deploy(
    engine: HelmEngine,
    ref: ReleaseRef,
    chart: Path,
    values: dict[str, Any],
    *,
    storage: ReleaseStorage | None = None,
    remediation: Remediation = Remediation.ROLLBACK,
    pending_deadline: timedelta = DEFAULT_PENDING_DEADLINE,
    held_by_live_operation: bool = False,
    timeout: int = 300,
) -> DeployOutcome:
    """Observe, decide, act once. A stale pending revision is unlocked (marked failed) first, if
    ``storage`` is given, and the release decided again: unlocking alone settles nothing."""
    desired = Digests(chart_digest(chart), values_digest(values))
    decision = _decide(engine, ref, desired, remediation, pending_deadline, held_by_live_operation)
    unlocked = None
    if decision.action is Action.UNLOCK and storage is not None:
        latest = max(engine.history(ref), key=lambda r: r.revision)
        storage.unlock(ref.namespace, ref.name, latest.revision, decision.reason)
        unlocked = decision
        decision = _decide(
            engine, ref, desired, remediation, pending_deadline, held_by_live_operation
        )
    labels = {CHART_DIGEST_LABEL: desired.chart, VALUES_DIGEST_LABEL: desired.values}
    release: Release | None
    if decision.action is Action.INSTALL:
        release = engine.install(ref, chart, values, timeout, labels)
    elif decision.action in (Action.UPGRADE, Action.RETRY_UPGRADE):
        release = engine.upgrade(ref, chart, values, timeout, labels)
    elif decision.action is Action.ROLLBACK and decision.target_revision is not None:
        release = engine.rollback(ref, decision.target_revision, timeout)
    else:  # NOTHING, WAIT, HOLD, or UNLOCK without storage to do it with
        release = engine.status(ref)
    return DeployOutcome(decision, release, unlocked)


def _decide(
    engine: HelmEngine,
    ref: ReleaseRef,
    desired: Digests,
    remediation: Remediation,
    pending_deadline: timedelta,
    held: bool,
) -> Decision:
    history = [_revision(r) for r in engine.history(ref)]
    return decide(
        history,
        desired,
        now=datetime.now(UTC),
        pending_deadline=pending_deadline,
        held_by_live_operation=held,
        remediation=remediation,
    )
