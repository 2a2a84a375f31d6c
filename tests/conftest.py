"""Shared fixtures: a session-wide local Kubernetes control plane and a namespace per test.

The cluster is started for the test session (on its own ports and state directory, so a
developer's cluster keeps running) and stopped at the end. Set FLOE_TEST_KUBECONFIG to run the
cluster tests against a cluster that is already up instead. If the cluster cannot start, the
tests that need it fail: they are never skipped.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import helm_python
import pytest
from kubernetes import client, config

from floe_deploy_assets.helm.engine import SdkHelmEngine
from localcluster import ClusterConfig, cluster
from tests.support.faultproxy import FaultProxy
from tests.support.waits import create_namespace_ready_for_pods

TEST_PORT_BASE = int(os.environ.get("FLOE_TEST_PORT_BASE", "16460"))


@dataclass(frozen=True)
class KubeCluster:
    kubeconfig: Path
    api: client.ApiClient
    config: ClusterConfig | None  # None when the cluster was given from outside

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)


@pytest.fixture(scope="session")
def kube_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeCluster]:
    given = os.environ.get("FLOE_TEST_KUBECONFIG")
    if given:
        yield KubeCluster(Path(given), config.new_client_from_config(given), None)
        return
    cluster_config = ClusterConfig(
        name="floe-test",
        state_dir=tmp_path_factory.mktemp("localcluster"),
        port_base=TEST_PORT_BASE,
        crash_backoff_base=1.0,
        crash_backoff_cap=8.0,
    )
    try:
        cluster.up(cluster_config)
        kubeconfig = cluster_config.admin_kubeconfig
        yield KubeCluster(
            kubeconfig, config.new_client_from_config(str(kubeconfig)), cluster_config
        )
    finally:
        cluster.down(cluster_config, wipe=True)


@pytest.fixture
def proxy(kube_cluster: KubeCluster) -> Iterator[FaultProxy]:
    """A fault-injecting proxy in front of the session cluster's API server, no rules yet."""
    with FaultProxy(kube_cluster.kubeconfig) as running:
        yield running


@pytest.fixture
def namespace(kube_cluster: KubeCluster) -> Iterator[str]:
    """A fresh namespace whose default ServiceAccount has its token, so pods can be created."""
    name = f"t-{uuid.uuid4().hex[:10]}"
    core = kube_cluster.core
    create_namespace_ready_for_pods(core, name)
    yield name
    core.delete_namespace(name, propagation_policy="Background")


@pytest.fixture
def helm(kube_cluster: KubeCluster, namespace: str) -> Iterator[helm_python.Config]:
    """The real Helm engine, acting on the test's namespace."""
    helm_config = helm_python.Config(
        kubeconfig_path=str(kube_cluster.kubeconfig), namespace=namespace
    )
    yield helm_config
    helm_config.close()


@pytest.fixture
def engine(kube_cluster: KubeCluster) -> Iterator[SdkHelmEngine]:
    """Our Helm engine adapter on the session cluster."""
    helm_engine = SdkHelmEngine(kube_cluster.kubeconfig)
    yield helm_engine
    helm_engine.close()
