"""Resource requirements and the seed's preset table.

Limit policy (the seed gives requests only): every limit is twice its request, for CPU and
memory alike. That leaves bounded burst headroom while keeping limits >= requests, which
Kubernetes requires, and keeps the ratio the same across tiers so moving between presets scales
pods predictably.
"""

from __future__ import annotations

import re
from enum import StrEnum

from pydantic import Field, model_validator

from floe_deploy_assets.models.base import FloeModel

CPU_PATTERN = r"^\d+m?$"
MEMORY_PATTERN = r"^\d+(Mi|Gi)$"
LIMIT_TO_REQUEST_RATIO = 2


def cpu_millicores(quantity: str) -> int:
    return int(quantity[:-1]) if quantity.endswith("m") else int(quantity) * 1000


def memory_mebibytes(quantity: str) -> int:
    number, unit = re.fullmatch(r"(\d+)(Mi|Gi)", quantity).groups()  # type: ignore[union-attr]
    return int(number) * (1024 if unit == "Gi" else 1)


class ResourceSpec(FloeModel):
    cpu: str = Field(pattern=CPU_PATTERN, description="CPU in cores or millicores")
    memory: str = Field(pattern=MEMORY_PATTERN, description="Memory with unit suffix")

    def scaled(self, factor: int) -> ResourceSpec:
        return ResourceSpec(
            cpu=f"{cpu_millicores(self.cpu) * factor}m",
            memory=f"{memory_mebibytes(self.memory) * factor}Mi",
        )


class ResourceRequirements(FloeModel):
    requests: ResourceSpec
    limits: ResourceSpec

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> ResourceRequirements:
        if cpu_millicores(self.limits.cpu) < cpu_millicores(self.requests.cpu):
            raise ValueError(
                f"limits.cpu {self.limits.cpu} is below requests.cpu {self.requests.cpu}"
            )
        if memory_mebibytes(self.limits.memory) < memory_mebibytes(self.requests.memory):
            raise ValueError(
                f"limits.memory {self.limits.memory} is below requests.memory "
                f"{self.requests.memory}"
            )
        return self

    @classmethod
    def from_requests(cls, cpu: str, memory: str) -> ResourceRequirements:
        requests = ResourceSpec(cpu=cpu, memory=memory)
        return cls(requests=requests, limits=requests.scaled(LIMIT_TO_REQUEST_RATIO))


class PresetName(StrEnum):
    SMALL = "small"
    MEDIUM = "medium"
    LARGE = "large"
    CUSTOM = "custom"


# The seed's table (section 3, "Resource Presets"): requests per component.
PRESET_REQUESTS: dict[PresetName, dict[str, tuple[str, str]]] = {
    PresetName.SMALL: {
        "webserver": ("100m", "256Mi"),
        "daemon": ("100m", "256Mi"),
        "user_code": ("250m", "512Mi"),
        "jobs": ("100m", "256Mi"),
    },
    PresetName.MEDIUM: {
        "webserver": ("250m", "512Mi"),
        "daemon": ("250m", "512Mi"),
        "user_code": ("500m", "1Gi"),
        "jobs": ("250m", "512Mi"),
    },
    PresetName.LARGE: {
        "webserver": ("500m", "1Gi"),
        "daemon": ("500m", "1Gi"),
        "user_code": ("1000m", "2Gi"),
        "jobs": ("500m", "1Gi"),
    },
}


class ResourcePreset(FloeModel):
    name: PresetName
    webserver: ResourceRequirements
    daemon: ResourceRequirements
    user_code: ResourceRequirements
    jobs: ResourceRequirements

    @classmethod
    def named(cls, name: PresetName | str) -> ResourcePreset:
        """A tier from the seed's table; ``custom`` has no table entry and must be spelled out."""
        tier = PresetName(name)
        if tier is PresetName.CUSTOM:
            raise ValueError(
                "preset 'custom' needs explicit webserver, daemon, userCode and jobs requirements"
            )
        requirements = {
            component: ResourceRequirements.from_requests(cpu, memory)
            for component, (cpu, memory) in PRESET_REQUESTS[tier].items()
        }
        return cls(name=tier, **requirements)

    @model_validator(mode="before")
    @classmethod
    def _expand_tier_name(cls, data: object) -> object:
        """``resources: small`` (or ``{name: small}``) in a configuration file means the seed's
        small tier."""
        if isinstance(data, dict) and set(data) == {"name"}:
            data = data["name"]
        if isinstance(data, str):
            if data == PresetName.CUSTOM:
                raise ValueError(
                    "preset 'custom' needs explicit webserver, daemon, userCode and jobs "
                    "requirements"
                )
            if data not in {p.value for p in PresetName}:
                raise ValueError(f"unknown preset {data!r}; use small, medium, large or custom")
            return cls.named(data).to_document()
        return data
