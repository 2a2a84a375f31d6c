"""Deploying a release: classify, take one action; an identical deploy makes no new revision."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from floe_deploy_assets.helm.deploy import deploy
from floe_deploy_assets.helm.engine import ReleaseRef, SdkHelmEngine
from floe_deploy_assets.release.decide import Action, ReleaseState
from tests.conftest import KubeCluster
from tests.support.charts import CONFIG, generated_values

pytestmark = pytest.mark.cluster
JOBS_CHART = CONFIG.chart_path("jobs")


@pytest.fixture
def engine(kube_cluster: KubeCluster) -> Iterator[SdkHelmEngine]:
    helm_engine = SdkHelmEngine(kube_cluster.kubeconfig)
    yield helm_engine
    helm_engine.close()


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
