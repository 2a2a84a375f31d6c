"""The floe-platform chart for real (issue 16): Dagster's webserver, daemon and code server and
PostgreSQL on the real node, in the local images, placed there by the chart's ordinary
scheduling values; the components no registry offers an image for (Polaris, the OpenTelemetry
collector) stay on the simulated nodes. Values are generated from the example CompiledArtifacts
for dev, as `floe-deploy values` makes them, then overridden as an operator would.

Then the example data product for real: Dagster materializes its models (examples/customer_360,
the dbt project in the dbt image), each as the runner's Job on the real node, on the platform's
PostgreSQL with the password the profiles name by env_var() from the operator's Secret; dbt's
results and tests come back through Dagster Pipes."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import PurePosixPath

import dagster as dg
import pytest
import yaml
from kubernetes import client

from floe_deploy_assets.defs.build import build_definitions
from floe_deploy_assets.helm.engine import ReleaseRef, SdkHelmEngine
from floe_deploy_assets.models.config import load_deployment_config
from localcluster import ClusterConfig, realnode
from localcluster.images import DAGSTER_VERSION, FLOE_DIR, POSTGRES_IMAGE, PYTHON_IMAGE
from tests.support.charts import CONFIG, EXAMPLE, ROOT, generated_values
from tests.support.deployment import create_operator_secrets, write_config
from tests.support.real_node import job_on_the_real_node, pod_log, run_job
from tests.support.waits import create_namespace_ready_for_pods, wait_for

# Helm's install (up to 360 s) and a run (up to 420 s) take longer than pytest's default.
pytestmark = pytest.mark.timeout(900)
NAMESPACE = "floe-dev"
RELEASE = "floe-platform"
JOBS_RELEASE = "floe-jobs"
PASSWORD_FROM_SECRET = {
    "name": "PGPASSWORD",
    "valueFrom": {"secretKeyRef": {"name": "floe-postgresql", "key": "password"}},
}


# What the operator of this machine gives for dev (the demo's configuration): the local
# images; Dagster, PostgreSQL and the model pods on the real node; the code server serving this
# project's code location, deploying from inside the cluster (dagster.floeDeploy).
OPERATOR_CONFIG = load_deployment_config(ROOT / "examples" / "real-node" / "floe-deploy.yaml")


@pytest.fixture(scope="module")
def platform(real_cluster: ClusterConfig, core: client.CoreV1Api) -> Iterator[str]:
    """The release with the values `floe-deploy values` gives for the operator's configuration,
    installed and ready (Helm's own wait); the configuration, as the code location in the
    cluster reads it (its paths where the Python image has the same files), in the ConfigMap
    floe-deploy-config."""
    create_namespace_ready_for_pods(core, NAMESPACE)
    create_operator_secrets(core, NAMESPACE)
    values = generated_values("platform", config=OPERATOR_CONFIG)
    inside = yaml.safe_dump(OPERATOR_CONFIG.relocated(ROOT, PurePosixPath(FLOE_DIR)))
    core.create_namespaced_config_map(
        NAMESPACE,
        {"metadata": {"name": "floe-deploy-config"}, "data": {"floe-deploy.yaml": inside}},
    )
    # As floe-deploy installs (through its relay: the objects' owner is floe-deploy, as for
    # the graph's own deploys from inside the cluster).
    engine = SdkHelmEngine(real_cluster.admin_kubeconfig)
    try:
        engine.install(
            ReleaseRef(RELEASE, NAMESPACE, "floe-real"),
            CONFIG.chart_path("platform"),
            values,
            timeout=360,
        )
        yield NAMESPACE
    finally:
        engine.close()


def _python_on_the_real_node(core: client.CoreV1Api, name: str, code: str) -> list[str]:
    job = job_on_the_real_node(name, f"python3 -c '{code}'", image=PYTHON_IMAGE)
    pod = run_job(core, NAMESPACE, job, timeout=120)
    lines = pod_log(core, NAMESPACE, pod)
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0, lines
    return lines


def test_the_platform_runs_where_its_values_place_it(
    real_cluster: ClusterConfig, core: client.CoreV1Api, platform: str
):
    real_node = realnode.RealNode(real_cluster, 0).name
    placed = {
        pod.metadata.labels["app.kubernetes.io/component"]: pod.spec.node_name
        for pod in core.list_namespaced_pod(
            platform, label_selector=f"app.kubernetes.io/instance={RELEASE}"
        ).items
    }
    on_the_real_node = {component for component, node in placed.items() if node == real_node}
    assert on_the_real_node == {
        "dagster-webserver",
        "dagster-daemon",
        "dagster-user-code",
        "postgresql",
    }, placed
    assert {"polaris", "otel-collector"} <= set(placed) - on_the_real_node  # simulated


def test_the_webserver_answers_server_info_through_its_service(
    core: client.CoreV1Api, platform: str
):
    code = (
        "import json, urllib.request as u; "
        f'info = json.load(u.urlopen("http://{RELEASE}-dagster-webserver/server_info")); '
        'print(info["dagster_webserver_version"])'
    )
    assert _python_on_the_real_node(core, "server-info", code) == [DAGSTER_VERSION]


def test_the_code_server_serves_this_projects_code_location(core: client.CoreV1Api, platform: str):
    query = (
        "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus "
        "locationOrLoadError { __typename ... on RepositoryLocation { repositories { name "
        "assetNodes { id } } } ... on PythonError { message } } } } } }"
    )
    code = (
        "import json, urllib.request as u; "
        f'body = json.dumps({{"query": {json.dumps(query)}}}).encode(); '
        f'request = u.Request("http://{RELEASE}-dagster-webserver/graphql", body, '
        '{"Content-Type": "application/json"}); '
        "print(json.dumps(json.load(u.urlopen(request))))"
    )
    [answer] = _python_on_the_real_node(core, "graphql", code)
    [location] = json.loads(answer)["data"]["workspaceOrError"]["locationEntries"]
    assert location["name"] == "floe_deploy_assets.definitions"
    assert location["loadStatus"] == "LOADED"
    loaded = location["locationOrLoadError"]
    assert loaded["__typename"] == "RepositoryLocation", loaded
    [repository] = loaded["repositories"]
    assert len(repository["assetNodes"]) >= 10  # the deployment graph's assets


def _psql(core: client.CoreV1Api, name: str, database: str, query: str) -> list[str]:
    """The rows ``query`` gives on the release's PostgreSQL, once it gives any (within two
    minutes), one line each, columns separated by '|'; psql runs on the real node."""
    script = (
        "for attempt in $(seq 60); do "
        f'found=$(psql -h {RELEASE}-postgresql -U postgres -d {database} -tA -c "{query}" 2>&1) '
        '&& [ -n "$found" ] && break; sleep 2; done; echo "$found"'
    )
    job = job_on_the_real_node(name, script, image=POSTGRES_IMAGE, env=[PASSWORD_FROM_SECRET])
    return pod_log(core, NAMESPACE, run_job(core, NAMESPACE, job, timeout=180))


def test_the_daemon_heartbeats_into_postgresql(core: client.CoreV1Api, platform: str):
    # The daemon writes a heartbeat per daemon type to Dagster's storage on the release's
    # PostgreSQL, which the chart made from the operator's Secret.
    query = "SELECT DISTINCT daemon_type FROM daemon_heartbeats ORDER BY 1"
    lines = _psql(core, "heartbeats", "dagster", query)
    assert {"SCHEDULER", "SENSOR", "QUEUED_RUN_COORDINATOR"} <= set(lines), lines


LAUNCH_AND_FOLLOW = """
import json, time, urllib.request

URL = "http://%(webserver)s/graphql"


def graphql(query, variables=None):
    body = json.dumps({"query": query, "variables": variables or {}}).encode()
    request = urllib.request.Request(URL, body, {"Content-Type": "application/json"})
    return json.load(urllib.request.urlopen(request, timeout=60))["data"]


launched = graphql(
    "mutation($params: ExecutionParams!) { launchRun(executionParams: $params) { __typename "
    "... on LaunchRunSuccess { run { runId } } ... on PythonError { message } } }",
    {"params": %(params)s},
)["launchRun"]
print(launched["__typename"], flush=True)
run_id = launched["run"]["runId"]
deadline = time.monotonic() + %(deadline)d
status = None
while time.monotonic() < deadline:
    status = graphql(
        "query($id: ID!) { runOrError(runId: $id) { ... on Run { status } } }", {"id": run_id}
    )["runOrError"]["status"]
    if status in ("SUCCESS", "FAILURE", "CANCELED"):
        break
    time.sleep(3)
print(f"{status} after {time.monotonic() - deadline + %(deadline)d:.0f} s")
if status != "SUCCESS":  # why, as the UI shows it: each failed step's error, the run's failure
    events = graphql(
        "query($id: ID!) { logsForRun(runId: $id) { ... on EventConnection { events { "
        "__typename ... on ExecutionStepFailureEvent { stepKey error { message } } "
        "... on RunFailureEvent { message } } } } }",
        {"id": run_id},
    )["logsForRun"]["events"]
    for event in events:
        if event["__typename"] == "ExecutionStepFailureEvent":
            print(f"step {event['stepKey']} failed: {event['error']['message']}")
        elif event["__typename"] == "RunFailureEvent":
            print(f"run failed: {event['message']}")
print(run_id)
print(status)
"""


def _launch_from_inside(
    core: client.CoreV1Api, name: str, params: dict, deadline: int
) -> tuple[list[str], str, str]:
    """Launch a run through the webserver's GraphQL API from a pod on the real node, as the UI
    would, and follow it to its end: the pod's log lines, the run id and its status."""
    script = LAUNCH_AND_FOLLOW % {
        "webserver": f"{RELEASE}-dagster-webserver",
        "params": json.dumps(params),
        "deadline": deadline,
    }
    core.create_namespaced_config_map(
        NAMESPACE, {"metadata": {"name": name}, "data": {"launch.py": script}}
    )
    job = job_on_the_real_node(name, "python3 /launch/launch.py", image=PYTHON_IMAGE)
    job["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "launch", "mountPath": "/launch"}
    ]
    job["spec"]["template"]["spec"]["volumes"] = [{"name": "launch", "configMap": {"name": name}}]
    lines = pod_log(core, NAMESPACE, run_job(core, NAMESPACE, job, timeout=deadline + 60))
    assert lines[0] == "LaunchRunSuccess", lines
    run_id, status = lines[-2:]
    return lines, run_id, status


def _run_pod(real_cluster: ClusterConfig, core: client.CoreV1Api, run_id: str) -> client.V1Pod:
    """The run's own pod (the launcher's Job for it), once it has completed: the run reports
    its end before its process exits."""
    [run_pod] = core.list_namespaced_pod(NAMESPACE, label_selector=f"dagster/run-id={run_id}").items
    assert run_pod.spec.node_name == realnode.RealNode(real_cluster, 0).name
    wait_for(
        lambda: (
            core.read_namespaced_pod(run_pod.metadata.name, NAMESPACE).status.phase == "Succeeded"
        ),
        timeout=90,
        reason=f"the run's pod {run_pod.metadata.name} to complete",
    )
    return run_pod


DEPLOYER = f"{RELEASE}-floe-deploy"  # the graph's ServiceAccount (dagster.floeDeploy)


def test_a_run_launched_by_the_webserver_runs_as_a_job_on_the_real_node(
    real_cluster: ClusterConfig, core: client.CoreV1Api, platform: str
):
    # Materialize the example product's CompiledArtifacts and the platform's values for dev,
    # through the webserver: the daemon dequeues the run and the chart's K8sRunLauncher starts
    # it as a Kubernetes Job (the launcher's Role), on the real node, in the code location's
    # image, as the graph's ServiceAccount; the run opens the instance in PostgreSQL.
    params = {
        "selector": {
            "repositoryLocationName": "floe_deploy_assets.definitions",
            "repositoryName": "__repository__",
            "jobName": "__ASSET_JOB",
            "assetSelection": [{"path": ["compiled_artifacts"]}, {"path": ["platform_values"]}],
        },
        "runConfigData": {"execution": {"config": {"in_process": {}}}},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "dev"}]},
    }
    lines, run_id, status = _launch_from_inside(core, "launch", params, deadline=420)
    assert status == "SUCCESS", lines
    assert _run_pod(real_cluster, core, run_id).spec.service_account_name == DEPLOYER


@pytest.fixture(scope="module")
def deployed_from_inside(
    real_cluster: ClusterConfig, core: client.CoreV1Api, platform: str
) -> tuple[list[str], str, str]:
    """dev's releases materialized by the code location hosted here: deploy_platform for dev,
    launched through the webserver; its run deploys as the graph's ServiceAccount."""
    params = {
        "selector": {
            "repositoryLocationName": "floe_deploy_assets.definitions",
            "repositoryName": "__repository__",
            "jobName": "deploy_platform",
        },
        "runConfigData": {"execution": {"config": {"in_process": {}}}},
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": "dev"}]},
    }
    return _launch_from_inside(core, "deploy", params, deadline=720)


def test_the_self_hosted_code_location_deploys_devs_releases_from_inside(
    real_cluster: ClusterConfig,
    core: client.CoreV1Api,
    deployed_from_inside: tuple[list[str], str, str],
):
    lines, run_id, status = deployed_from_inside
    assert status == "SUCCESS", lines
    assert _run_pod(real_cluster, core, run_id).spec.service_account_name == DEPLOYER
    # The platform (installed from this machine, deployed again by the graph from inside)
    # and the product's jobs release (installed by the graph), both deployed.
    engine = SdkHelmEngine(real_cluster.admin_kubeconfig)
    try:
        history = {
            name: [r.status for r in engine.history(ReleaseRef(name, NAMESPACE, "floe-real"))]
            for name in (RELEASE, JOBS_RELEASE)
        }
    finally:
        engine.close()
    assert history[JOBS_RELEASE] == ["deployed"], history
    assert history[RELEASE][-1] == "deployed", history


def _as_the_deployer(real_cluster: ClusterConfig, core: client.CoreV1Api) -> client.ApiClient:
    """A client with the graph's ServiceAccount token (its token Secret, as Kubernetes 1.20
    makes one), to the same API server."""
    [secret] = [
        s
        for s in core.list_namespaced_secret(
            NAMESPACE, field_selector="type=kubernetes.io/service-account-token"
        ).items
        if s.metadata.annotations.get("kubernetes.io/service-account.name") == DEPLOYER
    ]
    admin = core.api_client.configuration
    configuration = client.Configuration()
    configuration.host = admin.host
    configuration.ssl_ca_cert = admin.ssl_ca_cert
    token = base64.b64decode(secret.data["token"]).decode()
    configuration.api_key = {"authorization": f"Bearer {token}"}
    return client.ApiClient(configuration)


def test_the_graphs_service_account_is_refused_outside_its_role(
    real_cluster: ClusterConfig, core: client.CoreV1Api, platform: str
):
    api = _as_the_deployer(real_cluster, core)
    as_deployer = client.CoreV1Api(api)
    # Inside: what deploying needs (Helm's release storage is Secrets).
    assert as_deployer.list_namespaced_secret(NAMESPACE).items
    # Outside, the real RBAC authorizer says no: other namespaces, cluster-wide objects, verbs
    # and kinds no deploy needs.
    refused = {
        "secrets of kube-system": lambda: as_deployer.list_namespaced_secret("kube-system"),
        "pods of default": lambda: as_deployer.list_namespaced_pod("default"),
        "a namespace": lambda: as_deployer.create_namespace({"metadata": {"name": "elsewhere"}}),
        "nodes": lambda: as_deployer.list_node(),
        "a pod's exec": lambda: as_deployer.connect_get_namespaced_pod_exec(
            "nothing", NAMESPACE, command=["true"]
        ),
        "cluster roles": lambda: client.RbacAuthorizationV1Api(api).list_cluster_role(),
        "daemon sets": lambda: client.AppsV1Api(api).create_namespaced_daemon_set(
            NAMESPACE, {"metadata": {"name": "x"}}
        ),
    }
    statuses = {}
    for what, call in refused.items():
        with pytest.raises(client.ApiException) as error:
            call()
        statuses[what] = error.value.status
    assert statuses == dict.fromkeys(refused, 403)


@pytest.fixture(scope="module")
def product(
    core: client.CoreV1Api, deployed_from_inside: tuple[list[str], str, str]
) -> Iterator[str]:
    """The example product's floe-jobs release (deployed from inside, above), and the
    operator's dbt credential: the profiles read DBT_ENV_SECRET_PG_PASSWORD from
    floe-dbt-profiles, which the operator sets to the platform PostgreSQL's password."""
    password = core.read_namespaced_secret("floe-postgresql", NAMESPACE).data["password"]
    core.patch_namespaced_secret(
        "floe-dbt-profiles", NAMESPACE, {"data": {"DBT_ENV_SECRET_PG_PASSWORD": password}}
    )
    yield NAMESPACE


BROKEN = "broken_revenue"
MODELS = ("stg_customers", "stg_orders", "customer_orders", "customer_360")
MODELS_STEP = "dbt_models"


@pytest.fixture(scope="module")
def product_run(
    real_cluster: ClusterConfig, product: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dg.ExecuteInProcessResult]:
    """The example product's models materialized by Dagster for dev (the graph's
    run_data_products job, in process, against the real cluster), with broken_revenue added to
    the artifacts downstream of customer_orders: each model a Job on the real node (the
    operator's overrides place them there, in the local dbt image), dbt's results back through
    Pipes, the dbt project's tests declared as asset checks."""
    directory = tmp_path_factory.mktemp("product")
    document = json.loads(EXAMPLE.read_text())
    document["transforms"]["models"].append(
        {
            "name": BROKEN,
            "compute": "postgres",
            "tags": ["marts"],
            "depends_on": ["customer_orders"],
        }
    )
    artifacts = directory / "compiled-artifacts.json"
    artifacts.write_text(json.dumps(document))
    config = write_config(
        directory,
        real_cluster.admin_kubeconfig,
        NAMESPACE,
        overrides={"jobs": OPERATOR_CONFIG.overrides_for("jobs", "dev")},
        artifacts=artifacts,
        dbt_projects={"customer-360": ROOT / "examples" / "customer_360"},
    )
    defs = build_definitions(str(config), kubeconfig=str(real_cluster.admin_kubeconfig))
    with dg.instance_for_test() as instance:
        yield defs.resolve_job_def("run_data_products").execute_in_process(
            partition_key="dev", instance=instance, raise_on_error=False
        )


def _materialized(result: dg.ExecuteInProcessResult) -> dict[str, dict]:
    return {
        event.asset_key.path[-1]: {key: value.value for key, value in event.metadata.items()}
        for event in result.asset_materializations_for_node(MODELS_STEP)
    }


def test_the_example_products_models_run_for_real_in_dependency_order(
    real_cluster: ClusterConfig, core: client.CoreV1Api, product_run: dg.ExecuteInProcessResult
):
    materialized = _materialized(product_run)
    assert set(materialized) == set(MODELS)
    # Each model's Job started only once its upstream models' Jobs had completed (the
    # cluster's own times, to the second).
    start = {model: metadata["start_time"] for model, metadata in materialized.items()}
    end = {model: metadata["end_time"] for model, metadata in materialized.items()}
    assert start["customer_orders"] >= max(end["stg_customers"], end["stg_orders"])
    assert start["customer_360"] >= end["customer_orders"]
    real_node = realnode.RealNode(real_cluster, 0).name
    for metadata in materialized.values():
        pod = core.read_namespaced_pod(metadata["pod_name"], NAMESPACE)
        assert pod.spec.node_name == real_node
        assert pod.status.container_statuses[0].state.terminated.exit_code == 0


def test_dbts_results_come_back_through_pipes_as_the_materializations_metadata(
    product_run: dg.ExecuteInProcessResult,
):
    materialized = _materialized(product_run)
    for model, metadata in materialized.items():
        assert metadata["dbt_status"] == "success", (model, metadata)
        assert metadata["execution_time_seconds"] > 0, (model, metadata)
        assert metadata["relation"] == f'"postgres"."customer_360"."{model}"'
    assert {m: materialized[m]["materialized"] for m in MODELS} == {
        "stg_customers": "view",
        "stg_orders": "view",
        "customer_orders": "table",
        "customer_360": "table",
    }
    # dbt-postgres' answer to CREATE TABLE AS: the example's five customers.
    assert materialized["customer_orders"]["rows_affected"] == 5
    assert materialized["customer_360"]["dbt_message"] == "SELECT 5"


def test_a_downstream_model_reads_what_its_upstream_models_built(
    core: client.CoreV1Api, product_run: dg.ExecuteInProcessResult
):
    # customer_360 (one pod) joined the table customer_orders (another pod) built from the
    # views over the seeds (two more pods): the example's five customers, segmented by what
    # they ordered (returned orders do not count).
    query = (
        "SELECT customer_id, order_count, lifetime_value, segment "
        "FROM customer_360.customer_360 ORDER BY customer_id"
    )
    assert _psql(core, "customer-360", "postgres", query) == [
        "1|2|174.99|active",
        "2|0|0|prospect",
        "3|3|393.00|gold",
        "4|1|99.00|active",
        "5|0|0|prospect",
    ]


def test_the_models_dbt_tests_are_their_asset_checks_for_the_partition(
    product_run: dg.ExecuteInProcessResult,
):
    evaluations = {
        f"{e.asset_key.path[-1]}:{e.check_name}": e
        for e in product_run.get_asset_check_evaluations()
    }
    assert {name: e.passed for name, e in evaluations.items()} == {
        "stg_customers:unique__customer_id": True,
        "stg_customers:not_null__customer_id": True,
        "stg_customers:not_null__email": True,
        "stg_orders:unique__order_id": True,
        "stg_orders:not_null__order_id": True,
        "stg_orders:accepted_values__status": True,
        "customer_orders:unique__customer_id": True,
        "customer_orders:not_null__customer_id": True,
        "customer_orders:relationships__customer_id": True,
        "customer_360:unique__customer_id": True,
        "customer_360:not_null__customer_id": True,
        "customer_360:accepted_values__segment": True,
        "customer_360:unique__email": True,
        # A warning in dbt (two customers have not ordered yet): failed, not blocking.
        "customer_360:not_null__first_order_on": False,
    }
    warned = evaluations["customer_360:not_null__first_order_on"]
    assert warned.severity == dg.AssetCheckSeverity.WARN
    assert warned.metadata["failures"].value == 2
    assert {e.partition for e in evaluations.values()} == {"dev"}


def test_a_model_whose_sql_is_wrong_fails_with_dbts_own_error_in_dagster(
    product_run: dg.ExecuteInProcessResult,
):
    # broken_revenue names a column that does not exist; its upstream's table does.
    assert not product_run.success
    failure = product_run.failure_data_for_node(MODELS_STEP)
    assert failure is not None and failure.user_failure_data is not None
    assert f"{BROKEN} (" in failure.user_failure_data.description
    broken = failure.user_failure_data.metadata[f"data_products/customer-360/{BROKEN}"].value
    assert broken["phase"] == "Failed" and broken["exit_code"] == 1, broken
    assert f"Database Error in model {BROKEN}" in broken["log_excerpt"], broken
    assert 'column "revenue_usd" does not exist' in broken["log_excerpt"], broken
