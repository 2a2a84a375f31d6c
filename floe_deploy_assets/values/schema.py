"""Each chart's ``values.schema.json`` and ``values.yaml`` (its defaults), generated from its
values model and committed.

    python -m floe_deploy_assets.values.schema --write   # regenerate the committed files
    python -m floe_deploy_assets.values.schema --check   # exit 1 when one is stale

Helm validates the merged values (values.yaml plus overrides, null keys removed) against the
schema with santhosh-tekuri/jsonschema, which supports draft 2020-12 and local ``$ref``s.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema

from floe_deploy_assets.values.chart_values import GlobalValues, JobsValues, PlatformValues
from floe_deploy_assets.values.generated import generator_command, stale

DRAFT_2020_12 = "https://json-schema.org/draft/2020-12/schema"
CHART_SCHEMAS: dict[str, type[BaseModel]] = {
    "floe-platform": PlatformValues,
    "floe-jobs": JobsValues,
}
REPO_ROOT = Path(__file__).resolve().parents[2]
CHARTS_DIR = REPO_ROOT / "charts"  # where Chart.yaml files are read (REPO_ROOT is where to write)
REGENERATE = "python -m floe_deploy_assets.values.schema --write"


class _ValuesJsonSchema(GenerateJsonSchema):
    def field_title_should_be_set(self, schema: Any) -> bool:
        # Titles derived from field names ("Configmapname") add nothing to the descriptions.
        return False


def values_schema(model: type[BaseModel]) -> dict[str, Any]:
    """The JSON schema of a values model: keys by alias, as input is validated."""
    schema = model.model_json_schema(
        by_alias=True, mode="validation", schema_generator=_ValuesJsonSchema
    )
    schema["$schema"] = DRAFT_2020_12
    _check_closed(schema)
    return schema


def _check_closed(schema: dict[str, Any]) -> None:
    """A typo in a values key must fail (the upstream Dagster chart once shipped
    ``dagster-webserver`` where ``webserver`` was read), so every floe-owned object is closed;
    only ``global`` is open, because Helm and parent charts add keys to it."""
    objects = {"(top level)": schema, **schema.get("$defs", {})}
    for name, definition in objects.items():
        if "properties" not in definition:
            continue
        expected = name == GlobalValues.__name__
        if definition.get("additionalProperties", False) is not expected:
            state = "open" if expected else "closed"
            raise ValueError(f"values object {name} must be {state} (additionalProperties)")


def schema_path(chart: str) -> Path:
    return REPO_ROOT / "charts" / chart / "values.schema.json"


def chart_schema(chart: str) -> dict[str, Any]:
    """The chart's schema: its values model, plus what Helm adds when it merges subcharts: each
    dependency's values under its name or alias (a library chart's as an empty map), and, inside
    a subchart's values, ``global`` and the subchart's own dependencies."""
    schema = values_schema(CHART_SCHEMAS[chart])
    for key, nested in dependency_keys(CHARTS_DIR / chart).items():
        described = {"type": "object", "description": f"values of the {key} subchart"}
        existing = schema["properties"].setdefault(key, described)
        if "$ref" in existing:
            definition = schema["$defs"][existing["$ref"].rsplit("/", 1)[1]]
            for injected in ("global", *nested):
                definition["properties"].setdefault(injected, {"type": "object"})
    return schema


def dependency_keys(chart_dir: Path) -> dict[str, list[str]]:
    """Values key of each dependency -> the keys of that dependency's own dependencies."""
    metadata = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    keys = {}
    for dependency in metadata.get("dependencies") or []:
        repository = dependency.get("repository", "")
        nested: list[str] = []
        if repository.startswith("file://"):
            nested = list(dependency_keys((chart_dir / repository[7:]).resolve()))
        keys[dependency.get("alias") or dependency["name"]] = nested
    return keys


def render(chart: str) -> str:
    """The file content: sorted keys, so regeneration gives stable diffs."""
    return json.dumps(chart_schema(chart), indent=2, sort_keys=True) + "\n"


def chart_defaults(chart: str) -> dict[str, Any]:
    """The model's defaults as values (null-valued keys left out, as Helm drops them)."""
    return CHART_SCHEMAS[chart]().model_dump(mode="json", by_alias=True, exclude_none=True)


def render_defaults(chart: str) -> str:
    header = f"# Generated from the values model by `{REGENERATE}`; do not edit.\n"
    return header + yaml.safe_dump(chart_defaults(chart), sort_keys=False)


def generated_files() -> dict[Path, str]:
    files = {}
    for chart in CHART_SCHEMAS:
        files[schema_path(chart)] = render(chart)
        files[schema_path(chart).with_name("values.yaml")] = render_defaults(chart)
    return files


def stale_files() -> list[Path]:
    """The committed files that differ from the generated ones (or are missing)."""
    return stale(generated_files())


def main(argv: list[str] | None = None) -> int:
    return generator_command(
        argv,
        description=__doc__.splitlines()[0],
        files=generated_files,
        display=lambda path: str(path.relative_to(REPO_ROOT)),
        source="values model",
        regenerate=REGENERATE,
    )


if __name__ == "__main__":
    sys.exit(main())
