"""Each chart's README: a hand-written head and a values table generated from the chart's
committed ``values.schema.json`` and ``values.yaml``.

    python -m floe_deploy_assets.values.docs --write   # regenerate the tables in the READMEs
    python -m floe_deploy_assets.values.docs --check   # exit 1 when a README is stale

Only the part between the markers is generated; everything outside them is kept as written.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from floe_deploy_assets.values.generated import generator_command, stale

CHARTS_DIR = Path(__file__).resolve().parents[2] / "charts"
START = "<!-- values-table:start -->"
END = "<!-- values-table:end -->"
REGENERATE = "python -m floe_deploy_assets.values.docs --write"
LONG_PATTERN = 80  # longer patterns are left to values.schema.json: the table stays readable
CONSTRAINTS = {
    "minimum": "minimum {}",
    "maximum": "maximum {}",
    "exclusiveMinimum": "above {}",
    "exclusiveMaximum": "below {}",
    "minLength": "min length {}",
    "maxLength": "max length {}",
}
_UNSET = object()


def values_table(schema: dict[str, Any], defaults: dict[str, Any]) -> str:
    """A Markdown table of the schema's leaf keys, in schema property order, with each key's
    default from ``defaults`` (the chart's values.yaml), else the schema's own default."""
    lines = ["| Key | Type | Default | Description |", "|---|---|---|---|"]
    for path, node in _leaves(schema, schema, ""):
        default = _lookup(defaults, path)
        if default is _UNSET:
            default = node.get("default", _UNSET)
        cells = [
            _code(path),
            _type(node, schema),
            "" if default is _UNSET else _code(json.dumps(default, ensure_ascii=False)),
            _description(node, schema),
        ]
        lines.append("| " + " | ".join(_cell(cell) for cell in cells) + " |")
    return "\n".join(lines) + "\n"


def _leaves(node: dict[str, Any], schema: dict[str, Any], prefix: str) -> Iterator[tuple[str, Any]]:
    """(dotted path, schema node) of each row. An object with properties is walked, not listed;
    a nullable object or a list of objects gets its own row, then rows for its fields."""
    for key, prop in node.get("properties", {}).items():
        path = f"{prefix}{key}"
        resolved = _resolve(prop, schema)
        if "properties" in resolved:
            yield from _leaves(resolved, schema, f"{path}.")
            extra = resolved.get("additionalProperties", True)
            if extra is not False:  # an open object: other keys may be added
                yield f"{path}.*", {**_map(extra), "description": "Any other key (an open object)"}
            continue
        yield path, prop
        items = _resolve(resolved.get("items", {}), schema)
        nullable = [_resolve(b, schema) for b in resolved.get("anyOf", [])]
        for inner in [items, *nullable]:
            if "properties" in inner:
                suffix = "[]." if inner is items else "."
                yield from _leaves(inner, schema, f"{path}{suffix}")


def _map(extra: Any) -> dict[str, Any]:
    return {} if extra is True else dict(extra)


def _resolve(node: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    """The node with a local ``$ref`` (``#/$defs/Name``) followed."""
    while "$ref" in node:
        *_, name = node["$ref"].split("/")
        node = {**schema["$defs"][name], **{k: v for k, v in node.items() if k != "$ref"}}
    return node


def _type(node: dict[str, Any], schema: dict[str, Any]) -> str:
    node = _resolve(node, schema)
    if "enum" in node:
        return "one of " + ", ".join(str(value) for value in node["enum"])
    if "const" in node:
        return f"one of {node['const']}"
    if "anyOf" in node:
        return " | ".join(_type(branch, schema) for branch in node["anyOf"])
    kind = node.get("type")
    if kind == "array":
        return f"list of {_type(node.get('items', {}), schema)}"
    if kind == "object" and "properties" in node:
        return "object"
    if kind == "object":
        extra = node.get("additionalProperties", True)
        return "map" if extra in (True, {}) else f"map of {_type(extra, schema)}"
    if isinstance(kind, list):
        return " | ".join(kind)
    return kind or "any"


def _description(node: dict[str, Any], schema: dict[str, Any]) -> str:
    resolved = _resolve(node, schema)
    text = " ".join(resolved.get("description", "").split())
    rules = _constraints(resolved, schema)
    items = _constraints(_resolve(resolved.get("items", {}), schema), schema)
    if items:
        rules.append("each item: " + ", ".join(items))
    return f"{text} ({', '.join(rules)})".strip() if rules else text


def _constraints(node: dict[str, Any], schema: dict[str, Any]) -> list[str]:
    """Readable pattern and range rules of a scalar node (and of its nullable branches)."""
    rules = []
    for branch in [node, *(_resolve(b, schema) for b in node.get("anyOf", []))]:
        pattern = branch.get("pattern")
        if pattern is not None:
            short = len(pattern) <= LONG_PATTERN
            rules.append(f"pattern {_code(pattern)}" if short else "pattern in values.schema.json")
        rules += [text.format(branch[key]) for key, text in CONSTRAINTS.items() if key in branch]
    return rules


def _lookup(values: Any, path: str) -> Any:
    for key in path.split("."):
        if not isinstance(values, dict) or key not in values:
            return _UNSET  # also for "models[].name" and "global.*": no single default
        values = values[key]
    return values


def _code(text: str) -> str:
    fence = "``" if "`" in text else "`"
    pad = " " if fence == "``" else ""
    return f"{fence}{pad}{text}{pad}{fence}"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def charts_with_schema() -> list[str]:
    return sorted(path.parent.name for path in CHARTS_DIR.glob("*/values.schema.json"))


def render_readme(chart: str) -> str:
    """The chart's README with its values section regenerated; a missing README gets a minimal
    head, one without markers gets the section appended."""
    chart_dir = CHARTS_DIR / chart
    schema = json.loads((chart_dir / "values.schema.json").read_text())
    defaults = yaml.safe_load((chart_dir / "values.yaml").read_text()) or {}
    section = (
        f"{START}\n<!-- Generated from values.schema.json and values.yaml; do not edit.\n"
        f"     Regenerate: {REGENERATE} -->\n\n{values_table(schema, defaults)}{END}"
    )
    readme = chart_dir / "README.md"
    if not readme.is_file():
        metadata = yaml.safe_load((chart_dir / "Chart.yaml").read_text()) or {}
        about = metadata.get("description", "")
        return f"# {chart}\n\n{about}\n\n## Values\n\n{section}\n"
    text = readme.read_text()
    if START not in text or END not in text:
        return f"{text.rstrip()}\n\n## Values\n\n{section}\n"
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{section}{tail}"


def generated_readmes() -> dict[Path, str]:
    return {
        CHARTS_DIR / chart / "README.md": render_readme(chart) for chart in charts_with_schema()
    }


def stale_readmes() -> list[str]:
    return [path.parent.name for path in stale(generated_readmes())]


def main(argv: list[str] | None = None) -> int:
    return generator_command(
        argv,
        description=__doc__.splitlines()[0],
        files=generated_readmes,
        display=lambda path: f"charts/{path.relative_to(CHARTS_DIR)}",
        source="values schema",
        regenerate=REGENERATE,
    )


if __name__ == "__main__":
    sys.exit(main())
