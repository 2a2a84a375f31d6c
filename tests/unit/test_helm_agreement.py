"""The real Helm engine (helm-python-sdk, offline) agrees with our values generation: Helm's own
merge of our values over the chart defaults gives exactly the values we generated and
validated, and Helm's own schema validation accepts them and rejects what ours rejects."""

from __future__ import annotations

import copy
from pathlib import Path

import helm_python
import pytest

from floe_deploy_assets.models.config import load_deployment_config
from floe_deploy_assets.values.charts import ChartFiles
from tests.support.charts import values_generator

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_deployment_config(ROOT / "floe-deploy.yaml")
DOCUMENTS = [
    *sorted((ROOT / "tests" / "fixtures" / "upstream-compiled-artifacts").glob("v*.json")),
    ROOT / "examples" / "compiled-artifacts.json",
]


@pytest.fixture(scope="module", params=["platform", "jobs"])
def chart(request: pytest.FixtureRequest):
    files = ChartFiles.for_chart(CONFIG, request.param)
    loaded = helm_python.Chart.load(str(files.path))
    yield request.param, files, loaded
    loaded.close()


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_helm_merges_our_values_to_what_we_validated(chart, document: Path, environment: str):
    kind, _, loaded = chart
    generator = values_generator(kind, environment, document)

    merged = loaded.merge_values(generator.helm_values())
    # Helm adds each subchart's values under its name (the floe-common library's: just global).
    merged.pop("floe-common", None)
    assert merged == generator.generate()
    loaded.validate_schema(generator.helm_values())  # raises HelmValuesError on failure


def test_helm_rejects_an_unknown_key_as_our_schema_does(chart):
    kind, _, loaded = chart
    values = copy.deepcopy(values_generator(kind, "dev", DOCUMENTS[-1]).helm_values())
    values["floe"]["productNmae"] = "typo"

    with pytest.raises(helm_python.HelmValuesError, match="productNmae"):
        loaded.validate_schema(values)
