"""Several data products in one configuration (issue 14): which documents are read, how
products are named, selected and kept apart, and how their platform needs merge."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml

from floe_deploy_assets.cli import main
from floe_deploy_assets.helm.inputs import release_generators
from floe_deploy_assets.models.config import ConfigError, load_deployment_config
from floe_deploy_assets.models.products import load_products, product_slug, select_products
from floe_deploy_assets.values.mapping import ArtifactsLayer, merge_platform_layers
from tests.support.charts import EXAMPLE, ROOT

FIXTURES = ROOT / "tests" / "fixtures" / "upstream-compiled-artifacts"
SEMANTIC = FIXTURES / "v0.5_compiled_artifacts_with_semantic.json"
INGESTION = FIXTURES / "v0.6_compiled_artifacts_with_ingestion.json"


def _config(tmp_path: Path, artifacts: dict, **extra) -> Path:
    document = yaml.safe_load((ROOT / "floe-deploy.yaml").read_text())
    document["artifacts"] = artifacts
    document["charts"] = {
        chart: {"path": str(ROOT / "charts" / f"floe-{chart}"), "releaseName": f"floe-{chart}"}
        for chart in ("platform", "jobs")
    }
    document.update(extra)
    path = tmp_path / "floe-deploy.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def _three(tmp_path: Path) -> Path:
    products = tmp_path / "products"
    products.mkdir()
    for index, source in enumerate((EXAMPLE, SEMANTIC, INGESTION)):
        shutil.copy(source, products / f"{index}-{source.name}")
    return _config(tmp_path, {"paths": ["products/*.json"]})


def test_paths_and_globs_are_read_in_order_each_file_once(tmp_path: Path):
    config = load_deployment_config(_three(tmp_path))
    assert [p.name for p in config.artifacts_paths()] == [
        "0-compiled-artifacts.json",
        "1-v0.5_compiled_artifacts_with_semantic.json",
        "2-v0.6_compiled_artifacts_with_ingestion.json",
    ]
    listed = _config(tmp_path, {"paths": ["products/2-*.json", "products/*.json", str(EXAMPLE)]})
    names = [p.name for p in load_deployment_config(listed).artifacts_paths()]
    assert names == [
        "2-v0.6_compiled_artifacts_with_ingestion.json",
        "0-compiled-artifacts.json",
        "1-v0.5_compiled_artifacts_with_semantic.json",
        "compiled-artifacts.json",
    ]


def test_a_glob_matching_nothing_is_an_error_naming_it(tmp_path: Path):
    config = load_deployment_config(_config(tmp_path, {"paths": ["missing/*.json"]}))
    with pytest.raises(ConfigError, match=r"artifacts.paths\[0\]: 'missing/\*.json' matches no"):
        config.artifacts_paths()


@pytest.mark.parametrize("artifacts", [{}, {"path": "a.json", "paths": ["b.json"]}, {"paths": []}])
def test_path_or_paths_one_of_them(tmp_path: Path, artifacts: dict):
    with pytest.raises(ConfigError, match="artifacts"):
        load_deployment_config(_config(tmp_path, artifacts))


def test_products_are_named_by_their_slug_and_one_product_keeps_the_plain_names(tmp_path: Path):
    config = load_deployment_config(_three(tmp_path))
    named = load_products(config)
    assert [p.slug for p in named] == [
        "customer-360",
        "golden-semantic-test",
        "golden-ingestion-test",
    ]
    assert config.release_name("jobs", "dev", "customer-360") == "floe-jobs-customer-360"
    assert config.release_name("platform", "dev") == "floe-platform"
    assert named[0].object_name("floe-dbt-profiles") == "floe-dbt-profiles-customer-360"
    single = load_products(load_deployment_config(ROOT / "floe-deploy.yaml"))
    assert [p.object_name("floe-dbt-profiles") for p in single] == ["floe-dbt-profiles"]
    assert single[0].run_id("abc") == "abc"
    assert product_slug("Customer_360") == "customer-360"


def test_two_documents_of_one_product_are_refused_naming_both(tmp_path: Path):
    products = tmp_path / "products"
    products.mkdir()
    shutil.copy(EXAMPLE, products / "a.json")
    document = json.loads(EXAMPLE.read_text())
    document["metadata"]["product_name"] = "Customer_360"
    (products / "b.json").write_text(json.dumps(document))
    config = load_deployment_config(_config(tmp_path, {"paths": ["products/*.json"]}))
    with pytest.raises(ConfigError, match=r"'customer-360' is compiled in more than one.*a.json"):
        load_products(config)


def test_a_release_name_too_long_for_helm_names_the_document(tmp_path: Path):
    document = json.loads(EXAMPLE.read_text())
    document["metadata"]["product_name"] = "p" * 50
    (tmp_path / "long.json").write_text(json.dumps(document))
    config = load_deployment_config(_config(tmp_path, {"paths": ["long.json"]}))
    with pytest.raises(ConfigError, match=r"long.json: the jobs release of .* 60 characters"):
        load_products(config)


def test_selection_by_name_or_slug_and_unknown_names_listed(tmp_path: Path):
    products = load_products(load_deployment_config(_three(tmp_path)))
    assert [p.slug for p in select_products(products, ["golden-ingestion-test", "customer-360"])]
    assert select_products(products, None) == products
    with pytest.raises(ConfigError, match=r"no data product 'nope'.*customer-360"):
        select_products(products, ["nope"])


def test_products_run_ids_keep_their_jobs_apart_within_a_label_value(tmp_path: Path):
    products = load_products(load_deployment_config(_three(tmp_path)))
    dagster_run = "0f8fad5b-d9cb-469f-a165-70867728950e"
    scoped = [p.run_id(dagster_run) for p in products]
    assert len(set(scoped)) == 3 and all(len(s) <= 63 for s in scoped)
    assert scoped[0] == f"{dagster_run}-customer-360"
    assert scoped[1].endswith("-golden-semantic-test") and len(scoped[1]) < 63


def test_the_platform_serves_every_product_and_names_none(tmp_path: Path):
    config = load_deployment_config(_three(tmp_path))
    platform, *jobs = release_generators(config, load_products(config), "dev")
    values = platform.generate()
    assert values["polaris"]["enabled"] is True  # only customer-360 has a catalog
    assert values["marquez"]["enabled"] is True  # ... and lineage: it wins over false
    assert "productName" not in values["floe"] or values["floe"]["productName"] == ""
    assert "floe.dev/product" not in values["global"]["labels"]
    assert [g.release_name for g in jobs] == [
        "floe-jobs-customer-360",
        "floe-jobs-golden-semantic-test",
        "floe-jobs-golden-ingestion-test",
    ]
    assert [g.generate()["floe"]["productName"] for g in jobs] == [
        "customer-360",
        "golden-semantic-test",
        "golden-ingestion-test",
    ]
    assert all(g.validate() == [] for g in (platform, *jobs))


def test_platform_values_do_not_change_when_a_product_needing_nothing_new_is_added(
    tmp_path: Path,
):
    config = load_deployment_config(_three(tmp_path))
    products = load_products(config)
    values = [
        release_generators(config, products[:count], "dev", ("platform",))[0].helm_values()
        for count in (1, 2, 3)
    ]
    assert values[0] == values[1] == values[2]
    assert "floe.dev/product" not in values[0]["global"]["labels"]


def test_products_needing_different_platform_settings_are_a_conflict_naming_both(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = _three(tmp_path)
    document = json.loads(SEMANTIC.read_text())
    document["metadata"]["product_name"] = "sampled-differently"
    document["observability"]["telemetry"]["sampling"]["dev"] = 0.25
    (tmp_path / "products" / "3-sampled.json").write_text(json.dumps(document))
    assert main(["values", "--config", str(path), "--env", "dev", "--chart", "platform"]) == 2
    error = capsys.readouterr().err
    assert f"{path}: data products customer-360 and sampled-differently need different " in error
    assert "/otel/config/samplingRatio: 1.0 and 0.25" in error


def test_a_conflicting_value_that_may_be_a_credential_is_not_shown():
    layers = {
        name: ArtifactsLayer({"polaris": {"config": {"uri": uri}}}, ())
        for name, uri in (("a", "https://u:hunter22@x"), ("b", "https://y"))
    }
    with pytest.raises(ConfigError) as raised:
        merge_platform_layers(layers)
    assert "hunter22" not in str(raised.value) and "not shown" in str(raised.value)


def test_the_jobs_chart_needs_a_product_when_there_are_several(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    path = str(_three(tmp_path))
    assert main(["values", "--config", path, "--env", "dev", "--chart", "jobs"]) == 2
    assert "pass --product with one of them" in capsys.readouterr().err
    args = ["--config", path, "--env", "dev", "--chart", "jobs", "--product", "customer-360"]
    assert main(["values", *args]) == 0
    values = yaml.safe_load(capsys.readouterr().out)
    assert values["models"][0]["name"] == "stg_customers"


def test_a_products_dbt_project_is_found_by_its_name(tmp_path: Path):
    project = ROOT / "examples" / "customer_360"
    artifacts = {
        "paths": [str(EXAMPLE), str(SEMANTIC)],
        "dbtProjects": {"customer-360": str(project)},
    }
    products = load_products(load_deployment_config(_config(tmp_path, artifacts)))
    assert {p.name: p.dbt_project for p in products} == {
        "customer-360": project,
        "golden-semantic-test": None,
    }


def test_a_dbt_project_of_no_product_or_without_dbt_project_yml_is_refused(tmp_path: Path):
    unknown = {"path": str(EXAMPLE), "dbtProjects": {"customer_360": str(tmp_path)}}
    with pytest.raises(ConfigError, match=r"artifacts\.dbtProjects names customer_360, not a data"):
        load_products(load_deployment_config(_config(tmp_path, unknown)))
    empty = {"path": str(EXAMPLE), "dbtProjects": {"customer-360": str(tmp_path)}}
    with pytest.raises(ConfigError, match=r"artifacts\.dbtProjects\.customer-360: .* has no dbt_"):
        load_products(load_deployment_config(_config(tmp_path, empty)))
