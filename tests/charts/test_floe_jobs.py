"""The floe-jobs chart, rendered offline by the real Helm engine."""

from __future__ import annotations

import json

import helm_python
import pytest
import yaml

from floe_deploy_assets.cli import main
from floe_deploy_assets.helm.render import RenderError, build_dependencies
from tests.support.charts import CONFIG, ROOT, generated_values, render

JOBS_CHART = CONFIG.chart_path("jobs")


@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_installing_starts_no_model(environment: str):
    rendered = render("jobs", generated_values("jobs", environment))

    assert rendered.by_kind("Job") == [] and rendered.by_kind("CronJob") == []
    assert {o["kind"] for o in rendered.objects} == {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "ConfigMap",
        "Pod",
    }
    models = json.loads(rendered.named("ConfigMap", "floe-jobs-artifacts")["data"]["models.json"])
    assert [m["name"] for m in models] == [
        "stg_customers",
        "stg_orders",
        "customer_orders",
        "customer_360",
    ]


def _run(values: dict, model: str, job_name: str) -> dict:
    return {**values, "run": {"model": model, "jobName": job_name, "runId": "run-1"}}


def test_run_model_renders_exactly_that_models_job():
    values = _run(generated_values("jobs"), "customer_orders", "customer-orders-1a2b3")

    jobs = render("jobs", values).by_kind("Job")

    assert [j["metadata"]["name"] for j in jobs] == ["customer-orders-1a2b3"]
    spec = jobs[0]["spec"]
    assert (
        spec["backoffLimit"],
        spec["activeDeadlineSeconds"],
        spec["ttlSecondsAfterFinished"],
    ) == (0, 3600, 3600)
    pod = spec["template"]["spec"]
    assert pod["containers"][0]["command"] == [
        "python3",
        "/opt/floe-dbt/floe_dbt.py",  # the chart's: runs dbt, then reports to Dagster
        "build",
        # By its file: the project is named customer_360 as one of its models.
        "--select",
        "file:customer_orders",
        "1+file:customer_orders,resource_type:seed",
        "--indirect-selection",
        "buildable",
        "--target",
        "dev",
    ]
    assert pod["automountServiceAccountToken"] is False
    labels = spec["template"]["metadata"]["labels"]
    assert (
        labels["floe.dev/model"],
        labels["floe.dev/run-id"],
        labels["floe.dev/environment"],
    ) == ("customer-orders", "run-1", "dev")


def test_the_profiles_credential_reaches_the_model_as_dbt_reads_it_and_nowhere_else():
    # The example's profile names its password as dbt does, env_var('DBT_ENV_SECRET_...'): the
    # profiles are inlined as they are, and the variable comes from the operator's Secret.
    rendered = render("jobs", _run(generated_values("jobs"), "stg_orders", "stg-orders-x"))

    profiles = rendered.named("ConfigMap", "floe-jobs-dbt-profiles")["data"]["profiles.yml"]
    output = yaml.safe_load(profiles)["customer_360"]["outputs"]["dev"]
    assert output["password"] == "{{ env_var('DBT_ENV_SECRET_PG_PASSWORD') }}"
    [container] = rendered.by_kind("Job")[0]["spec"]["template"]["spec"]["containers"]
    from_secrets = {e["name"]: e["valueFrom"] for e in container["env"] if "valueFrom" in e}
    assert from_secrets == {
        "DBT_ENV_SECRET_PG_PASSWORD": {
            "secretKeyRef": {"name": "floe-dbt-profiles", "key": "DBT_ENV_SECRET_PG_PASSWORD"}
        }
    }


def test_a_model_with_its_own_resources_overrides_the_preset():
    values = generated_values("jobs", "prod")
    big = {"requests": {"cpu": "2", "memory": "4Gi"}, "limits": {"cpu": "4", "memory": "8Gi"}}
    values["models"][0]["resources"] = big

    job = render("jobs", _run(values, "stg_customers", "stg-customers-x")).by_kind("Job")[0]
    other = render("jobs", _run(values, "stg_orders", "stg-orders-x")).by_kind("Job")[0]

    assert job["spec"]["template"]["spec"]["containers"][0]["resources"] == big
    assert other["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] == {
        "cpu": "500m",
        "memory": "1Gi",
    }  # the large preset's jobs requests


def test_scheduled_models_get_a_cronjob_with_the_same_pod():
    values = generated_values("jobs")
    values["models"][3]["schedule"] = "0 3 * * *"

    rendered = render("jobs", values)
    cronjobs = rendered.by_kind("CronJob")

    assert [c["metadata"]["name"] for c in cronjobs] == ["floe-jobs-customer-360"]
    # Offline renders carry a current Kubernetes version, so the GA API is chosen.
    assert cronjobs[0]["apiVersion"] == "batch/v1"
    job = render("jobs", _run(values, "customer_360", "c360-x")).by_kind("Job")[0]
    assert (
        cronjobs[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        == job["spec"]["template"]["spec"]
    )


def test_model_pods_and_the_chart_test_run_where_the_scheduling_values_say():
    values = generated_values("jobs")
    values["nodeSelector"] = {"node.floe.dev/real": "true"}
    values["tolerations"] = [{"key": "node.floe.dev/real", "operator": "Exists"}]
    values["models"][3]["schedule"] = "0 3 * * *"

    job = render("jobs", _run(values, "customer_360", "c360-x")).by_kind("Job")[0]
    rendered = render("jobs", values)
    pods = [
        job["spec"]["template"]["spec"],
        rendered.by_kind("CronJob")[0]["spec"]["jobTemplate"]["spec"]["template"]["spec"],
        rendered.named("Pod", "floe-jobs-test-dbt")["spec"],  # `helm test`
    ]
    for pod in pods:
        assert pod["nodeSelector"] == {"node.floe.dev/real": "true"}
        assert pod["tolerations"] == [{"key": "node.floe.dev/real", "operator": "Exists"}]
        assert "affinity" not in pod


def test_profiles_with_credentials_mount_the_operators_secret_and_the_role_allows_only_it():
    values = generated_values("jobs")
    values["dbt"]["profiles"] = {"source": "secret", "existingSecret": "floe-dbt-profiles"}

    rendered = render("jobs", values)

    assert "floe-jobs-dbt-profiles" not in [
        c["metadata"]["name"] for c in rendered.by_kind("ConfigMap")
    ]
    rules = rendered.named("Role", "floe-jobs-dbt")["rules"]
    assert {
        "apiGroups": [""],
        "resources": ["secrets"],
        "resourceNames": ["floe-dbt-profiles"],
        "verbs": ["get"],
    } in rules
    assert all(rule["verbs"] == ["get"] and rule.get("resourceNames") for rule in rules)


def test_missing_job_name_is_a_clear_render_error():
    values = {**generated_values("jobs"), "run": {"model": "stg_orders"}}
    with pytest.raises(RenderError, match="run.jobName is required with run.model"):
        render("jobs", values)


@pytest.mark.parametrize("kube_version", ["v1.20.2", "v1.28.0", "v1.33.0"])
def test_lint_is_clean(kube_version: str):
    build_dependencies(JOBS_CHART)
    report = helm_python.lint(str(JOBS_CHART), strict=True, kube_version=kube_version)
    assert report["errors"] == [] and report["messages"] == []


@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_lint_is_clean_with_generated_values(environment: str):
    build_dependencies(JOBS_CHART)
    report = helm_python.lint(str(JOBS_CHART), generated_values("jobs", environment), strict=True)
    assert report["errors"] == [] and report["messages"] == []


def test_cli_render_prints_or_writes_the_objects(tmp_path, capsys: pytest.CaptureFixture[str]):
    config = str(ROOT / "floe-deploy.yaml")
    assert main(["render", "--config", config, "--env", "staging", "--chart", "jobs"]) == 0
    printed = [doc for doc in yaml.safe_load_all(capsys.readouterr().out) if doc]
    assert {d["metadata"].get("namespace", "floe-staging") for d in printed} == {"floe-staging"}
    assert "Role" in {d["kind"] for d in printed}

    out = tmp_path / "manifests"
    assert (
        main(
            [
                "render",
                "--config",
                config,
                "--env",
                "prod",
                "--chart",
                "jobs",
                "--output-dir",
                str(out),
            ]
        )
        == 0
    )
    assert len(list(out.glob("*.yaml"))) == len(printed)


def test_model_pods_send_telemetry_to_the_platforms_collector():
    values = _run(generated_values("jobs", "staging"), "stg_orders", "stg-orders-t1")
    job = render("jobs", values, namespace="floe-staging").named("Job", "stg-orders-t1")
    env = {
        e["name"]: e.get("value") for e in job["spec"]["template"]["spec"]["containers"][0]["env"]
    }

    assert env["OTEL_EXPORTER_OTLP_ENDPOINT"] == (
        "http://floe-platform-otel-collector.floe-staging.svc:4317"
    )
    assert env["OTEL_SERVICE_NAME"] == "dbt-stg_orders"


def test_no_telemetry_environment_when_telemetry_is_off():
    values = _run(generated_values("jobs"), "stg_orders", "stg-orders-t2")
    values["global"]["otlpEndpoint"] = None
    job = render("jobs", values).named("Job", "stg-orders-t2")
    names = {e["name"] for e in job["spec"]["template"]["spec"]["containers"][0]["env"]}

    assert not any(name.startswith("OTEL_") for name in names)
