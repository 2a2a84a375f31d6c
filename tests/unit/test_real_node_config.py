"""The demo's configuration for the real node (examples/real-node/floe-deploy.yaml), and the
same configuration moved to where the Python image has the files, for the code location hosted
in the cluster (``DeploymentConfig.relocated``)."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pytest
import yaml

from floe_deploy_assets.models.config import ConfigError, load_deployment_config
from localcluster.images import DBT_IMAGE, FLOE_DIR, POSTGRES_IMAGE, PYTHON_IMAGE
from tests.support.charts import ROOT, generated_values

REAL_NODE = load_deployment_config(ROOT / "examples" / "real-node" / "floe-deploy.yaml")


def _reference(image: dict) -> str:
    return f"{image['repository']}:{image['tag']}"


def test_the_components_with_a_local_image_run_it_on_the_real_node():
    platform = generated_values("platform", config=REAL_NODE)
    jobs = generated_values("jobs", config=REAL_NODE)
    dagster = platform["dagster"]
    images = {
        "webserver": _reference(dagster["webserver"]["image"]),
        "daemon": _reference(dagster["daemon"]["image"]),
        "userCode": _reference(dagster["userCode"]["image"]),
        "postgresql": _reference(platform["postgresql"]["image"]),
        "jobs": _reference(jobs["image"]),
    }
    assert images == {
        "webserver": PYTHON_IMAGE,
        "daemon": PYTHON_IMAGE,
        "userCode": PYTHON_IMAGE,
        "postgresql": POSTGRES_IMAGE,
        "jobs": DBT_IMAGE,
    }
    placed = [
        *(dagster[c] for c in ("webserver", "daemon", "userCode", "runLauncher")),
        platform["postgresql"],
        jobs,
    ]
    for values in placed:
        assert values["nodeSelector"] == {"node.floe.dev/real": "true"}
    assert platform["polaris"]["nodeSelector"] == {}  # no local image: a simulated node
    assert dagster["floeDeploy"]["enabled"] is True


def test_relocated_the_configuration_gives_the_same_values(tmp_path: Path):
    document = REAL_NODE.relocated(ROOT, PurePosixPath(FLOE_DIR))
    assert document["artifacts"] == {
        "path": f"{FLOE_DIR}/examples/compiled-artifacts.json",
        "dbtProjects": {"customer-360": f"{FLOE_DIR}/examples/customer_360"},
    }
    assert document["charts"]["platform"]["path"] == f"{FLOE_DIR}/charts/floe-platform"
    # Moved back onto this checkout, it is the same configuration.
    here = REAL_NODE.relocated(ROOT, PurePosixPath(ROOT))
    path = tmp_path / "floe-deploy.yaml"
    path.write_text(yaml.safe_dump(here))
    moved = load_deployment_config(path)
    for chart in ("platform", "jobs"):
        assert generated_values(chart, config=moved) == generated_values(chart, config=REAL_NODE)


def test_a_path_outside_the_tree_cannot_be_relocated():
    with pytest.raises(ConfigError, match=r"charts\.platform\.path: .* is not under .*examples"):
        REAL_NODE.relocated(ROOT / "examples", PurePosixPath(FLOE_DIR))
