"""A model's pod runs dbt through this: ``python3 floe_dbt.py <dbt arguments>``.

dbt runs as it would alone (its output is the pod's log, its exit code the container's). Then,
when Dagster started the run through Pipes (``DAGSTER_PIPES_CONTEXT`` is set) and the image has
``dagster-pipes``, what dbt did is reported back from ``run_results.json`` and ``manifest.json``:
the model's materialization with dbt's status, rows affected and execution time, and each of its
dbt tests as an asset check (Dagster declares them; see floe_deploy_assets/models/dbt_tests.py,
whose ``check_name`` this file's agrees with). Messages go to stderr, which Dagster reads from
the pod's log.

The Pipes context's extras say, per dbt model (``FLOE_DBT_MODEL`` is this pod's): its asset key
and the names of the checks Dagster declared; a test without a declared check is only logged.
Only the Python standard library is needed besides dagster-pipes, and that is optional: an image
without it runs dbt as before, without reporting.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

EXTRAS_KEY = "floe_models"
MODEL_ENV = "FLOE_DBT_MODEL"


def check_name(test_node: dict[str, Any]) -> str:
    """A dbt test's check name: its generic test (with its package, when not dbt's own) and,
    for a column's test, the column: ``not_null__customer_id``; a singular test's own name."""
    metadata = test_node.get("test_metadata") or {}
    generic = metadata.get("name")
    if not generic:
        return str(test_node["name"])
    namespace = metadata.get("namespace")
    name = f"{namespace}_{generic}" if namespace and namespace != "dbt" else generic
    column = test_node.get("column_name")
    return f"{name}__{column}" if column else name


def _load(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _number(value: Any) -> float | int | None:
    return value if isinstance(value, int | float) and not isinstance(value, bool) else None


def model_report(
    model: str, run_results: dict[str, Any], manifest: dict[str, Any]
) -> tuple[dict[str, Any] | None, dict[str, dict[str, Any]]]:
    """What dbt did to ``model``: its materialization's metadata (None unless dbt built it) and
    its tests' outcomes by check name (``passed``, ``severity``, ``metadata``). Two tests with
    one check name make one check, passed when both passed."""
    nodes = manifest.get("nodes", {})
    model_id = next(
        (
            uid
            for uid, node in nodes.items()
            if node.get("resource_type") == "model" and node.get("name") == model
        ),
        None,
    )
    materialization: dict[str, Any] | None = None
    checks: dict[str, dict[str, Any]] = {}
    for result in run_results.get("results", []):
        node = nodes.get(result.get("unique_id"), {})
        status = str(result.get("status"))
        timing = _number(result.get("execution_time"))
        if result.get("unique_id") == model_id and status == "success":
            response = result.get("adapter_response") or {}
            materialization = {
                "dbt_status": status,
                "dbt_message": str(result.get("message") or ""),
                "rows_affected": _number(response.get("rows_affected")),
                "execution_time_seconds": round(timing, 3) if timing is not None else None,
                "materialized": (node.get("config") or {}).get("materialized"),
                "relation": node.get("relation_name"),
            }
        elif node.get("resource_type") == "test" and node.get("attached_node") == model_id:
            name = check_name(node)
            severity = str((node.get("config") or {}).get("severity", "error")).upper()
            entry = checks.setdefault(
                name,
                {"passed": True, "severity": "ERROR" if severity == "ERROR" else "WARN"},
            )
            entry["passed"] = entry["passed"] and status == "pass"
            entry["metadata"] = {
                "dbt_test": str(node.get("name")),
                "dbt_status": status,
                "failures": _number(result.get("failures")),
                "dbt_message": str(result.get("message") or ""),
            }
    if materialization is not None:
        materialization = {k: v for k, v in materialization.items() if v is not None}
    for entry in checks.values():
        entry["metadata"] = {k: v for k, v in entry["metadata"].items() if v is not None}
    return materialization, checks


def report(model: str, target: Path) -> None:
    """Report ``model``'s results to Dagster, when Dagster is listening."""
    try:
        from dagster_pipes import open_dagster_pipes
    except ImportError:
        print("floe_dbt: dagster-pipes is not installed: nothing reported", file=sys.stderr)
        return
    run_results, manifest = _load(target / "run_results.json"), _load(target / "manifest.json")
    with open_dagster_pipes() as pipes:
        declared = (pipes.extras.get(EXTRAS_KEY) or {}).get(model)
        if declared is None:
            pipes.log.warning(f"model {model} is not one of this run's: nothing reported")
            return
        if run_results is None or manifest is None:
            pipes.log.warning(f"dbt wrote no run results in {target}: nothing reported")
            return
        materialization, checks = model_report(model, run_results, manifest)
        asset_key = declared["asset_key"]
        if materialization is not None:
            pipes.report_asset_materialization(metadata=materialization, asset_key=asset_key)
        for name, outcome in sorted(checks.items()):
            if name not in declared["checks"]:
                pipes.log.info(f"dbt test {name} of {model} has no declared check: not reported")
                continue
            pipes.report_asset_check(
                check_name=name,
                passed=outcome["passed"],
                severity=outcome["severity"],
                metadata=outcome["metadata"],
                asset_key=asset_key,
            )


def main(arguments: list[str]) -> int:
    code = subprocess.call(["dbt", *arguments])
    model = os.environ.get(MODEL_ENV)
    if model and os.environ.get("DAGSTER_PIPES_CONTEXT"):
        try:
            report(model, Path(os.environ.get("DBT_TARGET_PATH", "target")))
        except Exception as error:  # the model's outcome is dbt's, whatever reporting does
            print(f"floe_dbt: reporting to Dagster failed: {error!r}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
