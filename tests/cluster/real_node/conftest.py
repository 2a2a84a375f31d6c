"""The real node's tests: each module brings up its own cluster with one real node (one cluster
with real nodes at a time on a machine, so never beside another module's), and namespaces in
it."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes import config as kube_config

from localcluster import ClusterConfig, cluster
from tests.conftest import TEST_PORT_BASE
from tests.support.waits import create_namespace_ready_for_pods


@pytest.fixture(scope="module")
def real_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterConfig]:
    config = ClusterConfig(
        name="floe-real",
        state_dir=tmp_path_factory.mktemp("real"),
        port_base=TEST_PORT_BASE + 30,
    )
    try:
        cluster.up(config, real_nodes=1)
        yield config
    finally:
        cluster.down(config, wipe=True)


@pytest.fixture(scope="module")
def core(real_cluster: ClusterConfig) -> client.CoreV1Api:
    return client.CoreV1Api(kube_config.new_client_from_config(str(real_cluster.admin_kubeconfig)))


@pytest.fixture
def namespace(core: client.CoreV1Api) -> Iterator[str]:
    """A namespace of the real cluster's (not the session cluster's)."""
    name = f"real-{uuid.uuid4().hex[:8]}"
    create_namespace_ready_for_pods(core, name)
    yield name
    core.delete_namespace(name, propagation_policy="Background")
