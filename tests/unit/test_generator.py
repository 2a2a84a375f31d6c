"""HelmValuesGenerator: layers, the CompiledArtifacts mapping, validation, and the CLI."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from floe_deploy_assets.cli import main
from floe_deploy_assets.models.artifacts import load_compiled_artifacts, parse_compiled_artifacts
from floe_deploy_assets.models.config import ConfigError, DeploymentConfig, load_deployment_config
from floe_deploy_assets.models.products import single_product
from floe_deploy_assets.values.chart_values import JobsValues, PlatformValues
from floe_deploy_assets.values.charts import ChartFiles
from floe_deploy_assets.values.generator import HelmValuesGenerator
from tests.support.charts import example_config

ROOT = Path(__file__).resolve().parents[2]
FIXTURES = ROOT / "tests" / "fixtures" / "upstream-compiled-artifacts"
DOCUMENTS = [*sorted(FIXTURES.glob("v*.json")), ROOT / "examples" / "compiled-artifacts.json"]
CONFIG = load_deployment_config(ROOT / "floe-deploy.yaml")
LEAKED = "sk_live_4eC39HqLyjWDarjtT1zdp7dc"


def generator(artifacts, environment="dev", chart="platform", config: DeploymentConfig = CONFIG):
    files = ChartFiles(config.chart_path(chart))
    return HelmValuesGenerator(
        [single_product(artifacts)],
        environment,
        files.defaults(),
        config=config,
        chart=chart,
        schema=files.schema(),
    )


def with_overrides(overrides: dict) -> DeploymentConfig:
    document = CONFIG.to_document()
    document["overrides"] = overrides
    config = DeploymentConfig.model_validate(document)
    config._base_dir = ROOT
    return config


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
@pytest.mark.parametrize("chart", ["platform", "jobs"])
def test_upstream_documents_yield_valid_values(document: Path, environment: str, chart: str):
    values_generator = generator(load_compiled_artifacts(document), environment, chart)

    assert values_generator.validate() == []
    model = PlatformValues if chart == "platform" else JobsValues
    values = model.model_validate(values_generator.generate())
    assert values.global_.namespace == f"floe-{environment}"
    assert values.floe.artifacts_digest == load_compiled_artifacts(document).digest


def test_layers_apply_in_order_and_provenance_says_which_set_a_leaf():
    artifacts = load_compiled_artifacts(ROOT / "examples" / "compiled-artifacts.json")
    prod = generator(artifacts, "prod")
    values, provenance = prod.generate(), prod.layered.provenance

    assert values["dagster"]["userCode"]["resources"]["requests"] == {
        "cpu": "1000m",
        "memory": "2Gi",
    }
    assert provenance["/dagster/userCode/resources/requests/cpu"] == "preset:large"
    assert values["dagster"]["webserver"]["replicas"] == 2
    assert provenance["/dagster/webserver/replicas"] == "overrides"
    assert provenance["/global/namespace"] == "environment:prod"
    assert provenance["/otel/config/samplingRatio"] == "compiled artifacts"
    assert provenance["/postgresql/image/tag"] == "chart defaults"
    assert prod.layered.layers == (
        "chart defaults",
        "preset:large",
        "environment:prod",
        "compiled artifacts",
        "overrides",
    )


def test_artifacts_map_to_their_sections():
    artifacts = load_compiled_artifacts(ROOT / "examples" / "compiled-artifacts.json")
    platform = generator(artifacts, "staging").generate()
    jobs = generator(artifacts, "staging", "jobs").generate()

    assert platform["polaris"]["enabled"] and platform["polaris"]["catalogType"] == "polaris"
    assert platform["marquez"] == {
        **platform["marquez"],
        "enabled": True,
        "namespace": "customer-360",
    }
    assert platform["otel"]["exporters"]["backend"] == "jaeger"
    assert platform["otel"]["config"]["samplingRatio"] == 0.5
    assert [m["name"] for m in jobs["models"]] == [
        "stg_customers",
        "stg_orders",
        "customer_orders",
        "customer_360",
    ]
    assert jobs["dbt"]["profiles"]["inline"].startswith("customer_360:")
    assert jobs["dbt"]["profiles"]["source"] == "inline"


def _with(document: Path, **changes) -> str:
    data = json.loads(document.read_text())
    for dotted, value in changes.items():
        *parents, leaf = dotted.split(".")
        target = data
        for key in parents:
            target = target[key]
        target[leaf] = value
    return json.dumps(data)


def test_credentials_in_artifacts_become_secret_references_never_values():
    source = ROOT / "examples" / "compiled-artifacts.json"
    text = _with(
        source,
        **{
            "observability.telemetry.authentication": {"auth_type": "api_key", "api_key": LEAKED},
            "dbt_profiles": {
                "p": {
                    "target": "dev",
                    "outputs": {
                        "dev": {
                            "type": "postgres",
                            "host": "db",
                            "user": "dbt",
                            "password": "s3cr3t-Pa55",
                        }
                    },
                }
            },
        },
    )
    artifacts = parse_compiled_artifacts(text, "doc.json")
    platform, jobs = generator(artifacts), generator(artifacts, chart="jobs")

    rendered = yaml.safe_dump(platform.generate()) + yaml.safe_dump(jobs.generate())
    assert LEAKED not in rendered and "s3cr3t-Pa55" not in rendered
    assert platform.generate()["otel"]["exporters"]["headersSecret"] == {
        "name": "floe-otel-exporter-auth",
        "key": "api-key",
    }
    assert jobs.generate()["dbt"]["profiles"]["existingSecret"] == "floe-dbt-profiles"
    assert platform.validate() == [] and jobs.validate() == []
    assert {s.name for s in jobs.required_secrets} == {"floe-dbt-profiles"}


def test_profiles_naming_their_credentials_by_env_var_are_inlined_and_read_them_from_a_secret():
    # dbt's own way to keep a credential out of a profile: env_var('DBT_ENV_SECRET_...').
    profiles = {
        "p": {
            "target": "ci",
            "outputs": {
                "ci": {
                    "type": "postgres",
                    "user": '{{ env_var("DBT_ENV_SECRET_USER") }}',
                    "password": "{{ env_var('DBT_ENV_SECRET_PASSWORD') }}",
                    "host": "{{ env_var('DB_HOST', 'db') }}",  # not a secret: not from one
                }
            },
        }
    }
    text = _with(ROOT / "examples" / "compiled-artifacts.json", dbt_profiles=profiles)
    jobs = generator(parse_compiled_artifacts(text, "doc.json"), chart="jobs")

    dbt = jobs.generate()["dbt"]
    assert dbt["target"] == "ci"
    assert dbt["profiles"]["source"] == "inline"
    assert yaml.safe_load(dbt["profiles"]["inline"]) == profiles
    assert dbt["secretEnv"] == {
        "DBT_ENV_SECRET_PASSWORD": {"name": "floe-dbt-profiles", "key": "DBT_ENV_SECRET_PASSWORD"},
        "DBT_ENV_SECRET_USER": {"name": "floe-dbt-profiles", "key": "DBT_ENV_SECRET_USER"},
    }
    [secret] = jobs.required_secrets
    assert (secret.name, secret.keys) == (
        "floe-dbt-profiles",
        ("DBT_ENV_SECRET_PASSWORD", "DBT_ENV_SECRET_USER"),
    )
    assert jobs.validate() == []


def test_a_literal_credential_in_overrides_is_found_and_not_echoed():
    config = with_overrides({"dev": {"platform": {"polaris": {"config": {"token": LEAKED}}}}})
    artifacts = load_compiled_artifacts(ROOT / "examples" / "compiled-artifacts.json")

    problems = generator(artifacts, config=config).validate()

    assert [p.pointer for p in problems] == ["/polaris/config/token"]
    assert all(LEAKED not in str(p) for p in problems)


def test_schema_problems_name_the_pointer():
    config = with_overrides(
        {
            "dev": {
                "platform": {
                    "dagster": {"dagster-webserver": {}},
                    "otel": {"config": {"samplingRatio": 3}},
                }
            }
        }
    )
    artifacts = load_compiled_artifacts(ROOT / "examples" / "compiled-artifacts.json")

    problems = {p.pointer: p.message for p in generator(artifacts, config=config).validate()}

    assert problems["/dagster"].startswith("unknown key 'dagster-webserver'")
    assert problems["/otel/config/samplingRatio"] == "must be <= 1"


def test_scheduling_values_are_refused_where_kubernetes_would_refuse_them():
    exists_with_value = {"key": "dedicated", "operator": "Exists", "value": "gpu"}
    no_key = {"operator": "Equal", "value": "x"}
    seconds_without_evicting = {"key": "k", "value": "v", "tolerationSeconds": 30}
    config = with_overrides(
        {
            "dev": {
                "platform": {
                    "dagster": {
                        "webserver": {
                            "tolerations": [exists_with_value, no_key, seconds_without_evicting]
                        },
                        "daemon": {"affinity": {"nodeAfinity": {}}},
                    },
                    "postgresql": {"nodeSelector": {"bad key!": "x"}},
                }
            }
        }
    )
    artifacts = load_compiled_artifacts(ROOT / "examples" / "compiled-artifacts.json")

    problems = {p.pointer: p.message for p in generator(artifacts, config=config).validate()}

    tolerations = "/dagster/webserver/tolerations"
    assert set(problems) == {
        f"{tolerations}/0/value",
        f"{tolerations}/1/operator",
        f"{tolerations}/2",
        "/dagster/daemon/affinity",
        "/postgresql/nodeSelector",
    }, problems
    assert problems[f"{tolerations}/0/value"] == "must be '' (operator Exists takes no value)"
    assert problems[f"{tolerations}/1/operator"] == (
        "must be 'Exists' (a toleration without a key must have operator Exists)"
    )
    assert problems[f"{tolerations}/2"] == (
        "missing required key 'effect' (tolerationSeconds needs effect NoExecute)"
    )
    assert problems["/dagster/daemon/affinity"].startswith("unknown key 'nodeAfinity'")


def test_unknown_environment_is_refused():
    artifacts = load_compiled_artifacts(ROOT / "examples" / "compiled-artifacts.json")
    with pytest.raises(ConfigError, match="environment 'uat' is in no cluster mapping"):
        generator(artifacts, "uat")


# --- the CLI -----------------------------------------------------------------------------------
def test_cli_prints_values_and_provenance(capsys: pytest.CaptureFixture[str]):
    config = str(ROOT / "floe-deploy.yaml")
    assert main(["values", "--config", config, "--env", "prod", "--chart", "platform"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["global"]["namespace"] == "floe-prod"

    assert (
        main(["values", "--config", config, "--env", "prod", "--chart", "jobs", "--provenance"])
        == 0
    )
    lines = capsys.readouterr().out.splitlines()
    assert '/global/namespace  "floe-prod"  # environment:prod' in lines


def config_with_overrides(folder: Path, overrides: dict) -> Path:
    """The example configuration (paths made absolute) with these overrides, written in
    ``folder``."""
    config = example_config()
    config["overrides"] = overrides
    path = folder / "floe-deploy.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_cli_prints_a_deleted_chart_default_as_null_as_helm_must_get_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    # Helm merges values over the chart defaults again: a default an override deletes comes
    # back unless the printed values say null, as deploy's do.
    path = config_with_overrides(tmp_path, {"dev": {"jobs": {"global": {"production": None}}}})
    code = main(["values", "--config", str(path), "--env", "dev", "--chart", "jobs"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    printed = yaml.safe_load(captured.out)
    assert "production" in printed["global"] and printed["global"]["production"] is None
    assert printed["global"]["isolation"] == "namespace"  # what was not deleted stays


def test_cli_bad_input_is_one_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    broken = tmp_path / "artifacts.json"
    broken.write_text('{"version": "0.5.0", "metadata": {')
    code = main(
        [
            "values",
            "--config",
            str(ROOT / "floe-deploy.yaml"),
            "--artifacts",
            str(broken),
            "--env",
            "dev",
            "--chart",
            "jobs",
        ]
    )
    error = capsys.readouterr().err
    assert code == 2
    assert error.startswith(f"floe-deploy: {broken}") and "Traceback" not in error


def test_cli_failing_values_exit_1_with_findings_and_no_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    overrides = {"dev": {"platform": {"polaris": {"config": {"password": LEAKED}}}}}
    path = config_with_overrides(tmp_path, overrides)

    code = main(["values", "--config", str(path), "--env", "dev", "--chart", "platform"])

    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    assert "/polaris/config/password" in captured.err and LEAKED not in captured.err
