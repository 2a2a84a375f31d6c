"""Run the simulated kubelet: ``python -m localcluster.kubelet --kubeconfig ... --nodes 2``."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from pathlib import Path

from kubernetes import client, config

from localcluster.kubelet import logserver, nodes
from localcluster.kubelet.informer import run_informer
from localcluster.kubelet.pods import PodAgent
from localcluster.kubelet.provisioner import Provisioner, ensure_storage_class
from localcluster.kubelet.timeline import Backoff

HEARTBEAT_SECONDS = 20.0
# Threads writing pod status (localcluster.kubelet.pods): enough for a few dozen pods a second
# through a busy API server, each waiting for its write's answer.
STATUS_WORKERS = 8


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m localcluster.kubelet")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--node-cpu", default="4")
    parser.add_argument("--node-memory", default="8Gi")
    parser.add_argument("--node-pods", type=int, default=110)
    parser.add_argument("--node-prefix", default="sim-node")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--cert", type=Path, required=True)
    parser.add_argument("--key", type=Path, required=True)
    parser.add_argument("--crash-backoff-base", type=float, default=10.0)
    parser.add_argument("--crash-backoff-cap", type=float, default=300.0)
    parser.add_argument("--volumes-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")

    api_client = config.new_client_from_config(args.kubeconfig)
    # A connection for each status worker, the three informers' watches, and the heartbeat.
    api_client.configuration.connection_pool_maxsize = STATUS_WORKERS + 4
    core = client.CoreV1Api(api_client)
    specs = [
        nodes.NodeSpec(
            f"{args.node_prefix}-{i}", args.node_cpu, args.node_memory, args.node_pods, args.port
        )
        for i in range(1, args.nodes + 1)
    ]
    agent = PodAgent(
        core,
        [spec.name for spec in specs],
        Backoff(max(args.crash_backoff_base, 0.1), args.crash_backoff_cap),
    )
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    ensure_storage_class(client.StorageV1Api(api_client))
    for spec in specs:
        nodes.register(core, spec)
    provisioner = Provisioner(core, args.volumes_dir)
    informers = [
        (core.list_pod_for_all_namespaces, agent.on_event, "pod"),
        (core.list_persistent_volume_claim_for_all_namespaces, provisioner.on_claim, "claim"),
        (core.list_persistent_volume, provisioner.on_volume, "volume"),
    ]
    for _ in range(STATUS_WORKERS):
        threading.Thread(target=agent.run, args=(stop,), daemon=True).start()
    for list_func, handler, what in informers:
        threading.Thread(
            target=run_informer, args=(list_func, handler, stop, what), daemon=True
        ).start()
    # Serving /healthz last: the start-up check passes only once nodes are registered.
    logserver.serve(agent, args.port, args.cert, args.key)
    logging.info(
        "simulated kubelet ready: nodes %s, endpoint port %d",
        ", ".join(s.name for s in specs),
        args.port,
    )
    while not stop.wait(HEARTBEAT_SECONDS):
        for spec in specs:
            try:
                nodes.heartbeat(core, spec)
            except Exception as exc:
                logging.warning("heartbeat for %s failed: %s", spec.name, exc)
    return 0


if __name__ == "__main__":
    sys.exit(main())
