"""DataProductJob, its JobStatus, and the references it carries (seed section 1)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum

from pydantic import Field

from floe_deploy_assets.models.base import FloeModel
from floe_deploy_assets.models.resources import ResourceRequirements
from floe_deploy_assets.models.transitions import check_transition

# On every model Job and its pod: the run it belongs to. Such Jobs are made by the runner, not
# by Helm, so they are not part of the floe-jobs release even though they carry its labels.
RUN_LABEL = "floe.dev/run-id"
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"


class JobPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"


JOB_TRANSITIONS: dict[JobPhase | None, frozenset[JobPhase]] = {
    None: frozenset({JobPhase.PENDING}),
    JobPhase.PENDING: frozenset({JobPhase.RUNNING, JobPhase.FAILED}),
    JobPhase.RUNNING: frozenset({JobPhase.SUCCEEDED, JobPhase.FAILED}),
}


class ConfigMapRef(FloeModel):
    name: str = Field(pattern=DNS1123_SUBDOMAIN, max_length=253)
    key: str | None = None


class SecretRef(FloeModel):
    """A reference to a Secret (and optionally one key of it); never the secret itself."""

    name: str = Field(pattern=DNS1123_SUBDOMAIN, max_length=253)
    key: str | None = None


class JobStatus(FloeModel):
    phase: JobPhase
    start_time: datetime | None = None
    completion_time: datetime | None = None
    logs: str | None = Field(None, description="Container logs (on failure)")
    # Beyond the seed: why a job failed, as the runner saw it.
    exit_code: int | None = None
    reason: str | None = None


class DataProductJob(FloeModel):
    name: str = Field(pattern=r"^[a-z][a-z0-9-]*$", max_length=63)
    namespace: str = Field(min_length=1)
    image: str = Field(min_length=1)
    command: list[str] = Field(min_length=1)
    artifacts: ConfigMapRef
    secrets: list[SecretRef]
    resources: ResourceRequirements
    status: JobStatus | None = None

    def transition_to(self, phase: JobPhase, **details: object) -> DataProductJob:
        """The same job in ``phase`` (a new job starts Pending); details fill JobStatus fields."""
        current = self.status.phase if self.status else None
        check_transition(f"DataProductJob {self.name}", current, phase, JOB_TRANSITIONS)
        base = self.status.model_dump() if self.status else {}
        status = JobStatus.model_validate({**base, **details, "phase": phase})
        return self.model_copy(update={"status": status})
