"""FloeHelmChart and ChartDependency (seed section 1)."""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from floe_deploy_assets.models.base import FloeModel

CHART_NAME_PATTERN = r"^[a-z][a-z0-9-]*$"
# Portable patterns (models/rules.py): [0-9] and [ \t], never \d or \s (Unicode in Python/Rust).
SEMVER_PATTERN = r"^[0-9]+\.[0-9]+\.[0-9]+(-[a-z0-9.]+)?$"
# An exact version or a range made of comparators, as Helm accepts in Chart.yaml dependencies.
VERSION_CONSTRAINT_PATTERN = (
    r"^(\^|~|>=|<=|>|<|=)?[ \t]*v?[0-9]+(\.([0-9]+|x|\*))?(\.([0-9]+|x|\*))?(-[0-9A-Za-z.-]+)?"
    r"([ \t]*(,|\|\||[ \t])[ \t]*(\^|~|>=|<=|>|<|=)?[ \t]*v?[0-9]+(\.([0-9]+|x|\*))?"
    r"(\.([0-9]+|x|\*))?(-[0-9A-Za-z.-]+)?)*$"
)


class ChartDependency(FloeModel):
    name: str = Field(pattern=CHART_NAME_PATTERN, description="Dependency chart name")
    version: str = Field(
        pattern=VERSION_CONSTRAINT_PATTERN, description="Version constraint (exact or range)"
    )
    repository: str = Field(pattern=r"^(https?://|oci://|file://)", description="Repository URL")
    condition: str | None = Field(None, description="values path that enables the subchart")
    alias: str | None = Field(None, pattern=CHART_NAME_PATTERN, description="values key override")


class FloeHelmChart(FloeModel):
    name: str = Field(pattern=CHART_NAME_PATTERN)
    version: str = Field(pattern=SEMVER_PATTERN, description="Semantic version of the chart")
    app_version: str = Field(min_length=1)
    # Not default_factory=list: see TransformModel.tags in models/artifacts.py.
    dependencies: list[ChartDependency] = Field(default=[])
    values_schema: dict[str, Any] = Field(description="JSON Schema for values validation")
    compatibility_matrix: dict[str, str] = Field(
        min_length=1, description="chart version -> compatible floe-core versions (a range)"
    )

    @field_validator("compatibility_matrix")
    @classmethod
    def _matrix_is_semver_to_range(cls, matrix: dict[str, str]) -> dict[str, str]:
        for chart_version, core_range in matrix.items():
            if not re.fullmatch(SEMVER_PATTERN, chart_version, re.ASCII):
                raise ValueError(f"compatibilityMatrix key {chart_version!r} is not a semver")
            if not re.fullmatch(VERSION_CONSTRAINT_PATTERN, core_range, re.ASCII):
                raise ValueError(
                    f"compatibilityMatrix[{chart_version}] {core_range!r} is not a version "
                    "constraint such as '>=0.5.0, <0.11.0'"
                )
        return matrix
