"""The images a real node is given (issue 15), each running on it: the Python image with the
pinned Dagster stack and this project, PostgreSQL behind the official image's environment
contract, and dbt with the examples' adapters. Built without a registry (localcluster/images.py)
and imported at ``up``; pods name them as the charts' image values would."""

from __future__ import annotations

import base64

import pytest
from kubernetes import client

from localcluster.images import (
    DAGSTER_VERSION,
    DBT_IMAGE,
    DBT_STACK,
    POSTGRES_IMAGE,
    PYTHON_IMAGE,
)
from tests.support.real_node import (
    job_on_the_real_node,
    pod_log,
    pod_on_the_real_node,
    run_job,
    serving,
)
from tests.support.waits import wait_for

# The first test's time includes the module's `up` (which builds a changed image first).
pytestmark = pytest.mark.timeout(600)
# As the charts run their containers (floe-common.containerSecurityContext).
LOCKED_DOWN = {
    "runAsNonRoot": True,
    "runAsUser": 1000,
    "readOnlyRootFilesystem": True,
    "allowPrivilegeEscalation": False,
    "capabilities": {"drop": ["ALL"]},
}


def _service(core: client.CoreV1Api, namespace: str, name: str, port: int) -> None:
    core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": name},
            "spec": {"selector": {"app": name}, "ports": [{"port": port, "targetPort": port}]},
        },
    )
    try:
        wait_for(lambda: serving(core, namespace, name), timeout=90, reason=f"{name}'s endpoint")
    except AssertionError as not_ready:
        state = core.read_namespaced_pod(name, namespace).status.container_statuses[0].state
        log = core.read_namespaced_pod_log(name, namespace, tail_lines=30)
        raise AssertionError(f"{not_ready}\n{state}\nlog of {name}:\n{log}") from None


def _tmp_volume(container: dict) -> dict:
    """The container with an emptyDir at /tmp (its root filesystem is read-only)."""
    return {**container, "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}]}


def _with_volumes(manifest: dict, *volumes: dict) -> dict:
    spec = manifest["spec"] if manifest["kind"] == "Pod" else manifest["spec"]["template"]["spec"]
    spec["volumes"] = list(volumes)
    return manifest


TMP = {"name": "tmp", "emptyDir": {}}


def test_the_python_image_has_the_pinned_dagster_stack_and_this_project(
    core: client.CoreV1Api, namespace: str
):
    script = (
        "dagster --version; "
        "python3 -c 'import dagster_k8s, dagster_postgres, dagster_webserver, floe_deploy_assets;"
        ' print("imports ok")\'; '
        "floe-deploy --help >/dev/null && echo floe-deploy ok; "
        "ls /opt/floe/charts"
    )
    job = job_on_the_real_node("stack", script, image=PYTHON_IMAGE, securityContext=LOCKED_DOWN)
    pod = run_job(core, namespace, job, timeout=120)
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0, pod_log(
        core, namespace, pod
    )
    assert pod_log(core, namespace, pod) == [
        f"dagster, version {DAGSTER_VERSION}",
        "imports ok",
        "floe-deploy ok",
        "components",
        "floe-common",
        "floe-jobs",
        "floe-platform",
    ]


def test_a_pod_reaches_a_python_http_server_by_its_service_name(
    core: client.CoreV1Api, namespace: str
):
    # The Python image's own HTTP server behind a Service; a client in the same image that
    # knows only the short name: glibc's resolver, the pod's search path and the cluster DNS,
    # then kube-proxy's rules to the server pod.
    serve = "mkdir -p /tmp/www && echo hello from python > /tmp/www/index.html && "
    serve += "exec python3 -m http.server 8000 --directory /tmp/www"
    ready = {"httpGet": {"path": "/", "port": 8000}, "periodSeconds": 1}
    server = pod_on_the_real_node(
        "pyweb",
        serve,
        **_tmp_volume({"image": PYTHON_IMAGE, "readinessProbe": ready}),
        securityContext=LOCKED_DOWN,
    )
    server["metadata"]["labels"] = {"app": "pyweb"}
    core.create_namespaced_pod(namespace, _with_volumes(server, TMP))
    _service(core, namespace, "pyweb", 8000)
    fetch = (
        "import urllib.request as u; print(u.urlopen('http://pyweb:8000/').read().decode().strip())"
    )
    job = job_on_the_real_node(
        "fetch", f'python3 -c "{fetch}"', image=PYTHON_IMAGE, securityContext=LOCKED_DOWN
    )
    pod = run_job(core, namespace, job, timeout=120)
    assert pod_log(core, namespace, pod) == ["hello from python"]


def _secret(core: client.CoreV1Api, namespace: str, name: str, data: dict[str, str]) -> None:
    core.create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": name},
            "data": {key: base64.b64encode(value.encode()).decode() for key, value in data.items()},
        },
    )


def _password_and_init_scripts(
    core: client.CoreV1Api, namespace: str, name: str, password: str, scripts: dict[str, str]
) -> None:
    """The Secret ``<name>-auth`` (key ``password``) and the ConfigMap ``<name>-init`` of init
    scripts a PostgreSQL server of the tests mounts."""
    _secret(core, namespace, f"{name}-auth", {"password": password})
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": f"{name}-init"}, "data": scripts}
    )


def test_postgres_honours_the_official_images_environment_and_init_scripts(
    core: client.CoreV1Api, namespace: str
):
    # As the platform chart runs it: uid 999, read-only root, the socket directory and PGDATA
    # on volumes; user, password (from a Secret, as a file) and database from the environment;
    # an init script from a ConfigMap. A client then logs in over the Service by password.
    seed = "CREATE TABLE seeded (note text); INSERT INTO seeded VALUES ('made by the init script');"
    _password_and_init_scripts(core, namespace, "db", "s3cret-for-the-test", {"10-seed.sql": seed})
    as_postgres = {**LOCKED_DOWN, "runAsUser": 999, "runAsGroup": 999}
    server = pod_on_the_real_node(
        "db",
        "exec docker-entrypoint.sh postgres",
        image=POSTGRES_IMAGE,
        securityContext=as_postgres,
        env=[
            {"name": "POSTGRES_USER", "value": "floe"},
            {"name": "POSTGRES_DB", "value": "dagster"},
            {"name": "POSTGRES_PASSWORD_FILE", "value": "/auth/password"},
            # Below the volume's root, which initdb may not chmod (as the chart does).
            {"name": "PGDATA", "value": "/var/lib/postgresql/data/pgdata"},
        ],
        readinessProbe={
            "exec": {"command": ["pg_isready", "-U", "floe", "-d", "dagster", "-h", "127.0.0.1"]},
            "periodSeconds": 1,
        },
        volumeMounts=[
            {"name": "data", "mountPath": "/var/lib/postgresql/data"},
            {"name": "run", "mountPath": "/var/run/postgresql"},
            {"name": "tmp", "mountPath": "/tmp"},
            {"name": "init", "mountPath": "/docker-entrypoint-initdb.d", "readOnly": True},
            {"name": "auth", "mountPath": "/auth", "readOnly": True},
        ],
    )
    server["metadata"]["labels"] = {"app": "db"}
    server["spec"]["securityContext"] = {"fsGroup": 999}
    _with_volumes(
        server,
        {"name": "data", "emptyDir": {}},
        {"name": "run", "emptyDir": {}},
        TMP,
        {"name": "init", "configMap": {"name": "db-init"}},
        {"name": "auth", "secret": {"secretName": "db-auth"}},
    )
    core.create_namespaced_pod(namespace, server)
    _service(core, namespace, "db", 5432)
    query = "SELECT current_user || ' in ' || current_database() || ': ' || note FROM seeded"
    client_job = job_on_the_real_node(
        "psql",
        # kube-proxy programs the node a moment after the endpoint is ready: wait for the
        # server through the Service (quietly, bounded) before the one query.
        "for i in $(seq 60); do pg_isready -q -h db -p 5432 && break; sleep 0.5; done; "
        f'psql -h db -U floe -d dagster -tA -c "{query}"',
        image=POSTGRES_IMAGE,
        securityContext=LOCKED_DOWN,
        env=[
            {
                "name": "PGPASSWORD",
                "valueFrom": {"secretKeyRef": {"name": "db-auth", "key": "password"}},
            }
        ],
    )
    pod = run_job(core, namespace, client_job, timeout=120)
    assert pod_log(core, namespace, pod) == ["floe in dagster: made by the init script"]
    server_log = core.read_namespaced_pod_log("db", namespace)
    assert "PostgreSQL init process complete; ready for start up." in server_log
    assert "s3cret-for-the-test" not in server_log


def test_postgres_started_as_root_reads_a_root_only_secret_and_runs_shell_init_scripts(
    core: client.CoreV1Api, namespace: str
):
    # The official image's other path: started as root, it reads the password file (a Secret
    # only root may read) before it becomes postgres; a *.sh init script is sourced, an
    # executable one run; POSTGRES_INITDB_ARGS reaches initdb.
    note = 'echo "init script as $(id -un) for $POSTGRES_DB"'
    _password_and_init_scripts(
        core, namespace, "rootdb", "another-test-password", {"20-note.sh": note}
    )
    server = pod_on_the_real_node(
        "rootdb",
        "exec docker-entrypoint.sh postgres",
        image=POSTGRES_IMAGE,
        env=[
            {"name": "POSTGRES_PASSWORD_FILE", "value": "/auth/password"},
            {"name": "POSTGRES_INITDB_ARGS", "value": "--data-checksums"},
        ],
        readinessProbe={
            "exec": {"command": ["pg_isready", "-U", "postgres", "-h", "127.0.0.1"]},
            "periodSeconds": 1,
        },
        volumeMounts=[
            {"name": "init", "mountPath": "/docker-entrypoint-initdb.d", "readOnly": True},
            {"name": "auth", "mountPath": "/auth", "readOnly": True},
        ],
    )
    server["metadata"]["labels"] = {"app": "rootdb"}
    _with_volumes(
        server,
        {"name": "init", "configMap": {"name": "rootdb-init"}},
        {"name": "auth", "secret": {"secretName": "rootdb-auth", "defaultMode": 0o400}},
    )
    core.create_namespaced_pod(namespace, server)
    _service(core, namespace, "rootdb", 5432)
    log = core.read_namespaced_pod_log("rootdb", namespace)
    assert "init script as postgres for postgres" in log
    assert "Data page checksums are enabled." in log
    assert "another-test-password" not in log


def test_postgres_refuses_to_initialize_without_a_password(core: client.CoreV1Api, namespace: str):
    job = job_on_the_real_node(
        "nopass",
        "exec docker-entrypoint.sh postgres",
        image=POSTGRES_IMAGE,
    )
    pod = run_job(core, namespace, job, timeout=120)
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == 1
    assert "superuser password is not specified" in "\n".join(pod_log(core, namespace, pod))


def test_the_dbt_image_runs_a_duckdb_model(core: client.CoreV1Api, namespace: str):
    # A one-model project from a ConfigMap (read-only), built into a DuckDB file on a volume,
    # as the floe-jobs chart runs dbt: a locked-down container, target and logs under /tmp.
    project = {
        "dbt_project.yml": "name: probe\nversion: '1.0'\nprofile: probe\n",
        "profiles.yml": "probe:\n  target: dev\n  outputs:\n    dev:\n      type: duckdb\n"
        "      path: /tmp/probe.duckdb\n",
        "one.sql": "select 42 as answer",
    }
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "dbt-project"}, "data": project}
    )
    script = (
        'python3 -c "from importlib.metadata import version as v; '
        "print(*(v(p) for p in ('dbt-core', 'dbt-duckdb', 'dbt-postgres', 'dagster-pipes')))\"; "
        "dbt run --project-dir /project --profiles-dir /project --quiet && echo ran; "
        "python3 -c \"import duckdb; print(duckdb.connect('/tmp/probe.duckdb')"
        ".sql('select answer from one').fetchall())\""
    )
    container = _tmp_volume({"image": DBT_IMAGE, "securityContext": LOCKED_DOWN})
    container["volumeMounts"].append({"name": "project", "mountPath": "/project"})
    container["env"] = [
        {"name": "HOME", "value": "/tmp"},
        {"name": "DBT_TARGET_PATH", "value": "/tmp/target"},
        {"name": "DBT_LOG_PATH", "value": "/tmp/logs"},
        {"name": "DBT_SEND_ANONYMOUS_USAGE_STATS", "value": "false"},
    ]
    job = job_on_the_real_node("dbt", script, **container)
    # dbt looks for models under models/: the ConfigMap's keys are mapped there.
    _with_volumes(
        job,
        TMP,
        {
            "name": "project",
            "configMap": {
                "name": "dbt-project",
                "items": [
                    {"key": "dbt_project.yml", "path": "dbt_project.yml"},
                    {"key": "profiles.yml", "path": "profiles.yml"},
                    {"key": "one.sql", "path": "models/one.sql"},
                ],
            },
        },
    )
    pod = run_job(core, namespace, job, timeout=180)
    versions = " ".join(pin.split("==")[1] for pin in DBT_STACK)
    assert pod_log(core, namespace, pod) == [versions, "ran", "[(42,)]"]
