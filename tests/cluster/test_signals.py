"""SIGTERM and SIGINT stop `floe-deploy` cleanly: a model run deletes its Jobs, a deploy stops
mid-upgrade and lets its Lease go, so the next deploy starts at once and converges; exit 143
(SIGTERM) or 130 (SIGINT), and no traceback."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from kubernetes import client

from floe_deploy_assets.cli import main
from floe_deploy_assets.jobs.spec import RUN_LABEL
from floe_deploy_assets.kube.lease import lease_name
from tests.conftest import KubeCluster
from tests.support.charts import ROOT
from tests.support.deployment import create_operator_secrets, write_config
from tests.support.waits import wait_for

pytestmark = pytest.mark.cluster
PULL_FAULT_TAG = "sim-image-pull-error"  # the simulated kubelet never pulls it: never ready

# floe-deploy's own entry point, every model's pod made to run for two minutes (the simulated
# kubelet's annotation), so that the signal comes mid-run.
SLOW_MODELS = """
import sys
from floe_deploy_assets.jobs import spec
render = spec.JobTemplate._add_run_metadata
def slow(self, manifest, model, run_id):
    self.pod_annotations.setdefault(model, {"sim.kubelet.floe.dev/run-seconds": "120"})
    render(self, manifest, model, run_id)
spec.JobTemplate._add_run_metadata = slow
from floe_deploy_assets.cli import console
console()
"""


def _floe_deploy(*args: str, script: str | None = None) -> subprocess.Popen[str]:
    command = ["-c", script or "from floe_deploy_assets.cli import console; console()"]
    return subprocess.Popen(
        [sys.executable, *command, *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def args(kube_cluster: KubeCluster, namespace: str, tmp_path: Path) -> list[str]:
    create_operator_secrets(kube_cluster.core, namespace)
    config = write_config(tmp_path, kube_cluster.kubeconfig, namespace)
    return ["--config", str(config), "--env", "dev", "--kubeconfig", str(kube_cluster.kubeconfig)]


@pytest.fixture
def stopping() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait()


def _jobs(kube_cluster: KubeCluster, namespace: str, run_id: str) -> list[str]:
    listed = client.BatchV1Api(kube_cluster.api).list_namespaced_job(
        namespace, label_selector=f"{RUN_LABEL}={run_id}"
    )
    return [job.metadata.name for job in listed.items]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_stopped_model_run_deletes_its_jobs_and_exits_without_a_traceback(
    kube_cluster: KubeCluster,
    namespace: str,
    args: list[str],
    stopping: list[subprocess.Popen[str]],
    signum: int,
):
    assert main(["deploy", *args, "--chart", "jobs", "--timeout", "120"]) == 0
    run_id = f"sig{int(signum)}"
    process = _floe_deploy("run-models", *args, "--run-id", run_id, script=SLOW_MODELS)
    stopping.append(process)
    wait_for(
        lambda: len(_jobs(kube_cluster, namespace, run_id)) >= 2,
        timeout=60,
        reason=f"run {run_id} to create its first Jobs",
    )

    sent = time.monotonic()
    process.send_signal(signum)
    _, err = process.communicate(timeout=60)
    seconds = time.monotonic() - sent
    print(f"{signal.Signals(signum).name}: exit {process.returncode} after {seconds:.1f} s")

    assert process.returncode == 128 + signum, err
    assert "Traceback" not in err, err
    assert f"run-models stopped by {signal.Signals(signum).name}" in err
    assert f"deleted the Jobs of run {run_id}" in err
    assert _jobs(kube_cluster, namespace, run_id) == []  # gone before the command ended
    assert seconds < 30


def test_a_deploy_stopped_mid_upgrade_lets_its_lease_go_and_the_next_deploy_converges(
    kube_cluster: KubeCluster,
    namespace: str,
    args: list[str],
    tmp_path: Path,
    stopping: list[subprocess.Popen[str]],
    capsys: pytest.CaptureFixture[str],
):
    platform = [*args, "--chart", "platform", "--timeout", "120"]
    assert main(["deploy", *platform]) == 0
    capsys.readouterr()
    never_ready = {"platform": {"otel": {"image": {"tag": PULL_FAULT_TAG}}}}
    (tmp_path / "bad").mkdir()
    bad = write_config(tmp_path / "bad", kube_cluster.kubeconfig, namespace, never_ready)
    # The upgrade waits for a collector that never becomes ready: it is surely under way.
    upgrade = _floe_deploy("deploy", "--config", str(bad), *platform[2:])
    stopping.append(upgrade)

    core = kube_cluster.core
    wait_for(
        lambda: (
            core.list_namespaced_secret(
                namespace, label_selector="owner=helm,name=floe-platform,status=pending-upgrade"
            ).items
        ),
        timeout=60,
        reason="the upgrade to be under way (revision 2 pending-upgrade)",
    )
    time.sleep(1)  # well inside Helm's readiness wait
    sent = time.monotonic()
    upgrade.send_signal(signal.SIGTERM)
    _, err = upgrade.communicate(timeout=60)
    stopped_after = time.monotonic() - sent

    assert upgrade.returncode == 143, err
    assert "Traceback" not in err, err
    assert "deploy stopped by SIGTERM" in err
    lease = client.CoordinationV1Api(kube_cluster.api).read_namespaced_lease(
        lease_name("floe-platform"), namespace
    )
    assert lease.spec.holder_identity is None and lease.spec.renew_time is None  # let go

    started = time.monotonic()
    code = main(["deploy", *platform])  # --lock-wait 0: a held Lease would fail it at once
    converged_after = time.monotonic() - started
    said = capsys.readouterr()
    with capsys.disabled():
        print(f"\nSIGTERM to exit: {stopped_after:.1f} s; next deploy: {converged_after:.1f} s")
    assert code == 0, said
    assert "platform: unlocked" in said.out, said.out  # the stopped upgrade's revision
    statuses = [
        s.metadata.labels["status"]
        for s in core.list_namespaced_secret(
            namespace, label_selector="owner=helm,name=floe-platform"
        ).items
    ]
    assert "pending-upgrade" not in statuses and "deployed" in statuses
    assert stopped_after < 30
