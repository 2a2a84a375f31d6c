"""The ``gitops_files`` asset (issue 17): with a ``gitops`` section in the configuration, each
environment's materialization writes the files ``floe-deploy gitops --env`` writes, byte for
byte; values that fail their check write nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from floe_deploy_assets.cli import main
from floe_deploy_assets.defs.build import build_definitions
from floe_deploy_assets.defs.gitops_assets import GITOPS_FILES
from tests.support.charts import GITOPS_REGISTRY, ROOT, example_config


def _config(tmp_path: Path, fmt: str, **changes: Any) -> Path:
    document = example_config()
    document["gitops"] = {
        "format": fmt,
        "out": "gitops",
        "registry": GITOPS_REGISTRY,
        "controllerCluster": "floe-local",
    }
    document.update(changes)
    path = tmp_path / "floe-deploy.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _materialize(config: Path, environment: str) -> dg.ExecuteInProcessResult:
    defs = build_definitions(str(config))
    return dg.materialize(
        [defs.resolve_assets_def(GITOPS_FILES)],
        partition_key=environment,  # the definitions' own resources (the configuration)
        raise_on_error=False,
    )


@pytest.mark.parametrize("fmt", ["argocd", "flux"])
def test_each_environment_writes_what_the_command_writes(tmp_path: Path, fmt: str):
    config = _config(tmp_path, fmt)
    graph = build_definitions(str(config)).resolve_asset_graph()
    node = graph.get(GITOPS_FILES)
    assert sorted(k.to_user_string() for k in node.parent_keys) == [
        "jobs_values",
        "platform_values",
    ]
    assert node.group_name == "gitops"
    assert node.partitions_def.get_partition_keys() == ["dev", "staging", "prod"]

    for environment in ("dev", "prod"):
        result = _materialize(config, environment)
        assert result.success
        written = tmp_path / "gitops" / environment
        from_command = tmp_path / "command" / environment
        assert (
            main(
                [
                    *("gitops", "--config", str(config), "--format", fmt),
                    *("--env", environment, "--out", str(from_command)),
                    *("--registry", GITOPS_REGISTRY, "--controller-cluster", "floe-local"),
                ]
            )
            == 0
        )
        files = sorted(p.name for p in written.iterdir())
        assert files == sorted(p.name for p in from_command.iterdir()) and files
        for name in files:
            assert (written / name).read_bytes() == (from_command / name).read_bytes()
        metadata = result.asset_materializations_for_node("gitops_files")[0].metadata
        assert metadata["files"].value == files
        assert "floe-postgresql" in metadata["required_secrets"].value


def test_values_that_fail_their_check_write_nothing(tmp_path: Path):
    broken = {"overrides": {"dev": {"platform": {"dagster": {"webserver": {"replicas": "two"}}}}}}
    result = _materialize(_config(tmp_path, "flux", **broken), "dev")
    assert not result.success
    failure = result.failure_data_for_node("gitops_files")
    assert failure is not None and failure.user_failure_data is not None
    assert failure.user_failure_data.description == (
        "values of floe-platform for dev fail validation; nothing written"
    )
    problems = failure.user_failure_data.metadata["problems"].value
    assert any("/dagster/webserver/replicas" in problem for problem in problems), problems
    assert not (tmp_path / "gitops").exists()


def test_no_gitops_section_no_asset():
    defs = build_definitions(str(ROOT / "floe-deploy.yaml"))
    assert GITOPS_FILES not in defs.resolve_asset_graph().get_all_asset_keys()
