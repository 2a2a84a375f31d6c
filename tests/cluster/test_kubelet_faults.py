"""Each simulated fault yields the pod status a real kubelet would write."""

from __future__ import annotations

from datetime import timedelta

import pytest
from kubernetes import client

from tests.conftest import KubeCluster
from tests.support.objects import pod, sim
from tests.support.waits import wait_for

pytestmark = pytest.mark.cluster


def _status(core: client.CoreV1Api, namespace: str, name: str) -> client.V1PodStatus:
    return core.read_namespaced_pod_status(name, namespace).status


def _condition(status: client.V1PodStatus, kind: str) -> client.V1PodCondition:
    return next(c for c in status.conditions if c.type == kind)


def test_never_ready_runs_but_stays_unready(kube_cluster: KubeCluster, namespace: str):
    core = kube_cluster.core
    core.create_namespaced_pod(namespace, pod("unready", sim(fault="never-ready")))

    status = wait_for(
        lambda: (s := _status(core, namespace, "unready")).phase == "Running" and s,
        timeout=30,
        reason="pod unready to run",
    )

    container = status.container_statuses[0]
    assert container.state.running is not None and container.ready is False
    ready = _condition(status, "Ready")
    assert (ready.status, ready.reason) == ("False", "ContainersNotReady")
    assert ready.message == "containers with unready status: [main]"


def test_readiness_probe_delay_is_respected(kube_cluster: KubeCluster, namespace: str):
    core = kube_cluster.core
    core.create_namespaced_pod(namespace, pod("probe", readiness_delay=3))

    running = wait_for(
        lambda: (s := _status(core, namespace, "probe")).phase == "Running" and s,
        timeout=30,
        reason="pod probe to run",
    )
    ready = wait_for(
        lambda: (s := _status(core, namespace, "probe")).container_statuses[0].ready and s,
        timeout=30,
        reason="pod probe to become ready",
    )

    started = running.container_statuses[0].state.running.started_at
    became_ready = _condition(ready, "Ready").last_transition_time
    assert became_ready - started >= timedelta(seconds=2)


def test_slow_start_stays_in_container_creating(kube_cluster: KubeCluster, namespace: str):
    core = kube_cluster.core
    core.create_namespaced_pod(namespace, pod("slow", sim(start_delay_seconds=4)))

    creating = wait_for(
        lambda: (s := _status(core, namespace, "slow")).container_statuses and s,
        timeout=30,
        reason="pod slow to get container statuses",
    )
    assert creating.phase == "Pending"
    assert creating.container_statuses[0].state.waiting.reason == "ContainerCreating"

    running = wait_for(
        lambda: (s := _status(core, namespace, "slow")).phase == "Running" and s,
        timeout=30,
        reason="pod slow to run after its start delay",
    )
    started = running.container_statuses[0].state.running.started_at
    assert started - running.start_time >= timedelta(seconds=3)


def test_crash_loop_backs_off_with_growing_restart_count(kube_cluster: KubeCluster, namespace: str):
    core = kube_cluster.core
    core.create_namespaced_pod(namespace, pod("crasher", sim(fault="crash-loop", exit_code=3)))

    backing_off = wait_for(
        lambda: (
            (s := _status(core, namespace, "crasher")).container_statuses
            and s.container_statuses[0].restart_count >= 2
            and s.container_statuses[0].state.waiting is not None
            and s
        ),
        timeout=40,
        reason="pod crasher to be in CrashLoopBackOff after two restarts",
    )

    container = backing_off.container_statuses[0]
    assert container.state.waiting.reason == "CrashLoopBackOff"
    assert "back-off" in container.state.waiting.message
    assert (container.last_state.terminated.reason, container.last_state.terminated.exit_code) == (
        "Error",
        3,
    )
    assert backing_off.phase == "Running"
    later = wait_for(
        lambda: (
            _status(core, namespace, "crasher").container_statuses[0].restart_count
            > container.restart_count
        ),
        timeout=30,
        reason="another restart",
    )
    assert later


def test_image_pull_error_then_back_off(kube_cluster: KubeCluster, namespace: str):
    core = kube_cluster.core
    core.create_namespaced_pod(
        namespace, pod("pull", image="registry.example/x:sim-image-pull-error")
    )

    first = wait_for(
        lambda: (
            (s := _status(core, namespace, "pull")).container_statuses
            and s.container_statuses[0].state.waiting
        ),
        timeout=30,
        reason="pod pull to wait on its image",
    )
    assert first.reason == "ErrImagePull"
    assert "registry.example/x:sim-image-pull-error" in first.message

    backoff = wait_for(
        lambda: (
            (w := _status(core, namespace, "pull").container_statuses[0].state.waiting)
            and w.reason == "ImagePullBackOff"
            and w
        ),
        timeout=30,
        reason="ImagePullBackOff",
    )
    assert backoff.message == 'Back-off pulling image "registry.example/x:sim-image-pull-error"'
    assert _status(core, namespace, "pull").phase == "Pending"


def test_oom_killed_container_reports_reason_and_exit_code_137(
    kube_cluster: KubeCluster, namespace: str
):
    core = kube_cluster.core
    core.create_namespaced_pod(
        namespace, pod("oom", sim(fault="oom-killed"), restart_policy="Never")
    )

    status = wait_for(
        lambda: (s := _status(core, namespace, "oom")).phase == "Failed" and s,
        timeout=30,
        reason="pod oom to fail",
    )

    terminated = status.container_statuses[0].state.terminated
    assert (terminated.reason, terminated.exit_code) == ("OOMKilled", 137)


def test_exit_code_after_run_time(kube_cluster: KubeCluster, namespace: str):
    core = kube_cluster.core
    core.create_namespaced_pod(
        namespace, pod("exits", sim(exit_code=42, run_seconds=3), restart_policy="Never")
    )

    status = wait_for(
        lambda: (s := _status(core, namespace, "exits")).phase == "Failed" and s,
        timeout=30,
        reason="pod exits to fail",
    )

    terminated = status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason) == (42, "Error")
    assert terminated.finished_at - terminated.started_at == timedelta(seconds=3)
    assert _condition(status, "Ready").reason == "PodCompleted"


def test_pod_active_deadline_fails_with_deadline_exceeded(
    kube_cluster: KubeCluster, namespace: str
):
    core = kube_cluster.core
    core.create_namespaced_pod(namespace, pod("late", activeDeadlineSeconds=2))

    status = wait_for(
        lambda: (s := _status(core, namespace, "late")).phase == "Failed" and s,
        timeout=30,
        reason="pod late to pass its deadline",
    )

    assert status.reason == "DeadlineExceeded"
    assert status.container_statuses[0].state.terminated.exit_code == 137


def test_unknown_fault_annotation_shows_as_container_config_error(
    kube_cluster: KubeCluster, namespace: str
):
    core = kube_cluster.core
    core.create_namespaced_pod(namespace, pod("typo", sim(fault="explode")))

    waiting = wait_for(
        lambda: (
            (s := _status(core, namespace, "typo")).container_statuses
            and s.container_statuses[0].state.waiting
        ),
        timeout=30,
        reason="pod typo to report its configuration error",
    )

    assert waiting.reason == "CreateContainerConfigError"
    assert "sim.kubelet.floe.dev/fault='explode'" in waiting.message


def _log(core: client.CoreV1Api, name: str, namespace: str, **options) -> str:
    response = core.read_namespaced_pod_log(name, namespace, _preload_content=False, **options)
    return response.data.decode()


def test_logs_are_read_through_the_api_server(kube_cluster: KubeCluster, namespace: str):
    core = kube_cluster.core
    lines = "\n".join(f"line {i}" for i in range(1, 6))
    core.create_namespaced_pod(
        namespace, pod("talker", sim(logs=lines, exit_code=1), restart_policy="Never")
    )
    wait_for(
        lambda: _status(core, namespace, "talker").phase == "Failed",
        timeout=30,
        reason="pod talker to finish",
    )

    assert _log(core, "talker", namespace) == lines + "\n"
    assert _log(core, "talker", namespace, tail_lines=2) == "line 4\nline 5\n"
    assert _log(core, "talker", namespace, container="main", limit_bytes=6) == "line 1"


def test_logs_of_a_container_that_never_started_are_refused(
    kube_cluster: KubeCluster, namespace: str
):
    core = kube_cluster.core
    core.create_namespaced_pod(namespace, pod("nostart", sim(fault="image-pull-error")))
    wait_for(
        lambda: _status(core, namespace, "nostart").container_statuses,
        timeout=30,
        reason="pod nostart to be seen by the kubelet",
    )

    with pytest.raises(client.ApiException) as refused:
        _log(core, "nostart", namespace)

    body = refused.value.body
    assert refused.value.status == 400
    assert "is waiting to start: ErrImagePull" in (
        body.decode() if isinstance(body, bytes) else body
    )


def test_a_missing_secret_in_env_is_a_config_error_until_it_exists(
    kube_cluster: KubeCluster, namespace: str
):
    core = kube_cluster.core
    manifest = pod("needs-secret")
    manifest["spec"]["containers"][0]["env"] = [
        {
            "name": "PASSWORD",
            "valueFrom": {"secretKeyRef": {"name": "db-credentials", "key": "password"}},
        }
    ]
    core.create_namespaced_pod(namespace, manifest)

    waiting = wait_for(
        lambda: (
            (s := _status(core, namespace, "needs-secret")).container_statuses
            and s.container_statuses[0].state.waiting
        ),
        timeout=30,
        reason="pod needs-secret to report its missing Secret",
    )
    assert (waiting.reason, waiting.message) == (
        "CreateContainerConfigError",
        'secret "db-credentials" not found',
    )

    core.create_namespaced_secret(
        namespace, {"metadata": {"name": "db-credentials"}, "stringData": {"password": "x"}}
    )
    wait_for(
        lambda: _status(core, namespace, "needs-secret").phase == "Running",
        timeout=30,
        reason="pod needs-secret to start once its Secret exists",
    )


def test_a_missing_config_map_volume_keeps_the_pod_in_container_creating(
    kube_cluster: KubeCluster, namespace: str
):
    core = kube_cluster.core
    manifest = pod("needs-config")
    manifest["spec"]["volumes"] = [{"name": "config", "configMap": {"name": "app-config"}}]
    core.create_namespaced_pod(namespace, manifest)

    waiting = wait_for(
        lambda: (
            (s := _status(core, namespace, "needs-config")).container_statuses
            and s.container_statuses[0].state.waiting
        ),
        timeout=30,
        reason="pod needs-config to wait for its volume",
    )
    assert waiting.reason == "ContainerCreating"
    assert _status(core, namespace, "needs-config").phase == "Pending"
