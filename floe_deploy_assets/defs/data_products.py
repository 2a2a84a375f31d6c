"""One asset per dbt model of the CompiledArtifacts, with ``depends_on`` as asset dependencies,
materialized by the DataProductJob runner (one Kubernetes Job per model); and the sensor that
reruns a model whose Job failed for a reason worth retrying.

The models are one subsettable multi-asset, so that selecting several in one run runs them
concurrently in dependency order through one runner (one watch per namespace), rather than one
step and one watch each.

A model that failed or was skipped is recorded as a failure, not as an observation: the step
raises ``dg.Failure`` once every model has ended, with each such model's details in its metadata
(keyed by asset key). Dagster OSS shows an asset partition as failed when the run that planned it
failed without materializing it, so the model's partition shows failed, linked to that run.
Dagster's own per-asset failure events (``AssetMaterializationFailure``) are not an option in
1.13 OSS: user code cannot log them, and the OSS event storages neither store nor return them.

dbt's own results come back through Dagster Pipes (dagster-k8s): every model's pod gets the
session's bootstrap variables, runs dbt through the floe-jobs chart's ``floe_dbt.py``, which
reports the model's materialization metadata (dbt's status, rows affected, execution time) and
its dbt tests' outcomes as Pipes messages on stderr; once the runner is done, each finished
pod's log is read for them (dagster-k8s' ``PipesK8sPodLogsMessageReader``; the other lines are
forwarded to the step's stdout). The runner's watches are untouched: reading happens after.
Each dbt test the product's dbt project declares is an asset check on its model
(``models/dbt_tests.py``), blocking when dbt's severity is error.
"""

import json
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition
from dagster_k8s import PipesK8sPodLogsMessageReader
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from pydantic import Field

from floe_deploy_assets.defs.deploy_assets import Release
from floe_deploy_assets.defs.resources import DeploymentConfigResource, KubernetesResource
from floe_deploy_assets.defs.sensors import INTERVAL_SECONDS
from floe_deploy_assets.helm.sources import chart_dir
from floe_deploy_assets.jobs.plan import Outcome, dependents, select_models
from floe_deploy_assets.jobs.pods import IMAGE_PULL_REASONS
from floe_deploy_assets.jobs.runner import JobRunner, ModelResult, RunnerSettings
from floe_deploy_assets.jobs.spec import JobTemplate
from floe_deploy_assets.models.artifacts import CompiledArtifacts, TransformModel
from floe_deploy_assets.models.dbt_tests import DbtTest, load_dbt_tests
from floe_deploy_assets.models.products import DataProduct

GROUP = "data_products"
RUNNER_DEFAULTS = RunnerSettings()
RUN_DATA_PRODUCTS = "run_data_products"
ATTEMPT_TAG = "floe.dev/attempt"
MODELS_STEP = "dbt_models"  # the multi-asset's op, the step whose failure names the models
PARTITION = "partition"  # in that failure's metadata, beside the models' asset keys
# Failures that another attempt cannot fix: the image, or the Job's own spec, is wrong.
NOT_RETRYABLE = IMAGE_PULL_REASONS | {"CreateContainerConfigError", "CreateFailed"}
# The Pipes extras floe_dbt.py reads (charts/floe-jobs/files/floe_dbt.py): per dbt model, its
# asset key and the names of its declared checks.
PIPES_EXTRAS_KEY = "floe_models"


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


def jobs_release(product: DataProduct) -> Release:
    return Release("jobs", product.slug if product.named_objects else None)


def models_step(product: DataProduct) -> str:
    """The op that runs a product's models: ``dbt_models``, or ``dbt_models_<product>`` when
    products are named (an op name is a Python identifier)."""
    if not product.named_objects:
        return MODELS_STEP
    return f"{MODELS_STEP}_{product.slug.replace('-', '_')}"


def product_jobs(product: DataProduct) -> list[UnresolvedAssetJobDefinition]:
    """With named products, each has its own jobs: deploy its jobs release (the platform is
    ``deploy_platform``'s), and run its models."""
    if not product.named_objects:
        return []
    release = jobs_release(product)
    name = product.slug.replace("-", "_")
    return [
        dg.define_asset_job(
            f"deploy_{name}",
            selection=dg.AssetSelection.assets(
                release.artifacts_key,
                release.values_key,
                release.manifests_key,
                release.release_key,
            ),
            description=f"The jobs release of data product {product.name}, checks first.",
        ),
        dg.define_asset_job(
            f"run_{name}",
            selection=dg.AssetSelection.assets(
                *(model_key(product.artifacts, m.name) for m in _models(product.artifacts))
            ),
            description=f"The dbt models of data product {product.name}, one Kubernetes Job "
            "each, in dependency order.",
        ),
    ]


def model_assets(
    products: Sequence[DataProduct], partitions: dg.PartitionsDefinition
) -> Iterator[dg.AssetsDefinition]:
    for product in products:
        if _models(product.artifacts):
            yield _product_models(product, partitions)


def _product_models(
    product: DataProduct, partitions: dg.PartitionsDefinition
) -> dg.AssetsDefinition:
    artifacts = product.artifacts
    models = _models(artifacts)
    release = jobs_release(product)
    keys = {m.name: model_key(artifacts, m.name) for m in models}
    tests = load_dbt_tests(product.dbt_project) if product.dbt_project else {}
    check_specs = [
        dg.AssetCheckSpec(
            test.check_name,
            asset=keys[model],
            blocking=test.blocking,
            description=test.description,
            partitions_def=partitions,  # a result per environment, as the model's
        )
        for model in keys
        for test in tests.get(model, [])
    ]
    specs = [
        dg.AssetSpec(
            keys[m.name],
            deps=[release.release_key, *(keys[d] for d in m.depends_on)],
            group_name=GROUP,
            kinds={"dbt", "kubernetes"},
            description=f"dbt model {m.name}, run as its own Kubernetes Job",
            tags={"floe.dev/compute": m.compute, **dict.fromkeys(m.tags, "")},
            partitions_def=partitions,
            skippable=True,
            # The product's team, and the hash of the product's source as compiled: a model's
            # code changed when the product's source did.
            owners=[f"team:{artifacts.metadata.product_name}"],
            code_version=artifacts.metadata.source_hash,
        )
        for m in models
    ]

    @dg.multi_asset(
        name=models_step(product),
        specs=specs,
        check_specs=check_specs,
        can_subset=True,
        partitions_def=partitions,
        pool="floe-data-products",
    )
    def dbt_models(
        context: dg.AssetExecutionContext,
        deployment: DeploymentConfigResource,
        kubernetes: KubernetesResource,
        data_products: DataProductsResource,
    ) -> Iterator[dg.MaterializeResult | dg.AssetCheckResult]:
        environment = context.partition_key
        selected = [name for name, key in keys.items() if key in context.selected_asset_keys]
        generator = release.generator(deployment, environment)
        ref = release.ref(deployment, environment)
        run_id = generator.product.run_id(context.run.run_id)
        attempt = int(context.run.tags.get(ATTEMPT_TAG, "1"))
        api = kubernetes.cluster(ref.cluster).api
        reader = PipesK8sPodLogsMessageReader()
        extras = {PIPES_EXTRAS_KEY: _pipes_models(keys, tests, selected)}
        with dg.open_pipes_session(
            context, dg.PipesEnvContextInjector(), reader, extras=extras
        ) as session:
            with JobTemplate(
                chart_dir(deployment.config, "jobs"),
                generator.helm_values(),
                release_name=ref.name,
                namespace=ref.namespace,
                pod_annotations=data_products.pod_annotations,
                run_env=session.get_bootstrap_env_vars(),
            ) as template:
                report = JobRunner(api, template, data_products.settings()).run(
                    select_models(models, selected), run_id
                )
            _read_reports(context, reader, client.CoreV1Api(api), ref.namespace, report.results)
        reported = session.get_results(implicit_materializations=False)
        dbt_metadata = {
            r.asset_key: r.metadata or {} for r in reported if isinstance(r, dg.MaterializeResult)
        }
        unbuilt: dict[str, Any] = {}  # failed and skipped models, by asset key
        for result in report.results:
            metadata = model_metadata(result, ref.namespace, attempt)
            key = keys[result.model]
            if result.outcome is Outcome.SUCCEEDED:
                yield dg.MaterializeResult(
                    asset_key=key,
                    metadata={**for_materialization(metadata), **dbt_metadata.get(key, {})},
                )
            else:
                unbuilt[key.to_user_string()] = for_failure(metadata)
        # dbt's tests, passed or not, as the declared checks (a failed model's too).
        yield from (r for r in reported if isinstance(r, dg.AssetCheckResult))
        if unbuilt:
            # After the successes: they stay materialized; the others show failed (see above).
            raise dg.Failure(
                f"{len(report.failed)} model(s) failed in {ref.namespace}, "
                f"{len(unbuilt) - len(report.failed)} skipped: "
                + "; ".join(f"{r.model} ({r.reason}: {r.message})" for r in report.failed),
                metadata={
                    PARTITION: environment,
                    "api_calls": sum(report.api_calls.values()),
                    **unbuilt,
                },
            )

    return dbt_models


def _pipes_models(
    keys: Mapping[str, dg.AssetKey], tests: Mapping[str, list[DbtTest]], selected: list[str]
) -> dict[str, Any]:
    """What floe_dbt.py in each selected model's pod is told: its asset key, its checks."""
    return {
        model: {
            "asset_key": keys[model].to_user_string(),
            "checks": [test.check_name for test in tests.get(model, [])],
        }
        for model in selected
    }


def _read_reports(
    context: dg.AssetExecutionContext,
    reader: PipesK8sPodLogsMessageReader,
    core: client.CoreV1Api,
    namespace: str,
    results: Iterable[ModelResult],
) -> None:
    """The Pipes messages in the log of each pod whose dbt ran to its end. The pods have
    ended, so each read ends when the log does; a log that cannot be read loses that model's
    dbt details (logged as a warning), not its outcome, which the runner saw."""
    for result in results:
        status = result.job.status if result.job else None
        ran = result.outcome is Outcome.SUCCEEDED or (status and status.exit_code is not None)
        if not (ran and result.pod_name):
            continue
        try:
            reader.consume_pod_logs(context, core, result.pod_name, namespace)
        except (ApiException, OSError) as error:
            context.log.warning(
                f"dbt's results for {result.model} could not be read from pod "
                f"{namespace}/{result.pod_name}: {error}"
            )


def model_metadata(result: ModelResult, namespace: str, attempt: int) -> dict[str, Any]:
    """What a run knows of one model, as plain values (times as datetimes); a success's
    materialization metadata, or a failed or skipped model's entry in the run's failure."""
    status = result.job.status if result.job else None
    metadata: dict[str, Any] = {
        "namespace": namespace,
        "job_name": result.job_name,
        "pod_name": result.pod_name,
        "start_time": status.start_time if status else None,
        "end_time": status.completion_time if status else None,
        "duration_seconds": round(result.duration, 2) if result.duration is not None else None,
        "phase": result.phase,
        "attempt": attempt,
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
            metadata["log_excerpt"] = status.logs
    return {k: v for k, v in metadata.items() if v is not None}


def for_materialization(metadata: dict[str, Any]) -> dict[str, Any]:
    """A success's metadata: times as timestamps, which the UI shows as dates."""
    return {
        k: dg.MetadataValue.timestamp(v) if isinstance(v, datetime) else v
        for k, v in metadata.items()
    }


def for_failure(metadata: dict[str, Any]) -> dg.MetadataValue:
    """A failed or skipped model's entry in the failure's metadata: one JSON value per model,
    so that the failure of one step can hold several models (times as ISO 8601 strings)."""
    return dg.MetadataValue.json(
        {k: v.isoformat() if isinstance(v, datetime) else v for k, v in metadata.items()}
    )


def run_failure(
    instance: dg.DagsterInstance, run_id: str, steps: Iterable[str] = (MODELS_STEP,)
) -> dict[str, Any]:
    """The metadata of the failures the models' steps (``steps``: one per product) raised in
    ``run_id``: the partition, and by asset key each failed or skipped model's details; empty
    when none raised one (the run failed elsewhere, or before any model ended)."""
    steps = frozenset(steps)
    found: dict[str, Any] = {}
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        # user_failure_data: the dg.Failure the step raised (None for any other exception).
        failure = event.step_failure_data.user_failure_data if event else None
        if entry.step_key in steps and failure is not None:
            found.update({key: value.value for key, value in failure.metadata.items()})
    return found


def rerun_sensor(
    products: Sequence[DataProduct], job: UnresolvedAssetJobDefinition
) -> dg.SensorDefinition:
    keys: dict[tuple[str, str], dg.AssetKey] = {}  # (product slug, model) -> asset key
    downstream: dict[str, Downstream] = {}  # by product slug
    for product in products:
        models = _models(product.artifacts)
        downstream[product.slug] = Downstream({m.name: m.depends_on for m in models})
        keys.update({(product.slug, m.name): model_key(product.artifacts, m.name) for m in models})
    # Built once: reading a failed run then costs the models it names, not every model.
    ranked = {
        key.to_user_string(): (rank, *model) for rank, (model, key) in enumerate(keys.items())
    }
    steps = [models_step(product) for product in products]
    # A waiting failure from a cursor written before products were named is the first's.
    first = products[0].slug if products else ""
    named = any(product.named_objects for product in products)

    @dg.sensor(
        name="failed_model_reruns",
        job=job,
        minimum_interval_seconds=INTERVAL_SECONDS,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Reruns a model whose Job failed for a retryable reason (with the models "
        "skipped below it), with bounded attempts and exponential backoff; image pull errors "
        "and invalid specs are not retried.",
    )
    def failed_model_reruns(
        context: dg.SensorEvaluationContext, data_products: DataProductsResource
    ) -> dg.SensorResult:
        instance = context.instance
        cursor = json.loads(context.cursor) if context.cursor else {}
        if "after_run_failure" not in cursor:
            # Starting, reset, or a cursor from before failures were read from failed runs:
            # failures from before are history, not work to redo.
            start = _latest_run_failure(instance)
            return dg.SensorResult(
                skip_reason="started: failures from before now are not rerun",
                cursor=json.dumps({"after_run_failure": start, "waiting": []}),
            )
        waiting: list[dict[str, Any]] = cursor["waiting"]
        found = instance.fetch_run_status_changes(
            dg.RunStatusChangeRecordsFilter(
                dg.DagsterEventType.RUN_FAILURE, after_storage_id=cursor["after_run_failure"]
            ),
            limit=100,
            ascending=True,
        )
        for record in found.records:
            cursor["after_run_failure"] = record.storage_id
            waiting.extend(_retryable_failures(instance, record, ranked, steps))
        requests, cursor["waiting"] = [], []
        notes = []  # why a failure is not rerun now: the tick's skip reason
        for failure in waiting:
            product = failure.setdefault("product", first)
            model = f"{failure['model']} ({failure['partition']})"
            if (product, failure["model"]) not in keys:
                notes.append(f"{model} is no longer a model of {product}")
                continue
            if _rebuilt_since(instance, keys[product, failure["model"]], failure):
                notes.append(f"{model} was materialized since it failed")
                continue  # a manual rerun: nothing to redo
            if failure["attempt"] >= data_products.max_attempts:
                # The failure stays for a person to look at.
                notes.append(f"{model} failed {failure['attempt']} times: no more attempts")
                continue
            backoff = data_products.retry_backoff_seconds * 2 ** (failure["attempt"] - 1)
            if time.time() < failure["failed_at"] + backoff:
                notes.append(f"{model} waits {backoff} s after attempt {failure['attempt']}")
                cursor["waiting"].append(failure)
                continue
            selection = [failure["model"], *downstream[product][failure["model"]]]
            requests.append(
                dg.RunRequest(
                    # One rerun per failed run and model, however often the sensor ticks.
                    run_key=f"rerun-{failure['model']}-{failure['partition']}-{failure['run_id']}"
                    + (f"-{product}" if named else ""),
                    asset_selection=[keys[product, model] for model in selection],
                    partition_key=failure["partition"],
                    tags={ATTEMPT_TAG: str(failure["attempt"] + 1)},
                )
            )
        cursor_text = json.dumps(cursor, sort_keys=True)
        if requests:
            context.log.info(
                "rerunning: "
                + "; ".join(
                    ", ".join(key.to_user_string() for key in r.asset_selection or [])
                    for r in requests
                )
            )
            return dg.SensorResult(run_requests=requests, cursor=cursor_text)
        return dg.SensorResult(
            skip_reason="; ".join(notes) or "no model failed for a retryable reason since",
            cursor=cursor_text,
        )

    return failed_model_reruns


class Downstream:
    """Each model's transitive downstream models, in the order of ``depends_on``, found when
    asked (a walk of the dependencies turned around, once per model asked about). The sensor asks
    only about the models that failed: every model's downstream up front would cost models
    times dependencies, since a model near the top of a deep DAG has most of it below."""

    def __init__(self, depends_on: Mapping[str, Iterable[str]]) -> None:
        self._dependents = dependents(depends_on)
        self._position = {name: index for index, name in enumerate(depends_on)}

    def __getitem__(self, model: str) -> list[str]:
        found: set[str] = set()
        frontier = [model]
        while frontier:
            for dependent in self._dependents[frontier.pop()]:
                if dependent not in found:
                    found.add(dependent)
                    frontier.append(dependent)
        return sorted(found, key=self._position.__getitem__)


def _latest_run_failure(instance: dg.DagsterInstance) -> int | None:
    records = instance.fetch_run_status_changes(dg.DagsterEventType.RUN_FAILURE, limit=1).records
    return records[0].storage_id if records else None


def _retryable_failures(
    instance: dg.DagsterInstance,
    record: dg.EventLogRecord,
    ranked: dict[str, tuple[int, str, str]],
    steps: Iterable[str] = (MODELS_STEP,),
) -> list[dict[str, Any]]:
    """The models that failed for a retryable reason in the failed run of ``record``, in the
    models' order (``ranked``: by asset key as the failure writes it, the model's place in
    that order, its product's slug and its name)."""
    failure = run_failure(instance, record.run_id, steps)
    found = []
    for (_, product, model), key in sorted((ranked[key], key) for key in failure if key in ranked):
        details = failure[key]
        if details and details["phase"] == Outcome.FAILED and details["retryable"]:
            found.append(
                {
                    "product": product,
                    "model": model,
                    "partition": failure[PARTITION],
                    "run_id": record.run_id,
                    "storage_id": record.storage_id,  # the run's failure
                    "attempt": int(details["attempt"]),
                    "failed_at": record.timestamp,
                }
            )
    return found


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
