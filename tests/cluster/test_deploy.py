"""Deploying a release: classify, take one action; an identical deploy makes no new revision."""

from __future__ import annotations

from datetime import timedelta

import pytest

from floe_deploy_assets.helm.deploy import deploy
from floe_deploy_assets.helm.engine import ReleaseRef, SdkHelmEngine
from floe_deploy_assets.helm.storage import ReleaseStorage
from floe_deploy_assets.release.decide import Action, ReleaseState
from tests.conftest import KubeCluster
from tests.support.charts import CONFIG, generated_values

pytestmark = pytest.mark.cluster
JOBS_CHART = CONFIG.chart_path("jobs")


def test_install_then_no_op_then_upgrade(engine: SdkHelmEngine, namespace: str):
    ref = ReleaseRef("floe-jobs", namespace, "test-cluster")
    values = generated_values("jobs")

    first = deploy(engine, ref, JOBS_CHART, values, timeout=60)
    again = deploy(engine, ref, JOBS_CHART, values, timeout=60)

    assert (first.decision.action, first.release and first.release.revision) == (Action.INSTALL, 1)
    assert (again.decision.state, again.decision.action) == (ReleaseState.IN_SYNC, Action.NOTHING)
    assert [r.revision for r in engine.history(ref)] == [1]  # zero new revisions

    values["job"]["ttlSecondsAfterFinished"] = 60
    changed = deploy(engine, ref, JOBS_CHART, values, timeout=60)

    assert changed.decision.action is Action.UPGRADE
    assert "values changed" in changed.decision.reason
    assert [(r.revision, r.status) for r in engine.history(ref)] == [
        (1, "superseded"),
        (2, "deployed"),
    ]


def test_a_revision_left_pending_by_a_killed_deploy_is_unlocked_and_the_release_converges(
    engine: SdkHelmEngine, kube_cluster: KubeCluster, namespace: str
):
    ref = ReleaseRef("floe-jobs", namespace, "test-cluster")
    storage = ReleaseStorage(kube_cluster.kubeconfig)
    values = generated_values("jobs")
    deploy(engine, ref, JOBS_CHART, values, storage=storage, timeout=60)
    values["job"]["ttlSecondsAfterFinished"] = 120
    deploy(engine, ref, JOBS_CHART, values, storage=storage, timeout=60)
    # What a SIGKILL mid-upgrade leaves behind: the latest revision stuck in pending-upgrade.
    storage.set_status(namespace, "floe-jobs", 2, "pending-upgrade", "Upgrade in progress")

    waited = deploy(engine, ref, JOBS_CHART, values, storage=storage, timeout=60)
    assert waited.decision.action is Action.WAIT  # within its deadline: someone may hold it

    recovered = deploy(
        engine, ref, JOBS_CHART, values, storage=storage, timeout=60, pending_deadline=timedelta(0)
    )
    assert recovered.unlocked is not None and recovered.unlocked.action is Action.UNLOCK
    assert (recovered.decision.action, recovered.decision.target_revision) == (Action.ROLLBACK, 1)

    converged = deploy(engine, ref, JOBS_CHART, values, storage=storage, timeout=60)
    assert converged.decision.action is Action.UPGRADE
    history = engine.history(ref)
    assert [r.revision for r in history] == [1, 2, 3, 4]  # no revision lost
    assert history[1].status == "failed" and history[-1].status == "deployed"
    assert (
        deploy(engine, ref, JOBS_CHART, values, storage=storage).decision.action is Action.NOTHING
    )
