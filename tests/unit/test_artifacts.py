"""The CompiledArtifacts input: every upstream golden fixture loads, and every rule has a passing
and a failing case, with an error message that names the file and the field."""

from __future__ import annotations

import copy
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from floe_deploy_assets.models.artifacts import (
    ArtifactsError,
    CompiledArtifacts,
    load_compiled_artifacts,
    parse_compiled_artifacts,
)

ROOT = Path(__file__).resolve().parents[2]
# Copies of ../shared/fixtures/upstream-compiled-artifacts: real upstream documents we must accept.
FIXTURES = ROOT / "tests" / "fixtures" / "upstream-compiled-artifacts"
GOLDEN = sorted(FIXTURES.glob("v*_compiled_artifacts*.json"))
V06 = FIXTURES / "v0.6_compiled_artifacts_with_ingestion.json"
SOURCE = "artifacts.json"
SECRET = "dd-live-4f9a2c71e0b3"


def document() -> dict[str, Any]:
    """A fresh, mutable copy of the v0.6 golden fixture."""
    return copy.deepcopy(json.loads(V06.read_text()))


def parse(doc: Any) -> CompiledArtifacts:
    return parse_compiled_artifacts(json.dumps(doc), SOURCE)


def models(*specs: tuple[str, list[str]]) -> dict[str, Any]:
    return {
        "models": [{"name": n, "compute": "duckdb", "depends_on": d} for n, d in specs],
        "default_compute": "duckdb",
    }


def with_transforms(transforms: dict[str, Any]) -> dict[str, Any]:
    doc = document()
    doc["transforms"] = transforms
    return doc


# --- the golden fixtures ---------------------------------------------------------------------
def test_the_golden_fixtures_are_found():
    assert [p.name for p in GOLDEN] == [
        "v0.1_compiled_artifacts.json",
        "v0.5_compiled_artifacts_with_semantic.json",
        "v0.6_compiled_artifacts_with_ingestion.json",
    ]


@pytest.mark.parametrize("path", GOLDEN, ids=lambda p: p.name)
def test_every_golden_fixture_loads(path: Path):
    artifacts = load_compiled_artifacts(path)
    assert artifacts.version.startswith("0.")
    assert artifacts.telemetry_backend == "jaeger"
    assert artifacts.observability.telemetry.authentication is None
    assert re.fullmatch(r"[0-9a-f]{64}", artifacts.digest)


def test_v01_has_no_plugins_transforms_or_profiles():
    artifacts = load_compiled_artifacts(FIXTURES / "v0.1_compiled_artifacts.json")
    assert (artifacts.plugins, artifacts.transforms, artifacts.dbt_profiles) == (None, None, None)


def test_v06_content_is_read():
    artifacts = load_compiled_artifacts(V06)
    assert artifacts.plugins is not None and artifacts.plugins.ingestion is not None
    assert artifacts.plugins.ingestion.type == "dlt"
    assert artifacts.transforms is not None
    assert artifacts.transforms.models[1].depends_on == ["customers"]
    assert artifacts.dbt_profiles == {
        "default": {
            "target": "dev",
            "outputs": {"dev": {"type": "duckdb", "path": "/tmp/dev.duckdb"}},
        }
    }


def test_the_v020_schema_example_loads():
    schema = json.loads((FIXTURES / "compiled-artifacts.json").read_text())
    artifacts = CompiledArtifacts.model_validate(schema["examples"][0])
    assert artifacts.governance == {
        "pii_encryption": "required",
        "audit_logging": "enabled",
        "policy_enforcement_level": "strict",
    }
    assert artifacts.telemetry_backend is None


def test_models_are_frozen():
    artifacts = load_compiled_artifacts(V06)
    with pytest.raises(ValidationError, match="frozen"):
        artifacts.version = "0.7.0"  # type: ignore[misc]


# --- JSON annotations ------------------------------------------------------------------------
def test_comment_and_schema_at_the_top_level_are_ignored():
    doc = document()
    plain = {k: v for k, v in doc.items() if k != "$comment"}
    annotated = {**doc, "$schema": "https://json-schema.org/draft/2020-12/schema"}
    assert parse(plain).digest == parse(doc).digest == parse(annotated).digest
    assert "$comment" not in parse(doc).model_dump()


def test_comment_inside_a_strict_section_is_an_unknown_field():
    doc = document()
    doc["transforms"]["$comment"] = "not here"
    with pytest.raises(ArtifactsError, match=r"artifacts.json: transforms.\$comment: Extra inputs"):
        parse(doc)


# --- reading and parsing errors --------------------------------------------------------------
def test_missing_file(tmp_path: Path):
    missing = tmp_path / "compiled_artifacts.json"
    with pytest.raises(ArtifactsError, match=f"^{re.escape(str(missing))}: cannot read .*No such"):
        load_compiled_artifacts(missing)


def test_empty_file(tmp_path: Path):
    path = tmp_path / "a.json"
    path.write_text("  \n")
    with pytest.raises(ArtifactsError, match="a.json: the file is empty"):
        load_compiled_artifacts(path)


def test_not_json_gives_line_and_column(tmp_path: Path):
    path = tmp_path / "a.json"
    path.write_text('{\n  "version": "0.6.0",\n  metadata: {}\n}')
    with pytest.raises(ArtifactsError, match=r"a.json: not valid JSON at line 3, column 3: ") as e:
        load_compiled_artifacts(path)
    assert "truncated" not in str(e.value)


@pytest.mark.parametrize("cut", [0.1, 0.5, 0.9, 0.999])
def test_truncated_json_says_so(tmp_path: Path, cut: float):
    text = V06.read_text()
    path = tmp_path / "a.json"
    path.write_text(text[: int(len(text) * cut)])
    with pytest.raises(
        ArtifactsError, match=r"a.json: not valid JSON at line \d+, column \d+: .* truncated\?"
    ):
        load_compiled_artifacts(path)


def test_a_literal_cut_short_is_truncation():
    with pytest.raises(ArtifactsError, match=r"line 1, column 13: .* truncated\?"):
        parse_compiled_artifacts('{"enabled": tr', SOURCE)


def test_nan_is_not_json():
    with pytest.raises(ArtifactsError, match="artifacts.json: not valid JSON: NaN"):
        parse_compiled_artifacts('{"version": NaN}', SOURCE)


@pytest.mark.parametrize(("text", "kind"), [("[]", "an array"), ('"0.6.0"', "a string")])
def test_top_level_must_be_an_object(text: str, kind: str):
    with pytest.raises(
        ArtifactsError, match=f"artifacts.json: the top level must be .* not {kind}"
    ):
        parse_compiled_artifacts(text, SOURCE)


def test_wrong_types_are_all_listed_one_per_line():
    doc = document()
    doc["observability"]["telemetry"]["sampling"]["prod"] = "lots"
    doc["transforms"]["models"][1]["tags"] = "analytics"
    del doc["metadata"]["source_hash"]
    with pytest.raises(ArtifactsError) as error:
        parse(doc)
    assert str(error.value).splitlines() == [
        "artifacts.json: metadata.source_hash: Field required",
        "artifacts.json: observability.telemetry.sampling.prod: Input should be a valid number, "
        "unable to parse string as a number",
        "artifacts.json: transforms.models[1].tags: Input should be a valid list",
    ]


def test_the_default_source_name():
    with pytest.raises(ArtifactsError, match="^<string>: the top level"):
        parse_compiled_artifacts("[]")


# --- version ---------------------------------------------------------------------------------
@pytest.mark.parametrize("version", ["0.1.0", "0.10.0", "0.11.0", "0.42.7"])
def test_major_zero_is_read_including_newer_minors(version: str):
    doc = document()
    doc["version"] = version
    artifacts = parse(doc)
    assert artifacts.newer_than_known == (version in ("0.11.0", "0.42.7"))


@pytest.mark.parametrize("version", ["1.0.0", "2.3.4"])
def test_another_major_is_refused_with_one_clear_message(version: str):
    doc = document()
    doc["version"] = version
    doc["plugins"] = "a 1.x document may have another shape: that is not reported"
    with pytest.raises(ArtifactsError) as error:
        parse(doc)
    assert str(error.value) == (
        f"artifacts.json: version: unsupported CompiledArtifacts version {version} (this tool "
        "reads 0.x, up to 0.10); upgrade floe-deploy-assets or recompile with a compatible floe"
    )


def test_the_major_is_also_checked_without_the_loader():
    doc = document()
    doc["version"] = "1.0.0"
    with pytest.raises(ValidationError, match="unsupported CompiledArtifacts version 1.0.0"):
        CompiledArtifacts.model_validate(doc)


@pytest.mark.parametrize("version", ["0.6", "v0.6.0", "0.6.0-rc1", ""])
def test_version_must_be_semver(version: str):
    doc = document()
    doc["version"] = version
    with pytest.raises(ArtifactsError, match=r"artifacts.json: version: .* is not a semver X.Y.Z"):
        parse(doc)


# --- model names and dependencies ------------------------------------------------------------
@given(st.from_regex(r"\A[A-Za-z_][A-Za-z0-9_]{0,30}\Z"))
def test_dbt_identifiers_are_model_names(name: str):
    transforms = parse(with_transforms(models((name, [])))).transforms
    assert transforms is not None and transforms.models[0].name == name


@pytest.mark.parametrize("name", ["stg-customers", "1st_model", "orders.v2", "", "café"])
def test_other_model_names_are_refused(name: str):
    with pytest.raises(
        ArtifactsError,
        match=r"artifacts.json: transforms.models\[1\].name: model name .* is not a dbt identifier",
    ):
        parse(with_transforms(models(("ok", []), (name, []))))


def test_duplicate_model_names_are_refused():
    assert parse(with_transforms(models(("a", []), ("b", []))))
    with pytest.raises(
        ArtifactsError, match="artifacts.json: transforms: model name a is used by more than one"
    ):
        parse(with_transforms(models(("a", []), ("b", []), ("a", []))))


def test_dependencies_must_be_models_of_the_document():
    assert parse(with_transforms(models(("a", []), ("b", ["a"]))))
    with pytest.raises(
        ArtifactsError,
        match="artifacts.json: transforms: model 'b' depends on 'raw_a', which is not a model",
    ):
        parse(with_transforms(models(("a", []), ("b", ["raw_a"]))))


@pytest.mark.parametrize(
    ("specs", "cycle"),
    [
        ((("a", ["c"]), ("b", ["a"]), ("c", ["b"])), "a -> c -> b -> a"),
        ((("x", []), ("a", ["a"])), "a -> a"),
        ((("a", ["b"]), ("b", ["a"]), ("c", ["a"])), "a -> b -> a"),
    ],
)
def test_dependency_cycles_are_refused_and_named(specs: tuple, cycle: str):
    with pytest.raises(
        ArtifactsError, match=f"artifacts.json: transforms: dependency cycle: {cycle}"
    ):
        parse(with_transforms(models(*specs)))


@given(st.integers(min_value=1, max_value=25), st.randoms(use_true_random=False))
def test_dependency_order_puts_every_model_after_its_dependencies(n: int, rng: random.Random):
    names = [f"m{i}" for i in range(n)]
    specs = [
        (name, rng.sample(names[:i], k=rng.randint(0, min(i, 3)))) for i, name in enumerate(names)
    ]
    rng.shuffle(specs)
    transforms = parse(with_transforms(models(*specs))).transforms
    assert transforms is not None
    order = [model.name for model in transforms.models_in_dependency_order()]
    assert sorted(order) == sorted(names)
    for model in transforms.models:
        assert all(order.index(d) < order.index(model.name) for d in model.depends_on)


def test_independent_models_keep_document_order():
    transforms = parse(with_transforms(models(("z", []), ("y", ["z"]), ("a", [])))).transforms
    assert transforms is not None
    assert [m.name for m in transforms.models_in_dependency_order()] == ["z", "a", "y"]


def test_upstream_null_lists_read_as_empty():
    doc = with_transforms(models(("a", [])))
    doc["transforms"]["models"][0].update(tags=None, depends_on=None, quality_checks=None)
    transforms = parse(doc).transforms
    assert transforms is not None and transforms.models[0].tags == []


# --- extra keys ------------------------------------------------------------------------------
def test_unknown_key_in_a_transforms_model_is_refused():
    doc = document()
    doc["transforms"]["models"][0]["resources"] = {"cpu": "1"}
    with pytest.raises(
        ArtifactsError,
        match=r"artifacts.json: transforms.models\[0\].resources: Extra inputs are not permitted",
    ):
        parse(doc)


@pytest.mark.parametrize(
    "where", [("plugins",), ("plugins", "compute"), ("observability", "telemetry")]
)
def test_unknown_keys_in_consumed_sections_are_refused(where: tuple[str, ...]):
    doc = document()
    section = doc
    for key in where:
        section = section[key]
    section["enabeld"] = True
    with pytest.raises(ArtifactsError, match=rf"artifacts.json: {'.'.join(where)}.enabeld: Extra"):
        parse(doc)


def test_newer_contract_fields_pass_through():
    doc = document()
    doc["version"] = "0.10.0"
    doc["rbac"] = {"service_account": "floe-runner"}
    doc["observability"]["lineage_endpoint"] = "http://marquez:5000"
    doc["observability"]["lineage_transport"] = "http"
    doc["observability"]["lineage_batch_size"] = 10
    doc["governance"] = {"pii_encryption": "required", "stale_table_recovery_mode": "auto"}
    doc["enforcement_result"] = {"passed": True, "rbac_principal": "svc", "secrets_scanned": 3}
    doc["metadata"]["generated_by"] = "ci"
    artifacts = parse(doc)
    assert artifacts.model_extra == {"rbac": {"service_account": "floe-runner"}}
    assert artifacts.observability.lineage_endpoint == "http://marquez:5000"
    assert artifacts.model_dump()["governance"]["stale_table_recovery_mode"] == "auto"


@pytest.mark.parametrize(
    ("path", "typo", "meant"),
    [
        ((), "transfroms", "transforms"),
        (("observability",), "lineage_namespaec", "lineage_namespace"),
    ],
)
def test_near_miss_of_a_known_field_is_refused(path: tuple[str, ...], typo: str, meant: str):
    doc = document()
    section = doc
    for key in path:
        section = section[key]
    section[typo] = {}
    with pytest.raises(ArtifactsError, match=f"unknown field '{typo}'; did you mean '{meant}'"):
        parse(doc)


# --- telemetry backend -----------------------------------------------------------------------
BACKEND_REF = {"type": "datadog", "version": "0.1.0"}


def backend_doc(upstream: str | None, spec: dict[str, Any] | None) -> dict[str, Any]:
    doc = document()
    doc["observability"]["telemetry"]["backend"] = upstream
    if spec is not None:
        doc["plugins"]["telemetry_backend"] = spec
    return doc


@pytest.mark.parametrize(
    ("upstream", "spec", "backend"),
    [
        ("jaeger", None, "jaeger"),
        (None, BACKEND_REF, "datadog"),
        ("datadog", BACKEND_REF, "datadog"),
        (None, None, None),
    ],
)
def test_telemetry_backend_from_either_place(upstream, spec, backend):
    assert parse(backend_doc(upstream, spec)).telemetry_backend == backend


def test_conflicting_telemetry_backends_are_refused_naming_both_fields():
    with pytest.raises(
        ArtifactsError,
        match="artifacts.json: .*observability.telemetry.backend 'jaeger' and "
        "plugins.telemetry_backend 'datadog' disagree",
    ):
        parse(backend_doc("jaeger", BACKEND_REF))


def test_plugins_telemetry_backend_is_a_plugin_ref():
    with pytest.raises(ArtifactsError, match="plugins.telemetry_backend: Input should be"):
        parse(backend_doc(None, "datadog"))  # type: ignore[arg-type]


# --- credentials -----------------------------------------------------------------------------
def with_auth(**auth: Any) -> dict[str, Any]:
    doc = document()
    doc["observability"]["telemetry"]["authentication"] = auth
    return doc


def test_a_literal_credential_never_prints():
    artifacts = parse(with_auth(auth_type="api_key", api_key=SECRET, header_name="DD-API-KEY"))
    auth = artifacts.observability.telemetry.authentication
    assert auth is not None and auth.credential is not None
    assert auth.credential.get_secret_value() == SECRET and not auth.credential_masked
    for text in (repr(artifacts), str(artifacts), artifacts.model_dump_json()):
        assert SECRET not in text


def test_upstreams_masked_credential_is_recognised():
    auth = parse(with_auth(auth_type="bearer", bearer_token="**********")).observability
    assert auth.telemetry.authentication is not None
    assert auth.telemetry.authentication.credential_masked


def test_the_credential_for_the_auth_type_is_required():
    with pytest.raises(
        ArtifactsError,
        match="observability.telemetry.authentication: auth_type 'bearer' needs bearer_token",
    ):
        parse(with_auth(auth_type="bearer", api_key=SECRET))


def test_errors_never_echo_a_credential():
    doc = with_auth(auth_type="api_key", api_key=SECRET, header_name=7)
    doc["observability"]["telemetry"]["authentication"]["bearer_token"] = {"v": SECRET}
    with pytest.raises(ArtifactsError) as error:
        parse(doc)
    assert "authentication.header_name" in str(error.value)
    assert SECRET not in str(error.value) and SECRET not in repr(error.value)
    with pytest.raises(ValidationError) as direct:
        CompiledArtifacts.model_validate(doc)
    assert SECRET not in str(direct.value)


# --- digest ----------------------------------------------------------------------------------
def reorder(value: Any, rng: random.Random) -> Any:
    """The same JSON value with every object's keys in a random order."""
    if isinstance(value, dict):
        items = list(value.items())
        rng.shuffle(items)
        return {k: reorder(v, rng) for k, v in items}
    if isinstance(value, list):
        return [reorder(v, rng) for v in value]
    return value


@given(st.randoms(use_true_random=False), st.sampled_from([None, 0, 2, "\t"]))
def test_digest_ignores_key_order_and_whitespace(rng: random.Random, indent: int | str | None):
    doc = document()
    text = json.dumps(reorder(doc, rng), indent=indent)
    assert parse_compiled_artifacts(text).digest == parse(doc).digest


def test_digest_changes_with_the_content():
    doc = document()
    changed = document()
    changed["transforms"]["models"][0]["tags"] = ["finance"]
    assert parse(doc).digest != parse(changed).digest


def test_digest_changes_with_a_literal_credential_but_never_contains_it():
    first = parse(with_auth(auth_type="api_key", api_key=SECRET))
    second = parse(with_auth(auth_type="api_key", api_key=SECRET + "x"))
    assert first.digest != second.digest
    assert SECRET not in first.digest
    assert (
        first.model_dump(mode="json")["observability"]["telemetry"]["authentication"]["api_key"]
        == "**********"
    )
