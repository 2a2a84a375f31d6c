"""One model's Job: its run-unique name, and the Job object the floe-jobs chart renders for it.

The chart's Job template is the one description of a model's pod (image, command, resources with
the per-model override, the artifacts ConfigMap, the dbt profiles, the security context and the
Job settings); this module only fills in ``run.*``, adds the run's labels to the Job itself and,
when asked, extra pod annotations. The DataProductJob of the seed is read back from the rendered
object, so the two can never disagree.

Helm renders every Job, but a model's Job is rendered from the values with ``models`` cut down to
that model's own entry: the Job template reads ``models`` only to look its model up, so the Job is
the same (tests/unit/test_job_render_scale.py renders every model both ways), and a render costs
the same whether the product has 4 models or 2,000 (benchmarks/bench_job_render.py). The first
render of a ``JobTemplate`` passes the whole values, so Helm still checks every model's entry
against the chart's schema once a run, with the same error as before. Later renders use a view
of the chart with only the Job template and the helpers, without the values schema: Helm's
schema check was three quarters of a render's cost. What it would check again is a part of the
values it passed, and ``run``, which is ours: the model's name (checked against the same pattern
when the artifacts were read), its Job name (``job_name``) and the run id (``check_run_id``).
"""

from __future__ import annotations

import copy
import hashlib
import re
import shutil
import tempfile
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import yaml

from floe_deploy_assets.helm.render import RenderError, build_dependencies
from floe_deploy_assets.models.config import ConfigError
from floe_deploy_assets.models.jobs import RUN_LABEL, ConfigMapRef, DataProductJob, SecretRef
from floe_deploy_assets.models.resources import ResourceRequirements

MAX_NAME = 63
PRODUCT_LABEL = "floe.dev/product"
MODEL_ANNOTATION = "floe.dev/dbt-model"
# The chart's RunSettings.run_id: a label value, since the run id is recorded as a label.
RUN_ID_PATTERN = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$", re.ASCII)
# A run id short and plain enough to appear in Job names as it is; any other is hashed.
NAME_SAFE_RUN_ID = re.compile(r"^[a-z0-9]{1,12}$", re.ASCII)
MODEL_HASH_LENGTH = 6
RUN_HASH_LENGTH = 10
JOB_TEMPLATE = "templates/job.yaml"
ARTIFACTS_VOLUME = "artifacts"
DBT_CONTAINER = "dbt"
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def new_run_id() -> str:
    return uuid.uuid4().hex[:8]


def check_run_id(run_id: str) -> str:
    if len(run_id) > MAX_NAME or not RUN_ID_PATTERN.fullmatch(run_id):
        raise ConfigError(
            f"run id {run_id!r} must be a Kubernetes label value: at most {MAX_NAME} letters, "
            "digits, '-', '_' or '.', starting and ending with a letter or digit"
        )
    return run_id


def _digest(text: str, length: int) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:length]


def run_token(run_id: str) -> str:
    """The run's part of a Job name: the run id itself when short and plain, else its hash."""
    return run_id if NAME_SAFE_RUN_ID.fullmatch(run_id) else _digest(run_id, RUN_HASH_LENGTH)


def job_name(model: str, run_id: str) -> str:
    """``<model>-<run>``: a DNS-1123 name of at most 63 characters matching ^[a-z][a-z0-9-]*$.

    dbt names allow capitals, '_' runs and a leading '_' or digit, so the slug of two models can
    coincide (``Orders``/``orders``, ``a_b``/``a__b``); whenever the slug is not the model name
    spelled with '-', or is cut to fit, a hash of the model name follows it, so names stay
    distinct and stable."""
    token = run_token(check_run_id(run_id))
    slug = re.sub(r"-+", "-", model.lower().replace("_", "-")).strip("-")
    if not slug[:1].isalpha():
        slug = f"m-{slug}".rstrip("-")
    room = MAX_NAME - len(token) - 1
    if slug.replace("-", "_") == model and len(slug) <= room:
        return f"{slug}-{token}"
    cut = slug[: room - MODEL_HASH_LENGTH - 1].rstrip("-")
    return f"{cut}-{_digest(model, MODEL_HASH_LENGTH)}-{token}"


def with_job_settings(values: Mapping[str, Any], **settings: Any) -> dict[str, Any]:
    """``values`` with chart ``job.*`` settings replaced (camelCase keys: ``command``,
    ``activeDeadlineSeconds``, ``ttlSecondsAfterFinished``); None leaves a setting as it is."""
    merged = copy.deepcopy(dict(values))
    given = {key: value for key, value in settings.items() if value is not None}
    merged["job"] = {**merged.get("job", {}), **given}
    return merged


@dataclass(frozen=True)
class ModelJob:
    """One model of a run: its upstream models, the Job object to create, and the
    DataProductJob (status not yet set) that the object describes."""

    model: str
    depends_on: tuple[str, ...]
    manifest: dict[str, Any]
    job: DataProductJob

    @property
    def name(self) -> str:
        return self.job.name


class JobTemplate:
    """The floe-jobs chart, loaded once, rendering one model's Job per call.

    ``helm.render.render_chart`` builds the chart's dependencies, loads it and parses every
    template's output on each call (about 45 ms here); a run renders one Job per model, so this
    does the first two once and parses only the Job template's output. Helm gets the values with
    ``models`` holding only the rendered model's entry (after a first render with all of them,
    which validates them all), so the cost of a Job does not grow with the number of models:
    about 6 ms CPU at 4 models as at 2,000, where the whole values cost 43 ms at 2,000 (see
    benchmarks/bench_job_render.py)."""

    def __init__(
        self,
        chart_dir: Path,
        values: Mapping[str, Any],
        *,
        release_name: str,
        namespace: str,
        pod_annotations: Mapping[str, Mapping[str, str]] | None = None,
        run_env: Mapping[str, str] | None = None,
    ) -> None:
        """``pod_annotations``: per model, annotations added to its pod template (the
        simulated kubelet's ``sim.kubelet.floe.dev/*`` in tests, for instance); ``run_env``:
        environment variables of this run for every model's dbt container (Dagster Pipes'
        bootstrap variables)."""
        self.chart_dir, self.values = chart_dir, dict(values)
        self.release_name, self.namespace = release_name, namespace
        self.pod_annotations = dict(pod_annotations or {})
        self.run_env = [{"name": name, "value": value} for name, value in (run_env or {}).items()]
        # ``models`` is indexed once: a list changed after this is not seen by later renders.
        self._entries = _entries_by_model(self.values)
        # Set after the first render with the whole values: Helm has checked them all.
        self._validated = False
        build_dependencies(chart_dir)
        self._chart = _load_chart(chart_dir)
        self._job_view_dir = Path(tempfile.mkdtemp(prefix="floe-job-view-"))
        try:
            self._job_view = _load_chart(_job_view(chart_dir, self._job_view_dir))
        except BaseException:
            shutil.rmtree(self._job_view_dir, ignore_errors=True)
            self._chart.close()
            raise

    def close(self) -> None:
        try:
            self._chart.close()
            self._job_view.close()
        finally:
            shutil.rmtree(self._job_view_dir, ignore_errors=True)

    def __enter__(self) -> JobTemplate:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def render(self, model: str, run_id: str, depends_on: Iterable[str] = ()) -> ModelJob:
        run = {"model": model, "jobName": job_name(model, run_id), "runId": run_id}
        if self._validated:
            manifest = self._render_job(self._job_view, self.model_values(model, run), model)
        else:
            manifest = self._render_job(self._chart, {**self.values, "run": run}, model)
            self._validated = True
        self._add_run_metadata(manifest, model, run_id)
        return ModelJob(
            model, tuple(depends_on), manifest, data_product_job(manifest, self.namespace)
        )

    def model_values(self, model: str, run: Mapping[str, Any]) -> dict[str, Any]:
        """The values Helm renders ``model``'s Job from: the template's values with ``run`` and,
        when ``models`` is a list, only the entries of ``model`` in it (the Job template reads
        ``models`` only to find its model's entry, the last of that name; a model with none
        gets the chart's defaults either way). Their size does not depend on how many models
        the product has."""
        if self._entries is None:
            return {**self.values, "run": dict(run)}
        return {**self.values, "models": self._entries.get(model, []), "run": dict(run)}

    def _render_job(
        self, chart: helm_python.Chart, values: dict[str, Any], model: str
    ) -> dict[str, Any]:
        """The Job object the chart's Job template renders from ``values``, as the chart says
        it: no run metadata added."""
        try:
            files = chart.render(
                values, name=self.release_name, namespace=self.namespace, is_install=True
            )
        except helm_python.HelmError as exc:
            raise RenderError(f"{self.chart_dir}: rendering the Job of {model}: {exc}") from None
        rendered = [text for path, text in files.items() if path.endswith(JOB_TEMPLATE)]
        manifest = yaml.load(rendered[0], Loader=_YAML_LOADER) if rendered else None
        if not manifest or not isinstance(manifest, dict):
            raise RenderError(f"{self.chart_dir}: {JOB_TEMPLATE} rendered no Job for {model}")
        return manifest

    def _add_run_metadata(self, manifest: dict[str, Any], model: str, run_id: str) -> None:
        metadata = manifest["metadata"]
        metadata["namespace"] = self.namespace
        pod_metadata = manifest["spec"]["template"]["metadata"]
        # The chart labels only the pod with the run and product; the runner watches Jobs by
        # run, so the Job carries them too.
        metadata["labels"] = {
            **metadata.get("labels", {}),
            RUN_LABEL: run_id,
            PRODUCT_LABEL: pod_metadata["labels"][PRODUCT_LABEL],
        }
        if self.run_env:
            container = _dbt_container(manifest["spec"]["template"]["spec"])
            container["env"] = [*container.get("env", []), *self.run_env]
        extra = self.pod_annotations.get(model)
        if extra:
            pod_metadata["annotations"] = {**pod_metadata.get("annotations", {}), **extra}


def _load_chart(chart_dir: Path) -> helm_python.Chart:
    try:
        return helm_python.Chart.load(str(chart_dir))
    except helm_python.HelmError as exc:
        raise RenderError(f"{chart_dir}: cannot load the chart: {exc}") from None


def _job_view(chart_dir: Path, directory: Path) -> Path:
    """The chart as the Job template sees it, copied into ``directory``: its files, its
    dependencies, the Job template and the helpers (``_*.tpl``), but no other template and no
    values schema. Its Job is the chart's (tests/unit/test_job_render_scale.py)."""
    chart_dir = chart_dir.resolve()  # "." or ".." has no name to copy it under

    def left_out(directory: str, names: list[str]) -> set[str]:
        here = Path(directory)
        if here == chart_dir:
            return {"values.schema.json"}
        if here == chart_dir / "templates":
            job = Path(JOB_TEMPLATE).name
            return {n for n in names if n != job and not (n.startswith("_") and n.endswith(".tpl"))}
        return set()

    view = directory / chart_dir.name
    shutil.copytree(chart_dir, view, ignore=left_out)
    return view


def _entries_by_model(values: Mapping[str, Any]) -> dict[str, list[Any]] | None:
    """Each model's entries in ``values["models"]``, in their order; None when ``models`` is
    not a list of entries (Helm then gets the values as they are, and says what is wrong)."""
    models = values.get("models")
    if not isinstance(models, list):
        return None
    entries: dict[str, list[Any]] = {}
    for entry in models:
        name = entry.get("name") if isinstance(entry, Mapping) else None
        if not isinstance(name, str):
            return None
        entries.setdefault(name, []).append(entry)
    return entries


def data_product_job(manifest: Mapping[str, Any], namespace: str) -> DataProductJob:
    """The seed's DataProductJob that a rendered Job object describes."""
    pod = manifest["spec"]["template"]["spec"]
    container = _dbt_container(pod)
    artifacts = next(v for v in pod["volumes"] if v["name"] == ARTIFACTS_VOLUME)
    return DataProductJob(
        name=manifest["metadata"]["name"],
        namespace=namespace,
        image=container["image"],
        command=container["command"],
        artifacts=ConfigMapRef(name=artifacts["configMap"]["name"]),
        secrets=list(_secret_refs(pod, container)),
        resources=ResourceRequirements.model_validate(container["resources"]),
    )


def _dbt_container(pod: Mapping[str, Any]) -> dict[str, Any]:
    return next(c for c in pod["containers"] if c["name"] == DBT_CONTAINER)


def _secret_refs(pod: Mapping[str, Any], container: Mapping[str, Any]) -> Iterable[SecretRef]:
    """Every Secret the pod reads: mounted volumes, env values and env sources."""
    for volume in pod.get("volumes", []):
        if "secret" in volume:
            items = volume["secret"].get("items") or [{}]
            yield SecretRef(name=volume["secret"]["secretName"], key=items[0].get("key"))
    for variable in container.get("env", []):
        ref = (variable.get("valueFrom") or {}).get("secretKeyRef")
        if ref:
            yield SecretRef(name=ref["name"], key=ref.get("key"))
    for source in container.get("envFrom", []):
        if "secretRef" in source:
            yield SecretRef(name=source["secretRef"]["name"])
