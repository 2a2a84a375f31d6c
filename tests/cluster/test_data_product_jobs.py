"""DataProductJobs against the local control plane: order, failures and their reasons, reruns.

The simulated kubelet plays each model's pod as its ``sim.kubelet.floe.dev/*`` annotations say;
the runner puts them on a model's pod template (``JobTemplate(pod_annotations=...)``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import helm_python
import pytest
from kubernetes import client, config

from floe_deploy_assets.jobs.plan import Outcome
from floe_deploy_assets.jobs.runner import JobRunner, RunnerSettings
from floe_deploy_assets.jobs.spec import RUN_LABEL, JobTemplate, with_job_settings
from tests.conftest import KubeCluster
from tests.support.charts import CONFIG, generated_values, install_jobs_release
from tests.support.faultproxy import Fault, FaultProxy
from tests.support.waits import wait_for

pytestmark = pytest.mark.cluster
CHART = CONFIG.chart_path("jobs")
RELEASE = "floe-jobs"
SIM = "sim.kubelet.floe.dev/"
CHAIN = {"raw_orders": (), "clean_orders": ("raw_orders",), "order_mart": ("clean_orders",)}
# Short deadlines: the faults below must end well within a test's few seconds.
FAST = RunnerSettings(
    concurrency=5, schedule_deadline=3, start_deadline=10, finish_grace=10, tick=0.2
)


@pytest.fixture
def release(helm: helm_python.Config, kube_cluster: KubeCluster, namespace: str) -> str:
    """The floe-jobs release (ServiceAccount, artifacts and profiles ConfigMaps) the Jobs use,
    and the operator's Secret their dbt profiles read."""
    install_jobs_release(helm, kube_cluster.core, namespace)
    return namespace


def _template(
    namespace: str,
    annotations: Mapping[str, Mapping[str, str]] | None = None,
    values: Mapping[str, Any] | None = None,
) -> JobTemplate:
    return JobTemplate(
        CHART,
        values or generated_values("jobs"),
        release_name=RELEASE,
        namespace=namespace,
        pod_annotations=annotations,
    )


@pytest.fixture
def run_models(kube_cluster: KubeCluster) -> Iterator:
    templates: list[JobTemplate] = []

    def run(namespace: str, models, run_id: str, **template_args):
        template = _template(namespace, **template_args)
        templates.append(template)
        return JobRunner(kube_cluster.api, template, FAST).run(models, run_id)

    yield run
    for template in templates:
        template.close()


def _jobs(kube_cluster: KubeCluster, namespace: str, selector: str) -> list[client.V1Job]:
    return (
        client.BatchV1Api(kube_cluster.api)
        .list_namespaced_job(namespace, label_selector=selector)
        .items
    )


def test_a_chain_of_three_models_runs_in_order_through_one_watch(
    kube_cluster: KubeCluster, release: str, run_models
):
    report = run_models(release, CHAIN, "chain1")

    assert [(r.model, r.phase) for r in report.results] == [
        ("raw_orders", "Succeeded"),
        ("clean_orders", "Succeeded"),
        ("order_mart", "Succeeded"),
    ]
    first, second, third = (r.job.status for r in report.results)
    assert first.completion_time <= second.start_time
    assert second.completion_time <= third.start_time
    # One Job and one pod watch per namespace, whatever the number of Jobs; no per-Job reads.
    assert report.api_calls["POST jobs"] == 3
    assert not any(call.startswith("GET jobs/") for call in report.api_calls)
    labels = _jobs(kube_cluster, release, f"{RUN_LABEL}=chain1")[0].metadata.labels
    assert {"floe.dev/environment", "floe.dev/product", "floe.dev/model", RUN_LABEL} <= set(labels)
    assert all(r.seen_delay is not None and r.seen_delay < 2 for r in report.results)


def test_a_failing_middle_model_fails_with_its_logs_and_skips_its_downstream_model(
    kube_cluster: KubeCluster, release: str, run_models
):
    log = "\n".join(f"progress {i}" for i in range(200)) + "\nERROR relation orders is missing"
    failing = {"clean_orders": {SIM + "exit-code": "3", SIM + "logs": log}}

    report = run_models(release, CHAIN, "fail1", annotations=failing)

    assert [r.phase for r in report.results] == ["Succeeded", "Failed", "Skipped"]
    failed = report.result("clean_orders")
    assert (failed.reason, failed.job.status.exit_code) == ("Error", 3)
    logs = failed.job.status.logs
    assert logs.rstrip().endswith("ERROR relation orders is missing")
    assert len(logs.encode()) <= FAST.log_bytes and logs.startswith("progress")
    assert report.result("order_mart").message == "upstream model clean_orders failed"

    # The same run again: the failed Job is adopted, not created twice.
    again = run_models(release, {"clean_orders": ()}, "fail1", annotations=failing)
    assert again.result("clean_orders").adopted
    assert again.result("clean_orders").phase == "Failed"
    assert "POST jobs" not in again.api_calls or again.api_calls["POST jobs"] == 1
    assert len(_jobs(kube_cluster, release, f"{RUN_LABEL}=fail1,floe.dev/model=clean-orders")) == 1

    # The fault removed, a new run of only the failed model succeeds.
    rerun = run_models(release, {"clean_orders": ()}, "fail1r")
    assert [(r.model, r.phase) for r in rerun.results] == [("clean_orders", "Succeeded")]


def test_each_fault_mode_fails_with_its_reason_within_its_deadline(
    kube_cluster: KubeCluster, release: str, run_models
):
    too_big = {"requests": {"cpu": "64", "memory": "1Gi"}, "limits": {"cpu": "64", "memory": "1Gi"}}
    values = with_job_settings(generated_values("jobs"), activeDeadlineSeconds=4)
    values["models"] = [{"name": "never_scheduled", "resources": too_big}]
    faults = {
        "image_pull": {SIM + "fault": "image-pull-error"},
        "out_of_memory": {SIM + "fault": "oom-killed"},
        "crashing": {SIM + "fault": "crash-loop", SIM + "exit-code": "2", SIM + "logs": "boom"},
        "too_slow": {SIM + "run-seconds": "60"},
    }
    models = {name: () for name in ["never_scheduled", *faults]}

    report = run_models(release, models, "faults1", annotations=faults, values=values)

    outcomes = {
        r.model: (r.phase, r.reason, r.job.status.exit_code if r.job else None)
        for r in report.results
    }
    # A kubelet reports ErrImagePull, then ImagePullBackOff once it backs off; which one the
    # runner sees first depends on how soon it reads the pod (a loaded CI machine saw the second).
    # Both are the same verdict: the image cannot be pulled, so the model fails at once.
    pull_reason = outcomes["image_pull"][1]
    assert pull_reason in ("ErrImagePull", "ImagePullBackOff"), outcomes["image_pull"]
    assert outcomes == {
        "never_scheduled": ("Failed", "Unschedulable", None),
        "image_pull": ("Failed", pull_reason, None),
        "out_of_memory": ("Failed", "OOMKilled", 137),
        "crashing": ("Failed", "Error", 2),
        "too_slow": ("Failed", "DeadlineExceeded", None),
    }
    within = {"never_scheduled": 3 + 2, "image_pull": 4, "out_of_memory": 6, "crashing": 6}
    within["too_slow"] = 4 + 4
    for result in report.results:
        assert result.duration < within[result.model], (result.model, result.duration)
    assert report.result("crashing").job.status.logs.strip() == "boom"
    # The Jobs the runner failed itself are deleted with their pods: nothing lingers.
    core = kube_cluster.core
    for model in ("never_scheduled", "image_pull"):
        name = report.result(model).job_name
        wait_for(
            lambda name=name: (
                not core.list_namespaced_pod(release, label_selector=f"job-name={name}").items
            ),
            timeout=15,
            reason=f"the pod of the deleted Job {name} to be gone",
        )
    assert not report.succeeded and all(r.outcome is Outcome.FAILED for r in report.results)


INTERRUPTIBLE_RUN = """
import sys
from pathlib import Path
from kubernetes import config
from floe_deploy_assets.jobs.runner import JobRunner
from floe_deploy_assets.jobs.spec import JobTemplate
from tests.support.charts import CONFIG, generated_values
kubeconfig, namespace = sys.argv[1:3]
slow = {"slow_model": {"sim.kubelet.floe.dev/run-seconds": "120"}}
with JobTemplate(CONFIG.chart_path("jobs"), generated_values("jobs"), release_name="floe-jobs",
                 namespace=namespace, pod_annotations=slow) as template:
    JobRunner(config.new_client_from_config(kubeconfig), template).run({"slow_model": ()}, "cut1")
"""


def test_a_run_stopped_early_deletes_its_jobs(kube_cluster: KubeCluster, release: str):
    root = Path(__file__).parents[2]
    process = subprocess.Popen(
        [sys.executable, "-c", INTERRUPTIBLE_RUN, str(kube_cluster.kubeconfig), release],
        cwd=root,
        env={**os.environ, "PYTHONPATH": str(root)},
        stderr=subprocess.PIPE,
    )
    try:
        wait_for(
            lambda: _jobs(kube_cluster, release, f"{RUN_LABEL}=cut1"),
            timeout=30,
            reason="the run to create its Job",
        )
        process.send_signal(signal.SIGINT)  # Ctrl-C: the runner stops early
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    wait_for(
        lambda: not _jobs(kube_cluster, release, f"{RUN_LABEL}=cut1"),
        timeout=15,
        reason="the stopped run's Job to be deleted",
    )


def _run_through(
    proxy: FaultProxy,
    namespace: str,
    models: Mapping[str, tuple[str, ...]],
    run_id: str,
    settings: RunnerSettings = FAST,
    **template_args: Any,
):
    """A run whose every request (creates, watches, reads) goes through ``proxy``."""
    with _template(namespace, **template_args) as template:
        api = config.new_client_from_config(str(proxy.kubeconfig))
        return JobRunner(api, template, settings).run(models, run_id)


def test_past_the_grace_the_jobs_own_verdict_is_read_before_the_runner_overrides_it(
    release: str, proxy: FaultProxy
):
    """A Job watch that brings nothing (the proxy holds it) must not turn the Job controller's
    DeadlineExceeded into the runner's DeadlineNotEnforced: the runner reads the Job first."""
    proxy.add_rule("GET", r"/jobs$", Fault.delay(120), watch=True)
    values = with_job_settings(generated_values("jobs"), activeDeadlineSeconds=2)

    report = _run_through(
        proxy,
        release,
        {"too_slow": ()},
        "lag1",
        replace(FAST, finish_grace=3),
        annotations={"too_slow": {SIM + "run-seconds": "60"}},
        values=values,
    )

    result = report.result("too_slow")
    assert (result.phase, result.reason) == ("Failed", "DeadlineExceeded"), result.message
    assert report.api_calls["GET jobs/{name}"] == 1  # read once, past the deadline and grace
    assert result.duration < 2 + 3 + 4, result.duration


def test_a_blip_reading_a_failed_models_pod_and_log_is_retried_not_the_end_of_the_run(
    release: str, proxy: FaultProxy
):
    """The reads behind a failed model's verdict (its pod, the end of its log) are retried
    within their deadline, like every other request: a 503 or 500 there is not a failed run."""
    pods_of_the_job = proxy.add_rule(
        "GET", r"/pods$", Fault.unavailable(), times=2, watch=False, query="labelSelector=job-name"
    )
    log = proxy.add_rule("GET", r"/pods/[^/]+/log$", Fault.server_error(), times=2)
    failing = {"crashing": {SIM + "exit-code": "3", SIM + "logs": "boom"}}

    report = _run_through(proxy, release, {"crashing": ()}, "blip1", annotations=failing)

    result = report.result("crashing")
    assert (result.phase, result.reason, result.job.status.exit_code) == ("Failed", "Error", 3)
    assert result.job.status.logs.strip() == "boom"
    assert (pods_of_the_job.hits, log.hits) == (2, 2)
    assert [r.status for r in proxy.requests_matching("GET", r"/pods/[^/]+/log$")] == [
        500,
        500,
        200,
    ]


def test_a_job_that_ends_before_its_create_answers_is_seen_ended(release: str, proxy: FaultProxy):
    """The Job controller can fail a Job (its pod exited at once) before the answer to the
    runner's create arrives: the watch's events of it then come first, and must not be lost."""
    proxy.add_rule("POST", r"/jobs$", Fault.delay_answer(3))
    values = with_job_settings(generated_values("jobs"), activeDeadlineSeconds=5)
    failing = {"crashing": {SIM + "exit-code": "3", SIM + "logs": "boom"}}

    report = _run_through(
        proxy, release, {"crashing": ()}, "early1", annotations=failing, values=values
    )

    result = report.result("crashing")
    assert (result.phase, result.reason, result.job.status.exit_code) == ("Failed", "Error", 3)
    assert not result.adopted
    # Not at the deadline (5 s) plus the grace (10 s), when the runner would read the Job.
    assert result.duration < 3 + 3, result.duration
    assert "GET jobs/{name}" not in report.api_calls
