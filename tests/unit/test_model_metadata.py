"""What a model's run leaves in Dagster: a success's materialization metadata, a failed or
skipped model's entry in the step's failure. No cluster needed."""

from __future__ import annotations

from datetime import UTC, datetime

import dagster as dg

from floe_deploy_assets.defs.data_products import (
    for_failure,
    for_materialization,
    model_metadata,
)
from floe_deploy_assets.jobs.plan import Outcome
from floe_deploy_assets.jobs.runner import ModelResult
from floe_deploy_assets.models.jobs import ConfigMapRef, DataProductJob, JobPhase
from floe_deploy_assets.models.resources import ResourceRequirements, ResourceSpec

START = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)
END = datetime(2024, 5, 1, 12, 0, 7, tzinfo=UTC)


def _job(name: str) -> DataProductJob:
    spec = ResourceSpec(cpu="100m", memory="128Mi")
    return DataProductJob(
        name=name,
        namespace="floe-dev",
        image="ghcr.io/dbt-labs/dbt-duckdb:1.8.0",
        command=["dbt", "run", "--select", "stg_orders"],
        artifacts=ConfigMapRef(name="floe-compiled-artifacts"),
        secrets=[],
        resources=ResourceRequirements(requests=spec, limits=spec),
    ).transition_to(JobPhase.PENDING)


def test_a_succeeded_model_carries_where_and_when_it_ran_with_times_as_timestamps():
    job = _job("stg-orders-r1").transition_to(JobPhase.RUNNING, start_time=START)
    result = ModelResult(
        "stg_orders",
        "stg-orders-r1",
        Outcome.SUCCEEDED,
        job.transition_to(JobPhase.SUCCEEDED, completion_time=END),
        duration=7.4567,
        pod_name="stg-orders-r1-x7k2p",
    )

    metadata = for_materialization(model_metadata(result, "floe-dev", attempt=2))

    assert metadata == {
        "namespace": "floe-dev",
        "job_name": "stg-orders-r1",
        "pod_name": "stg-orders-r1-x7k2p",
        "start_time": dg.MetadataValue.timestamp(START),
        "end_time": dg.MetadataValue.timestamp(END),
        "duration_seconds": 7.46,
        "phase": "Succeeded",
        "attempt": 2,
    }


def test_a_failed_model_carries_its_reason_exit_code_and_logs_as_json():
    job = _job("stg-orders-r1").transition_to(JobPhase.RUNNING, start_time=START)
    failed = job.transition_to(
        JobPhase.FAILED, completion_time=END, reason="Error", exit_code=3, logs="Database Error"
    )
    result = ModelResult(
        "stg_orders",
        "stg-orders-r1",
        Outcome.FAILED,
        failed,
        reason="Error",
        message="BackoffLimitExceeded; container dbt exited with 3",
        duration=7.0,
        pod_name="stg-orders-r1-x7k2p",
    )

    entry = for_failure(model_metadata(result, "floe-dev", attempt=1)).value

    assert entry["start_time"] == "2024-05-01T12:00:00+00:00"
    assert (entry["reason"], entry["exit_code"], entry["log_excerpt"]) == (
        "Error",
        3,
        "Database Error",
    )
    assert (entry["phase"], entry["retryable"], entry["pod_name"]) == (
        "Failed",
        True,
        "stg-orders-r1-x7k2p",
    )


def test_an_image_pull_failure_is_not_retryable_and_a_skip_names_its_cause():
    pull = ModelResult(
        "stg_customers",
        "stg-customers-r1",
        Outcome.FAILED,
        _job("stg-customers-r1").transition_to(JobPhase.FAILED, reason="ErrImagePull"),
        reason="ErrImagePull",
        message="ErrImagePull: image not found",
    )
    skipped = ModelResult(
        "customer_orders",
        "customer-orders-r1",
        Outcome.SKIPPED,
        reason="Skipped",
        message="upstream model stg_customers failed",
    )

    assert for_failure(model_metadata(pull, "floe-dev", 1)).value["retryable"] is False
    assert for_failure(model_metadata(skipped, "floe-dev", 1)).value == {
        "namespace": "floe-dev",
        "job_name": "customer-orders-r1",
        "phase": "Skipped",
        "attempt": 1,
        "reason": "Skipped",
        "message": "upstream model stg_customers failed",
        "retryable": False,
    }
