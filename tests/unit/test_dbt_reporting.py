"""dbt's tests as asset checks: what the dbt project declares (models/dbt_tests.py) and what a
model's pod reports from dbt's run results (the floe-jobs chart's floe_dbt.py) must agree.

The fixtures in tests/fixtures/dbt are dbt's own manifest and run results of a `dbt build` of
examples/customer_360 (dbt-core 1.8.9, dbt-duckdb), cut down to the fields floe_dbt.py reads."""

from __future__ import annotations

import copy
import importlib.util
import json
from pathlib import Path

import pytest

from floe_deploy_assets.models.config import ConfigError
from floe_deploy_assets.models.dbt_tests import load_dbt_tests

ROOT = Path(__file__).resolve().parents[2]
PROJECT = ROOT / "examples" / "customer_360"
FIXTURES = ROOT / "tests" / "fixtures" / "dbt"
MODELS = ("stg_customers", "stg_orders", "customer_orders", "customer_360")


def _floe_dbt():
    spec = importlib.util.spec_from_file_location(
        "floe_dbt", ROOT / "charts" / "floe-jobs" / "files" / "floe_dbt.py"
    )
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


floe_dbt = _floe_dbt()


@pytest.fixture
def manifest() -> dict:
    return json.loads((FIXTURES / "manifest.json").read_text())


@pytest.fixture
def run_results() -> dict:
    return json.loads((FIXTURES / "run_results.json").read_text())


def test_every_test_dbt_ran_is_a_declared_check_of_its_model_with_the_same_blocking(
    manifest: dict, run_results: dict
):
    declared = load_dbt_tests(PROJECT)
    for model in MODELS:
        _, checks = floe_dbt.model_report(model, run_results, manifest)
        assert checks, model
        assert {name: outcome["severity"] == "ERROR" for name, outcome in checks.items()} == {
            test.check_name: test.blocking for test in declared[model]
        }, model


def test_the_declared_checks_of_the_example(manifest: dict):
    declared = load_dbt_tests(PROJECT)
    assert {model: [t.check_name for t in tests] for model, tests in declared.items()} == {
        "stg_customers": ["unique__customer_id", "not_null__customer_id", "not_null__email"],
        "stg_orders": ["unique__order_id", "not_null__order_id", "accepted_values__status"],
        "customer_orders": [
            "unique__customer_id",
            "not_null__customer_id",
            "relationships__customer_id",
        ],
        "customer_360": [
            "unique__customer_id",
            "not_null__customer_id",
            "accepted_values__segment",
            "unique__email",
            "not_null__first_order_on",
        ],
    }
    warned = [t for t in declared["customer_360"] if not t.blocking]
    assert [t.check_name for t in warned] == ["unique__email", "not_null__first_order_on"]
    assert warned[0].description == "dbt test unique on customer_360.email (severity warn)"


def test_a_warning_fails_its_check_without_blocking(manifest: dict, run_results: dict):
    # Two of the example's customers have not ordered: dbt warns, the model is built.
    materialization, checks = floe_dbt.model_report("customer_360", run_results, manifest)

    assert materialization is not None and materialization["dbt_status"] == "success"
    assert checks["not_null__first_order_on"]["passed"] is False
    assert checks["not_null__first_order_on"]["severity"] == "WARN"
    assert checks["not_null__first_order_on"]["metadata"]["failures"] == 2
    assert checks["unique__email"] == {**checks["unique__email"], "passed": True}


def test_a_built_model_reports_dbts_status_and_timing_and_its_tests(
    manifest: dict, run_results: dict
):
    materialization, checks = floe_dbt.model_report("customer_orders", run_results, manifest)

    assert materialization is not None
    assert materialization["dbt_status"] == "success"
    assert materialization["materialized"] == "table"
    assert materialization["execution_time_seconds"] > 0
    assert materialization["relation"].endswith('"customer_360"."customer_orders"')
    assert checks["relationships__customer_id"] == {
        "passed": True,
        "severity": "ERROR",
        "metadata": {
            "dbt_test": (
                "relationships_customer_orders_customer_id__customer_id__ref_stg_customers_"
            ),
            "dbt_status": "pass",
            "failures": 0,
            "dbt_message": "",
        },
    }
    # Seeds' tests and other models' tests are not this model's.
    assert set(checks) == {
        "unique__customer_id",
        "not_null__customer_id",
        "relationships__customer_id",
    }


def test_rows_affected_come_from_the_adapters_response(manifest: dict, run_results: dict):
    # dbt-postgres answers with the rows a statement touched (dbt-duckdb does not).
    results = copy.deepcopy(run_results)
    for result in results["results"]:
        if result["unique_id"] == "model.customer_360.customer_360":
            result["adapter_response"] = {
                "_message": "SELECT 5",
                "code": "SELECT",
                "rows_affected": 5,
            }

    materialization, _ = floe_dbt.model_report("customer_360", results, manifest)

    assert materialization["rows_affected"] == 5


def test_a_failed_test_fails_its_check_and_a_failed_model_reports_no_materialization(
    manifest: dict, run_results: dict
):
    results = copy.deepcopy(run_results)
    for result in results["results"]:
        if result["unique_id"].startswith("test.customer_360.unique_stg_orders_order_id"):
            result.update(
                status="fail", failures=2, message="Got 2 results, configured to fail if != 0"
            )
        if result["unique_id"] == "model.customer_360.stg_orders":
            result.update(status="error", message="Database Error in model stg_orders")

    materialization, checks = floe_dbt.model_report("stg_orders", results, manifest)

    assert materialization is None
    assert checks["unique__order_id"]["passed"] is False
    assert checks["unique__order_id"]["metadata"]["failures"] == 2
    assert checks["not_null__order_id"]["passed"] is True


def test_tests_are_read_in_every_form_dbt_accepts(tmp_path: Path):
    (tmp_path / "dbt_project.yml").write_text("name: p\nmodel-paths: [sql]\n")
    (tmp_path / "sql" / "deep").mkdir(parents=True)
    (tmp_path / "sql" / "deep" / "props.yaml").write_text(
        """
models:
  - name: orders
    tests:  # the older key
      - dbt_utils.expression_is_true: {expression: "amount >= 0"}
    columns:
      - name: id
        data_tests:
          - unique: {config: {severity: WARN}}
          - name: id_not_null
            test_name: not_null
      - name: status
        data_tests:
          - accepted_values: {values: [a, b], severity: warn}
      - name: untested
"""
    )
    tests = load_dbt_tests(tmp_path)["orders"]

    assert [(t.check_name, t.blocking) for t in tests] == [
        ("dbt_utils_expression_is_true", True),
        ("unique__id", False),
        ("not_null__id", True),
        ("accepted_values__status", False),
    ]


def test_a_test_entry_dbt_would_refuse_is_a_clear_error(tmp_path: Path):
    (tmp_path / "dbt_project.yml").write_text("name: p\n")
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "schema.yml").write_text(
        "models:\n  - name: orders\n    columns:\n      - name: id\n"
        "        data_tests: [{unique: {}, not_null: {}}]\n"
    )
    with pytest.raises(ConfigError, match=r"schema\.yml: a test of column id of model orders"):
        load_dbt_tests(tmp_path)


def test_a_project_that_is_not_yaml_is_a_clear_error(tmp_path: Path):
    (tmp_path / "dbt_project.yml").write_text("name: [p\n")
    with pytest.raises(ConfigError, match=r"dbt_project\.yml: not valid YAML"):
        load_dbt_tests(tmp_path)
