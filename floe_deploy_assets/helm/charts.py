"""A chart directory as the seed's FloeHelmChart, and its compatibility with CompiledArtifacts.

The compatibility matrix (chart version -> floe-core versions) lives in Chart.yaml under the
annotation ``floe.dev/compatibility`` as JSON, so it travels with the packaged chart.
"""

from __future__ import annotations

import copy
import errno
import os
import re
import stat
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from floe_deploy_assets.models.base import error_location
from floe_deploy_assets.models.charts import FloeHelmChart
from floe_deploy_assets.models.config import ChartKind, ConfigError, DeploymentConfig
from floe_deploy_assets.models.inputs import CHART_FILE_MAX_BYTES, load_json, load_yaml, read_text

COMPATIBILITY_ANNOTATION = "floe.dev/compatibility"
COMPARATOR = re.compile(r"^\s*(>=|<=|>|<|=)?\s*v?(\d+)\.(\d+)\.(\d+)\s*$")
CHARTS: tuple[ChartKind, ...] = ("platform", "jobs")
_TYPE_NAMES = {
    list: "a list",
    dict: "a mapping",
    bool: "a boolean",
    int: "a number",
    bytes: "binary data",
}


class ChartPathError(ConfigError):
    """A chart folder (a configuration's ``charts.*.path``, or a chart's ``file://``
    dependency) cannot be used; the message names the chart path and what is wrong. A
    ConfigError: the command line exits 2 with it, and the code location does not load."""


def _type_name(value: object) -> str:
    if value is None:
        return "empty"
    return _TYPE_NAMES.get(type(value), "a number" if isinstance(value, float) else "a string")


def check_chart_dir(chart_dir: Path) -> None:
    """The path is a folder holding a Chart.yaml."""
    try:
        info = chart_dir.stat()
    except OSError as exc:
        problem = {
            errno.ENOENT: "does not exist",
            errno.ELOOP: "is a symbolic link loop",
            errno.ENOTDIR: "does not exist (a part of it is a file)",
        }.get(exc.errno or 0, f"cannot be read: {exc.strerror}")
        raise ChartPathError(
            f"{chart_dir}: {problem}; a chart is a folder with a Chart.yaml"
        ) from None
    if not stat.S_ISDIR(info.st_mode):
        raise ChartPathError(f"{chart_dir}: is a file, not a chart folder (with a Chart.yaml)")
    try:
        entries = os.listdir(chart_dir)
    except OSError as exc:
        raise ChartPathError(f"{chart_dir}: cannot be read: {exc.strerror}") from None
    if not entries:
        raise ChartPathError(f"{chart_dir}: is an empty folder, not a chart (no Chart.yaml)")
    if "Chart.yaml" not in entries:
        raise ChartPathError(f"{chart_dir}: has no Chart.yaml, so it is not a chart")


# Chart.yaml as last parsed, by path and text: a command asks for the same charts several
# times (the checks, the chart model, the renderer's dependencies); reading a file again is
# cheap, parsing it is not, and comparing the text keeps an edited file seen at once.
_metadata_parsed: dict[Path, tuple[str, dict[str, Any]]] = {}


def read_chart_metadata(chart_dir: Path) -> dict[str, Any]:
    """Chart.yaml of a chart folder, with the fields Helm requires (apiVersion, name, version)
    and the shapes we read (dependencies, annotations) checked."""
    check_chart_dir(chart_dir)
    source = chart_dir / "Chart.yaml"
    text = read_text(source, what="a Chart.yaml", limit=CHART_FILE_MAX_BYTES, error=ChartPathError)
    parsed = _metadata_parsed.get(source)
    if parsed is None or parsed[0] != text:
        parsed = _metadata_parsed[source] = (text, _checked_metadata(source, text))
    return copy.deepcopy(parsed[1])  # callers may change theirs


def _checked_metadata(source: Path, text: str) -> dict[str, Any]:
    metadata = load_yaml(text, str(source), ChartPathError)
    if not isinstance(metadata, dict):
        raise ChartPathError(
            f"{source}: the top level must be a mapping (apiVersion, name, version, ...), not "
            f"{_type_name(metadata)}"
        )
    for field in ("apiVersion", "name", "version"):
        value = metadata.get(field)
        if value is None:
            raise ChartPathError(f"{source}: no {field} (Helm requires apiVersion, name, version)")
        if not isinstance(value, str) or not value.strip():
            raise ChartPathError(f"{source}: {field} must be a string, not {_type_name(value)}")
    if metadata["apiVersion"] not in ("v1", "v2"):
        raise ChartPathError(
            f"{source}: apiVersion {metadata['apiVersion']!r} is not a Helm chart API version "
            "(v2, or v1)"
        )
    dependencies = metadata.get("dependencies")
    if dependencies is not None and not isinstance(dependencies, list):
        raise ChartPathError(
            f"{source}: dependencies must be a list, not {_type_name(dependencies)}"
        )
    for index, dependency in enumerate(dependencies or []):
        where = f"{source}: dependencies[{index}]"
        if not isinstance(dependency, dict):
            raise ChartPathError(f"{where} must be a mapping (name, version, repository)")
        for key in ("name", "version", "repository"):
            if not isinstance(dependency.get(key, ""), str):
                raise ChartPathError(f"{where}.{key} must be a string")
    annotations = metadata.get("annotations")
    if annotations is not None and not (
        isinstance(annotations, dict) and all(isinstance(v, str) for v in annotations.values())
    ):
        raise ChartPathError(
            f"{source}: annotations must be a mapping of strings (Helm's map[string]string)"
        )
    return metadata


def local_dependency_dirs(chart_dir: Path, metadata: dict[str, Any]) -> list[Path]:
    """The chart folders of ``file://`` dependencies in a checked Chart.yaml."""
    return [
        _resolved(chart_dir / dependency["repository"].removeprefix("file://"))
        for dependency in metadata.get("dependencies") or []
        if dependency.get("repository", "").startswith("file://")
    ]


def dependencies_unpacked(chart_dir: Path) -> bool:
    """Whether every dependency is already in the chart's charts/ as a folder, as in a chart
    unpacked from its archive (pulled from a registry): there is nothing to build, and the
    ``file://`` folders its Chart.yaml names were the packager's, not ours."""
    dependencies = read_chart_metadata(chart_dir).get("dependencies") or []
    return bool(dependencies) and all(
        (chart_dir / "charts" / dependency.get("name", "") / "Chart.yaml").is_file()
        for dependency in dependencies
    )


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (RuntimeError, OSError):  # a symbolic link loop: check_chart_dir names it
        return Path(os.path.abspath(path))


def _compatibility_matrix(source: Path, metadata: dict[str, Any]) -> dict[str, str]:
    where = f"{source}: annotations.{COMPATIBILITY_ANNOTATION}"
    annotation = (metadata.get("annotations") or {}).get(COMPATIBILITY_ANNOTATION)
    if annotation is None:
        raise ChartPathError(
            f"{source}: no annotations.{COMPATIBILITY_ANNOTATION}: the floe-core versions each "
            """chart version supports, as JSON ('{"0.1.0": ">=0.1.0, <0.11.0"}')"""
        )
    matrix = load_json(annotation, where, ChartPathError)
    if not isinstance(matrix, dict) or not matrix:
        raise ChartPathError(
            f"{where}: must be a JSON object of chart version -> floe-core versions "
            """('{"0.1.0": ">=0.1.0, <0.11.0"}')"""
        )
    for chart_version, supported in matrix.items():
        if not isinstance(supported, str):
            raise ChartPathError(f"{where}: {chart_version!r}: must be a string of versions")
        for part in supported.split(","):
            if not COMPARATOR.match(part):
                raise ChartPathError(
                    f"{where}: {chart_version!r}: unsupported version constraint "
                    f"{part.strip()!r} (comparators such as '>=0.5.0, <0.11.0')"
                )
    return matrix


def load_floe_chart(chart_dir: Path) -> FloeHelmChart:
    """The chart as a FloeHelmChart; a chart that cannot be used is a ChartPathError."""
    metadata = read_chart_metadata(chart_dir)
    source = chart_dir / "Chart.yaml"
    matrix = _compatibility_matrix(source, metadata)
    schema_file = chart_dir / "values.schema.json"
    schema: Any = {}
    if os.path.lexists(schema_file):
        text = read_text(
            schema_file, what="a values schema", limit=CHART_FILE_MAX_BYTES, error=ChartPathError
        )
        schema = load_json(text, str(schema_file), ChartPathError)
        if not isinstance(schema, dict):
            raise ChartPathError(f"{schema_file}: must be a JSON object (a JSON Schema)")
    try:
        return FloeHelmChart.model_validate(
            {
                "name": metadata["name"],
                "version": metadata["version"],
                "appVersion": str(metadata.get("appVersion", "")),
                "dependencies": [
                    {key: value for key, value in dependency.items() if key != "tags"}
                    for dependency in metadata.get("dependencies") or []
                ],
                "valuesSchema": schema,
                "compatibilityMatrix": matrix,
            }
        )
    except ValidationError as exc:
        raise ChartPathError(_chart_problems(source, exc)) from None


def _chart_problems(source: Path, error: ValidationError) -> str:
    """Pydantic's findings in Chart.yaml's own terms."""
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        location = error_location(problem["loc"])
        location = location.replace(
            "compatibilityMatrix", f"annotations.{COMPATIBILITY_ANNOTATION}", 1
        )
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{source}: {location}: {message}")
    return "\n".join(lines)


def check_chart_paths(config: DeploymentConfig, charts: Sequence[ChartKind] = CHARTS) -> None:
    """The charts asked for (every chart the configuration names, by default), and the
    ``file://`` dependencies below them, can be used: what the command line and the code
    location check before anything else. Each chart's Chart.yaml is read once (the
    components all depend on floe-common)."""
    from floe_deploy_assets.helm.sources import chart_dir as source_dir

    checked: set[Path] = set()
    for chart in charts:
        chart_dir = source_dir(config, chart)
        load_floe_chart(chart_dir)
        if dependencies_unpacked(chart_dir):
            continue
        metadata = read_chart_metadata(chart_dir)
        _check_dependencies(chart_dir, metadata, [_resolved(chart_dir)], checked)


def _check_dependencies(
    chart_dir: Path, metadata: dict[str, Any], path: list[Path], checked: set[Path]
) -> None:
    """Depth first; a chart whose dependencies were all checked is not checked again (a cycle
    through it would have been found then)."""
    for dependency in local_dependency_dirs(chart_dir, metadata):
        if dependency in path:
            cycle = " -> ".join(str(p) for p in [*path[path.index(dependency) :], dependency])
            raise ChartPathError(f"{chart_dir}: file:// dependencies form a cycle: {cycle}")
        if dependency in checked:
            continue
        try:
            below = read_chart_metadata(dependency)
        except ChartPathError as error:
            raise ChartPathError(f"{chart_dir}: a file:// dependency: {error}") from None
        _check_dependencies(dependency, below, [*path, dependency], checked)
        checked.add(dependency)


def _version(text: str) -> tuple[int, int, int]:
    major, minor, patch = (int(part) for part in text.split("-")[0].split("."))
    return major, minor, patch


def satisfies(version: str, constraint: str) -> bool:
    """Whether ``version`` meets a comma-separated list of comparators (">=0.5.0, <0.11.0")."""
    actual = _version(version)
    for part in constraint.split(","):
        match = COMPARATOR.match(part)
        if not match:
            raise ValueError(f"unsupported version constraint {part.strip()!r} in {constraint!r}")
        operator, bound = match.group(1) or "=", tuple(int(x) for x in match.groups()[1:])
        checks = {
            ">=": actual >= bound,
            "<=": actual <= bound,
            ">": actual > bound,
            "<": actual < bound,
            "=": actual == bound,
        }
        if not checks[operator]:
            return False
    return True


def check_compatibility(chart: FloeHelmChart, artifacts_version: str) -> str | None:
    """None when the chart supports CompiledArtifacts of ``artifacts_version``, else why not."""
    supported = chart.compatibility_matrix.get(chart.version)
    if supported is None:
        return (
            f"chart {chart.name} {chart.version} has no entry in its compatibility matrix "
            f"({COMPATIBILITY_ANNOTATION})"
        )
    if not satisfies(artifacts_version, supported):
        return (
            f"chart {chart.name} {chart.version} supports floe-core {supported}, but the "
            f"CompiledArtifacts are version {artifacts_version}"
        )
    return None
