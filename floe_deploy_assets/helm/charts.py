"""A chart directory as the seed's FloeHelmChart, and its compatibility with CompiledArtifacts.

The compatibility matrix (chart version -> floe-core versions) lives in Chart.yaml under the
annotation ``floe.dev/compatibility`` as JSON, so it travels with the packaged chart.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import yaml

from floe_deploy_assets.models.charts import FloeHelmChart

COMPATIBILITY_ANNOTATION = "floe.dev/compatibility"
COMPARATOR = re.compile(r"^\s*(>=|<=|>|<|=)?\s*v?(\d+)\.(\d+)\.(\d+)\s*$")


def load_floe_chart(chart_dir: Path) -> FloeHelmChart:
    metadata = yaml.safe_load((chart_dir / "Chart.yaml").read_text())
    annotation = (metadata.get("annotations") or {}).get(COMPATIBILITY_ANNOTATION, "{}")
    schema_file = chart_dir / "values.schema.json"
    return FloeHelmChart.model_validate(
        {
            "name": metadata["name"],
            "version": metadata["version"],
            "appVersion": str(metadata.get("appVersion", "")),
            "dependencies": [
                {key: value for key, value in dependency.items() if key != "tags"}
                for dependency in metadata.get("dependencies") or []
            ],
            "valuesSchema": json.loads(schema_file.read_text()) if schema_file.exists() else {},
            "compatibilityMatrix": json.loads(annotation),
        }
    )


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
