"""The floe-platform umbrella chart, rendered offline by the real Helm engine."""

from __future__ import annotations

import helm_python
import pytest
import yaml
from dagster_k8s.models import k8s_snake_case_dict
from kubernetes import client

from floe_deploy_assets.helm.render import RenderError, build_dependencies
from tests.support.charts import CONFIG, generated_values, render
from tests.support.real_node import ON_THE_REAL_NODE

PLATFORM_CHART = CONFIG.chart_path("platform")


def _collector_config(values: dict) -> dict:
    rendered = render("platform", values)
    return yaml.safe_load(
        rendered.named("ConfigMap", "floe-platform-otel-collector")["data"]["config.yaml"]
    )


@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_components_render_with_generated_values(environment: str):
    rendered = render("platform", generated_values("platform", environment))

    kinds = {(o["kind"], o["metadata"]["name"]) for o in rendered.objects}
    assert ("StatefulSet", "floe-platform-postgresql") in kinds
    assert ("Deployment", "floe-platform-otel-collector") in kinds
    for obj in rendered.objects:
        assert obj["metadata"]["labels"]["floe.dev/environment"] == environment


def test_a_disabled_component_renders_nothing():
    values = generated_values("platform")
    values["otel"]["enabled"] = False

    names = {o["metadata"]["name"] for o in render("platform", values).objects}

    assert not any("otel" in name for name in names)


def test_collector_pipelines_follow_the_artifacts_telemetry():
    values = generated_values("platform", "staging")  # example artifacts: jaeger, 0.5 for staging
    config = _collector_config(values)

    assert config["processors"]["probabilistic_sampler"]["sampling_percentage"] == 50
    assert config["exporters"]["otlp/jaeger"]["endpoint"] == "jaeger-collector:4317"
    assert list(config["service"]["pipelines"]) == ["traces"]  # Jaeger takes traces only


def test_an_otlp_backend_gets_its_endpoint_and_authorization_from_the_secret():
    values = generated_values("platform")
    values["otel"]["exporters"] = {
        "backend": "grafana-cloud",
        "endpoint": "https://otlp.example",
        "headersSecret": {"name": "floe-otel-exporter-auth", "key": "api-key"},
    }
    rendered = render("platform", values)
    config = yaml.safe_load(
        rendered.named("ConfigMap", "floe-platform-otel-collector")["data"]["config.yaml"]
    )

    exporter = config["exporters"]["otlphttp/grafana-cloud"]
    assert exporter["headers"]["authorization"] == "${env:OTEL_EXPORTER_AUTHORIZATION}"
    assert set(config["service"]["pipelines"]) == {"traces", "metrics", "logs"}
    env = rendered.named("Deployment", "floe-platform-otel-collector")["spec"]["template"]["spec"][
        "containers"
    ][0]["env"]
    assert env[0]["valueFrom"]["secretKeyRef"] == {
        "name": "floe-otel-exporter-auth",
        "key": "api-key",
    }


def test_a_backend_without_endpoint_is_a_clear_error():
    values = generated_values("platform")
    values["otel"]["exporters"] = {"backend": "datadog"}
    with pytest.raises(RenderError, match="otel.exporters.endpoint is required for the datadog"):
        render("platform", values)


def test_collector_config_change_rolls_its_pods():
    values = generated_values("platform")
    before = render("platform", values).named("Deployment", "floe-platform-otel-collector")
    values["otel"]["config"]["samplingRatio"] = 0.25
    after = render("platform", values).named("Deployment", "floe-platform-otel-collector")

    key = "checksum/config"
    assert (
        before["spec"]["template"]["metadata"]["annotations"][key]
        != (after["spec"]["template"]["metadata"]["annotations"][key])
    )


@pytest.mark.parametrize("kube_version", ["v1.20.2", "v1.28.0", "v1.33.0"])
def test_lint_is_clean(kube_version: str):
    build_dependencies(PLATFORM_CHART)
    report = helm_python.lint(str(PLATFORM_CHART), strict=True, kube_version=kube_version)
    assert report["errors"] == [] and report["messages"] == []


@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_lint_is_clean_with_generated_values(environment: str):
    build_dependencies(PLATFORM_CHART)
    values = generated_values("platform", environment)
    report = helm_python.lint(str(PLATFORM_CHART), values, strict=True)
    assert report["errors"] == [] and report["messages"] == []


def test_dagster_runs_on_postgres_and_launches_runs_as_jobs_in_the_release_namespace():
    rendered = render("platform", generated_values("platform", "prod"), namespace="floe-prod")
    instance = _instance(rendered)

    assert instance["run_launcher"]["class"] == "K8sRunLauncher"
    assert instance["run_launcher"]["config"]["job_namespace"] == "floe-prod"
    assert instance["run_launcher"]["config"]["resources"]["requests"] == {
        "cpu": "500m",
        "memory": "1Gi",
    }  # the large preset's jobs
    assert instance["storage"]["postgres"]["postgres_db"]["hostname"] == "floe-platform-postgresql"
    assert instance["storage"]["postgres"]["postgres_db"]["scheme"] == "postgresql+psycopg2"
    # Every process that opens the instance has its password: the webserver, the daemon, the
    # code server (sensors run there) and each run's pod.
    password = {
        "name": "DAGSTER_PG_PASSWORD",
        "valueFrom": {"secretKeyRef": {"name": "floe-postgresql", "key": "password"}},
    }
    for component in ("webserver", "daemon", "user-code"):
        deployment = rendered.named("Deployment", f"floe-platform-dagster-{component}")
        assert password in deployment["spec"]["template"]["spec"]["containers"][0]["env"]
    run_config = instance["run_launcher"]["config"]["run_k8s_config"]
    assert run_config["container_config"]["env"] == [password]
    assert instance["storage"]["postgres"]["postgres_db"]["password"] == {
        "env": "DAGSTER_PG_PASSWORD"
    }


def _instance(rendered) -> dict:
    return yaml.safe_load(
        rendered.named("ConfigMap", "floe-platform-dagster-instance")["data"]["dagster.yaml"]
    )


def test_the_deployment_graph_hosted_here_has_its_own_account_config_and_namespaces():
    values = generated_values("platform")
    plain = render("platform", values)
    values["dagster"]["floeDeploy"] = {"enabled": True, "namespaces": ["floe-dev", "floe-stg"]}
    rendered = render("platform", values, namespace="floe-ops")

    # Off by default: no API access for the code server, runs as the launcher's account.
    assert "floe-platform-floe-deploy" not in {o["metadata"]["name"] for o in plain.objects}
    assert _instance(plain)["run_launcher"]["config"]["service_account_name"] == (
        "floe-platform-dagster"
    )
    roles = {
        (o["kind"], o["metadata"].get("namespace"))
        for o in rendered.objects
        if o["metadata"]["name"] == "floe-platform-floe-deploy"
    }
    assert roles == {
        ("ServiceAccount", None),  # the release's namespace
        ("Role", "floe-dev"),
        ("RoleBinding", "floe-dev"),
        ("Role", "floe-stg"),
        ("RoleBinding", "floe-stg"),
    }
    role = next(o for o in rendered.by_kind("Role") if o["metadata"].get("namespace") == "floe-dev")
    verbs = {
        (g, r): set(rule["verbs"])
        for rule in role["rules"]
        for g in rule["apiGroups"]
        for r in rule["resources"]
    }
    # Helm's release storage, and no way to write outside the namespace.
    assert {"create", "delete", "list"} <= verbs[("", "secrets")]
    assert verbs[("", "pods/log")] == {"get", "list", "watch"}
    assert not [o for o in rendered.objects if o["kind"].startswith("Cluster")]
    binding = next(
        o for o in rendered.by_kind("RoleBinding") if o["metadata"].get("namespace") == "floe-stg"
    )
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "floe-platform-floe-deploy", "namespace": "floe-ops"}
    ]
    deployer_env = [
        {"name": "FLOE_IN_CLUSTER", "value": "true"},
        {"name": "FLOE_DEPLOY_CONFIG", "value": "/etc/floe-deploy/floe-deploy.yaml"},
    ]
    pod = rendered.named("Deployment", "floe-platform-dagster-user-code")["spec"]["template"]
    assert pod["spec"]["serviceAccountName"] == "floe-platform-floe-deploy"
    assert pod["spec"]["automountServiceAccountToken"] is True
    assert pod["metadata"]["annotations"] == {"floe.dev/needs-kubernetes-api": "true"}
    assert pod["spec"]["containers"][0]["env"][-2:] == deployer_env
    assert {"name": "floe-deploy-config", "configMap": {"name": "floe-deploy-config"}} in pod[
        "spec"
    ]["volumes"]
    # The runs deploy: they run as the graph's account, with its configuration.
    launcher = _instance(rendered)["run_launcher"]["config"]
    assert launcher["service_account_name"] == "floe-platform-floe-deploy"
    run = launcher["run_k8s_config"]
    assert run["container_config"]["env"][-2:] == deployer_env
    assert run["container_config"]["volume_mounts"][0]["mount_path"] == "/etc/floe-deploy"
    assert run["pod_spec_config"]["automount_service_account_token"] is True
    assert run["pod_spec_config"]["volumes"] == [
        {"name": "floe-deploy-config", "config_map": {"name": "floe-deploy-config"}}
    ]


def test_environment_presets_and_overrides_reach_the_dagster_pods():
    rendered = render("platform", generated_values("platform", "prod"))
    webserver = rendered.named("Deployment", "floe-platform-dagster-webserver")
    code_server = rendered.named("Deployment", "floe-platform-dagster-user-code")

    assert webserver["spec"]["replicas"] == 2  # floe-deploy.yaml's prod override
    assert code_server["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"] == {
        "cpu": "1000m",
        "memory": "2Gi",
    }  # the large preset's userCode


def test_minio_is_for_development_and_refused_in_production():
    dev = generated_values("platform", "dev")
    dev["minio"]["enabled"] = True
    assert render("platform", dev).named("Deployment", "floe-platform-minio")

    prod = generated_values("platform", "prod")
    prod["minio"]["enabled"] = True
    with pytest.raises(RenderError, match="minio.enabled is not allowed where global.production"):
        render("platform", prod)


def test_postgres_creates_the_databases_dagster_and_marquez_use():
    rendered = render("platform", generated_values("platform"))
    init = rendered.named("ConfigMap", "floe-platform-postgresql-init")["data"]["init.sql"]
    marquez_env = rendered.named("Deployment", "floe-platform-marquez")["spec"]["template"]["spec"][
        "containers"
    ][0]["env"]

    assert init.split() == ["CREATE", "DATABASE", "dagster;", "CREATE", "DATABASE", "marquez;"]
    assert {"name": "POSTGRES_DB", "value": "marquez"} in marquez_env


def test_polaris_gets_its_client_secret_by_reference():
    rendered = render("platform", generated_values("platform"))
    env = rendered.named("Deployment", "floe-platform-polaris")["spec"]["template"]["spec"][
        "containers"
    ][0]["env"]

    assert env == [
        {
            "name": "POLARIS_BOOTSTRAP_CLIENT_SECRET",
            "valueFrom": {
                "secretKeyRef": {"name": "floe-polaris-credentials", "key": "client-secret"}
            },
        }
    ]


def _with_features(environment: str) -> dict:
    values = generated_values("platform", environment)
    for feature in ("podDisruptionBudget", "resourceQuota", "networkPolicy", "ingress"):
        values[feature]["enabled"] = True
    values["networkPolicy"]["allowedNamespaces"] = ["ingress-nginx"]
    return values


def test_optional_features_are_off_unless_asked_for():
    kinds = {o["kind"] for o in render("platform", generated_values("platform", "prod")).objects}
    assert not kinds & {
        "PodDisruptionBudget",
        "HorizontalPodAutoscaler",
        "ResourceQuota",
        "NetworkPolicy",
        "Ingress",
    }


def test_disruption_budgets_only_where_more_than_one_pod_runs():
    prod = render("platform", _with_features("prod")).by_kind("PodDisruptionBudget")
    dev = render("platform", _with_features("dev")).by_kind("PodDisruptionBudget")

    assert [p["metadata"]["name"] for p in prod] == [
        "floe-platform-dagster-webserver"
    ]  # 2 replicas
    assert dev == []  # every workload has one replica in dev


def test_an_autoscaled_webserver_leaves_its_replicas_to_the_hpa():
    values = _with_features("dev")
    values["dagster"]["webserver"]["autoscaling"] = {
        "enabled": True,
        "minReplicas": 2,
        "maxReplicas": 5,
    }
    rendered = render("platform", values)

    assert "replicas" not in rendered.named("Deployment", "floe-platform-dagster-webserver")["spec"]
    hpa = rendered.named("HorizontalPodAutoscaler", "floe-platform-dagster-webserver")["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 5)
    # At least two pods at all times, so a disruption budget applies.
    assert [p["metadata"]["name"] for p in rendered.by_kind("PodDisruptionBudget")] == [
        "floe-platform-dagster-webserver"
    ]


def test_network_policies_deny_by_default_and_allow_the_needed_flows():
    policies = {
        p["metadata"]["name"]: p["spec"]
        for p in render("platform", _with_features("dev")).by_kind("NetworkPolicy")
    }

    deny = policies["floe-platform-default-deny"]
    assert deny["policyTypes"] == ["Ingress", "Egress"]
    assert {"port": 53, "protocol": "UDP"} in deny["egress"][1]["ports"]
    assert [p["port"] for p in policies["floe-platform-otlp-in"]["ingress"][0]["ports"]] == [
        4317,
        4318,
    ]
    assert policies["floe-platform-webserver-in"]["ingress"][0]["from"] == [
        {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "ingress-nginx"}}}
    ]


@pytest.mark.parametrize("kube_version", ["v1.20.2", "v1.33.0"])
def test_lint_is_clean_with_every_feature_on(kube_version: str):
    """The features' API versions come from the Kubernetes version (policy/v1beta1 and
    autoscaling/v2beta2 on 1.20; the cluster test installs them there)."""
    build_dependencies(PLATFORM_CHART)
    report = helm_python.lint(
        str(PLATFORM_CHART), _with_features("prod"), strict=True, kube_version=kube_version
    )
    assert report["errors"] == [] and report["messages"] == []


def test_helm_test_pod_checks_each_enabled_endpoint():
    pod = render("platform", generated_values("platform")).named(
        "Pod", "floe-platform-test-connection"
    )
    script = pod["spec"]["containers"][0]["command"][2]

    assert "floe-platform-dagster-webserver/server_info" in script
    assert "floe-platform-polaris:8182" in script and "floe-platform-marquez:5001" in script
    assert pod["metadata"]["annotations"]["helm.sh/hook"] == "test"


def _pod_spec(rendered, kind: str, name: str) -> dict:
    return rendered.named(kind, name)["spec"]["template"]["spec"]


def test_each_component_runs_where_its_scheduling_values_say():
    values = generated_values("platform")
    for component in ("webserver", "daemon", "userCode", "runLauncher"):
        values["dagster"][component].update(ON_THE_REAL_NODE)
    values["postgresql"].update(ON_THE_REAL_NODE)
    zone = {"key": "topology.kubernetes.io/zone", "operator": "In", "values": ["a"]}
    node_affinity = {
        "requiredDuringSchedulingIgnoredDuringExecution": {
            "nodeSelectorTerms": [{"matchExpressions": [zone]}]
        }
    }
    values["polaris"]["affinity"] = {"nodeAffinity": node_affinity}
    rendered = render("platform", values)

    for kind, name in [
        ("Deployment", "floe-platform-dagster-webserver"),
        ("Deployment", "floe-platform-dagster-daemon"),
        ("Deployment", "floe-platform-dagster-user-code"),
        ("StatefulSet", "floe-platform-postgresql"),
    ]:
        spec = _pod_spec(rendered, kind, name)
        assert (spec["nodeSelector"], spec["tolerations"]) == (
            ON_THE_REAL_NODE["nodeSelector"],
            ON_THE_REAL_NODE["tolerations"],
        ), name
        assert "affinity" not in spec
    polaris = _pod_spec(rendered, "Deployment", "floe-platform-polaris")
    assert polaris["affinity"] == {"nodeAffinity": node_affinity}
    assert "nodeSelector" not in polaris and "tolerations" not in polaris
    collector = _pod_spec(rendered, "Deployment", "floe-platform-otel-collector")
    assert not {"nodeSelector", "tolerations", "affinity"} & set(collector)  # defaults: anywhere
    # Each run's pod, launched by the K8sRunLauncher from the instance's pod spec config.
    instance = _instance(rendered)
    pod_spec_config = instance["run_launcher"]["config"]["run_k8s_config"]["pod_spec_config"]
    assert pod_spec_config["nodeSelector"] == ON_THE_REAL_NODE["nodeSelector"]
    assert pod_spec_config["tolerations"] == ON_THE_REAL_NODE["tolerations"]
    # As dagster-k8s reads it: the pod spec's camelCase keys as the client's snake_case names.
    converted = k8s_snake_case_dict(client.V1PodSpec, pod_spec_config)
    assert converted["node_selector"] == ON_THE_REAL_NODE["nodeSelector"]
    assert converted["tolerations"] == [
        {"key": "node.floe.dev/real", "operator": "Exists", "effect": "NoSchedule"}
    ]


def test_helm_refuses_a_toleration_kubernetes_would_refuse():
    values = generated_values("platform")
    values["postgresql"]["tolerations"] = [{"key": "k", "operator": "Exists", "value": "v"}]
    with pytest.raises(RenderError, match="tolerations"):
        render("platform", values)


def test_probes_that_start_python_have_time_to_run_under_the_cpu_limit():
    # `dagster api grpc-health-check` and `dagster-daemon liveness-check` take about 2 s of CPU;
    # under a 200m limit, 10 s and more: Kubernetes' default 1 s timeout would fail them always.
    rendered = render("platform", generated_values("platform"))
    checked = 0
    for deployment in rendered.by_kind("Deployment"):
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            for kind in ("readinessProbe", "livenessProbe"):
                probe = container.get(kind, {})
                if probe.get("exec", {}).get("command", [""])[0].startswith("dagster"):
                    assert probe.get("timeoutSeconds", 1) >= 15, (container["name"], kind)
                    checked += 1
    assert checked == 3  # the daemon's two, the code server's readiness
