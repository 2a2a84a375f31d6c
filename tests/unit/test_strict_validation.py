"""Hostile input: what our validation used to accept and Helm, Kubernetes or Dagster refused
later (or what broke the Dagster code location) is refused up front, with a message naming the
field; and our values check agrees with Helm's own (Go) schema validation on the patterns."""

from __future__ import annotations

import copy
import json
import logging
import re
from pathlib import Path
from typing import Annotated, Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import StringConstraints, TypeAdapter, ValidationError

from floe_deploy_assets.cli import main
from floe_deploy_assets.defs.schedules import redeploy_schedules, schedule_name
from floe_deploy_assets.helm.render import RenderError
from floe_deploy_assets.models.artifacts import ArtifactsError, parse_compiled_artifacts
from floe_deploy_assets.models.config import (
    RELEASE_NAME_MAX,
    ConfigError,
    DeploymentConfig,
    parse_deployment_config,
)
from floe_deploy_assets.models.rules import PORTABLE_REGEX_FORBIDDEN, cron_problem
from floe_deploy_assets.values.schema import chart_schema
from floe_deploy_assets.values.validation import go_regex, schema_problems
from tests.support.charts import render, values_generator

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = json.loads((ROOT / "examples" / "compiled-artifacts.json").read_text())
SPEC = {"requests": {"cpu": "100m", "memory": "256Mi"}, "limits": {"cpu": "200m", "memory": "1Gi"}}


def config_document(**changes: Any) -> dict[str, Any]:
    document: dict[str, Any] = {
        "apiVersion": "floe.dev/v1alpha1",
        "kind": "DeploymentConfig",
        "artifacts": {"path": "compiled-artifacts.json"},
        "clusterMappings": [
            {
                "name": "non-prod",
                "cluster": "floe-local",
                "environments": ["dev", "staging"],
                "resources": "small",
            },
            {
                "name": "prod",
                "cluster": "floe-local",
                "environments": ["prod"],
                "resources": "large",
            },
        ],
    }
    document.update(changes)
    return document


def mapping(**changes: Any) -> dict[str, Any]:
    return {
        "name": "m",
        "cluster": "floe-local",
        "environments": ["dev"],
        "resources": "small",
        **changes,
    }


def custom(component: str = "jobs", **spec: dict[str, str]) -> dict[str, Any]:
    preset = {"name": "custom", "webserver": SPEC, "daemon": SPEC, "userCode": SPEC, "jobs": SPEC}
    return {**preset, component: {**SPEC, **spec}}


def parse(document: dict[str, Any]) -> DeploymentConfig:
    return parse_deployment_config(yaml.safe_dump(document), "floe-deploy.yaml")


# --- the deployment configuration ------------------------------------------------------------
BAD_CRONS = [
    ("a b c d e", "minute 'a' is not a number"),
    ("61 * * * *", "minute 61 is out of range 0-59"),
    ("*/0 * * * *", "step must be a positive number"),
    ("* * * 13 *", "month 13 is out of range 1-12"),
    ("0 25 * * *", "hour 25 is out of range 0-23"),
    ("* * 32 * *", "day of month 32 is out of range 1-31"),
    ("* * * * 8", "day of week 8 is out of range 0-6"),
    ("1-0 * * * *", "minute range '1-0' goes backwards"),
    ("* * * * 7", "day of week 7 is out of range 0-6"),  # Dagster reads it, Kubernetes not
    ("0 * * * *\n", "nothing before or after"),
    ("\u0661 * * * *", "printable ASCII"),  # an Arabic-Indic one, which croniter reads as 1
    ("* * * *", "has 4 fields, not five"),
    ("0 0 30 2 *", "of February, which never comes"),  # Kubernetes reads it, Dagster not
    ("@every 5m", "is not a cron expression"),
    ("1" * 500, "500 characters long"),
]


@pytest.mark.parametrize(("cron", "reason"), BAD_CRONS, ids=[c[:20] for c, _ in BAD_CRONS])
def test_invalid_redeploy_crons_are_refused_naming_the_environment(cron: str, reason: str):
    with pytest.raises(ConfigError) as refused:
        parse(config_document(redeploySchedules={"staging": cron}))
    message = str(refused.value)
    assert message.startswith("floe-deploy.yaml: redeploySchedules.staging: ")
    assert reason in message
    assert len(message) < 600


@pytest.mark.parametrize(
    "cron", ["0 * * * *", "*/30 * * * *", "0 6 * * 1-5", "0 0 * * MON-FRI", "5/15 * 1,15 * ?"]
)
def test_valid_crons_are_accepted(cron: str):
    assert cron_problem(cron) is None
    assert parse(config_document(redeploySchedules={"dev": cron})).redeploy_cron("dev") == cron


def test_an_invalid_cron_is_bad_input_for_the_cli(tmp_path: Path, capsys):
    path = tmp_path / "floe-deploy.yaml"
    path.write_text(yaml.safe_dump(config_document(redeploySchedules={"prod": "61 * * * *"})))
    (tmp_path / "compiled-artifacts.json").write_text(json.dumps(EXAMPLE))

    code = main(["values", "--config", str(path), "--env", "dev", "--chart", "jobs"])

    assert code == 2
    assert "redeploySchedules.prod: '61 * * * *' is not a valid cron" in capsys.readouterr().err


CONFIG_CASES = [
    # (what, the document's change, what the message names)
    (
        "namespace template ending in a newline",
        {"clusterMappings": [mapping(namespaceTemplate="floe-{{.environment}}\n")]},
        "is not a valid namespace",
    ),
    (
        "environment ending in a newline",
        {"clusterMappings": [mapping(environments=["dev\n"])]},
        "environment 'dev\\n' must match",
    ),
    (
        "environment ending in '-'",
        {"clusterMappings": [mapping(environments=["dev-"])]},
        "environment 'dev-' must match",
    ),
    (
        "environment of 64 characters",
        {"clusterMappings": [mapping(environments=["e" * 64])]},
        "at most 63",
    ),
    (
        "CPU in Arabic-Indic digits",
        {
            "clusterMappings": [
                mapping(
                    resources=custom(requests={"cpu": "\u0661\u0660\u0660m", "memory": "256Mi"})
                )
            ]
        },
        "clusterMappings[0].resources.jobs.requests.cpu",
    ),
    (
        "CPU with a trailing newline",
        {
            "clusterMappings": [
                mapping(resources=custom(requests={"cpu": "100m\n", "memory": "256Mi"}))
            ]
        },
        "clusterMappings[0].resources.jobs.requests.cpu",
    ),
    (
        "zero CPU",
        {"clusterMappings": [mapping(resources=custom(requests={"cpu": "0", "memory": "256Mi"}))]},
        "cpu must be more than 0 and at most 1000 cores",
    ),
    (
        "1001 cores",
        {"clusterMappings": [mapping(resources=custom(limits={"cpu": "1001", "memory": "1Gi"}))]},
        "cpu must be more than 0 and at most 1000 cores",
    ),
    (
        "CPU finer than a millicore",
        {
            "clusterMappings": [
                mapping(resources=custom(requests={"cpu": "0.5m", "memory": "256Mi"}))
            ]
        },
        "finer than a millicore",
    ),
    (
        "20-digit memory",
        {"clusterMappings": [mapping(resources=custom(limits={"cpu": "1", "memory": "1" * 20}))]},
        "clusterMappings[0].resources.jobs.limits.memory",
    ),
    (
        "memory below 1Mi",
        {"clusterMappings": [mapping(resources=custom(requests={"cpu": "1", "memory": "512Ki"}))]},
        "memory must be at least 1Mi and at most 64Ti",
    ),
    (
        "memory above 64Ti",
        {"clusterMappings": [mapping(resources=custom(limits={"cpu": "1", "memory": "65Ti"}))]},
        "memory must be at least 1Mi and at most 64Ti",
    ),
    (
        "memory in millibytes",
        {
            "clusterMappings": [
                mapping(resources=custom(requests={"cpu": "1", "memory": "1500000001m"}))
            ]
        },
        "not a whole number of bytes",
    ),
    (
        "limits below requests, in other units",
        {"clusterMappings": [mapping(resources=custom(limits={"cpu": "0.05", "memory": "1Gi"}))]},
        "limits.cpu 0.05 is below requests.cpu 100m",
    ),
    (
        "limits below requests, memory",
        {"clusterMappings": [mapping(resources=custom(limits={"cpu": "1", "memory": "200M"}))]},
        "limits.memory 200M is below requests.memory 256Mi",
    ),
    (
        "a system namespace",
        {"clusterMappings": [mapping(namespaceTemplate="kube-system", isolation="label")]},
        "environment dev the system namespace kube-system",
    ),
    (
        "an environment named after a system namespace",
        {
            "clusterMappings": [
                mapping(environments=["default"], namespaceTemplate="{{.environment}}")
            ]
        },
        "environment default the system namespace default",
    ),
    (
        "two mappings with one name",
        {"clusterMappings": [mapping(), mapping(environments=["prod"])]},
        "cluster mapping name 'm' is used by more than one mapping",
    ),
    (
        "a release name too long for Helm, with label isolation",
        {
            "clusterMappings": [
                mapping(environments=["dev", "e" * 40], isolation="label", namespaceTemplate="floe")
            ]
        },
        f"environment {'e' * 40}: the platform release name 'floe-platform-{'e' * 40}' has 54 "
        "characters, more than 41",
    ),
    (
        "a platform release name too long for its StatefulSet",
        {"charts": {"platform": {"path": "charts/floe-platform", "releaseName": "p" * 42}}},
        f"environment dev: the platform release name '{'p' * 42}' has 42 characters",
    ),
    (
        "a jobs release name too long for Helm, with label isolation",
        {
            "charts": {"jobs": {"path": "charts/floe-jobs", "releaseName": "j" * 50}},
            "clusterMappings": [
                mapping(environments=["dev", "qa"], isolation="label", namespaceTemplate="floe")
            ],
        },
        f"environment dev: the jobs release name '{'j' * 50}-dev' has 54 characters, more than 53",
    ),
]


@pytest.mark.parametrize(
    ("change", "named"), [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES]
)
def test_configurations_accepted_before_and_wrong_are_refused(change: dict[str, Any], named: str):
    with pytest.raises(ConfigError) as refused:
        parse(config_document(**change))
    assert named in str(refused.value)


def test_system_namespaces_are_allowed_when_the_mapping_says_so():
    document = config_document(
        clusterMappings=[
            mapping(namespaceTemplate="default", isolation="label", allowSystemNamespaces=True)
        ]
    )
    assert parse(document).mapping_for("dev").namespace_for("dev") == "default"


def test_the_longest_release_names_are_accepted():
    document = config_document(
        charts={
            "platform": {"path": "charts/floe-platform", "releaseName": "p" * 41},
            "jobs": {"path": "charts/floe-jobs", "releaseName": "j" * 53},
        }
    )
    config = parse(document)
    assert [config.release_name(c, "dev") for c in ("platform", "jobs")] == ["p" * 41, "j" * 53]


def test_the_platform_release_name_bound_is_what_the_chart_needs():
    """At the bound, every name the chart derives is valid: at most 63 characters, the
    StatefulSet at most 52 (its pods' controller-revision-hash label adds 11), and the
    collector's Service is the one the generated OTLP endpoint names."""
    release = "p" * RELEASE_NAME_MAX["platform"]
    values = values_generator("platform").helm_values()
    values["global"]["otlpEndpoint"] = f"http://{release}-otel-collector.floe-dev.svc:4317"
    rendered = render("platform", values, release=release)

    names = {o["kind"]: [] for o in rendered.objects}
    for obj in rendered.objects:
        names[obj["kind"]].append(obj["metadata"]["name"])
        assert len(obj["metadata"]["name"]) <= 63, obj["metadata"]["name"]
    assert all(len(name) <= 52 for name in names["StatefulSet"])
    assert f"{release}-otel-collector" in names["Service"]
    assert all(len(f"{name}-headless") <= 63 for name in names["StatefulSet"])


def test_a_long_list_in_a_message_is_summarized():
    environments = [f"e{i}" for i in range(3000)]
    with pytest.raises(ConfigError) as refused:
        parse(config_document(overrides={e: {} for e in environments}))
    assert "e0, e1, e10, e100, e1000 and 2995 more" in str(refused.value)
    assert len(str(refused.value)) < 400


# --- the CompiledArtifacts -------------------------------------------------------------------
def artifacts(**changes: Any) -> str:
    document = copy.deepcopy(EXAMPLE)
    for path, value in changes.items():
        node = document
        *parents, last = path.split("/")
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        node[int(last) if isinstance(node, list) else last] = value
    return json.dumps(document)


ARTIFACTS_CASES = [
    (
        "version with a trailing newline",
        {"version": "0.5.0\n"},
        "version: '0.5.0\\n' is not a semver",
    ),
    ("version in Arabic-Indic digits", {"version": "\u0660.\u0665.\u0660"}, "is not a semver"),
    (
        "version of 5000 digits",
        {"version": "0." + "9" * 5000 + ".0"},
        "... (5004 characters) is not a semver",
    ),
    (
        "model name with a trailing newline",
        {"transforms/models/0/name": "stg_orders\n"},
        "transforms.models[0].name: model name 'stg_orders\\n' is not a dbt identifier",
    ),
    (
        "plugin version with a trailing newline",
        {"plugins/compute/version": "1.0.0\n"},
        "plugins.compute.version",
    ),
    (
        "a model schedule",
        {"transforms/models/0/schedule": "a b c d e"},
        "transforms.models[0].schedule: Extra inputs are not permitted",
    ),
]


@pytest.mark.parametrize(
    ("change", "named"), [c[1:] for c in ARTIFACTS_CASES], ids=[c[0] for c in ARTIFACTS_CASES]
)
def test_artifacts_accepted_before_and_wrong_are_refused(change: dict[str, Any], named: str):
    with pytest.raises(ArtifactsError) as refused:
        parse_compiled_artifacts(artifacts(**change), "a.json")
    assert named in str(refused.value)
    assert len(str(refused.value)) < 1000


def test_a_5000_model_cycle_is_named_in_a_short_message():
    models = [
        {"name": f"m{i}", "compute": "duckdb", "depends_on": [f"m{(i + 1) % 5000}"]}
        for i in range(5000)
    ]
    document = json.loads(artifacts())
    document["transforms"]["models"] = models

    with pytest.raises(ArtifactsError) as refused:
        parse_compiled_artifacts(json.dumps(document), "a.json")

    message = str(refused.value)
    assert "dependency cycle: m0 -> m1 -> m2 -> m3 -> m4 -> m5 -> ... -> m0" in message
    assert "5000 models in the cycle" in message
    assert len(message) < 300


# --- chart values ----------------------------------------------------------------------------
def problems_with(chart: str, path: str, value: Any) -> list[str]:
    """The findings on the chart's generated values with one leaf (a "/" path) set."""
    generator = values_generator(chart)  # type: ignore[arg-type]
    values = generator.generate()
    node = values
    *parents, last = path.split("/")
    for part in parents:
        node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
    node[int(last) if isinstance(node, list) else last] = value
    return [str(problem) for problem in schema_problems(values, generator.schema)]


VALUES_CASES = [
    ("jobs", "resources/requests/cpu", "100m\n", "/resources/requests/cpu: must match the pattern"),
    (
        "jobs",
        "resources/requests/cpu",
        "\u0661\u0660\u0660m",
        "/resources/requests/cpu: must match",
    ),
    ("jobs", "resources/requests/cpu", "0", "/resources/requests/cpu: must be more than 0"),
    ("jobs", "resources/requests/memory", "1" * 20, "/resources/requests/memory: must match"),
    ("jobs", "resources/limits/memory", "65Ti", "/resources/limits/memory: must be at least 1Mi"),
    ("jobs", "resources/limits/cpu", "50m", "/resources: limits.cpu is below requests.cpu"),
    ("jobs", "resources/limits/memory", "100Mi", "/resources: limits.memory is below requests"),
    ("jobs", "global/namespace", "floe-dev\n", "/global/namespace: must match the pattern"),
    ("jobs", "global/environment", "dev\n", "/global/environment: must match the pattern"),
    ("jobs", "image/tag", "1.8.2\n", "/image/tag: must match the pattern"),
    (
        "jobs",
        "models/0/schedule",
        "a b c d e",
        "/models/0/schedule: 'a b c d e' is not a valid cron",
    ),
    ("jobs", "models/0/schedule", "1-0 * * * *", "/models/0/schedule: '1-0 * * * *' is not a"),
    ("jobs", "models/0/schedule", "* * * * 8", "/models/0/schedule: '* * * * 8' is not a valid"),
    ("jobs", "models/0/schedule", "0 * * * *\n", "/models/0/schedule: '0 * * * *\\n' is not a"),
    ("jobs", "global/labels/team", "{{ .Release.Name }}", "/global/labels/team: must match"),
    ("jobs", "global/labels/team", "x" * 64, "/global/labels/team: violates maxLength 63"),
    ("jobs", "global/labels/team", "data-", "/global/labels/team: must match"),
    ("platform", "postgresql/storage/size", "0", "/postgresql/storage/size: must be at least 1Mi"),
    (
        "platform",
        "dagster/webserver/resources/requests/cpu",
        "2",
        "/dagster/webserver/resources: limits.cpu is below requests.cpu",
    ),
]


@pytest.mark.parametrize(
    ("chart", "path", "value", "named"),
    VALUES_CASES,
    ids=[f"{c[1]}={c[2][:12]!r}" for c in VALUES_CASES],
)
def test_values_accepted_before_and_wrong_are_refused(
    chart: str, path: str, value: Any, named: str
):
    problems = problems_with(chart, path, value)
    assert any(p.startswith(named) for p in problems), problems


LABEL_KEYS = [
    "{{ .Release.Name }}",
    "bad key",
    "a/b/c",
    "Example.com/team",  # an upper-case prefix
    "a" * 254 + "/team",  # a prefix longer than 253
    "example.com/" + "a" * 64,  # a name longer than 63
    "team-",
    "/team",
    "",
]


@pytest.mark.parametrize("key", LABEL_KEYS, ids=[repr(k[:20]) for k in LABEL_KEYS])
@pytest.mark.parametrize("where", ["global/labels", "ingress/annotations"])
def test_label_and_annotation_keys_follow_kubernetes(key: str, where: str):
    chart = "jobs" if where == "global/labels" else "platform"
    problems = problems_with(chart, f"{where}/x", "ok")  # the map exists
    assert problems == []
    generator = values_generator(chart)  # type: ignore[arg-type]
    values = generator.generate()
    section, field = where.split("/")
    values.setdefault(section, {}).setdefault(field, {})[key] = "ok"

    problems = [str(p) for p in schema_problems(values, generator.schema)]

    assert any(p.startswith(f"/{where}: key ") for p in problems), problems


@pytest.mark.parametrize(
    ("path", "value"),
    [
        ("resources/requests/cpu", "0.05"),
        ("resources/limits/cpu", "1e3"),
        ("resources/limits/memory", "1.5Gi"),
        ("resources/requests/memory", "268435456"),
        ("global/labels/team", "data-eng_1.x"),
        ("global/labels/empty", ""),
        ("models/0/schedule", "@daily"),
        ("models/0/schedule", "*/15 6-18 * JAN-JUN MON-FRI"),
    ],
)
def test_values_within_the_rules_are_accepted(path: str, value: str):
    assert problems_with("jobs", path, value) == []


def test_a_prefixed_label_key_is_accepted():
    generator = values_generator("jobs")
    values = generator.generate()
    values["global"]["labels"]["example.com/team"] = "data"
    assert schema_problems(values, generator.schema) == []


# --- our check and Helm's agree on the patterns ----------------------------------------------
AGREEMENT_CASES = [
    ("resources", "requests", "cpu", "100m\n"),
    ("resources", "requests", "cpu", "\u0661\u0660\u0660m"),
    ("resources", "limits", "memory", "512Mi\n"),
    ("resources", "limits", "memory", "\u0665\u0661\u0662Mi"),
    ("global", "namespace", "floe-dev\n"),
    ("global", "environment", "dev\n"),
    ("floe", "environment", "dev\n"),
    ("image", "tag", "1.8.2\n"),
    ("image", "tag", "\u0661.8.2"),
    ("dbt", "profiles", "key", "profiles.yml\n"),
    ("global", "labels", "team", "data\n"),
]


@pytest.mark.parametrize("case", AGREEMENT_CASES, ids=lambda c: f"{'.'.join(c[:-1])}={c[-1]!r}")
def test_our_schema_check_and_helms_refuse_the_same_values(case: tuple[str, ...]):
    generator = values_generator("jobs")
    values = generator.helm_values()
    node = values
    for key in case[:-2]:
        node = node.setdefault(key, {})
    node[case[-2]] = case[-1]
    pointer = "/" + "/".join(case[:-1])

    ours = [str(p) for p in schema_problems(values, generator.schema)]
    with pytest.raises(RenderError) as helm:
        render("jobs", values)

    assert any(p.startswith(f"{pointer}: must match the pattern") for p in ours), ours
    assert f"at '{pointer}'" in str(helm.value) and "does not match pattern" in str(helm.value)


def test_our_schema_check_and_helms_accept_the_generated_values():
    generator = values_generator("jobs")
    assert schema_problems(generator.generate(), generator.schema) == []
    render("jobs", generator.helm_values())


def _patterns(node: Any) -> list[str]:
    if isinstance(node, dict):
        found = [node["pattern"]] if isinstance(node.get("pattern"), str) else []
        return found + [p for value in node.values() for p in _patterns(value)]
    if isinstance(node, list):
        return [p for value in node for p in _patterns(value)]
    return []


SCHEMA_PATTERNS = sorted(
    {p for chart in ("floe-platform", "floe-jobs") for p in _patterns(chart_schema(chart))}
)


@pytest.mark.parametrize("pattern", SCHEMA_PATTERNS)
def test_every_schema_pattern_is_portable(pattern: str):
    """No construct whose meaning differs between Python, Rust and Go (or that Go lacks)."""
    used = [construct for construct in PORTABLE_REGEX_FORBIDDEN if construct in pattern]
    assert not used, f"{pattern} uses {used}"


RUST_ENGINE = {
    p: TypeAdapter(Annotated[str, StringConstraints(pattern=p)]) for p in SCHEMA_PATTERNS
}


@settings(max_examples=300, deadline=None)
@given(
    st.sampled_from(SCHEMA_PATTERNS),
    st.text(alphabet=st.sampled_from([*"az09AZ-_.:/@ *\n\t", "\u0661", "\u00e9"]), max_size=12),
    st.sampled_from(["", "\n", "m", "Mi", "0"]),
)
def test_go_reading_of_a_pattern_agrees_with_rusts(pattern: str, text: str, suffix: str):
    """pydantic's Rust regex reads ``$`` as Go does (end of text); on portable patterns our Go
    reading must give its answer for every string, trailing newline or not."""
    candidate = text + suffix
    try:
        RUST_ENGINE[pattern].validate_python(candidate)
        rust = True
    except ValidationError:
        rust = False
    assert (go_regex(pattern).search(candidate) is not None) == rust


# --- the Dagster code location ---------------------------------------------------------------
def test_one_environments_bad_schedule_leaves_the_others_loaded(caplog):
    import dagster as dg

    config = parse(config_document(redeploySchedules={"dev": "*/30 * * * *"}))
    # Past validation (as if a newer Dagster refused what this one accepts).
    broken = config.model_copy(update={"redeploy_schedules": {"staging": "61 * * * *"}})
    job = dg.define_asset_job("deploy_platform", selection=dg.AssetSelection.all())

    with caplog.at_level(logging.WARNING):
        schedules = redeploy_schedules(job, broken)

    assert [s.name for s in schedules] == ["redeploy_dev", "redeploy_prod"]
    assert "no redeploy schedule for environment staging" in caplog.text


def test_schedule_names_are_dagster_names_for_any_environment():
    assert schedule_name("eu-prod") == "redeploy_eu_prod"
    assert re.fullmatch(r"[A-Za-z0-9_]+", schedule_name("a-b-c"))
