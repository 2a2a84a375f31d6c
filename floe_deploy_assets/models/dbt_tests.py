"""The dbt tests a data product's dbt project declares on its models, read from the project's
property files (no dbt needed): Dagster declares each as an asset check on its model, blocking
when dbt's severity is ``error`` (its default), and the model's pod reports each outcome
through Pipes (``charts/floe-jobs/files/floe_dbt.py``).

A check is named from the test's declaration: the generic test (with its package when not
dbt's own, ``dbt_utils_expression_is_true``) and, for a column's test, the column
(``not_null__customer_id``); ``floe_dbt.py`` names a test the same way from dbt's manifest
(``test_metadata`` and ``column_name``). Two tests with one name make one check. Singular tests
(SQL files under ``tests/``) attach to no model here: dbt runs them, nothing declares them.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from floe_deploy_assets.models.config import ConfigError

PROPERTY_FILE_SUFFIXES = (".yml", ".yaml")
TEST_KEYS = ("data_tests", "tests")  # dbt 1.8's name, and the older one it still reads


@dataclass(frozen=True)
class DbtTest:
    model: str
    check_name: str
    blocking: bool  # dbt's severity is error: a failure stops what depends on the model
    description: str


def check_name(generic: str, column: str | None) -> str:
    namespace, _, name = generic.rpartition(".")
    base = f"{namespace}_{name}" if namespace and namespace != "dbt" else name
    return f"{base}__{column}" if column else base


def load_dbt_tests(project_dir: Path) -> dict[str, list[DbtTest]]:
    """Each model's declared tests, by model name, in the order of their files and entries."""
    project_file = project_dir / "dbt_project.yml"
    project = _yaml(project_file)
    if not isinstance(project, Mapping):
        raise ConfigError(f"{project_file}: not a dbt project file (a mapping is expected)")
    found: dict[str, dict[str, DbtTest]] = {}
    for model_path in project.get("model-paths") or ["models"]:
        for file in sorted((project_dir / model_path).rglob("*")):
            if file.suffix in PROPERTY_FILE_SUFFIXES and file.is_file():
                for test in _tests_in(file):
                    # One check per name: the first declaration's severity and description.
                    found.setdefault(test.model, {}).setdefault(test.check_name, test)
    return {model: list(tests.values()) for model, tests in found.items()}


def _yaml(path: Path) -> Any:
    try:
        return yaml.safe_load(path.read_text())
    except OSError as error:
        raise ConfigError(f"{path}: cannot read it ({error.strerror})") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{path}: not valid YAML: {error}") from None


def _tests_in(file: Path) -> Iterator[DbtTest]:
    document = _yaml(file)
    models = document.get("models") if isinstance(document, Mapping) else None
    for index, model in enumerate(models or []):
        name = model.get("name") if isinstance(model, Mapping) else None
        if not isinstance(name, str):
            raise ConfigError(f"{file}: models[{index}] has no name")
        for entry in _entries(model):
            yield _test(file, name, None, entry)
        for column in model.get("columns") or []:
            if isinstance(column, Mapping) and isinstance(column.get("name"), str):
                for entry in _entries(column):
                    yield _test(file, name, column["name"], entry)


def _entries(owner: Mapping[str, Any]) -> list[Any]:
    return [entry for key in TEST_KEYS for entry in owner.get(key) or []]


def _test(file: Path, model: str, column: str | None, entry: Any) -> DbtTest:
    """One test entry: ``unique``, ``{unique: {config: {severity: warn}}}``, or with its own
    name, ``{name: ..., test_name: accepted_values, ...}``."""
    arguments: Mapping[str, Any] = {}
    if isinstance(entry, str):
        generic = entry
    elif isinstance(entry, Mapping) and "test_name" in entry:
        generic, arguments = str(entry["test_name"]), entry
    elif isinstance(entry, Mapping) and len(entry) == 1:
        [(generic, given)] = entry.items()
        arguments = given if isinstance(given, Mapping) else {}
    else:
        where = f"column {column} of model {model}" if column else f"model {model}"
        raise ConfigError(f"{file}: a test of {where} is neither a name nor a one-key mapping")
    config = arguments.get("config")
    config = config if isinstance(config, Mapping) else {}
    severity = str(config.get("severity", arguments.get("severity", "error"))).lower()
    on = f"{model}.{column}" if column else model
    return DbtTest(
        model=model,
        check_name=check_name(generic, column),
        blocking=severity != "warn",
        description=f"dbt test {generic} on {on} (severity {severity})",
    )
