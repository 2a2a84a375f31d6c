"""The charts' values models and their generated, committed values.schema.json files."""

from __future__ import annotations

import copy
import json
import re
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from jsonschema import Draft202012Validator
from pydantic import BaseModel, ValidationError

from floe_deploy_assets.values import schema as schema_module
from floe_deploy_assets.values.chart_values import (
    IMAGE_TAG_PATTERN,
    DbtProfiles,
    Image,
    JobsValues,
    PlatformValues,
    ResourceSpec,
)
from floe_deploy_assets.values.schema import CHART_SCHEMAS, REGENERATE, render, values_schema

MODELS = [PlatformValues, JobsValues]


def defaults(model: type[BaseModel]) -> dict[str, Any]:
    """The model's defaults as values.yaml holds them."""
    return model().model_dump(by_alias=True, mode="json")


def with_value(values: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """A copy of ``values`` with the dotted ``path`` set to ``value``."""
    values = copy.deepcopy(values)
    *parents, leaf = path.split(".")
    node = values
    for key in parents:
        node = node[key]
    node[leaf] = value
    return values


def without(values: dict[str, Any], path: str) -> dict[str, Any]:
    """A copy of ``values`` without the dotted ``path`` (what Helm does with a null override)."""
    values = copy.deepcopy(values)
    *parents, leaf = path.split(".")
    node = values
    for key in parents:
        node = node[key]
    del node[leaf]
    return values


def schema_errors(model: type[BaseModel], values: dict[str, Any]) -> list[str]:
    validator = Draft202012Validator(values_schema(model))
    return [error.message for error in validator.iter_errors(values)]


def objects(schema: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {"(top level)": schema, **schema["$defs"]}


# --- the committed files ---------------------------------------------------------------------
@pytest.mark.parametrize("chart", sorted(CHART_SCHEMAS))
def test_committed_schema_matches_the_model(chart: str) -> None:
    path = schema_module.schema_path(chart)
    assert path.is_file(), f"{path} is missing; generate it with: {REGENERATE}"
    assert path.read_text() == render(chart), (
        f"{path} is out of date with its values model; regenerate it with: {REGENERATE}"
    )


@pytest.mark.parametrize("chart", sorted(CHART_SCHEMAS))
def test_committed_values_yaml_holds_the_model_defaults(chart: str) -> None:
    path = schema_module.schema_path(chart).with_name("values.yaml")
    assert path.is_file() and path.read_text() == schema_module.render_defaults(chart), (
        f"{path} is out of date with its values model; regenerate it with: {REGENERATE}"
    )
    defaults = yaml.safe_load(path.read_text())
    assert not list(Draft202012Validator(values_schema(CHART_SCHEMAS[chart])).iter_errors(defaults))


def test_check_names_stale_files_and_the_command(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(schema_module, "REPO_ROOT", tmp_path)
    assert schema_module.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "charts/floe-platform/values.schema.json" in err
    assert "charts/floe-jobs/values.schema.json" in err
    assert REGENERATE in err

    assert schema_module.main(["--write"]) == 0
    assert schema_module.main(["--check"]) == 0
    written = (tmp_path / "charts/floe-jobs/values.schema.json").read_text()
    assert written.endswith("}\n")
    assert json.loads(written) == json.loads(json.dumps(schema_module.chart_schema("floe-jobs")))

    (tmp_path / "charts/floe-jobs/values.schema.json").write_text("{}\n")
    capsys.readouterr()
    assert schema_module.main(["--check"]) == 1
    err = capsys.readouterr().err
    assert "floe-jobs/values.schema.json" in err
    assert "floe-platform" not in err


# --- the schema's shape ----------------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS)
def test_schema_is_draft_2020_12(model: type[BaseModel]) -> None:
    schema = values_schema(model)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("model", MODELS)
def test_floe_objects_are_closed_and_global_is_open(model: type[BaseModel]) -> None:
    for name, definition in objects(values_schema(model)).items():
        if "properties" in definition:
            expected = name == "GlobalValues"
            assert definition["additionalProperties"] is expected, name


@pytest.mark.parametrize("model", MODELS)
def test_every_field_has_a_description(model: type[BaseModel]) -> None:
    for name, definition in objects(values_schema(model)).items():
        for key, prop in definition.get("properties", {}).items():
            assert prop.get("description"), f"{name}.{key} has no description"


# --- defaults --------------------------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS)
def test_defaults_validate_against_the_schema(model: type[BaseModel]) -> None:
    values = defaults(model)
    assert schema_errors(model, values) == []
    # Helm drops null keys before validating.
    dropped = model().model_dump(by_alias=True, mode="json", exclude_none=True)
    assert schema_errors(model, dropped) == []


def test_defaults_are_secure_and_minimal() -> None:
    platform = PlatformValues()
    assert platform.marquez.enabled is False
    assert platform.minio.enabled is False
    assert not platform.network_policy.enabled and not platform.ingress.enabled
    assert platform.dagster.run_launcher.type == "K8sRunLauncher"
    jobs = JobsValues()
    assert jobs.job.backoff_limit == 0
    assert jobs.dbt.profiles.existing_secret and jobs.dbt.profiles.inline is None
    assert (
        jobs.resources.requests.cpu
        == platform.dagster.run_launcher.resources.requests.cpu
        == "100m"
    )


def test_dumps_use_camel_case_aliases() -> None:
    values = defaults(PlatformValues)
    assert {"global", "podDisruptionBudget", "networkPolicy", "resourceQuota"} <= set(values)
    assert "global_" not in values
    assert set(values["dagster"]) >= {"userCode", "runLauncher"}
    assert set(values["otel"]["config"]) >= {"samplingRatio", "logLevel"}
    assert set(values["otel"]["config"]["batch"]) == {
        "maxQueueSize",
        "maxExportBatchSize",
        "scheduleDelayMillis",
        "exportTimeoutMillis",
    }
    jobs = defaults(JobsValues)
    assert set(jobs["job"]) == {
        "backoffLimit",
        "activeDeadlineSeconds",
        "ttlSecondsAfterFinished",
        "command",
    }
    assert set(jobs["dbt"]["profiles"]) == {"source", "existingSecret", "key", "inline"}
    assert "serviceAccount" in jobs


def test_models_accept_aliases_and_python_names() -> None:
    by_alias = JobsValues.model_validate({"serviceAccount": {"create": False}})
    by_name = JobsValues(service_account={"create": False})  # type: ignore[arg-type]
    assert by_alias == by_name
    assert by_alias.service_account.create is False


# --- unknown keys and global -----------------------------------------------------------------
@pytest.mark.parametrize("model", MODELS)
def test_unknown_top_level_key_is_rejected(model: type[BaseModel]) -> None:
    values = with_value(defaults(model), "dagsterr", {})
    assert schema_errors(model, values)
    with pytest.raises(ValidationError):
        model.model_validate(values)


def test_unknown_nested_key_is_rejected() -> None:
    # The upstream Dagster chart's bug: `dagster-webserver` where `webserver` was read.
    values = with_value(defaults(PlatformValues), "dagster.dagster-webserver", {"replicas": 2})
    errors = schema_errors(PlatformValues, values)
    assert any("dagster-webserver" in error for error in errors)
    with pytest.raises(ValidationError, match="dagster-webserver"):
        PlatformValues.model_validate(values)


@pytest.mark.parametrize("model", MODELS)
def test_global_accepts_arbitrary_keys(model: type[BaseModel]) -> None:
    values = with_value(defaults(model), "global.imageRegistry", "registry.example.com")
    values = with_value(values, "global.parentChart", {"nested": [1, 2]})
    assert schema_errors(model, values) == []
    model.model_validate(values)


# --- field rules -----------------------------------------------------------------------------
def test_latest_tag_is_rejected() -> None:
    values = with_value(defaults(PlatformValues), "dagster.webserver.image.tag", "latest")
    assert schema_errors(PlatformValues, values)
    with pytest.raises(ValidationError):
        Image(repository="docker.io/dagster/dagster-k8s", tag="latest")
    with pytest.raises(ValidationError):
        Image(repository="docker.io/dagster/dagster-k8s", tag="")


@given(st.text(alphabet="latesLATES0123456789_.-xz", max_size=9))
def test_tag_pattern_refuses_exactly_latest(tag: str) -> None:
    docker_tag = re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9_.-]*", tag) is not None
    assert (re.fullmatch(IMAGE_TAG_PATTERN, tag) is not None) == (docker_tag and tag != "latest")


@pytest.mark.parametrize(
    ("field", "quantity"),
    [("cpu", "-1"), ("cpu", "100 m"), ("cpu", "m"), ("memory", "1gi"), ("memory", "512MB")],
)
def test_bad_quantities_are_rejected(field: str, quantity: str) -> None:
    values = with_value(defaults(JobsValues), f"resources.requests.{field}", quantity)
    assert schema_errors(JobsValues, values)
    spec = {"cpu": "100m", "memory": "256Mi", field: quantity}
    with pytest.raises(ValidationError):
        ResourceSpec.model_validate(spec)


def test_good_quantities_are_accepted() -> None:
    ResourceSpec(cpu="2", memory="1Gi")
    ResourceSpec(cpu="500m", memory="512Mi")


def test_deleting_a_required_key_is_a_schema_error() -> None:
    values = without(defaults(PlatformValues), "dagster.webserver.image")
    assert schema_errors(PlatformValues, values)


def test_optional_keys_may_be_null_or_absent() -> None:
    values = with_value(defaults(PlatformValues), "otel.exporters.endpoint", None)
    assert schema_errors(PlatformValues, values) == []
    assert schema_errors(PlatformValues, without(values, "otel.exporters.endpoint")) == []


def test_model_list_items_need_only_a_name() -> None:
    values = with_value(defaults(JobsValues), "models", [{"name": "stg_orders"}])
    assert schema_errors(JobsValues, values) == []
    assert JobsValues.model_validate(values).models[0].depends_on == []
    bad = with_value(values, "models", [{"name": "1bad"}])
    assert schema_errors(JobsValues, bad)


def test_credentials_are_secret_references() -> None:
    values = with_value(defaults(PlatformValues), "polaris.credentials", "hunter2")
    assert schema_errors(PlatformValues, values)
    ref = {"name": "floe-polaris-credentials", "key": "client-secret"}
    values = with_value(values, "polaris.credentials", ref)
    assert schema_errors(PlatformValues, values) == []


# --- dbt profiles: a secret, or inline content -----------------------------------------------
def test_inline_profiles_need_content() -> None:
    profiles = {"source": "inline"}
    with pytest.raises(ValidationError, match="source 'inline' needs dbt.profiles.inline"):
        DbtProfiles.model_validate(profiles)
    values = with_value(defaults(JobsValues), "dbt.profiles.source", "inline")
    assert schema_errors(JobsValues, values)


def test_inline_profiles_with_content_are_accepted_and_secret_is_the_default() -> None:
    assert DbtProfiles().source == "secret"
    profiles = {"source": "inline", "inline": "floe: {}\n"}
    assert DbtProfiles.model_validate(profiles).inline == "floe: {}\n"
    values = with_value(defaults(JobsValues), "dbt.profiles.source", "inline")
    values = with_value(values, "dbt.profiles.inline", "floe: {}\n")
    assert schema_errors(JobsValues, values) == []
    with pytest.raises(ValidationError, match="source"):
        DbtProfiles.model_validate({"source": "configmap"})
