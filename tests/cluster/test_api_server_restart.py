"""The API server SIGKILLed while Helm shows the upgrade pending, then started again (issue 13).

On a cluster of its own (the session's is not disturbed): the platform is installed, new values
are deployed, and the moment Helm's record says ``pending-upgrade`` the kube-apiserver process
is killed; ``localcluster up`` starts it again a few seconds later, as a supervisor would. The
outage is transient: the deploy must not take it for a verdict on the values (no rollback, no
hold, no failure recorded final), nothing may stay pending, no revision may be lost, and the
release must end deployed with the new values: in the same run, or at worst in the next run
with the same values and no flags.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from kubernetes import client
from kubernetes import config as kube_config

from floe_deploy_assets.helm.deploy import DeployOutcome, DeployPolicy, deploy, desired_digests
from floe_deploy_assets.helm.engine import ReleaseRef, SdkHelmEngine
from floe_deploy_assets.helm.storage import failed_finally
from floe_deploy_assets.kube.access import ClusterAccess
from floe_deploy_assets.release.decide import Action
from floe_deploy_assets.release.digests import VALUES_DIGEST_LABEL
from localcluster import ClusterConfig, cluster
from tests.conftest import TEST_PORT_BASE
from tests.support.charts import CONFIG, generated_values
from tests.support.deployment import create_operator_secrets
from tests.support.waits import create_namespace_ready_for_pods, wait_for

pytestmark = pytest.mark.cluster
CHART = CONFIG.chart_path("platform")
POLICY = DeployPolicy(timeout=timedelta(seconds=180))
OUTAGE_SECONDS = 3.0  # between the kill and the restart


@pytest.fixture(scope="module")
def own_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterConfig]:
    config = ClusterConfig(
        name="floe-restart",
        state_dir=tmp_path_factory.mktemp("restart"),
        port_base=TEST_PORT_BASE + 20,
    )
    cluster.up(config)
    yield config
    cluster.down(config, wipe=True)


def _pid(config: ClusterConfig, name: str) -> int:
    pid = next(s.pid for s in cluster.status(config) if s.name == name)
    assert pid is not None, f"{name} is not running"
    return pid


@pytest.mark.timeout(600)
def test_an_api_server_killed_mid_upgrade_is_no_verdict_and_the_release_converges(
    own_cluster: ClusterConfig,
):
    kubeconfig = own_cluster.admin_kubeconfig
    core = client.CoreV1Api(kube_config.new_client_from_config(str(kubeconfig)))
    namespace = "restart"
    create_namespace_ready_for_pods(core, namespace)
    create_operator_secrets(core, namespace)
    ref = ReleaseRef("floe-platform", namespace, "floe-restart")
    engine = SdkHelmEngine(kubeconfig)
    access = ClusterAccess.from_kubeconfig(kubeconfig)
    values: dict[str, Any] = generated_values("platform")
    try:
        assert deploy(engine, ref, CHART, values, cluster=access, policy=POLICY).succeeded
        values["postgresql"]["resources"]["limits"]["memory"] = "2Gi"

        outcomes: list[DeployOutcome | BaseException] = []

        def upgrade() -> None:
            try:
                outcomes.append(deploy(engine, ref, CHART, values, cluster=access, policy=POLICY))
            except BaseException as error:  # reported below, with the outage's timing
                outcomes.append(error)

        worker = threading.Thread(target=upgrade, daemon=True)
        worker.start()
        wait_for(
            lambda: bool(
                core.list_namespaced_secret(
                    namespace, label_selector="owner=helm,name=floe-platform,status=pending-upgrade"
                ).items
            ),
            timeout=60,
            interval=0.1,
            reason="Helm's record of the upgrade to say pending-upgrade",
        )
        os.kill(_pid(own_cluster, "kube-apiserver"), signal.SIGKILL)
        killed = time.monotonic()
        time.sleep(OUTAGE_SECONDS)
        cluster.up(own_cluster)  # starts what crashed
        back = time.monotonic() - killed
        worker.join(timeout=POLICY.timeout.total_seconds() + 120)
        assert not worker.is_alive(), "the deploy did not end within its deadline"
        outcome = outcomes[0]
        assert isinstance(outcome, DeployOutcome), repr(outcome)
        print(
            f"\nAPI server down for {back:.1f} s; the deploy: {outcome.decision.action}, "
            f"{'succeeded' if outcome.succeeded else 'failed: ' + outcome.message}, "
            f"{len(outcome.retried)} transient failure(s) of the action retried"
        )
        assert outcome.decision.action in (Action.UPGRADE, Action.RETRY_UPGRADE)
        if outcome.remediation is not None:
            assert outcome.remediation.action not in (Action.ROLLBACK, Action.HOLD), outcome.message
        if not outcome.succeeded:  # at worst: the next run, same values, no flags
            assert outcome.error is not None and outcome.error.transient, outcome.message
            again = deploy(engine, ref, CHART, values, cluster=access)
            assert again.succeeded, again.message
            assert again.decision.action is Action.RETRY_UPGRADE, again.decision

        history = engine.history(ref)
        statuses = [r.status for r in history]
        assert statuses[-1] == "deployed", statuses
        assert not {"pending-install", "pending-upgrade", "pending-rollback"} & set(statuses)
        assert [r.revision for r in history] == list(range(1, len(history) + 1))
        assert history[-1].labels[VALUES_DIGEST_LABEL] == desired_digests(CHART, values).values
        assert not [r.revision for r in history if failed_finally(r.revision, r.labels)]
        in_sync = deploy(engine, ref, CHART, values, cluster=access)
        assert in_sync.decision.action is Action.NOTHING, in_sync.message
    finally:
        engine.close()
