"""Deploying a release: classify, take one action under the release lock; an identical deploy
makes no new revision; a failed upgrade is rolled back and its cause named; a SIGKILLed deploy
is recovered; two deploys of one release never both write; drift is reported and corrected on
request."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from floe_deploy_assets.helm.deploy import DeployPolicy, deploy
from floe_deploy_assets.helm.engine import ReleaseRef, SdkHelmEngine
from floe_deploy_assets.kube.access import ClusterAccess
from floe_deploy_assets.kube.lease import ReleaseBusyError, ReleaseLock
from floe_deploy_assets.models.deployment import DeploymentStatus, Health
from floe_deploy_assets.release.decide import Action, ReleaseState, Remediation
from tests.conftest import KubeCluster
from tests.support.charts import CONFIG, generated_values, values_generator
from tests.support.waits import wait_for

pytestmark = pytest.mark.cluster
JOBS_CHART = CONFIG.chart_path("jobs")
PLATFORM_CHART = CONFIG.chart_path("platform")
FAST = DeployPolicy(timeout=timedelta(seconds=60))
PULL_FAULT_TAG = "sim-image-pull-error"  # the simulated kubelet cannot pull this tag


@pytest.fixture
def cluster(kube_cluster: KubeCluster) -> ClusterAccess:
    return ClusterAccess(kube_cluster.api)


def collector_only(kube_cluster: KubeCluster, namespace: str) -> dict[str, Any]:
    """floe-platform with only its OpenTelemetry collector (one Deployment): quick to roll."""
    for secret in values_generator("platform").required_secrets:
        kube_cluster.core.create_namespaced_secret(
            namespace,
            {"metadata": {"name": secret.name}, "stringData": dict.fromkeys(secret.keys, "x")},
        )
    values = generated_values("platform")
    for component in ("dagster", "polaris", "marquez", "postgresql", "minio"):
        values[component]["enabled"] = False
    return values


def test_install_then_no_op_then_upgrade(
    engine: SdkHelmEngine, cluster: ClusterAccess, namespace: str
):
    ref = ReleaseRef("floe-jobs", namespace, "test-cluster")
    values = generated_values("jobs")

    first = deploy(engine, ref, JOBS_CHART, values, cluster=cluster, policy=FAST)
    again = deploy(engine, ref, JOBS_CHART, values, cluster=cluster, policy=FAST)

    assert (first.decision.action, first.release and first.release.revision) == (Action.INSTALL, 1)
    assert (again.decision.state, again.decision.action) == (ReleaseState.IN_SYNC, Action.NOTHING)
    assert again.drift == [] and again.succeeded
    assert [r.revision for r in engine.history(ref)] == [1]  # zero new revisions

    values["job"]["ttlSecondsAfterFinished"] = 60
    changed = deploy(engine, ref, JOBS_CHART, values, cluster=cluster, policy=FAST)

    assert changed.decision.action is Action.UPGRADE
    assert "values changed" in changed.decision.reason
    assert [(r.revision, r.status) for r in engine.history(ref)] == [
        (1, "superseded"),
        (2, "deployed"),
    ]
    record = changed.platform_deployment("dev", "0.3.0", deployed_by="test")
    assert (record.status, record.release_name, record.chart_version) == (
        DeploymentStatus.DEPLOYED,
        "floe-jobs",
        changed.release.chart_version if changed.release else None,
    )


def test_an_upgrade_that_never_becomes_ready_fails_at_its_deadline_and_is_rolled_back(
    engine: SdkHelmEngine, kube_cluster: KubeCluster, cluster: ClusterAccess, namespace: str
):
    ref = ReleaseRef("floe-platform", namespace, "test-cluster")
    values = collector_only(kube_cluster, namespace)
    assert deploy(engine, ref, PLATFORM_CHART, values, cluster=cluster, policy=FAST).succeeded
    values["otel"]["image"]["tag"] = PULL_FAULT_TAG

    started = time.monotonic()
    policy = DeployPolicy(timeout=timedelta(seconds=15))
    failed = deploy(engine, ref, PLATFORM_CHART, values, cluster=cluster, policy=policy)

    assert 15 <= time.monotonic() - started < 60  # failed at its deadline, not before, no hang
    assert failed.decision.action is Action.UPGRADE and failed.error is not None
    assert "upgrade of release floe-platform in namespace" in str(failed.error)
    assert failed.remediation is not None
    assert (failed.remediation.action, failed.remediation.target_revision) == (Action.ROLLBACK, 1)
    collector = {c.name: c for c in failed.components}["floe-platform-otel-collector"]
    assert collector.health is Health.UNHEALTHY
    assert collector.reason and collector.reason.split(":")[0] in (
        "ErrImagePull",
        "ImagePullBackOff",
    )
    assert [(r.revision, r.status) for r in engine.history(ref)] == [
        (1, "superseded"),
        (2, "failed"),
        (3, "deployed"),  # revision 1's chart and values again
    ]
    record = failed.platform_deployment("dev", "0.3.0")
    assert record.status is DeploymentStatus.FAILED

    # The same broken values again: held, not retried on every run.
    held = deploy(engine, ref, PLATFORM_CHART, values, cluster=cluster, policy=policy)
    assert held.decision.action is Action.HOLD and not held.succeeded
    assert len(engine.history(ref)) == 3


KILLABLE_DEPLOY = """
import json, sys
from datetime import timedelta
from pathlib import Path
from floe_deploy_assets.helm.deploy import DeployPolicy, deploy
from floe_deploy_assets.helm.engine import ReleaseRef, SdkHelmEngine
from floe_deploy_assets.kube.access import ClusterAccess
kubeconfig, namespace, chart, values = sys.argv[1:5]
deploy(
    SdkHelmEngine(Path(kubeconfig)),
    ReleaseRef("floe-platform", namespace, "test-cluster"),
    Path(chart),
    json.loads(Path(values).read_text()),
    cluster=ClusterAccess.from_kubeconfig(Path(kubeconfig)),
    policy=DeployPolicy(timeout=timedelta(seconds=300), lock_duration=timedelta(seconds=3)),
)
"""


def test_a_deploy_killed_mid_upgrade_is_recovered_by_the_next_run_without_losing_history(
    engine: SdkHelmEngine,
    kube_cluster: KubeCluster,
    cluster: ClusterAccess,
    namespace: str,
    tmp_path: Path,
):
    import json

    ref = ReleaseRef("floe-platform", namespace, "test-cluster")
    values = collector_only(kube_cluster, namespace)
    assert deploy(engine, ref, PLATFORM_CHART, values, cluster=cluster, policy=FAST).succeeded
    broken = json.loads(json.dumps(values))
    broken["otel"]["image"]["tag"] = PULL_FAULT_TAG
    (tmp_path / "values.json").write_text(json.dumps(broken))

    process = subprocess.Popen(
        [
            sys.executable,
            "-c",
            KILLABLE_DEPLOY,
            str(kube_cluster.kubeconfig),
            namespace,
            str(PLATFORM_CHART),
            str(tmp_path / "values.json"),
        ],
        cwd=Path(__file__).parents[2],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])},
    )
    try:
        wait_for(
            lambda: [r.status for r in engine.history(ref)][-1:] == ["pending-upgrade"],
            timeout=60,
            reason="the killable deploy to start its upgrade",
        )
        # While it runs, another deploy is refused with the holder named.
        with pytest.raises(ReleaseBusyError, match="is being deployed by"):
            deploy(engine, ref, PLATFORM_CHART, values, cluster=cluster, policy=FAST)
    finally:
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
    assert [r.status for r in engine.history(ref)] == ["deployed", "pending-upgrade"]

    # The next run waits out the dead holder's 3 s Lease, unlocks, and converges.
    policy = DeployPolicy(timeout=timedelta(seconds=60), lock_wait=timedelta(seconds=20))
    recovered = deploy(engine, ref, PLATFORM_CHART, values, cluster=cluster, policy=policy)

    assert recovered.unlocked is not None and "no floe-deploy operation holds" in (
        recovered.unlocked.reason
    )
    assert recovered.succeeded and recovered.decision.action is Action.UPGRADE
    history = engine.history(ref)
    assert [(r.revision, r.status) for r in history] == [
        (1, "superseded"),
        (2, "failed"),  # the interrupted upgrade, kept, with why it was unlocked
        (3, "deployed"),
    ]
    assert deploy(engine, ref, PLATFORM_CHART, values, cluster=cluster).decision.action is (
        Action.NOTHING
    )


def test_two_deploys_of_one_release_never_both_write(
    engine: SdkHelmEngine, cluster: ClusterAccess, namespace: str
):
    ref = ReleaseRef("floe-jobs", namespace, "test-cluster")
    values = generated_values("jobs")
    results: list[object] = []

    def attempt() -> None:
        try:
            results.append(deploy(engine, ref, JOBS_CHART, values, cluster=cluster, policy=FAST))
        except ReleaseBusyError as error:
            results.append(error)

    # Hold the lock as a concurrent deploy would, then start two deploys at once.
    with ReleaseLock(cluster.coordination, namespace, "floe-jobs"):
        threads = [threading.Thread(target=attempt) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
    assert len(results) == 2 and all(isinstance(r, ReleaseBusyError) for r in results)
    assert engine.history(ref) == []  # nothing written while the lock was held

    waiting = DeployPolicy(timeout=timedelta(seconds=60), lock_wait=timedelta(seconds=60))
    results.clear()
    threads = [
        threading.Thread(
            target=lambda: results.append(
                deploy(engine, ref, JOBS_CHART, values, cluster=cluster, policy=waiting)
            )
        )
        for _ in range(2)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    actions = sorted(r.decision.action for r in results)  # type: ignore[attr-defined]
    assert actions == [Action.INSTALL, Action.NOTHING]  # one wrote, the other found it in sync
    assert [r.revision for r in engine.history(ref)] == [1]


def test_drift_is_reported_and_corrected_only_on_request(
    engine: SdkHelmEngine, kube_cluster: KubeCluster, cluster: ClusterAccess, namespace: str
):
    ref = ReleaseRef("floe-jobs", namespace, "test-cluster")
    values = generated_values("jobs")
    deploy(engine, ref, JOBS_CHART, values, cluster=cluster, policy=FAST)
    core = kube_cluster.core
    config_maps = [
        c.metadata.name
        for c in core.list_namespaced_config_map(
            namespace, label_selector="app.kubernetes.io/instance=floe-jobs"
        ).items
    ]
    edited, deleted = config_maps[0], config_maps[1]
    original = core.read_namespaced_config_map(edited, namespace).data
    key = sorted(original)[0]
    core.patch_namespaced_config_map(edited, namespace, {"data": {key: "edited by hand"}})
    core.delete_namespaced_config_map(deleted, namespace)

    reported = deploy(engine, ref, JOBS_CHART, values, cluster=cluster, policy=FAST)

    assert reported.decision.state is ReleaseState.DRIFTED
    assert reported.decision.action is Action.NOTHING
    drift = {(d.kind, d.name): d for d in reported.drift}
    assert drift[("ConfigMap", edited)].pointers == (f"/data/{key}",)
    assert drift[("ConfigMap", deleted)].missing
    assert core.read_namespaced_config_map(edited, namespace).data[key] == "edited by hand"

    corrected = deploy(
        engine, ref, JOBS_CHART, values, cluster=cluster, policy=DeployPolicy(correct_drift=True)
    )
    assert corrected.decision.action is Action.CORRECT_DRIFT
    assert core.read_namespaced_config_map(edited, namespace).data == original
    assert core.read_namespaced_config_map(deleted, namespace).metadata.name == deleted
    assert deploy(engine, ref, JOBS_CHART, values, cluster=cluster).drift == []
    assert [r.revision for r in engine.history(ref)] == [1]  # corrected without a new revision


def test_failed_remediation_policy_hold_leaves_the_failed_revision(
    engine: SdkHelmEngine, kube_cluster: KubeCluster, cluster: ClusterAccess, namespace: str
):
    ref = ReleaseRef("floe-platform", namespace, "test-cluster")
    values = collector_only(kube_cluster, namespace)
    deploy(engine, ref, PLATFORM_CHART, values, cluster=cluster, policy=FAST)
    values["otel"]["image"]["tag"] = PULL_FAULT_TAG
    hold = DeployPolicy(timeout=timedelta(seconds=10), remediation=Remediation.HOLD)

    outcome = deploy(engine, ref, PLATFORM_CHART, values, cluster=cluster, policy=hold)

    assert outcome.error is not None and outcome.remediation is not None
    assert outcome.remediation.action is Action.HOLD
    # Helm leaves revision 1 marked deployed when the upgrade after it fails.
    assert [r.status for r in engine.history(ref)] == ["deployed", "failed"]
