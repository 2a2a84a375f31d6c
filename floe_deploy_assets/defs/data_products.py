"""One asset per dbt model of the CompiledArtifacts, with ``depends_on`` as asset dependencies,
materialized by the DataProductJob runner (one Kubernetes Job per model); and the sensor that
reruns a model whose Job failed for a reason worth retrying.

The models are one subsettable multi-asset, so that selecting several in one run runs them
concurrently in dependency order through one runner (one watch per namespace), rather than one
step and one watch each.
"""

import json
import time
from collections.abc import Iterator
from typing import Any

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from pydantic import Field

from floe_deploy_assets.defs.deploy_assets import generator_for, release_key
from floe_deploy_assets.defs.resources import DeploymentConfigResource, KubernetesResource
from floe_deploy_assets.jobs.plan import Outcome, select_models
from floe_deploy_assets.jobs.pods import IMAGE_PULL_REASONS
from floe_deploy_assets.jobs.runner import JobRunner, ModelResult, RunnerSettings
from floe_deploy_assets.jobs.spec import JobTemplate
from floe_deploy_assets.models.artifacts import CompiledArtifacts, TransformModel

GROUP = "data_products"
RUNNER_DEFAULTS = RunnerSettings()
RUN_DATA_PRODUCTS = "run_data_products"
ATTEMPT_TAG = "floe.dev/attempt"
# Failures that another attempt cannot fix: the image, or the Job's own spec, is wrong.
NOT_RETRYABLE = IMAGE_PULL_REASONS | {"CreateContainerConfigError", "CreateFailed"}


class DataProductsResource(dg.ConfigurableResource):
    """How model Jobs run: concurrency, the deadlines that keep a run from hanging, reruns, and
    extra annotations for a model's pod (a sidecar injector's, or the simulated kubelet's)."""

    concurrency: int = RUNNER_DEFAULTS.concurrency
    schedule_deadline_seconds: int = int(RUNNER_DEFAULTS.schedule_deadline)
    start_deadline_seconds: int = int(RUNNER_DEFAULTS.start_deadline)
    max_attempts: int = 3  # a failed model is rerun until it has run this many times
    retry_backoff_seconds: int = 30  # doubled after each attempt
    pod_annotations: dict[str, dict[str, str]] = Field(default_factory=dict)

    def settings(self) -> RunnerSettings:
        return RunnerSettings(
            concurrency=self.concurrency,
            schedule_deadline=self.schedule_deadline_seconds,
            start_deadline=self.start_deadline_seconds,
        )


def model_key(artifacts: CompiledArtifacts, model: str) -> dg.AssetKey:
    return dg.AssetKey(["data_products", artifacts.metadata.product_name, model])


def _models(artifacts: CompiledArtifacts) -> list[TransformModel]:
    return artifacts.transforms.models_in_dependency_order() if artifacts.transforms else []


def model_assets(
    artifacts: CompiledArtifacts, partitions: dg.PartitionsDefinition
) -> Iterator[dg.AssetsDefinition]:
    models = _models(artifacts)
    if not models:
        return
    keys = {m.name: model_key(artifacts, m.name) for m in models}
    specs = [
        dg.AssetSpec(
            keys[m.name],
            deps=[release_key("jobs"), *(keys[d] for d in m.depends_on)],
            group_name=GROUP,
            kinds={"dbt", "kubernetes"},
            description=f"dbt model {m.name}, run as its own Kubernetes Job",
            tags={"floe.dev/compute": m.compute, **dict.fromkeys(m.tags, "")},
            partitions_def=partitions,
            skippable=True,
        )
        for m in models
    ]

    @dg.multi_asset(
        name="dbt_models",
        specs=specs,
        can_subset=True,
        partitions_def=partitions,
        pool="floe-data-products",
    )
    def dbt_models(
        context: dg.AssetExecutionContext,
        deployment: DeploymentConfigResource,
        kubernetes: KubernetesResource,
        data_products: DataProductsResource,
    ) -> Iterator[dg.MaterializeResult]:
        environment = context.partition_key
        selected = [name for name, key in keys.items() if key in context.selected_asset_keys]
        generator = generator_for(deployment, environment, "jobs")
        ref = deployment.release("jobs", environment)
        run_id = context.run.run_id
        attempt = int(context.run.tags.get(ATTEMPT_TAG, "1"))
        with JobTemplate(
            deployment.config.chart_path("jobs"),
            generator.helm_values(),
            release_name=ref.name,
            namespace=ref.namespace,
            pod_annotations=data_products.pod_annotations,
        ) as template:
            report = JobRunner(
                kubernetes.cluster(ref.cluster).api, template, data_products.settings()
            ).run(select_models(models, selected), run_id)
        for result in report.results:
            metadata = model_metadata(result, attempt)
            if result.outcome is Outcome.SUCCEEDED:
                yield dg.MaterializeResult(asset_key=keys[result.model], metadata=metadata)
            else:
                # Recorded on the model's asset, for the rerun sensor and the UI.
                context.log_event(
                    dg.AssetObservation(
                        asset_key=keys[result.model], partition=environment, metadata=metadata
                    )
                )
        if report.failed:
            raise dg.Failure(
                f"{len(report.failed)} model(s) failed in {ref.namespace}: "
                + "; ".join(f"{r.model} ({r.reason}: {r.message})" for r in report.failed),
                metadata={"api_calls": sum(report.api_calls.values())},
            )

    yield dbt_models


def model_metadata(result: ModelResult, attempt: int) -> dict[str, Any]:
    status = result.job.status if result.job else None
    metadata: dict[str, Any] = {
        "phase": result.phase,
        "job_name": result.job_name,
        "attempt": attempt,
        "duration_seconds": round(result.duration, 2) if result.duration is not None else None,
    }
    if result.outcome is not Outcome.SUCCEEDED:
        metadata["reason"] = result.reason or ""
        metadata["message"] = result.message or ""
        metadata["retryable"] = result.outcome is Outcome.FAILED and (
            result.reason not in NOT_RETRYABLE
        )
        if status is not None and status.exit_code is not None:
            metadata["exit_code"] = status.exit_code
        if status is not None and status.logs:
            metadata["log_excerpt"] = dg.MetadataValue.md(f"```\n{status.logs}\n```")
    return {k: v for k, v in metadata.items() if v is not None}


def rerun_sensor(
    artifacts: CompiledArtifacts, job: UnresolvedAssetJobDefinition
) -> dg.SensorDefinition:
    models = _models(artifacts)
    keys = {m.name: model_key(artifacts, m.name) for m in models}
    downstream = _downstream({m.name: m.depends_on for m in models})

    @dg.sensor(
        name="failed_model_reruns",
        job=job,
        minimum_interval_seconds=30,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Reruns a model whose Job failed for a retryable reason (with the models "
        "skipped below it), with bounded attempts and exponential backoff; image pull errors "
        "and invalid specs are not retried.",
    )
    def failed_model_reruns(
        context: dg.SensorEvaluationContext, data_products: DataProductsResource
    ) -> dg.SensorResult:
        instance = context.instance
        if not context.cursor:
            # Starting (or reset): failures from before are history, not work to redo.
            start = {name: _latest_observation(instance, key) for name, key in keys.items()}
            return dg.SensorResult(cursor=json.dumps({"after": start, "waiting": []}))
        cursor = json.loads(context.cursor)
        waiting: list[dict[str, Any]] = cursor["waiting"]
        for name, key in keys.items():
            found = instance.fetch_observations(
                dg.AssetRecordsFilter(asset_key=key, after_storage_id=cursor["after"].get(name)),
                limit=100,
                ascending=True,
            )
            for record in found.records:
                cursor["after"][name] = record.storage_id
                failure = _failure(record, name)
                if failure is not None:
                    waiting.append(failure)
        requests, cursor["waiting"] = [], []
        for failure in waiting:
            if _rebuilt_since(instance, keys[failure["model"]], failure):
                continue  # materialized since (a manual rerun): nothing to redo
            if failure["attempt"] >= data_products.max_attempts:
                continue  # attempts exhausted: the failure stays for a person to look at
            backoff = data_products.retry_backoff_seconds * 2 ** (failure["attempt"] - 1)
            if time.time() < failure["failed_at"] + backoff:
                cursor["waiting"].append(failure)
                continue
            selection = [failure["model"], *downstream[failure["model"]]]
            requests.append(
                dg.RunRequest(
                    # One rerun per failed run and model, however often the sensor ticks.
                    run_key=f"rerun-{failure['model']}-{failure['partition']}-{failure['run_id']}",
                    asset_selection=[keys[model] for model in selection],
                    partition_key=failure["partition"],
                    tags={ATTEMPT_TAG: str(failure["attempt"] + 1)},
                )
            )
        return dg.SensorResult(run_requests=requests, cursor=json.dumps(cursor, sort_keys=True))

    return failed_model_reruns


def _downstream(depends_on: dict[str, list[str]]) -> dict[str, list[str]]:
    """Each model's transitive downstream models, in the document's order."""
    below: dict[str, list[str]] = {}
    for model in depends_on:
        found: set[str] = set()
        frontier = [model]
        while frontier:
            current = frontier.pop()
            for other, upstream in depends_on.items():
                if current in upstream and other not in found:
                    found.add(other)
                    frontier.append(other)
        below[model] = [m for m in depends_on if m in found]
    return below


def _latest_observation(instance: dg.DagsterInstance, key: dg.AssetKey) -> int | None:
    records = instance.fetch_observations(key, limit=1).records
    return records[0].storage_id if records else None


def _failure(record: Any, model: str) -> dict[str, Any] | None:
    observation = record.asset_observation
    metadata = {k: v.value for k, v in observation.metadata.items()}
    if metadata.get("phase") != Outcome.FAILED or not metadata.get("retryable"):
        return None
    return {
        "model": model,
        "partition": observation.partition,
        "run_id": record.run_id,
        "storage_id": record.storage_id,
        "attempt": int(metadata.get("attempt", 1)),
        "failed_at": record.timestamp,
    }


def _rebuilt_since(instance: dg.DagsterInstance, key: dg.AssetKey, failure: dict[str, Any]) -> bool:
    return bool(
        instance.fetch_materializations(
            dg.AssetRecordsFilter(
                asset_key=key,
                asset_partitions=[failure["partition"]],
                after_storage_id=failure["storage_id"],
            ),
            limit=1,
        ).records
    )
