"""The charts' READMEs: values tables generated from values.schema.json and values.yaml."""

from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from floe_deploy_assets.values import docs
from floe_deploy_assets.values.docs import (
    END,
    REGENERATE,
    START,
    charts_with_schema,
    render_readme,
    values_table,
)

SCHEMA: dict[str, Any] = {
    "$defs": {
        "Image": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "pullPolicy": {"enum": ["IfNotPresent", "Always"], "type": "string"},
                "tag": {"type": "string", "pattern": "^v(\\d+|next)$", "description": "Tag | pin"},
            },
        },
        "Model": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "name": {"type": "string", "description": "Model name"},
                "schedule": {
                    "anyOf": [{"type": "string"}, {"type": "null"}],
                    "default": None,
                    "description": "Cron; null: unscheduled",
                },
            },
        },
        "SecretRef": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"name": {"type": "string", "maxLength": 253}},
        },
        "Global": {
            "type": "object",
            "additionalProperties": True,
            "properties": {"environment": {"type": "string", "description": "Environment"}},
        },
    },
    "type": "object",
    "properties": {
        "global": {"$ref": "#/$defs/Global", "description": "Helm's global values"},
        "replicas": {"type": "integer", "minimum": 1, "maximum": 5, "description": "Replicas"},
        "image": {"$ref": "#/$defs/Image", "description": "The image"},
        "models": {"type": "array", "items": {"$ref": "#/$defs/Model"}, "description": "Models"},
        "labels": {"type": "object", "additionalProperties": {"type": "string"}},
        "extra": {"type": "object", "additionalProperties": True, "description": "Free-form"},
        "secret": {
            "anyOf": [{"$ref": "#/$defs/SecretRef"}, {"type": "null"}],
            "default": None,
            "description": "Secret; null: none",
        },
        "id": {"type": "string", "pattern": "x" * 100},
        "enabled": {"type": "boolean", "default": False},
    },
}
DEFAULTS: dict[str, Any] = {
    "global": {"environment": "dev"},
    "replicas": 1,
    "image": {"pullPolicy": "IfNotPresent", "tag": "v1"},
    "models": [],
    "labels": {},
    "enabled": True,
}


def rows(table: str) -> dict[str, list[str]]:
    """Key -> [type, default, description], with escaped pipes kept as written."""
    result = {}
    for line in table.splitlines()[2:]:
        cells = [cell.strip() for cell in re.split(r"(?<!\\)\|", line)[1:-1]]
        result[cells[0].strip("`")] = cells[1:]
    return result


def test_one_row_per_leaf_in_schema_property_order():
    table = values_table(SCHEMA, DEFAULTS)

    assert table.splitlines()[:2] == [
        "| Key | Type | Default | Description |",
        "|---|---|---|---|",
    ]
    assert list(rows(table)) == [
        "global.environment",
        "global.*",
        "replicas",
        "image.pullPolicy",
        "image.tag",
        "models",
        "models[].name",
        "models[].schedule",
        "labels",
        "extra",
        "secret",
        "secret.name",
        "id",
        "enabled",
    ]


def test_types_follow_refs_nullables_enums_lists_and_maps():
    table = rows(values_table(SCHEMA, DEFAULTS))

    assert table["image.pullPolicy"][0] == "one of IfNotPresent, Always"
    assert table["models"][0] == "list of object"
    assert table["models[].schedule"][0] == "string \\| null"
    assert table["labels"][0] == "map of string"
    assert table["extra"][0] == "map"
    assert table["secret"][0] == "object \\| null"
    assert table["global.*"][0] == "any"


def test_defaults_come_from_values_yaml_as_inline_code():
    table = rows(values_table(SCHEMA, DEFAULTS))

    assert table["replicas"][1] == "`1`"
    assert table["global.environment"][1] == '`"dev"`'
    assert table["models"][1] == "`[]`"
    assert table["labels"][1] == "`{}`"
    assert table["enabled"][1] == "`true`"  # values.yaml wins over the schema's default
    assert table["secret"][1] == "`null`"  # not in values.yaml: the schema's default
    assert table["models[].schedule"][1] == "`null`"
    assert table["models[].name"][1] == ""  # no default: required
    assert table["extra"][1] == ""


def test_descriptions_carry_constraints_and_escape_pipes():
    table = rows(values_table(SCHEMA, DEFAULTS))

    assert table["replicas"][2] == "Replicas (minimum 1, maximum 5)"
    assert table["image.tag"][2] == "Tag \\| pin (pattern `^v(\\d+\\|next)$`)"
    assert table["image.tag"][1] == '`"v1"`'
    assert table["secret.name"][2] == "(max length 253)"
    assert table["id"][2] == "(pattern in values.schema.json)"  # too long to read in a table
    assert table["image.pullPolicy"][2] == ""


def test_every_row_has_four_cells():
    for line in values_table(SCHEMA, DEFAULTS).splitlines():
        assert len(re.split(r"(?<!\\)\|", line)) == 6, line


def test_committed_readmes_match_their_schemas():
    assert {"floe-platform", "floe-jobs"} <= set(charts_with_schema())
    for chart in charts_with_schema():
        readme = docs.CHARTS_DIR / chart / "README.md"
        assert readme.is_file(), f"charts/{chart}/README.md is missing; run: {REGENERATE}"
        assert readme.read_text() == render_readme(chart), (
            f"charts/{chart}/README.md is out of date with its values schema; run: {REGENERATE}"
        )


def test_library_chart_readme_names_every_helper():
    common = docs.CHARTS_DIR / "floe-common"
    readme = (common / "README.md").read_text()
    for template in common.glob("templates/*.tpl"):
        for helper in re.findall(r'define "([^"]+)"', template.read_text()):
            assert f"`{helper}`" in readme, f"{helper} ({template.name}) is not in the README"


@pytest.fixture
def charts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    chart = tmp_path / "demo"
    chart.mkdir()
    (chart / "Chart.yaml").write_text("name: demo\ndescription: A demo chart\n")
    (chart / "values.schema.json").write_text('{"properties": {"n": {"type": "integer"}}}')
    (chart / "values.yaml").write_text("# comment\nn: 3\n")
    monkeypatch.setattr(docs, "CHARTS_DIR", tmp_path)
    return tmp_path


def test_a_missing_readme_gets_a_minimal_head(charts: Path):
    readme = render_readme("demo")

    assert readme.startswith("# demo\n\nA demo chart\n\n## Values\n\n")
    assert "| `n` | integer | `3` |  |" in readme
    assert readme.endswith(f"{END}\n")


def test_only_the_marked_section_is_replaced(charts: Path):
    head = "# Demo\n\nHand-written.\n\n"
    (charts / "demo" / "README.md").write_text(f"{head}{START}\nold table\n{END}\n\n## After\n")

    readme = render_readme("demo")

    assert readme.startswith(head + START)
    assert "old table" not in readme
    assert readme.endswith(f"{END}\n\n## After\n")


def test_check_names_stale_readmes_and_the_command(charts: Path, capsys):
    assert docs.main(["--check"]) == 1
    error = capsys.readouterr().err
    assert "charts/demo/README.md" in error
    assert REGENERATE in error

    assert docs.main(["--write"]) == 0
    assert docs.main(["--check"]) == 0
    shutil.rmtree(charts / "demo")
    assert docs.main(["--check"]) == 0  # no chart with a schema, nothing stale
