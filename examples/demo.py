"""Materialize the whole Dagster graph for one environment and print what it did: each release's
decision and health, then each dbt model's Job, with dbt's own results and tests.

With a configuration whose platform hosts the graph itself (``dagster.floeDeploy.enabled`` in
its overrides, as examples/real-node/floe-deploy.yaml), the configuration is first written to
the ConfigMap the code location in the cluster reads, its paths moved to /opt/floe where the
Python image has the same files; afterwards the in-cluster Dagster UI's address is printed.
``FLOE_DEMO_STARTED`` (seconds since the epoch; `make demo` sets it) is when the demo started:
the time to the first model that succeeded is counted from it.

Runs are recorded in the Dagster instance at $DAGSTER_HOME, so `dagster dev -w workspace.yaml`
with the same DAGSTER_HOME shows them in the UI afterwards.

    DAGSTER_HOME=$PWD/.dagster_home FLOE_KUBECONFIG=... python examples/demo.py --env dev \
        [--config examples/real-node/floe-deploy.yaml]
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path, PurePosixPath

import dagster as dg
import yaml
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException

from floe_deploy_assets.defs.build import build_definitions
from floe_deploy_assets.models.config import DeploymentConfig, load_deployment_config
from localcluster.images import FLOE_DIR

# Run monitoring (the daemon of `make ui`): a run whose process was killed is marked failed
# instead of staying STARTED. The default run launcher cannot ask whether a run's process is
# alive, so that happens at the run's maximum runtime: an hour, well beyond a deploy (two
# releases, each at most its 300 s action, a 300 s rollback and a 60 s lock wait) or the demo's
# models. A run not started within 180 s, or not cancelled within 180 s, is failed too. A run
# stopped by SIGTERM or Ctrl-C marks itself failed at once.
RUN_MONITORING = """\
run_monitoring:
  enabled: true
  start_timeout_seconds: 180
  cancel_timeout_seconds: 180
  max_runtime_seconds: 3600
  poll_interval_seconds: 60
"""
# One run at a time per pool: two runs never upgrade the same release at once.
INSTANCE_SETTINGS = (
    """\
concurrency:
  pools:
    default_limit: 1
telemetry:
  enabled: false
"""
    + RUN_MONITORING
)


def _instance() -> dg.DagsterInstance:
    home = Path(os.environ.setdefault("DAGSTER_HOME", str(Path(".dagster_home").resolve())))
    home.mkdir(parents=True, exist_ok=True)
    settings = home / "dagster.yaml"
    if not settings.exists():
        settings.write_text(INSTANCE_SETTINGS)
    elif "run_monitoring:" not in settings.read_text():  # written by an earlier demo
        settings.write_text(settings.read_text().rstrip("\n") + "\n" + RUN_MONITORING)
    return dg.DagsterInstance.get()


def _materialized(result: dg.ExecuteInProcessResult) -> dict[str, dict[str, object]]:
    return {
        event.materialization.asset_key.to_user_string(): {
            key: value.value for key, value in event.materialization.metadata.items()
        }
        for event in result.get_asset_materialization_events()
    }


PROJECT_ROOT = Path(__file__).resolve().parents[1]
WEBSERVER = "floe-platform-dagster-webserver"


def _core(deployment: DeploymentConfig, environment: str) -> client.CoreV1Api:
    context = deployment.mapping_for(environment).cluster
    kubeconfig = os.environ.get("FLOE_KUBECONFIG")
    return client.CoreV1Api(config.new_client_from_config(kubeconfig, context=context))


def _host_the_graph(deployment: DeploymentConfig, environment: str) -> bool:
    """Write the configuration the hosted code location reads, when the platform hosts it."""
    floe_deploy = deployment.overrides_for("platform", environment).get("dagster", {})
    floe_deploy = floe_deploy.get("floeDeploy", {})
    if not floe_deploy.get("enabled"):
        return False
    name = floe_deploy.get("configMap", "floe-deploy-config")
    namespace = deployment.mapping_for(environment).namespace_for(environment)
    document = deployment.relocated(PROJECT_ROOT, PurePosixPath(FLOE_DIR))
    body = {"metadata": {"name": name}, "data": {"floe-deploy.yaml": yaml.safe_dump(document)}}
    core = _core(deployment, environment)
    try:
        core.create_namespaced_config_map(namespace, body)
    except ApiException as error:
        if error.status != 409:
            raise
        core.replace_namespaced_config_map(name, namespace, body)
    print(f"the platform hosts the graph: its configuration is ConfigMap {namespace}/{name}")
    return True


def _print_models(models: dg.ExecuteInProcessResult) -> None:
    materialized = _materialized(models)
    for key, metadata in materialized.items():
        dbt = ", ".join(
            f"{name} {metadata[name]}"
            for name in ("dbt_status", "rows_affected", "execution_time_seconds")
            if name in metadata
        )
        print(
            f"  {key}: {metadata['phase']} as Job {metadata['job_name']} "
            f"in {metadata.get('duration_seconds', '?')} s" + (f" (dbt: {dbt})" if dbt else "")
        )
    for check in models.get_asset_check_evaluations():
        mark = "passed" if check.passed else f"FAILED ({check.severity.value})"
        print(f"  dbt test {check.asset_key.path[-1]}:{check.check_name} {mark}")
    started = os.environ.get("FLOE_DEMO_STARTED")
    ends = [end for m in materialized.values() if isinstance(end := m.get("end_time"), float)]
    if started and ends:
        print(f"the first model succeeded {min(ends) - float(started):.0f} s after the demo began")


def _print_ui(deployment: DeploymentConfig, environment: str) -> None:
    namespace = deployment.mapping_for(environment).namespace_for(environment)
    service = _core(deployment, environment).read_namespaced_service(WEBSERVER, namespace)
    port = service.spec.ports[0].port
    print(
        f"\nThe platform's own Dagster UI (its code location is this graph, deploying from "
        f"inside): http://{service.spec.cluster_ip}:{port} from this machine (kube-proxy's "
        "rules carry it to the webserver on the real node)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="floe-deploy.yaml")
    parser.add_argument("--env", default="dev")
    args = parser.parse_args()
    deployment = load_deployment_config(args.config)
    hosted = _host_the_graph(deployment, args.env)
    defs = build_definitions(args.config, kubeconfig=os.environ.get("FLOE_KUBECONFIG"))
    instance = _instance()

    print(f"== deploy_platform [{args.env}] ==")
    deployed = defs.resolve_job_def("deploy_platform").execute_in_process(
        partition_key=args.env, instance=instance, raise_on_error=False
    )
    assets = _materialized(deployed)
    for check in deployed.get_asset_check_evaluations():
        mark = "passed" if check.passed else "FAILED"
        print(f"  check {check.asset_key.to_user_string()}:{check.check_name} {mark}")
    for release in ("platform_release", "jobs_release"):
        metadata = assets.get(release)
        if metadata is None:
            print(f"  {release}: not materialized (see the run's failure)")
            continue
        print(
            f"  {release}: {metadata['action']} -> revision {metadata['revision']} "
            f"{metadata['helm_status']}: {metadata['reason']}"
        )
        print("    " + str(metadata["components"]).replace("\n", "\n    "))
    if not deployed.success:
        print(f"deploy_platform failed (run {deployed.run_id}); nothing more runs")
        return 1

    print(f"== run_data_products [{args.env}] ==")
    models = defs.resolve_job_def("run_data_products").execute_in_process(
        partition_key=args.env, instance=instance, raise_on_error=False
    )
    _print_models(models)
    if hosted:
        _print_ui(deployment, args.env)
    if not models.success:
        print(f"run_data_products failed (run {models.run_id}): see its logs in the UI")
        return 1
    print("\nOpen the Dagster UI (with the daemon: sensors and schedules) on these runs: make ui")
    return 0


def _stop(signum: int, frame: object) -> None:
    # As Ctrl-C: the in-process run in progress records itself failed, then the demo ends.
    raise KeyboardInterrupt(signal.Signals(signum).name)


if __name__ == "__main__":
    signal.signal(signal.SIGTERM, _stop)
    try:
        sys.exit(main())
    except KeyboardInterrupt as stopped:
        name = str(stopped) if str(stopped) in signal.Signals.__members__ else "SIGINT"
        print(f"demo stopped by {name}; the run in progress is recorded failed", file=sys.stderr)
        sys.exit(128 + signal.Signals[name])
