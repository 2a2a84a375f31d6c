"""Benchmark: DataProductJobs against the local control plane (issue 6).

Two runs of 200 synthetic models (the simulated kubelet runs each pod for 1 s), each in a fresh
namespace with the floe-jobs release installed:

1. 200 independent models at concurrency 50;
2. a DAG of depth 10: 10 levels of 20 models, each depending on two models of the level above.

For each: wall time, Jobs started per second, API calls per Job (counted in the runner's
ApiClient, by method and resource), the delay between a Job's completion and the runner seeing
it, and peak RSS. ``lastTransitionTime`` has one-second resolution (truncated), so the delay
against it overstates the true one by between 0 and 1 s; so a reference observer (a plain watch
on the namespace's Jobs, in a thread of its own, doing nothing else) stamps when each Job's
terminal condition reaches a client, and the runner's lag behind that observer is reported too:
that lag is what the runner adds to the API server's own watch latency. Also: the time to render
one model's Job through ``JobTemplate`` against ``helm.render.render_chart``.

    .venv/bin/python -m localcluster --name jobs-helper --port-base 16500 up
    .venv/bin/python benchmarks/bench_data_product_jobs.py \\
        --kubeconfig $(.venv/bin/python -m localcluster --name jobs-helper --port-base 16500 \\
        kubeconfig)

Every namespace it creates is deleted at the end.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import helm_python
from kubernetes import client, watch
from kubernetes import config as kube_config

from floe_deploy_assets.helm.inputs import values_generator
from floe_deploy_assets.helm.render import build_dependencies, render_chart
from floe_deploy_assets.jobs.runner import JobRunner, RunnerSettings, RunReport
from floe_deploy_assets.jobs.spec import JobTemplate, with_job_settings
from floe_deploy_assets.models.config import load_deployment_config
from floe_deploy_assets.models.products import load_products

ROOT = Path(__file__).resolve().parents[1]
CONFIG = load_deployment_config(ROOT / "floe-deploy.yaml")
CHART = CONFIG.chart_path("jobs")
RELEASE = "floe-jobs"
SETTINGS = RunnerSettings(concurrency=50, schedule_deadline=120, start_deadline=120)


def jobs_values() -> dict:
    values = values_generator(CONFIG, load_products(CONFIG), "dev", "jobs").helm_values()
    # Finished Jobs go after a minute, so the cluster does not carry 400 of them.
    return with_job_settings(values, ttlSecondsAfterFinished=60)


def independent(count: int) -> dict[str, tuple[str, ...]]:
    return {f"model_{i:03d}": () for i in range(count)}


def layered_dag(levels: int, width: int) -> dict[str, tuple[str, ...]]:
    """``levels`` levels of ``width`` models; each depends on two models of the level above."""
    models: dict[str, tuple[str, ...]] = {}
    for level in range(levels):
        for i in range(width):
            above = (
                ()
                if level == 0
                else (f"l{level - 1:02d}_m{i:02d}", f"l{level - 1:02d}_m{(i + 1) % width:02d}")
            )
            models[f"l{level:02d}_m{i:02d}"] = above
    return models


@contextmanager
def release_namespace(api: client.ApiClient, kubeconfig: Path, values: dict) -> Iterator[str]:
    core = client.CoreV1Api(api)
    name = f"bench-jobs-{uuid.uuid4().hex[:6]}"
    core.create_namespace({"metadata": {"name": name}})
    helm = helm_python.Config(kubeconfig_path=str(kubeconfig), namespace=name)
    try:
        deadline = time.monotonic() + 30
        selector = "metadata.name=default"
        while not any(
            account.secrets
            for account in core.list_namespaced_service_account(name, field_selector=selector).items
        ):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the default ServiceAccount token in namespace {name}")
            time.sleep(0.2)
        helm.install(str(CHART), RELEASE, values, namespace=name, wait="watcher", timeout=60)
        yield name
    finally:
        helm.close()
        core.delete_namespace(name, propagation_policy="Background")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


class ReferenceObserver:
    """A bare Job watch: when each Job's Complete or Failed condition first reaches a client."""

    def __init__(self, api: client.ApiClient, namespace: str):
        self.seen: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._watch, args=(client.BatchV1Api(api), namespace), daemon=True
        )
        self._thread.start()

    def _watch(self, batch: client.BatchV1Api, namespace: str) -> None:
        while not self._stop.is_set():
            for event in watch.Watch().stream(
                batch.list_namespaced_job, namespace, timeout_seconds=5
            ):
                job = event["object"]
                ended = any(
                    c.type in ("Complete", "Failed") and c.status == "True"
                    for c in job.status.conditions or []
                )
                if ended:
                    self.seen.setdefault(job.metadata.name, time.time())
                if self._stop.is_set():
                    return

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def report(title: str, result: RunReport, reference: dict[str, float]) -> None:
    jobs = len(result.results)
    outcomes = statistics.multimode([r.phase for r in result.results])
    delays = [r.seen_delay for r in result.results if r.seen_delay is not None]
    calls = sum(result.api_calls.values())
    print(f"\n== {title}")
    print(f"  outcome: {sum(r.phase == 'Succeeded' for r in result.results)}/{jobs} succeeded")
    if outcomes != ["Succeeded"]:
        for failed in result.failed[:5]:
            print(f"    {failed.model}: {failed.reason}: {failed.message}")
    created = sorted(r.created_at for r in result.results if r.created_at is not None)
    burst = created[: SETTINGS.concurrency]
    print(f"  wall time: {result.wall_seconds:.1f} s")
    print(
        f"  Jobs started/s: {jobs / result.wall_seconds:.1f} over the run, "
        f"{len(burst) / max(burst[-1] - burst[0], 1e-3):.1f} in the first {len(burst)}"
    )
    per_job = calls / jobs
    print(f"  API calls: {calls} ({per_job:.2f} per Job): {dict(sorted(result.api_calls.items()))}")
    if delays:
        print(
            "  completion -> seen (upper bound, 1 s resolution): "
            f"median {statistics.median(delays):.2f} s, p95 {percentile(delays, 0.95):.2f} s, "
            f"max {max(delays):.2f} s (n={len(delays)})"
        )
    lags = [
        (r.created_at or 0) + (r.duration or 0) - reference[r.job_name]
        for r in result.results
        if r.job_name in reference and r.duration is not None and r.created_at is not None
    ]
    if lags:
        print(
            "  runner sees a completion after the reference watch: "
            f"median {statistics.median(lags) * 1e3:.0f} ms, p95 "
            f"{percentile(lags, 0.95) * 1e3:.0f} ms, max {max(lags) * 1e3:.0f} ms (n={len(lags)})"
        )
    durations = [r.duration for r in result.results if r.duration is not None]
    print(f"  per-Job creation -> seen ended: median {statistics.median(durations):.2f} s")


def run_scenario(
    api: client.ApiClient, kubeconfig: Path, values: dict, models: Mapping[str, tuple[str, ...]]
) -> tuple[RunReport, dict[str, float]]:
    with (
        release_namespace(api, kubeconfig, values) as namespace,
        JobTemplate(CHART, values, release_name=RELEASE, namespace=namespace) as template,
    ):
        reference = ReferenceObserver(
            kube_config.new_client_from_config(str(kubeconfig)), namespace
        )
        try:
            return JobRunner(api, template, SETTINGS).run(models, uuid.uuid4().hex[:8]), (
                reference.seen
            )
        finally:
            reference.stop()


def time_rendering(values: dict, count: int = 20) -> None:
    build_dependencies(CHART)
    with JobTemplate(CHART, values, release_name=RELEASE, namespace="bench") as template:
        start = time.perf_counter()
        for i in range(count):
            template.render("stg_orders", f"r{i}")
        ours = (time.perf_counter() - start) / count
    start = time.perf_counter()
    for i in range(count):
        run = {"model": "stg_orders", "jobName": f"stg-orders-r{i}", "runId": f"r{i}"}
        render_chart(CHART, {**values, "run": run}, release_name=RELEASE, namespace="bench")
    full = (time.perf_counter() - start) / count
    print(
        f"render one model's Job: JobTemplate {ours * 1e3:.1f} ms, render_chart {full * 1e3:.1f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--models", type=int, default=200)
    args = parser.parse_args()
    api = kube_config.new_client_from_config(str(args.kubeconfig))
    values = jobs_values()
    time_rendering(values)
    report(
        f"{args.models} independent models, concurrency {SETTINGS.concurrency}",
        *run_scenario(api, args.kubeconfig, values, independent(args.models)),
    )
    report(
        f"{args.models}-model DAG of depth 10, concurrency {SETTINGS.concurrency}",
        *run_scenario(api, args.kubeconfig, values, layered_dag(10, args.models // 10)),
    )
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"\npeak RSS of this process: {peak:.0f} MiB")


if __name__ == "__main__":
    main()
