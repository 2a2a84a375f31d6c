"""Materialize the whole Dagster graph for one environment and print what it did: each release's
decision and health, then each dbt model's Job.

Runs are recorded in the Dagster instance at $DAGSTER_HOME, so `dagster dev -w workspace.yaml`
with the same DAGSTER_HOME shows them in the UI afterwards.

    DAGSTER_HOME=$PWD/.dagster_home FLOE_KUBECONFIG=... python examples/demo.py --env dev
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
from pathlib import Path

import dagster as dg

from floe_deploy_assets.defs.build import build_definitions

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
        event.asset_key.to_user_string(): {
            key: value.value for key, value in event.materialization.metadata.items()
        }
        for event in result.get_asset_materialization_events()
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", default="floe-deploy.yaml")
    parser.add_argument("--env", default="dev")
    args = parser.parse_args()
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
    for key, metadata in _materialized(models).items():
        print(
            f"  {key}: {metadata['phase']} as Job {metadata['job_name']} "
            f"in {metadata.get('duration_seconds', '?')} s"
        )
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
