"""Benchmark: how long a workload fault takes to become a failed ``release_healthy`` check, and a
recovery a passed one, where users run the sensors (issue 11): dagster-daemon and
dagster-webserver on workspace.yaml, a fresh DAGSTER_HOME (SQLite or PostgreSQL storage), the
dev environment deployed into a namespace of a local control plane you started.

Each cycle puts a crash loop on the Dagster webserver's pod template (a rollout of faulty pods,
through the simulated kubelet's annotation), waits until the webserver's GraphQL API shows a new
failed result for dev, takes the fault off, and waits for a new passed one. Latencies are
measured from the patch to the result being visible in the UI's API; the anchor is the issue's
target of two sensor ticks (the ratio printed is latency / (2 x interval)). Peak memory is the
max RSS of this process, and the peak RSS (VmHWM) of each process of the daemon's group (the
daemon and its code server), read before they stop.

Run from the repository root (it uses the tests' support code):

    .venv/bin/python -m localcluster --name bench --port-base 16540 up
    .venv/bin/python -m benchmarks.bench_health_check_latency \\
        --kubeconfig $(.venv/bin/python -m localcluster --name bench --port-base 16540 kubeconfig)

The namespace it creates is deleted at the end.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import tempfile
import time
import uuid
from functools import partial
from pathlib import Path

from kubernetes import client
from kubernetes import config as kube_config

from tests.support.dagster_home import dagster_yaml
from tests.support.dagster_processes import daemon, webserver
from tests.support.dagster_ui import DagsterUI
from tests.support.deployment import create_operator_secrets, deploy_through_graph, write_config
from tests.support.objects import set_fault
from tests.support.postgres import create_database, postgres_server
from tests.support.waits import wait_for

WEBSERVER = "floe-platform-dagster-webserver"
CHECK = ("platform_release", "release_healthy", "dev")


def _new_result(ui: DagsterUI, status: str, after: str | None) -> dict | None:
    latest = ui.latest_check(*CHECK)
    if latest and latest["status"] == status and latest["runId"] != after:
        return latest
    return None


def _peak_rss_mib(group: int) -> dict[int, float]:
    """VmHWM (peak RSS) of each live process of a process group, by pid."""
    peaks = {}
    for entry in Path("/proc").iterdir():
        try:
            if not entry.name.isdigit() or os.getpgid(int(entry.name)) != group:
                continue
            for line in (entry / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peaks[int(entry.name)] = int(line.split()[1]) / 1024
        except (OSError, ProcessLookupError):
            continue  # gone meanwhile
    return peaks


def _has_token(core: client.CoreV1Api, namespace: str) -> bool:
    found = core.list_namespaced_service_account(namespace, field_selector="metadata.name=default")
    return bool(found.items and found.items[0].secrets)


def measure(kubeconfig: Path, home: Path, cycles: int, interval: int) -> dict[str, list[float]]:
    api = kube_config.new_client_from_config(str(kubeconfig))
    core = client.CoreV1Api(api)
    namespace = f"bench-health-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": namespace}})
    try:
        wait_for(
            lambda: _has_token(core, namespace),
            timeout=30,
            reason="the default ServiceAccount's token (pods need it)",
        )
        create_operator_secrets(core, namespace)
        config = write_config(home, kubeconfig, namespace)
        deploy_through_graph(config, kubeconfig, home)
        env = {
            "FLOE_DEPLOY_CONFIG": str(config),
            "FLOE_KUBECONFIG": str(kubeconfig),
            "FLOE_SENSOR_INTERVAL_SECONDS": str(interval),
        }
        latencies: dict[str, list[float]] = {"fault -> failed": [], "recovery -> passed": []}
        with webserver(home, env) as url, daemon(home, env) as daemon_process:
            ui = DagsterUI(url)
            last = wait_for(
                lambda: _new_result(ui, "SUCCEEDED", None),
                timeout=180,
                reason="the first passed release_healthy of dev",
            )["runId"]
            for cycle in range(cycles):
                for fault, status, label in (
                    ("crash-loop", "FAILED", "fault -> failed"),
                    (None, "SUCCEEDED", "recovery -> passed"),
                ):
                    started = time.monotonic()
                    set_fault(api, namespace, WEBSERVER, fault)
                    last = wait_for(
                        partial(_new_result, ui, status, last),
                        timeout=300,
                        reason=f"a {status} release_healthy of dev (cycle {cycle + 1})",
                    )["runId"]
                    latencies[label].append(time.monotonic() - started)
                    print(f"cycle {cycle + 1}: {label} {latencies[label][-1]:.1f} s", flush=True)
            peaks = _peak_rss_mib(os.getpgid(daemon_process.pid))
            print(
                "peak RSS of the daemon's processes (daemon, code server; run workers have "
                f"exited): largest {max(peaks.values()):.0f} MiB, together "
                f"{sum(peaks.values()):.0f} MiB"
            )
        return latencies
    finally:
        core.delete_namespace(namespace, propagation_policy="Background")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--cycles", type=int, default=5)
    parser.add_argument("--interval", type=int, default=5, help="sensor tick interval, seconds")
    parser.add_argument("--storage", choices=("sqlite", "postgres"), default="sqlite")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        if args.storage == "postgres":
            with postgres_server() as url:
                database = create_database(url, "bench")
                (home / "dagster.yaml").write_text(dagster_yaml("postgres", database))
                latencies = measure(args.kubeconfig, home, args.cycles, args.interval)
        else:
            (home / "dagster.yaml").write_text(dagster_yaml("sqlite"))
            latencies = measure(args.kubeconfig, home, args.cycles, args.interval)
    anchor = 2 * args.interval
    print(f"\nstorage {args.storage}, sensor interval {args.interval} s, {args.cycles} cycles")
    print(f"{'':22} {'median':>8} {'min':>8} {'max':>8} {'median / 2 ticks':>17}")
    for label, values in latencies.items():
        median = statistics.median(values)
        print(
            f"{label:22} {median:7.1f}s {min(values):7.1f}s {max(values):7.1f}s "
            f"{median / anchor:16.2f}x"
        )
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of this process (the in-process deploy included): {own:.0f} MiB")


if __name__ == "__main__":
    main()
