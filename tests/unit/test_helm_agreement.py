"""The real Helm engine (helm-python-sdk, offline) agrees with our values generation: Helm's own
merge of our values over the chart defaults gives exactly the values we generated and
validated, and Helm's own schema validation accepts them and rejects what ours rejects."""

from __future__ import annotations

import copy
from pathlib import Path

import helm_python
import pytest

from floe_deploy_assets.helm.render import RenderError
from floe_deploy_assets.models.config import load_deployment_config
from floe_deploy_assets.values.charts import ChartFiles
from floe_deploy_assets.values.schema import CHART_SCHEMAS, dependency_keys
from tests.support.charts import render, values_generator

ROOT = Path(__file__).resolve().parents[2]
CONFIG = load_deployment_config(ROOT / "floe-deploy.yaml")
DOCUMENTS = [
    *sorted((ROOT / "tests" / "fixtures" / "upstream-compiled-artifacts").glob("v*.json")),
    ROOT / "examples" / "compiled-artifacts.json",
]


def _without_subchart_additions(merged: dict, kind: str) -> dict:
    """Drop what Helm's merge adds for subcharts: each dependency's defaults under its chart
    name (keys the values model does not have), and `global` plus nested dependencies inside
    each component's values."""
    model = CHART_SCHEMAS[f"floe-{kind}"]
    fields = {field.alias or name for name, field in model.model_fields.items()}
    merged = {key: value for key, value in merged.items() if key in fields}
    for key, nested in dependency_keys(CONFIG.chart_path(kind)).items():
        if isinstance(merged.get(key), dict):
            for injected in ("global", *nested):
                merged[key].pop(injected, None)
    return merged


@pytest.fixture(scope="module", params=["platform", "jobs"])
def chart(request: pytest.FixtureRequest):
    files = ChartFiles(CONFIG.chart_path(request.param))
    loaded = helm_python.Chart.load(str(files.path))
    yield request.param, files, loaded
    loaded.close()


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda p: p.name)
@pytest.mark.parametrize("environment", ["dev", "prod"])
def test_helm_merges_our_values_to_what_we_validated(chart, document: Path, environment: str):
    kind, _, loaded = chart
    generator = values_generator(kind, environment, document)

    merged = loaded.merge_values(generator.helm_values())
    assert _without_subchart_additions(merged, kind) == generator.generate()
    # Rendering validates the values against the schemas, with subchart aliases applied as an
    # install applies them (Chart.validate_schema alone does not apply aliases).
    render(kind, generator.helm_values())


def test_helm_rejects_an_unknown_key_as_our_schema_does(chart):
    kind, _, _ = chart
    values = copy.deepcopy(values_generator(kind, "dev", DOCUMENTS[-1]).helm_values())
    values["floe"]["productNmae"] = "typo"

    with pytest.raises(RenderError, match="productNmae"):
        render(kind, values)
