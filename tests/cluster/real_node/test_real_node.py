"""A real node (issue 15): a real kubelet on containerd and runc, in the local control plane.

What only a real node shows: a container's command really runs, its exit code is the one the
kernel reports, its output comes back through the API server from the kubelet; and ``down``
leaves nothing of it on the machine. Its own cluster (``up --real-nodes 1``, conftest.py), beside
the session's.
"""

from __future__ import annotations

import json
import subprocess
import time

import pytest
from kubernetes import client

from localcluster import ClusterConfig, LocalClusterError, cluster, dns, realnode
from tests.conftest import TEST_PORT_BASE
from tests.support.real_node import (
    job_on_the_real_node,
    job_outcome,
    pod_log,
    pod_on_the_real_node,
    run_job,
    serving,
)
from tests.support.waits import wait_for


@pytest.mark.parametrize(("exit_code", "outcome"), [(0, "Complete"), (3, "Failed")])
def test_a_job_runs_for_real_with_its_exit_code_and_output(
    real_cluster: ClusterConfig,
    core: client.CoreV1Api,
    namespace: str,
    exit_code: int,
    outcome: str,
):
    # Output only a real process can give: its own PID namespace (the shell is PID 1) and the
    # kernel's name. "$$$$": Kubernetes reads "$$" in a command as a literal "$".
    script = f'echo "pid $$$$ on $(uname -s)"; echo to-stderr >&2; exit {exit_code}'
    job = job_on_the_real_node(f"exits-{exit_code}", script)
    pod = run_job(core, namespace, job)
    assert job_outcome(client.BatchV1Api(core.api_client), namespace, f"exits-{exit_code}") == (
        outcome
    )
    assert pod.spec.node_name == realnode.RealNode(real_cluster, 0).name
    terminated = pod.status.container_statuses[0].state.terminated
    assert terminated.exit_code == exit_code
    assert terminated.reason == ("Completed" if exit_code == 0 else "Error")
    # Both streams, in the order the runtime read them (which may differ from the writes').
    assert sorted(pod_log(core, namespace, pod)) == ["pid 1 on Linux", "to-stderr"]


def test_a_container_over_its_memory_limit_is_oom_killed_by_the_kernel(
    core: client.CoreV1Api, namespace: str
):
    # The shell holds 200 MB of "a" in a variable: far past its 32 MiB cgroup limit, so the
    # kernel's OOM killer ends it and the runtime reports why (no swap on these machines).
    memory = {"memory": "32Mi", "cpu": "100m"}
    script = "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived ${#x}"
    job = job_on_the_real_node("hog", script, resources={"limits": memory, "requests": memory})
    terminated = run_job(core, namespace, job).status.container_statuses[0].state.terminated
    assert (terminated.reason, terminated.exit_code) == ("OOMKilled", 137)


def test_the_security_context_is_enforced_by_the_runtime(core: client.CoreV1Api, namespace: str):
    locked_down = {
        "runAsUser": 1000,
        "runAsNonRoot": True,
        "readOnlyRootFilesystem": True,
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
    }
    script = (
        'echo "uid $(id -u)"; '
        "if touch /written; then echo root-fs-writable; else echo root-fs-read-only; fi 2>&-; "
        "grep -E '^Cap(Eff|Bnd)' /proc/self/status"
    )
    pod = run_job(
        core, namespace, job_on_the_real_node("locked", script, securityContext=locked_down)
    )
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0
    assert pod_log(core, namespace, pod) == [
        "uid 1000",
        "root-fs-read-only",
        "CapEff:\t0000000000000000",
        "CapBnd:\t0000000000000000",
    ]


def test_run_as_non_root_refuses_an_image_that_runs_as_root(core: client.CoreV1Api, namespace: str):
    # The busybox image runs as root; the kubelet must refuse to start it, not run it.
    pod = pod_on_the_real_node("rooted", "sleep 600", securityContext={"runAsNonRoot": True})
    core.create_namespaced_pod(namespace, pod)

    def refused() -> client.V1ContainerStateWaiting | None:
        statuses = core.read_namespaced_pod("rooted", namespace).status.container_statuses
        waiting = statuses[0].state.waiting if statuses else None
        return waiting if waiting and waiting.reason == "CreateContainerConfigError" else None

    waiting = wait_for(refused, timeout=60, reason="the kubelet to refuse the root image")
    assert "runAsNonRoot" in waiting.message, waiting.message


def _condition(pod: client.V1Pod, kind: str) -> client.V1PodCondition | None:
    return next((c for c in pod.status.conditions or [] if c.type == kind), None)


def test_a_readiness_probe_on_a_real_http_server_gates_ready(
    core: client.CoreV1Api, namespace: str
):
    # busybox's httpd serves only after 5 s: until then the kubelet's HTTP probe fails.
    script = "mkdir /www && echo ok > /www/index.html && sleep 5 && exec httpd -f -p 8080 -h /www"
    probe = {"httpGet": {"path": "/", "port": 8080}, "periodSeconds": 1, "failureThreshold": 1}
    core.create_namespaced_pod(namespace, pod_on_the_real_node("web", script, readinessProbe=probe))

    def running() -> client.V1Pod | None:
        pod = core.read_namespaced_pod("web", namespace)
        return pod if pod.status.phase == "Running" else None

    pod = wait_for(running, timeout=60, reason="the web pod running")
    assert _condition(pod, "Ready").status == "False"

    def ready() -> client.V1PodCondition | None:
        condition = _condition(core.read_namespaced_pod("web", namespace), "Ready")
        return condition if condition and condition.status == "True" else None

    became_ready = wait_for(ready, timeout=30, reason="the web pod Ready once httpd answers")
    started = pod.status.container_statuses[0].state.running.started_at
    assert (became_ready.last_transition_time - started).total_seconds() >= 4, became_ready
    assert pod.status.container_statuses[0].restart_count == 0


def test_a_failing_liveness_probe_restarts_the_container(core: client.CoreV1Api, namespace: str):
    # Healthy for 3 s, then not: the kubelet's exec probe fails and the kubelet kills it.
    script = "touch /tmp/alive && sleep 3 && rm /tmp/alive && sleep 600"
    probe = {"exec": {"command": ["cat", "/tmp/alive"]}, "periodSeconds": 1, "failureThreshold": 2}
    core.create_namespaced_pod(namespace, pod_on_the_real_node("sick", script, livenessProbe=probe))

    def restarted() -> client.V1ContainerStatus | None:
        statuses = core.read_namespaced_pod("sick", namespace).status.container_statuses
        return statuses[0] if statuses and statuses[0].restart_count >= 1 else None

    status = wait_for(
        restarted, timeout=60, reason="the kubelet to restart the unhealthy container"
    )
    # Killed by the kubelet (SIGKILL after the 1 s grace: sh ignores SIGTERM as PID 1).
    assert status.last_state.terminated.exit_code == 137, status.last_state


def _dropped_by_the_isolation_rule(node: realnode.RealNode) -> int:
    """Packets the node's FORWARD rule has dropped (its counter in ``iptables -L -v -x``)."""
    listed = subprocess.run(
        ["iptables", "-L", "FORWARD", "-v", "-x", "-n"], capture_output=True, text=True, check=True
    ).stdout
    for line in listed.splitlines():
        words = line.split()
        if "DROP" in words and node.pod_cidr in words and f"!{node.tag}" in words:
            return int(words[0])
    raise AssertionError(f"no isolation rule for {node.pod_cidr} in:\n{listed}")


def test_a_pod_has_no_way_off_the_machine(
    real_cluster: ClusterConfig, core: client.CoreV1Api, namespace: str
):
    # The machine forwards (ip_forward is on): without the rule, a pod's packet to the VM's
    # gateway would leave through eth0. With it, the packet is dropped on the way out.
    node = realnode.RealNode(real_cluster, 0)
    before = _dropped_by_the_isolation_rule(node)
    # nc, not wget: the static busybox's wget crashes looking the address up (static glibc).
    # Any address off the pod range goes the same way: out by the default route.
    script = "if echo x | nc -w 3 192.0.2.1 80; then exit 0; else exit 7; fi"
    pod = run_job(core, namespace, job_on_the_real_node("egress", script))
    assert job_outcome(client.BatchV1Api(core.api_client), namespace, "egress") == "Failed"
    assert pod.status.container_statuses[0].state.terminated.exit_code == 7
    assert _dropped_by_the_isolation_rule(node) > before


def test_status_reports_the_real_node_and_the_service_network(real_cluster: ClusterConfig):
    node = realnode.RealNode(real_cluster, 0)
    states = {entry.name: entry.state for entry in cluster.status(real_cluster)}
    for name in (*node.process_names, "kube-proxy", "cluster-dns", "cluster-dns-feeder"):
        assert states.pop(name) == "healthy", name
    assert set(states.values()) == {"healthy"}, states  # and the control plane


def test_up_again_leaves_the_running_pods_alone(
    real_cluster: ClusterConfig, core: client.CoreV1Api, namespace: str
):
    # `up` is repeatable: on a cluster that is up it starts nothing, and the clean-up of a
    # node that ended without `down` (its containers, in the kept image store) is not done.
    core.create_namespaced_pod(namespace, pod_on_the_real_node("sleeper", "exec sleep 600"))

    def running_since() -> object:
        status = core.read_namespaced_pod("sleeper", namespace).status
        running = status.container_statuses and status.container_statuses[0].state.running
        return running and running.started_at

    started_at = wait_for(running_since, timeout=60, reason="the sleeper to run")
    cluster.up(real_cluster, real_nodes=1)
    # A killed container would show within the kubelet's 1 s relist: watch for 5 s.
    watch_until = time.monotonic() + 5
    while time.monotonic() < watch_until:
        status = core.read_namespaced_pod("sleeper", namespace).status.container_statuses[0]
        assert (status.restart_count, running_since()) == (0, started_at)
        time.sleep(0.5)


def test_pods_without_the_toleration_stay_off_the_real_node(
    real_cluster: ClusterConfig, core: client.CoreV1Api
):
    node = core.read_node(realnode.RealNode(real_cluster, 0).name)
    assert node.metadata.labels[realnode.REAL_NODE_LABEL] == "true"
    assert [(t.key, t.effect) for t in node.spec.taints] == [
        (realnode.REAL_NODE_LABEL, "NoSchedule")
    ]


def test_a_pod_reaches_a_service_by_its_dns_name(core: client.CoreV1Api, namespace: str):
    # A real server (busybox's httpd) behind a ClusterIP Service; a client pod that knows only
    # the Service's short name: the cluster DNS resolves it through the pod's search path,
    # kube-proxy's rules carry the TCP connection to the server pod.
    page = "mkdir /www && echo hello from web > /www/index.html && exec httpd -f -p 8080 -h /www"
    ready = {"tcpSocket": {"port": 8080}, "periodSeconds": 1}
    server = pod_on_the_real_node("web", page, readinessProbe=ready)
    server["metadata"]["labels"] = {"app": "web"}
    core.create_namespaced_pod(namespace, server)
    service = core.create_namespaced_service(
        namespace,
        {
            "metadata": {"name": "web"},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]},
        },
    )
    wait_for(lambda: serving(core, namespace, "web"), timeout=60, reason="web's endpoint")
    # busybox's own resolver (its wget and nc would use the static glibc's, which crashes).
    script = (
        "ip=$(nslookup -type=a web | sed -n 's/^Address: //p' | head -n 1); "
        'echo "resolved $ip"; '
        "printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 5 \"$ip\" 80 | tail -n 1"
    )
    pod = run_job(core, namespace, job_on_the_real_node("client", script))
    assert pod_log(core, namespace, pod) == [
        f"resolved {service.spec.cluster_ip}",
        "hello from web",
    ]
    assert pod.status.container_statuses[0].state.terminated.exit_code == 0


def test_a_pod_reads_the_api_with_its_service_account_token(core: client.CoreV1Api, namespace: str):
    # In-cluster access as any client does it: the `kubernetes` Service's ClusterIP from the
    # pod's environment, the ServiceAccount's token, and RBAC deciding what it may read.
    core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "hello"}, "data": {"greeting": "from the API"}}
    )
    rbac = client.RbacAuthorizationV1Api(core.api_client)
    rule = {"apiGroups": [""], "resources": ["configmaps"], "resourceNames": ["hello"]}
    rbac.create_namespaced_role(
        namespace, {"metadata": {"name": "read-hello"}, "rules": [{**rule, "verbs": ["get"]}]}
    )
    rbac.create_namespaced_role_binding(
        namespace,
        {
            "metadata": {"name": "read-hello"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "read-hello",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
        },
    )
    account = "/var/run/secrets/kubernetes.io/serviceaccount"
    script = (
        f"token=$(cat {account}/token); "
        "api=https://$KUBERNETES_SERVICE_HOST:$KUBERNETES_SERVICE_PORT; "
        f"configmaps=$api/api/v1/namespaces/$(cat {account}/namespace)/configmaps; "
        # wget gets a pretty-printed answer: one line of it, to pick out of the log.
        'wget -q -O /tmp/hello --header "Authorization: Bearer $token" $configmaps/hello; '
        "tr -d '\\n' < /tmp/hello; echo; "
        # Its complaint on stdout too: one stream keeps the order of the two lines.
        'wget -q -O- --header "Authorization: Bearer $token" $configmaps/other 2>&1 '
        "|| echo refused"
    )
    pod = run_job(core, namespace, job_on_the_real_node("in-cluster", script))
    lines = pod_log(core, namespace, pod)  # with wget's note that it does not verify TLS
    answered = next(line for line in lines if line.startswith("{"))
    assert json.loads(answered)["data"] == {"greeting": "from the API"}
    # RBAC: the Role names only "hello".
    assert lines[-2:] == ["wget: server returned error: HTTP/1.1 403 Forbidden", "refused"]


def test_cluster_dns_knows_only_the_clusters_names(real_cluster: ClusterConfig):
    dns_server = realnode.RealNode(real_cluster, 0).node_ip
    assert dns.query("kubernetes.default.svc.cluster.local", dns_server) == ["10.96.0.1"]
    assert dns.query("missing.default.svc.cluster.local", dns_server) == []
    # No upstream: a name outside the cluster gets no address (pods have no way out anyway).
    assert dns.query("deb.debian.org", dns_server) == []


def test_a_second_cluster_with_real_nodes_is_refused_before_it_starts(
    real_cluster: ClusterConfig, tmp_path_factory: pytest.TempPathFactory
):
    other = ClusterConfig(
        name="floe-real-other",
        state_dir=tmp_path_factory.mktemp("real-other"),
        port_base=TEST_PORT_BASE + 40,
    )
    with pytest.raises(LocalClusterError) as refused:
        cluster.up(other, real_nodes=1)
    message = str(refused.value)
    assert f"cluster {real_cluster.name!r} (state dir {real_cluster.state_dir})" in message
    assert "one cluster with real nodes at a time" in message
    assert not other.run_dir.exists() or not list(other.run_dir.iterdir())


def test_a_claim_on_the_real_node_keeps_its_data_from_one_pod_to_the_next(
    real_cluster: ClusterConfig, core: client.CoreV1Api, namespace: str
):
    claim = core.create_namespaced_persistent_volume_claim(
        namespace,
        {
            "metadata": {"name": "data"},
            "spec": {
                "accessModes": ["ReadWriteOnce"],
                "resources": {"requests": {"storage": "1Gi"}},
            },  # the default StorageClass
        },
    )
    volume = {"name": "data", "persistentVolumeClaim": {"claimName": "data"}}
    mount = [{"name": "data", "mountPath": "/data"}]
    # Written by one pod, as an unprivileged user, read by another after the first has gone.
    writer = job_on_the_real_node(
        "writer",
        "echo written by $(id -u) > /data/note",
        volumeMounts=mount,
        securityContext={"runAsUser": 1000},
    )
    writer["spec"]["template"]["spec"]["volumes"] = [volume]
    wrote = run_job(core, namespace, writer)
    assert wrote.status.container_statuses[0].state.terminated.exit_code == 0
    reader = job_on_the_real_node("reader", "cat /data/note", volumeMounts=mount)
    reader["spec"]["template"]["spec"]["volumes"] = [volume]
    read = run_job(core, namespace, reader)
    assert pod_log(core, namespace, read) == ["written by 1000"]
    # A real directory of the cluster's, which the claim's deletion removes.
    bound = core.read_namespaced_persistent_volume_claim("data", namespace)
    directory = real_cluster.volumes_dir / claim.metadata.uid
    assert (directory / "note").read_text() == "written by 1000\n"
    assert core.read_persistent_volume(bound.spec.volume_name).spec.host_path.path == str(directory)
    # Kubernetes 1.20 keeps a claim while any pod naming it exists, finished or not.
    batch = client.BatchV1Api(core.api_client)
    for job in ("writer", "reader"):
        batch.delete_namespaced_job(job, namespace, propagation_policy="Background")
    core.delete_namespaced_persistent_volume_claim("data", namespace)
    wait_for(lambda: not directory.exists(), timeout=60, reason=f"{directory} to be removed")
