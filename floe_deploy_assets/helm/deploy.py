"""Deploy one release: observe it through the Helm engine, decide with ``release.decide``, take
that one action, and report the decision with the release as it ended up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from floe_deploy_assets.helm.engine import HelmEngine, Release, ReleaseRef
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
    decision: Decision
    release: Release | None


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


def deploy(
    engine: HelmEngine,
    ref: ReleaseRef,
    chart: Path,
    values: dict[str, Any],
    *,
    remediation: Remediation = Remediation.ROLLBACK,
    pending_deadline: timedelta = DEFAULT_PENDING_DEADLINE,
    held_by_live_operation: bool = False,
    timeout: int = 300,
) -> DeployOutcome:
    desired = Digests(chart_digest(chart), values_digest(values))
    history = [_revision(r) for r in engine.history(ref)]
    decision = decide(
        history,
        desired,
        now=datetime.now(UTC),
        pending_deadline=pending_deadline,
        held_by_live_operation=held_by_live_operation,
        remediation=remediation,
    )
    labels = {CHART_DIGEST_LABEL: desired.chart, VALUES_DIGEST_LABEL: desired.values}
    if decision.action is Action.INSTALL:
        return DeployOutcome(decision, engine.install(ref, chart, values, timeout, labels))
    if decision.action in (Action.UPGRADE, Action.RETRY_UPGRADE):
        return DeployOutcome(decision, engine.upgrade(ref, chart, values, timeout, labels))
    if decision.action is Action.ROLLBACK and decision.target_revision is not None:
        return DeployOutcome(decision, engine.rollback(ref, decision.target_revision, timeout))
    # NOTHING, WAIT, HOLD; UNLOCK is decided but not yet carried out (the caller reports it).
    return DeployOutcome(decision, engine.status(ref))
