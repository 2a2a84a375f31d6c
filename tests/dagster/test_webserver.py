"""dagster-webserver on workspace.yaml: the assets, checks, sensors, schedules and jobs are found
through its GraphQL API, as the UI finds them."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.dagster_processes import graphql, webserver

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


@pytest.fixture(scope="module")
def graphql_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with webserver(tmp_path_factory.mktemp("dagster-home")) as url:
        yield url


def test_the_ui_finds_the_graph(graphql_url: str):
    data = graphql(graphql_url, QUERY)

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
