"""PlatformDeployment and DeployedComponent (seed section 1), with the deployment state machine."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field, NonNegativeInt

from floe_deploy_assets.models.base import FloeModel
from floe_deploy_assets.models.transitions import check_transition


class DeploymentStatus(StrEnum):
    PENDING = "pending"
    DEPLOYED = "deployed"
    FAILED = "failed"
    SUPERSEDED = "superseded"


DEPLOYMENT_TRANSITIONS: dict[DeploymentStatus | None, frozenset[DeploymentStatus]] = {
    None: frozenset({DeploymentStatus.PENDING}),
    DeploymentStatus.PENDING: frozenset({DeploymentStatus.DEPLOYED, DeploymentStatus.FAILED}),
    DeploymentStatus.DEPLOYED: frozenset({DeploymentStatus.SUPERSEDED}),
    DeploymentStatus.FAILED: frozenset({DeploymentStatus.PENDING}),
}


class WorkloadType(StrEnum):
    DEPLOYMENT = "Deployment"
    STATEFUL_SET = "StatefulSet"
    DAEMON_SET = "DaemonSet"
    JOB = "Job"
    CRON_JOB = "CronJob"


class Health(StrEnum):
    HEALTHY = "healthy"
    DEGRADED = "degraded"
    UNHEALTHY = "unhealthy"
    UNKNOWN = "unknown"


class ReplicaCounts(FloeModel):
    desired: NonNegativeInt
    ready: NonNegativeInt
    available: NonNegativeInt


class DeployedComponent(FloeModel):
    name: str = Field(min_length=1)
    type: WorkloadType
    replicas: ReplicaCounts
    health: Health
    # Beyond the seed: why the component has its health, and whether a rollout is still inside
    # its deadline (so a rollout in progress is not mistaken for a degraded component).
    reason: str | None = None
    progressing: bool = False


class PlatformDeployment(FloeModel):
    release_name: str = Field(min_length=1)
    namespace: str = Field(min_length=1)
    chart_version: str = Field(min_length=1)
    artifact_version: str = Field(min_length=1)
    environment: str = Field(min_length=1)
    status: DeploymentStatus
    components: list[DeployedComponent]
    deployed_at: datetime
    deployed_by: str | None = None

    def transition_to(self, status: DeploymentStatus) -> PlatformDeployment:
        """The same deployment in ``status``; raises IllegalTransitionError for a move the seed
        does not allow (e.g. deployed -> pending)."""
        check_transition(
            f"PlatformDeployment {self.release_name} ({self.environment})",
            self.status,
            status,
            DEPLOYMENT_TRANSITIONS,
        )
        return self.model_copy(update={"status": status})
