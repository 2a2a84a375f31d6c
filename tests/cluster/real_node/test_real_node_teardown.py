"""Taking a cluster with a real node down leaves nothing of it on the machine (issue 15).

A module of its own: its cluster must not overlap test_real_node.py's, since one cluster with
real nodes at a time owns the machine's Service rules.
"""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

import pytest
from kubernetes import client
from kubernetes import config as kube_config

from localcluster import ClusterConfig, cluster, realnode, servicenet
from tests.conftest import TEST_PORT_BASE
from tests.support.real_node import job_on_the_real_node
from tests.support.waits import create_namespace_ready_for_pods, wait_for

EMPTY_SANDBOX = "cni-00000000-left-by-a-test"


def test_down_leaves_nothing_of_the_real_node(tmp_path_factory: pytest.TempPathFactory):
    # A cluster of its own, with a pod still running when it goes down.
    config = ClusterConfig(
        name="floe-real-down",
        state_dir=tmp_path_factory.mktemp("real-down"),
        port_base=TEST_PORT_BASE + 40,
    )
    node = realnode.RealNode(config, 0)
    route_localnet_before = servicenet.ROUTE_LOCALNET.read_text().strip()
    try:
        cluster.up(config, real_nodes=1)
        core = client.CoreV1Api(kube_config.new_client_from_config(str(config.admin_kubeconfig)))
        create_namespace_ready_for_pods(core, "busy")
        job = job_on_the_real_node("sleeper", "sleep 600")
        client.BatchV1Api(core.api_client).create_namespaced_job("busy", job)

        def sleeper_running() -> bool:
            pods = core.list_namespaced_pod("busy", label_selector="job-name=sleeper").items
            return bool(pods) and pods[0].status.phase == "Running"

        wait_for(
            sleeper_running,
            timeout=90,
            reason="the sleeper pod running on the real node",
        )
        assert realnode.leftovers(node), "the running node is seen by leftovers()"
        sandboxes = realnode.pod_network_namespaces(node)
        assert len(sandboxes) == 1, sandboxes
        # As a sandbox whose network set-up was cut short leaves it: the CRI's name, no veth,
        # made as the CRI makes it (`ip netns add` would bind-mount /run/netns over itself and
        # hide the CRI's namespaces under it).
        empty = Path("/run/netns") / EMPTY_SANDBOX
        empty.touch()
        subprocess.run(
            ["unshare", "--net", "mount", "--bind", "/proc/self/ns/net", str(empty)], check=True
        )
        assert f"network namespace {EMPTY_SANDBOX}" in realnode.leftovers(node)
    finally:
        stopping = time.monotonic()
        cluster.down(config, wipe=True)
        print(f"down took {time.monotonic() - stopping:.1f} s")
    assert realnode.leftovers(node) == []
    # kube-proxy, dnsmasq and the DNS feeder gone, every KUBE-* chain removed (the kubelet's
    # and kube-proxy's), the machine's route_localnet as it was, the Service network free.
    assert servicenet.leftovers(config) == []
    assert servicenet.ROUTE_LOCALNET.read_text().strip() == route_localnet_before
    assert not servicenet.OWNER.exists()
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, check=True)
    assert sandboxes[0] not in listed.stdout
    assert EMPTY_SANDBOX not in listed.stdout
