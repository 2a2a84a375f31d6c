"""dagster-webserver on workspace.yaml: the assets, checks, sensors, schedules and jobs are found
through its GraphQL API, as the UI finds them."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.charts import ROOT
from tests.support.waits import wait_for

QUERY = """
{
  assetNodes {
    assetKey { path }
    assetChecksOrError { ... on AssetChecks { checks { name blocking } } }
  }
  workspaceOrError {
    ... on Workspace {
      locationEntries {
        locationOrLoadError {
          ... on RepositoryLocation {
            repositories {
              sensors { name }
              schedules { name cronSchedule }
              jobs { name }
            }
          }
          ... on PythonError { message }
        }
      }
    }
  }
}
"""


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _post(url: str, query: str) -> dict[str, Any]:
    request = urllib.request.Request(
        url, json.dumps({"query": query}).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"]


@pytest.fixture(scope="module")
def webserver(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    home = tmp_path_factory.mktemp("dagster-home")
    log = (home / "webserver.log").open("w")
    process = subprocess.Popen(
        [
            str(Path(sys.executable).with_name("dagster-webserver")),
            "-w",
            "workspace.yaml",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        cwd=ROOT,
        env={**os.environ, "DAGSTER_HOME": str(home)},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"

    def up() -> bool:
        if process.poll() is not None:
            raise AssertionError(
                f"dagster-webserver exited: {(home / 'webserver.log').read_text()}"
            )
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=5):
                return True
        except OSError:
            return False

    try:
        wait_for(up, timeout=120, reason="dagster-webserver to answer /server_info")
        yield f"{url}/graphql"
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def test_the_ui_finds_the_graph(webserver: str):
    data = _post(webserver, QUERY)

    assets = {"/".join(node["assetKey"]["path"]): node for node in data["assetNodes"]}
    assert {"compiled_artifacts", "platform_release", "jobs_release"} <= set(assets)
    checks = {
        (key, check["name"]): check["blocking"]
        for key, node in assets.items()
        for check in node["assetChecksOrError"].get("checks", [])
    }
    assert checks[("platform_values", "no_plaintext_secrets")] is True
    assert checks[("jobs_manifests", "pod_security_restricted")] is True
    assert checks[("platform_release", "release_healthy")] is False
    (entry,) = data["workspaceOrError"]["locationEntries"]
    (repository,) = entry["locationOrLoadError"]["repositories"]
    assert {s["name"] for s in repository["sensors"]} >= {"release_status", "workload_health"}
    assert {s["name"]: s["cronSchedule"] for s in repository["schedules"]}["redeploy_dev"] == (
        "*/30 * * * *"
    )
    assert "deploy_platform" in {j["name"] for j in repository["jobs"]}
