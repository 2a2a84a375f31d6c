"""Every validation rule and state transition of the seed data model: one passing and one failing
case each."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from floe_deploy_assets.models.charts import ChartDependency, FloeHelmChart
from floe_deploy_assets.models.config import (
    ClusterMapping,
    ConfigError,
    load_deployment_config,
    parse_deployment_config,
    render_namespace,
)
from floe_deploy_assets.models.deployment import (
    DeployedComponent,
    DeploymentStatus,
    PlatformDeployment,
)
from floe_deploy_assets.models.jobs import DataProductJob, JobPhase
from floe_deploy_assets.models.resources import (
    ResourcePreset,
    ResourceRequirements,
    ResourceSpec,
)
from floe_deploy_assets.models.transitions import IllegalTransitionError

SMALL = "small"
ROOT = Path(__file__).resolve().parents[2]


# --- resources -------------------------------------------------------------------------------
# Kubernetes' quantity grammar, within bounds (more cases: tests/unit/test_strict_validation.py).
@pytest.mark.parametrize("cpu", ["100m", "2", "1500m", "0.5", "2e-1"])
def test_cpu_in_cores_or_millicores_is_accepted(cpu: str):
    assert ResourceSpec(cpu=cpu, memory="1Gi").cpu == cpu


@pytest.mark.parametrize("cpu", ["100M", "", "1.5m", "-1", "0"])
def test_other_cpu_spellings_are_refused(cpu: str):
    with pytest.raises(ValidationError, match="cpu"):
        ResourceSpec(cpu=cpu, memory="1Gi")


@pytest.mark.parametrize("memory", ["256Mi", "2Gi", "256M", "1G", "1.5Gi", "1Ti"])
def test_memory_in_mi_or_gi_is_accepted(memory: str):
    assert ResourceSpec(cpu="1", memory=memory).memory == memory


@pytest.mark.parametrize("memory", ["512", "1Mb", "0.5Ki", "100Ti"])
def test_other_memory_units_are_refused(memory: str):
    with pytest.raises(ValidationError, match="memory"):
        ResourceSpec(cpu="1", memory=memory)


def test_limits_below_requests_are_refused():
    ok = {"cpu": "1", "memory": "1Gi"}
    assert ResourceRequirements(requests=ok, limits={"cpu": "1000m", "memory": "1024Mi"})
    with pytest.raises(ValidationError, match="limits.cpu 500m is below requests.cpu 1"):
        ResourceRequirements(requests=ok, limits={"cpu": "500m", "memory": "1Gi"})
    with pytest.raises(ValidationError, match="limits.memory 512Mi is below requests.memory"):
        ResourceRequirements(requests=ok, limits={"cpu": "1", "memory": "512Mi"})


SEED_TABLE = {
    "small": ("100m/256Mi", "100m/256Mi", "250m/512Mi", "100m/256Mi"),
    "medium": ("250m/512Mi", "250m/512Mi", "500m/1Gi", "250m/512Mi"),
    "large": ("500m/1Gi", "500m/1Gi", "1000m/2Gi", "500m/1Gi"),
}


@pytest.mark.parametrize("tier", sorted(SEED_TABLE))
def test_presets_request_exactly_the_seed_table_and_limit_at_twice_that(tier: str):
    preset = ResourcePreset.named(tier)
    components = (preset.webserver, preset.daemon, preset.user_code, preset.jobs)
    requests = tuple(f"{c.requests.cpu}/{c.requests.memory}" for c in components)
    assert requests == SEED_TABLE[tier]
    for component in components:
        doubled = component.requests.scaled(2)
        assert component.limits == doubled


def test_custom_preset_needs_explicit_requirements():
    spec = {"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "2Gi"}}
    custom = ResourcePreset.model_validate(
        {"name": "custom", "webserver": spec, "daemon": spec, "userCode": spec, "jobs": spec}
    )
    assert custom.user_code.limits.cpu == "2"
    with pytest.raises(ValidationError, match="preset 'custom' needs explicit"):
        ResourcePreset.model_validate("custom")
    with pytest.raises(ValidationError, match="unknown preset 'huge'"):
        ResourcePreset.model_validate("huge")


# --- charts ----------------------------------------------------------------------------------
DEPENDENCY = {"name": "dagster", "version": "1.12.17", "repository": "file://../dagster"}


@pytest.mark.parametrize(
    "repository", ["https://charts.example", "http://x", "oci://ghcr.io/a/b", "file://../c"]
)
def test_dependency_repositories_with_known_schemes_are_accepted(repository: str):
    assert ChartDependency.model_validate({**DEPENDENCY, "repository": repository})


@pytest.mark.parametrize("repository", ["ftp://x", "../charts/c", "ghcr.io/a"])
def test_dependency_repositories_with_other_schemes_are_refused(repository: str):
    with pytest.raises(ValidationError, match="repository"):
        ChartDependency.model_validate({**DEPENDENCY, "repository": repository})


@pytest.mark.parametrize("version", ["1.2.3", ">=1.0.0, <2.0.0", "^0.108.0", "~1.2", "1.x"])
def test_dependency_versions_exact_or_range_are_accepted(version: str):
    assert ChartDependency.model_validate({**DEPENDENCY, "version": version})


@pytest.mark.parametrize("version", ["", "latest", "*", "main"])
def test_dependency_versions_that_pin_nothing_are_refused(version: str):
    with pytest.raises(ValidationError, match="version"):
        ChartDependency.model_validate({**DEPENDENCY, "version": version})


CHART = {
    "name": "floe-platform",
    "version": "0.1.0",
    "appVersion": "0.1.0",
    "valuesSchema": {"type": "object"},
    "compatibilityMatrix": {"0.1.0": ">=0.5.0, <0.11.0"},
}


def test_chart_name_and_semver_rules():
    assert FloeHelmChart.model_validate({**CHART, "version": "1.0.0-rc.1"}).name == "floe-platform"
    for field, bad in (("name", "Floe_Platform"), ("name", "9lives"), ("version", "1.0")):
        with pytest.raises(ValidationError, match=field):
            FloeHelmChart.model_validate({**CHART, field: bad})


def test_compatibility_matrix_is_required_and_maps_semver_to_ranges():
    for bad in ({}, {"0.1": ">=0.5.0"}, {"0.1.0": "newest"}):
        with pytest.raises(ValidationError, match="compatibilityMatrix"):
            FloeHelmChart.model_validate({**CHART, "compatibilityMatrix": bad})


# --- cluster mappings and the deployment configuration ----------------------------------------
MAPPING = {"name": "non-prod", "cluster": "floe-local", "environments": ["dev"], "resources": SMALL}


def test_mapping_defaults_follow_the_seed():
    mapping = ClusterMapping.model_validate(MAPPING)
    assert mapping.namespace_template == "floe-{{.environment}}"
    assert mapping.isolation == "namespace"
    assert mapping.namespace_for("dev") == "floe-dev"


def test_mapping_needs_at_least_one_environment():
    with pytest.raises(ValidationError, match="at least 1 item"):
        ClusterMapping.model_validate({**MAPPING, "environments": []})


@pytest.mark.parametrize("environment", ["qa", "uat", "eu-prod", "dev2"])
def test_any_environment_name_is_allowed(environment: str):
    mapping = ClusterMapping.model_validate({**MAPPING, "environments": [environment]})
    assert mapping.namespace_for(environment) == f"floe-{environment}"


@pytest.mark.parametrize("environment", ["Prod", "eu_prod", "-x", ""])
def test_environment_names_unfit_for_namespaces_are_refused(environment: str):
    with pytest.raises(ValidationError, match="environment"):
        ClusterMapping.model_validate({**MAPPING, "environments": [environment]})


def test_isolation_is_namespace_or_label():
    label = ClusterMapping.model_validate(
        {
            **MAPPING,
            "environments": ["dev", "qa"],
            "isolation": "label",
            "namespaceTemplate": "floe-shared",
        }
    )
    assert {label.namespace_for(e) for e in ("dev", "qa")} == {"floe-shared"}
    with pytest.raises(ValidationError, match="isolation"):
        ClusterMapping.model_validate({**MAPPING, "isolation": "cluster"})


def test_namespace_isolation_needs_a_namespace_per_environment():
    with pytest.raises(ValidationError, match="same one to several"):
        ClusterMapping.model_validate(
            {**MAPPING, "environments": ["dev", "qa"], "namespaceTemplate": "floe-shared"}
        )


@pytest.mark.parametrize("template", ["floe-{{ .environment }}", "{{.environment}}-floe"])
def test_go_template_spellings_render(template: str):
    assert "dev" in render_namespace(template, "dev")


@pytest.mark.parametrize(
    ("template", "problem"),
    [
        ("floe-{{ environment }}", "unsupported template syntax"),
        ("floe-${environment}", "unsupported template syntax"),
        ("floe-{{.env}}", "unsupported template syntax"),
        ("Floe-{{.environment}}", "not a valid namespace"),
        ("floe_{{.environment}}", "not a valid namespace"),
        ("x" * 60 + "-{{.environment}}", "more than the 63"),
    ],
)
def test_namespace_templates_that_cannot_yield_a_namespace_are_refused(template, problem):
    with pytest.raises(ValidationError, match=problem):
        ClusterMapping.model_validate({**MAPPING, "namespaceTemplate": template})


@given(environment=st.from_regex(r"[a-z][a-z0-9-]{0,70}", fullmatch=True))
def test_a_rendered_namespace_is_always_a_valid_label_or_refused(environment: str):
    try:
        namespace = render_namespace("floe-{{.environment}}", environment)
    except ValueError as error:
        assert environment in str(error)
    else:
        assert len(namespace) <= 63 and namespace == f"floe-{environment}"
        assert not namespace.endswith("-")


CONFIG = """
apiVersion: floe.dev/v1alpha1
kind: DeploymentConfig
artifacts: {path: artifacts.json}
clusterMappings:
  - {name: non-prod, cluster: kind, environments: [dev, qa], resources: small}
  - {name: prod, cluster: prod, environments: [prod], resources: large}
"""


def test_configuration_in_the_repository_loads():
    config = load_deployment_config(ROOT / "floe-deploy.yaml")
    assert config.environments == ["dev", "staging", "prod"]
    assert config.mapping_for("prod").resources.webserver.requests.cpu == "500m"
    assert [p.name for p in config.artifacts_paths()] == ["compiled-artifacts.json"]


def test_each_environment_must_be_in_exactly_one_mapping():
    config = parse_deployment_config(CONFIG, "floe-deploy.yaml")
    assert config.mapping_for("qa").name == "non-prod"
    doubled = CONFIG.replace("environments: [prod]", "environments: [prod, qa]")
    with pytest.raises(ConfigError, match="floe-deploy.yaml: .*qa in non-prod, prod"):
        parse_deployment_config(doubled, "floe-deploy.yaml")
    with pytest.raises(ConfigError, match="environment 'uat' is in no cluster mapping"):
        config.mapping_for("uat")


def test_overrides_for_an_unmapped_environment_are_refused():
    with pytest.raises(ConfigError, match="overrides name environment uat, which no cluster"):
        parse_deployment_config(CONFIG + "overrides: {uat: {platform: {}}}\n", "f.yaml")


def test_unknown_keys_are_refused_with_file_and_field():
    typo = CONFIG.replace("resources: large", "resources: large, namespaceTemplat: x")
    with pytest.raises(ConfigError) as refused:
        parse_deployment_config(typo, "floe-deploy.yaml")
    assert str(refused.value) == (
        "floe-deploy.yaml: clusterMappings[1].namespaceTemplat: Extra inputs are not permitted"
    )


def test_label_isolation_gives_each_environment_its_own_release_name():
    shared = CONFIG.replace(
        "resources: small}", "resources: small, isolation: label, namespaceTemplate: floe-np}"
    )
    config = parse_deployment_config(shared, "f.yaml")
    assert config.release_name("platform", "dev") == "floe-platform-dev"
    assert config.release_name("platform", "prod") == "floe-platform"


@pytest.mark.parametrize(
    ("text", "message"),
    [("a: [", "not valid YAML at line 1"), ("- a\n- b\n", "the top level must be a mapping")],
)
def test_unreadable_configuration_is_named(text: str, message: str):
    with pytest.raises(ConfigError, match=f"f.yaml: {message}"):
        parse_deployment_config(text, "f.yaml")


def test_missing_configuration_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml: cannot read"):
        load_deployment_config(tmp_path / "nope.yaml")


# --- state transitions -----------------------------------------------------------------------
def _deployment(status: str) -> PlatformDeployment:
    return PlatformDeployment.model_validate(
        {
            "releaseName": "floe-platform",
            "namespace": "floe-dev",
            "chartVersion": "0.1.0",
            "artifactVersion": "0.5.0",
            "environment": "dev",
            "status": status,
            "components": [
                {
                    "name": "dagster-webserver",
                    "type": "Deployment",
                    "replicas": {"desired": 1, "ready": 1, "available": 1},
                    "health": "healthy",
                }
            ],
            "deployedAt": datetime(2026, 1, 1, tzinfo=UTC),
        }
    )


ALLOWED_DEPLOYMENT_MOVES = {
    ("pending", "deployed"),
    ("pending", "failed"),
    ("deployed", "superseded"),
    ("failed", "pending"),
}


@pytest.mark.parametrize("current", [s.value for s in DeploymentStatus])
@pytest.mark.parametrize("target", [s.value for s in DeploymentStatus])
def test_platform_deployment_moves_only_as_the_seed_allows(current: str, target: str):
    deployment = _deployment(current)
    if (current, target) in ALLOWED_DEPLOYMENT_MOVES:
        moved = deployment.transition_to(DeploymentStatus(target))
        assert moved.status == target and deployment.status == current
    else:
        with pytest.raises(IllegalTransitionError, match=f"from {current} to {target}"):
            deployment.transition_to(DeploymentStatus(target))


def test_component_type_and_health_are_enums():
    component = _deployment("deployed").components[0]
    assert isinstance(component, DeployedComponent)
    with pytest.raises(ValidationError, match="type"):
        DeployedComponent.model_validate({**component.to_document(), "type": "Pod"})
    with pytest.raises(ValidationError, match="health"):
        DeployedComponent.model_validate({**component.to_document(), "health": "fine"})


def _job(name: str = "dbt-customers") -> DataProductJob:
    return DataProductJob.model_validate(
        {
            "name": name,
            "namespace": "floe-dev",
            "image": "ghcr.io/floe/dbt:1.8.0",
            "command": ["dbt", "run", "--select", "customers"],
            "artifacts": {"name": "floe-compiled-artifacts"},
            "secrets": [{"name": "dbt-profiles", "key": "profiles.yml"}],
            "resources": ResourceRequirements.from_requests("100m", "256Mi").to_document(),
        }
    )


def test_job_names_follow_the_seed_pattern_and_dns_length():
    assert _job("a-1").name == "a-1"
    for bad in ("Customers", "1-a", "dbt_customers", "a" * 64):
        with pytest.raises(ValidationError, match="name"):
            _job(bad)


def test_job_phases_move_as_the_seed_allows():
    job = _job().transition_to(JobPhase.PENDING)
    running = job.transition_to(JobPhase.RUNNING, start_time=datetime(2026, 1, 1, tzinfo=UTC))
    done = running.transition_to(JobPhase.SUCCEEDED)
    assert done.status and done.status.start_time and done.status.phase == "Succeeded"
    failed = job.transition_to(JobPhase.FAILED, exit_code=2, reason="Error", logs="boom")
    assert failed.status and failed.status.exit_code == 2
    assert running.transition_to(JobPhase.FAILED).status.phase == "Failed"  # type: ignore[union-attr]
    for start, target in (
        (None, JobPhase.RUNNING),
        (done, JobPhase.RUNNING),
        (failed, JobPhase.PENDING),
        (job, JobPhase.SUCCEEDED),
    ):
        with pytest.raises(IllegalTransitionError):
            (start or _job()).transition_to(target)
