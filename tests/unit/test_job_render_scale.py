"""A model's Job costs the same however many models the product has (issue 14), and is still the
chart's: ``JobTemplate`` hands Helm only the rendered model's entry of ``models``, and every
model's Job (the whole object, and the DataProductJob read from it) equals the Job a full Helm
render of the chart, with every model in the values, gives. No cluster needed."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import helm_python
import pytest
import yaml

from floe_deploy_assets.helm.render import RenderError, build_dependencies
from floe_deploy_assets.jobs.spec import (
    PRODUCT_LABEL,
    RUN_LABEL,
    JobTemplate,
    data_product_job,
    job_name,
    with_job_settings,
)
from tests.support.charts import CONFIG, EXAMPLE, generated_values

CHART = CONFIG.chart_path("jobs")
LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
RELEASE = "floe-jobs"
OVERRIDE = {"requests": {"cpu": "300m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}
SMALL = {"requests": {"cpu": "50m", "memory": "64Mi"}, "limits": {"cpu": "50m", "memory": "64Mi"}}
# Names that keep their spelling and names the Job name must slug and hash: capitals, '_' runs,
# a leading '_' or digit, names too long for 63 characters, and one exactly at the limit.
ODD_NAMES = [
    "Orders",
    "orders",
    "_orders",
    "or__ders",
    "_9lives",
    "Customer_360_Daily",
    "x" * 80 + "_a",
    "x" * 80 + "_b",
    "fct_" + "y" * 56,  # with "-r1", exactly 63 characters: kept as it is
    "fct_" + "z" * 70,
]


def _models(count: int) -> list[dict[str, Any]]:
    """``count`` models in dependency order: staging models, then marts reading two models
    each, with the odd names among them; tags vary (none, one, several)."""
    names = ODD_NAMES + [f"stg_source_{i:03d}" for i in range(count - len(ODD_NAMES))]
    models = []
    for i, name in enumerate(names):
        upstream = [names[i - 1], names[i // 2]] if i >= 2 else []
        models.append(
            {
                "name": name,
                "compute": "duckdb",
                "tags": [["staging"], [], ["marts", "daily", "pii"]][i % 3],
                "depends_on": sorted(set(upstream)),
            }
        )
    return models


def _artifacts(directory: Path, count: int) -> Path:
    document = json.loads(EXAMPLE.read_text())
    document["transforms"]["models"] = _models(count)
    path = directory / f"artifacts-{count}.json"
    path.write_text(json.dumps(document))
    return path


def _values(directory: Path, environment: str, count: int) -> dict[str, Any]:
    """Generated values for an artifacts document of ``count`` models, with per-model resource
    overrides and schedules on some of them (the chart's other uses of a model's entry)."""
    values = generated_values("jobs", environment, _artifacts(directory, count))
    for i, entry in enumerate(values["models"]):
        if i % 4 == 1:
            entry["resources"] = copy.deepcopy(OVERRIDE if i % 8 == 1 else SMALL)
        if i % 5 == 2:
            entry["schedule"] = "0 6 * * 1-5"
    return values


def _full_render_job(chart: helm_python.Chart, values: dict[str, Any], namespace: str) -> Any:
    """The Job of a full Helm render: the chart's every template, from the whole values (only
    the outputs holding a Job are parsed, as parsing each CronJob is slow)."""
    files = chart.render(values, name=RELEASE, namespace=namespace, is_install=True)
    objects = [
        doc
        for path, text in files.items()
        if not path.endswith("NOTES.txt") and "\nkind: Job\n" in text
        for doc in yaml.load_all(text, Loader=LOADER)
        if doc
    ]
    (job,) = [o for o in objects if o["kind"] == "Job"]
    return job


def _with_run_metadata(job: Any, namespace: str, run_id: str, annotations: dict[str, str]) -> Any:
    """What the runner adds to the chart's Job: namespace, run and product labels on the Job,
    and the model's extra pod annotations."""
    expected = copy.deepcopy(job)
    expected["metadata"]["namespace"] = namespace
    pod = expected["spec"]["template"]["metadata"]
    expected["metadata"]["labels"][RUN_LABEL] = run_id
    expected["metadata"]["labels"][PRODUCT_LABEL] = pod["labels"][PRODUCT_LABEL]
    pod["annotations"].update(annotations)
    return expected


class _Recording:
    """The loaded chart, recording how many ``models`` entries each render is given."""

    def __init__(self, chart: helm_python.Chart):
        self.chart, self.models_given = chart, []

    def render(self, values: dict[str, Any], **options: Any) -> dict[str, str]:
        self.models_given.append(len(values["models"]))
        return self.chart.render(values, **options)

    def close(self) -> None:
        self.chart.close()


@pytest.fixture(scope="module")
def chart():
    build_dependencies(CHART)
    loaded = helm_python.Chart.load(str(CHART))
    yield loaded
    loaded.close()


@pytest.fixture(scope="module")
def artifacts_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("artifacts")


def _secret_profiles(values: dict[str, Any]) -> dict[str, Any]:
    values = with_job_settings(values, command="build", activeDeadlineSeconds=900)
    values["dbt"]["profiles"] = {
        "source": "secret",
        "existingSecret": "floe-dbt-profiles",
        "key": "profiles.yml",
    }
    values["global"].pop("otlpEndpoint", None)
    return values


@pytest.mark.parametrize(
    ("environment", "namespace", "adjust"),
    [
        ("dev", "floe-dev", lambda values: values),
        ("prod", "floe-prod", _secret_profiles),
    ],
    ids=["dev-inline-profiles-telemetry", "prod-secret-profiles-build"],
)
def test_every_models_job_is_the_job_of_a_full_helm_render(
    chart: helm_python.Chart, artifacts_dir: Path, environment: str, namespace: str, adjust: Any
):
    values = adjust(_values(artifacts_dir, environment, 120))
    names = [entry["name"] for entry in values["models"]]
    annotations = {names[3]: {"sim.kubelet.floe.dev/run-seconds": "5"}}
    with JobTemplate(
        CHART, values, release_name=RELEASE, namespace=namespace, pod_annotations=annotations
    ) as template:
        recording = _Recording(template._chart)
        template._chart = recording  # type: ignore[assignment]
        view_recording = _Recording(template._job_view)
        template._job_view = view_recording  # type: ignore[assignment]
        view_dir = template._job_view_dir
        first = template.render(names[-1], "r0")  # the whole values, checked once
        for position, model in enumerate([*names, "adhoc_model_without_an_entry"]):
            run_id = "r1" if position % 2 else "Run_2024-01-01.retry"  # plain, and hashed
            run = {"model": model, "jobName": job_name(model, run_id), "runId": run_id}
            full = _full_render_job(chart, {**values, "run": run}, namespace)
            expected = _with_run_metadata(full, namespace, run_id, annotations.get(model, {}))
            rendered = template.render(model, run_id, depends_on=("upstream",))
            assert rendered.manifest == expected, model
            assert rendered.job == data_product_job(expected, namespace), model
            assert rendered.name == expected["metadata"]["name"]
            assert rendered.depends_on == ("upstream",)
    last = names[-1]
    run = {"model": last, "jobName": job_name(last, "r0"), "runId": "r0"}
    expected = _with_run_metadata(
        _full_render_job(chart, {**values, "run": run}, namespace), namespace, "r0", {}
    )
    assert first.manifest == expected
    # Only the first render, of the whole chart (its values schema checked), was given every
    # model; each other one, of the Job's view of the chart, its own entry, or none.
    assert recording.models_given == [120]
    assert view_recording.models_given == [1] * 120 + [0]
    assert not view_dir.exists()  # the view is removed with the template


def test_the_job_view_holds_the_job_template_and_helpers_but_no_schema():
    with JobTemplate(CHART, {}, release_name=RELEASE, namespace="ns") as template:
        view = template._job_view_dir / CHART.name
        assert sorted(p.name for p in (view / "templates").iterdir()) == [
            "_helpers.tpl",
            "job.yaml",
        ]
        assert not (view / "values.schema.json").exists()
        assert (view / "files" / "floe_dbt.py").read_bytes() == (
            CHART / "files" / "floe_dbt.py"
        ).read_bytes()
        assert sorted(p.name for p in (view / "charts").iterdir()) == sorted(
            p.name for p in (CHART / "charts").iterdir()
        )


def test_the_values_cover_what_the_chart_derives_from_a_model(artifacts_dir: Path):
    """The equality above means something: the models differ in every way the chart reads."""
    values = _values(artifacts_dir, "dev", 120)
    entries = values["models"]
    assert {json.dumps(e.get("resources"), sort_keys=True) for e in entries} == {
        json.dumps(r, sort_keys=True) for r in (None, OVERRIDE, SMALL)
    }
    assert any(e.get("schedule") for e in entries) and any(len(e["tags"]) > 1 for e in entries)
    assert any(len(job_name(e["name"], "r1")) == 63 for e in entries)  # cut, with a hash
    assert values["global"]["otlpEndpoint"]  # the pod's service name carries the model


def test_a_repeated_entry_is_read_as_the_chart_reads_it(chart: helm_python.Chart):
    """The Job template takes the last entry of a name; so does the cut-down list."""
    values = generated_values("jobs")
    values["models"].append({**values["models"][1], "resources": OVERRIDE})
    model = values["models"][1]["name"]
    with JobTemplate(CHART, values, release_name=RELEASE, namespace="floe-dev") as template:
        template.render(model, "r0")
        rendered = template.render(model, "r1")
    run = {"model": model, "jobName": job_name(model, "r1"), "runId": "r1"}
    full = _full_render_job(chart, {**values, "run": run}, "floe-dev")
    assert rendered.manifest == _with_run_metadata(full, "floe-dev", "r1", {})
    assert rendered.job.resources.requests.memory == "1Gi"


def test_what_helm_is_given_for_a_job_does_not_grow_with_the_model_count(artifacts_dir: Path):
    sizes = {}
    for count in (12, 2_000):
        values = _values(artifacts_dir, "dev", count)
        with JobTemplate(CHART, values, release_name=RELEASE, namespace="floe-dev") as template:
            run = {"model": "orders", "jobName": job_name("orders", "r1"), "runId": "r1"}
            given = template.model_values("orders", run)
            assert given["models"] == [e for e in values["models"] if e["name"] == "orders"]
            assert {**given, "models": values["models"]} == {**values, "run": run}
            sizes[count] = len(json.dumps(given))
    assert sizes[12] == sizes[2_000]


def test_an_invalid_entry_of_another_model_still_fails_every_render():
    values = generated_values("jobs")
    values["models"][2]["schedule"] = "every day"
    failure = "(?s)rendering the Job of stg_orders: .*'/models/2/schedule'"
    with JobTemplate(CHART, values, release_name=RELEASE, namespace="floe-dev") as template:
        for _ in range(2):
            with pytest.raises(RenderError, match=failure):
                template.render("stg_orders", "r1")
