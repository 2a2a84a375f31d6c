"""`localcluster` itself: side-by-side clusters, idempotent up, crash reporting, clean down."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator

import pytest
from kubernetes import client, config

from localcluster import ClusterConfig, LocalClusterError, cluster, process
from localcluster.config import NodeShape
from tests.conftest import TEST_PORT_BASE, KubeCluster

pytestmark = pytest.mark.cluster


@pytest.fixture(scope="module")
def side_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ClusterConfig]:
    side = ClusterConfig(
        name="floe-side",
        state_dir=tmp_path_factory.mktemp("side"),
        port_base=TEST_PORT_BASE + 10,
        nodes=NodeShape(count=1, cpu="2"),
    )
    yield side
    cluster.down(side, wipe=True)


def _cli(side: ClusterConfig, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "localcluster",
            "--name",
            side.name,
            "--state-dir",
            str(side.state_dir),
            "--port-base",
            str(side.port_base),
            *args,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )


def _pids(side: ClusterConfig) -> dict[str, int]:
    return {s.name: s.pid for s in cluster.status(side) if s.pid is not None}


def test_busy_port_is_named_and_nothing_is_left_started(side_cluster: ClusterConfig):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", side_cluster.scheduler_port))
        holder.listen()
        with pytest.raises(LocalClusterError) as refused:
            cluster.up(side_cluster)

    assert f"port {side_cluster.scheduler_port}" in str(refused.value)
    assert "kube-scheduler" in str(refused.value) and "--port-base" in str(refused.value)
    assert {s.state for s in cluster.status(side_cluster)} == {"stopped"}


def test_second_cluster_runs_beside_the_first_and_up_is_idempotent(
    kube_cluster: KubeCluster, side_cluster: ClusterConfig
):
    cluster.up(side_cluster)
    first_pids = _pids(side_cluster)

    again = _cli(side_cluster, "up")

    assert again.returncode == 0, again.stderr
    assert _pids(side_cluster) == first_pids
    side_nodes = (
        client.CoreV1Api(config.new_client_from_config(str(side_cluster.admin_kubeconfig)))
        .list_node()
        .items
    )
    assert [(n.metadata.name, n.status.capacity["cpu"]) for n in side_nodes] == [
        ("sim-node-1", "2")
    ]
    assert len(kube_cluster.core.list_node().items) == 2  # the session cluster is untouched


def test_status_reports_a_crashed_component_and_up_restarts_it(side_cluster: ClusterConfig):
    scheduler_pid = _pids(side_cluster)["kube-scheduler"]
    os.kill(scheduler_pid, signal.SIGKILL)

    report = _cli(side_cluster, "status")

    assert report.returncode == 1
    line = next(x for x in report.stdout.splitlines() if x.startswith("kube-scheduler"))
    assert "crashed" in line and f"process {scheduler_pid} is gone" in line
    assert _cli(side_cluster, "up").returncode == 0
    assert _cli(side_cluster, "status").returncode == 0
    assert _pids(side_cluster)["kube-scheduler"] != scheduler_pid


def test_down_stops_every_process_and_a_second_down_is_not_an_error(side_cluster: ClusterConfig):
    records = [process.read_record(side_cluster.run_dir, name) for name in _pids(side_cluster)]

    first = _cli(side_cluster, "down")
    second = _cli(side_cluster, "down")

    assert first.returncode == 0 and "stopped:" in first.stdout
    assert not any(process.is_alive(record) for record in records if record)
    assert (second.returncode, second.stdout.strip()) == (0, "nothing was running")
