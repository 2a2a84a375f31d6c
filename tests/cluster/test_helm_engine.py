"""The Helm engine against the local control plane: release operations and typed errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from floe_deploy_assets.helm.engine import (
    ChartError,
    ClusterError,
    HelmEngineError,
    ReleaseRef,
    SdkHelmEngine,
)
from tests.conftest import KubeCluster
from tests.support.charts import CONFIG, generated_values

pytestmark = pytest.mark.cluster
JOBS_CHART = CONFIG.chart_path("jobs")


def test_install_upgrade_rollback_test_and_uninstall(engine: SdkHelmEngine, namespace: str):
    release = ReleaseRef("floe-jobs", namespace, "test-cluster")
    assert engine.status(release) is None and engine.history(release) == []
    values = generated_values("jobs")

    installed = engine.install(release, JOBS_CHART, values, timeout=60)
    assert (installed.revision, installed.status, installed.chart_version) == (
        1,
        "deployed",
        "0.1.0",
    )

    values["job"]["activeDeadlineSeconds"] = 600
    upgraded = engine.upgrade(release, JOBS_CHART, values, timeout=60)
    assert upgraded.revision == 2
    assert [r.status for r in engine.history(release)] == ["superseded", "deployed"]

    rolled_back = engine.rollback(release, 1, timeout=60)
    assert (rolled_back.revision, rolled_back.status) == (3, "deployed")

    assert "simulated container dbt-version" in engine.test(release, timeout=60)

    engine.uninstall(release, timeout=60)
    assert engine.status(release) is None


def test_values_that_break_the_schema_apply_nothing(engine: SdkHelmEngine, namespace: str):
    release = ReleaseRef("floe-jobs", namespace, "test-cluster")
    engine.install(release, JOBS_CHART, generated_values("jobs"), timeout=60)
    bad = generated_values("jobs")
    bad["job"]["backofLimit"] = 3  # a typo

    with pytest.raises(ChartError) as refused:
        engine.upgrade(release, JOBS_CHART, bad, timeout=60)

    assert "backofLimit" in str(refused.value)
    assert f"release floe-jobs in namespace {namespace} on cluster test-cluster" in str(
        refused.value
    )
    assert [r.revision for r in engine.history(release)] == [1]


def test_installing_over_an_existing_release_is_refused(engine: SdkHelmEngine, namespace: str):
    release = ReleaseRef("floe-jobs", namespace, "test-cluster")
    engine.install(release, JOBS_CHART, generated_values("jobs"), timeout=60)

    with pytest.raises(HelmEngineError, match="install of release floe-jobs"):
        engine.install(release, JOBS_CHART, generated_values("jobs"), timeout=60)


def test_an_unreachable_cluster_is_a_cluster_error(tmp_path: Path, kube_cluster: KubeCluster):
    kubeconfig = yaml.safe_load(kube_cluster.kubeconfig.read_text())
    kubeconfig["clusters"][0]["cluster"]["server"] = "https://127.0.0.1:1"  # nothing listens
    unreachable = tmp_path / "kubeconfig"
    unreachable.write_text(yaml.safe_dump(kubeconfig))
    engine = SdkHelmEngine(unreachable)

    with pytest.raises(ClusterError, match="status of release x in namespace y on cluster gone"):
        engine.status(ReleaseRef("x", "y", "gone"))
    engine.close()
