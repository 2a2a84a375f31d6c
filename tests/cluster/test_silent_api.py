"""Against an API server that accepts connections and never answers, every command and sensor
ends within its budget, exit 3, naming the cluster (the kubeconfig context), the release, its
namespace and the step, without a traceback.

Two kinds of silence (``tests/support/silent_server.py``): ``handshake``, a TCP listener that
never answers the TLS handshake (the hang measured in the issue: ``deploy`` blocked in
``read_namespaced_secret`` until killed at 400 s), and ``response``, a server that completes
the handshake and then never answers a request (client-go gives Helm no timeout for that).
No cluster is needed: the commands never get an answer.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from floe_deploy_assets.defs.resources import DeploymentConfigResource, KubernetesResource
from floe_deploy_assets.defs.sensors import release_status_sensor, workload_health_sensor
from tests.support.charts import ROOT
from tests.support.deployment import write_config
from tests.support.silent_server import SilentServer

pytestmark = pytest.mark.cluster
CONTEXT = "floe-silent"
NAMESPACE = "floe-silent-ns"
BUDGET_SECONDS = 60  # each command, from start to exit
SENSOR_BUDGET_SECONDS = 45  # a tick: Dagster gives a sensor evaluation about 60 s
FLOE_DEPLOY = "from floe_deploy_assets.cli import console; console()"  # the executable's entry


@pytest.fixture(params=["handshake", "response"])
def silent(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[SilentServer, Path]]:
    with SilentServer(tls=request.param == "response") as server:
        yield server, server.write_kubeconfig(tmp_path / "kubeconfig", context=CONTEXT)


def _inputs(config: Path, kubeconfig: Path) -> list[str]:
    return ["--config", str(config), "--env", "dev", "--kubeconfig", str(kubeconfig)]


def _start(command: str, config: Path, kubeconfig: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", FLOE_DEPLOY, command, *_inputs(config, kubeconfig)],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), "PYTHONWARNINGS": "ignore"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_deploy_status_and_run_models_end_with_exit_3_naming_the_cluster(
    silent: tuple[SilentServer, Path], tmp_path: Path
):
    server, kubeconfig = silent
    config = write_config(tmp_path, kubeconfig, NAMESPACE)
    started = time.monotonic()
    # All three at once: each is timed on its own.
    commands = ("deploy", "status", "run-models")
    running = {name: _start(name, config, kubeconfig) for name in commands}
    ended: dict[str, tuple[int | None, float, str]] = {}
    try:
        for name, process in running.items():
            _, err = process.communicate(timeout=BUDGET_SECONDS + 30)
            ended[name] = (process.returncode, time.monotonic() - started, err)
    finally:
        for process in running.values():
            if process.poll() is None:
                process.kill()
    print({name: (code, round(seconds, 1)) for name, (code, seconds, _) in ended.items()})
    assert server.accepted > 0  # each did try the cluster
    for name, (code, seconds, err) in ended.items():
        assert code == 3, (name, err)
        assert seconds < BUDGET_SECONDS, (name, seconds, err)
        assert "Traceback" not in err, (name, err)
        message = err.strip().splitlines()[-1]
        assert message.startswith("floe-deploy: "), (name, err)
        for part in (f"cluster {CONTEXT}", f"namespace {NAMESPACE}", "release floe-"):
            assert part in message, (name, part, message)
        # Ours say "deadline" or "no answer"; client-go's own, "TLS handshake timeout".
        assert any(word in message for word in ("deadline", "no answer", "timeout")), message
        assert "MaxRetryError" not in message and "Error: ClusterError" not in message


def test_a_sensor_tick_ends_within_its_budget_and_says_which_release_was_asked(
    silent: tuple[SilentServer, Path], tmp_path: Path
):
    _, kubeconfig = silent
    config = write_config(tmp_path, kubeconfig, NAMESPACE, undeployed=["prod"])
    resources = {
        "deployment": DeploymentConfigResource(path=str(config)),
        "kubernetes": KubernetesResource(kubeconfig=str(kubeconfig)),
    }
    with dg.instance_for_test() as instance:
        for sensor in (release_status_sensor, workload_health_sensor):
            started = time.monotonic()
            tick = sensor(dg.build_sensor_context(instance=instance, resources=resources))
            seconds = time.monotonic() - started
            assert seconds < SENSOR_BUDGET_SECONDS, (sensor.name, seconds)
            said = {
                f"{e.partition}/{e.asset_key.to_user_string()}": e.metadata["unreachable"].value
                for e in tick.asset_events
            }
            assert len(said) == 4, said  # 2 environments x 2 releases, one cluster asked once
            asked = [str(text) for text in said.values() if not str(text).startswith("not asked")]
            assert len(asked) == 1 and f"on cluster {CONTEXT}" in asked[0], said
            assert "ClusterError: ClusterError" not in " ".join(map(str, said.values()))
            for text in map(str, said.values()):
                if text.startswith("not asked"):  # names the release that was asked instead
                    assert f"cluster {CONTEXT} failed for another release" in text
