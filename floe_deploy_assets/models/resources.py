"""Resource requirements and the seed's preset table.

Limit policy (the seed gives requests only): every limit is twice its request, for CPU and
memory alike. That leaves bounded burst headroom while keeping limits >= requests, which
Kubernetes requires, and keeps the ratio the same across tiers so moving between presets scales
pods predictably.

Quantities are read with Kubernetes' grammar (``resource.Quantity``): a number (``2``, ``0.5``,
``.5``, ``1e3``) with a decimal suffix (``n u m k M G T P E``) or a binary one (``Ki Mi Gi Ti Pi
Ei``), and must be sensible, not merely parseable: CPU more than 0 and at most
``CPU_MAX_CORES`` cores, in whole millicores; memory (and volume sizes) from ``MEMORY_MIN`` to
``MEMORY_MAX``, in whole bytes; at most ``QUANTITY_MAX_DIGITS`` digits before the point.
"""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum

from pydantic import Field, field_validator, model_validator

from floe_deploy_assets.models.base import FloeModel

# Kubernetes' quantity grammar without the minus sign (a negative request is never wanted),
# with bounded digit counts so that a 20-digit number is refused by the pattern already (Helm
# reads only the pattern). Portable: the same answer in Python, Rust (pydantic) and Go (Helm).
QUANTITY_MAX_DIGITS = 15
QUANTITY_PATTERN = (
    rf"^\+?([0-9]{{1,{QUANTITY_MAX_DIGITS}}}(\.[0-9]{{0,9}})?|\.[0-9]{{1,9}})"
    r"([eE][-+]?[0-9]{1,2}|[KMGTPE]i|[numkMGTPE])?$"
)
CPU_PATTERN = QUANTITY_PATTERN
MEMORY_PATTERN = QUANTITY_PATTERN
CPU_MAX_CORES = 1000
MEMORY_MIN = "1Mi"
MEMORY_MAX = "64Ti"
# JSON-schema formats that carry the bounds into values.schema.json; our values check enforces
# them (values/validation.py), Helm treats an unknown format as an annotation.
CPU_FORMAT = "kubernetes-cpu"
MEMORY_FORMAT = "kubernetes-memory"
LIMIT_TO_REQUEST_RATIO = 2

_SUFFIXES = {
    "": Decimal(1),
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "k": Decimal("1e3"),
    "M": Decimal("1e6"),
    "G": Decimal("1e9"),
    "T": Decimal("1e12"),
    "P": Decimal("1e15"),
    "E": Decimal("1e18"),
    **{f"{unit}i": Decimal(1024 ** (power + 1)) for power, unit in enumerate("KMGTPE")},
}
_QUANTITY = re.compile(QUANTITY_PATTERN[1:-1], re.ASCII)


def parse_quantity(text: str) -> Decimal:
    """A Kubernetes quantity as a number (of cores, of bytes); ValueError when it is not one."""
    match = _QUANTITY.fullmatch(text) if isinstance(text, str) else None
    if not match and isinstance(text, str) and _QUANTITY.fullmatch(text.removeprefix("-")):
        raise ValueError("is negative")
    if not match:
        raise ValueError(
            "is not a Kubernetes quantity (a number such as 2, 0.5 or 1e3, then an optional "
            "suffix m, k, M, G, T, Ki, Mi, Gi, Ti, ...)"
        )
    number, _, suffix = match.groups()
    if suffix and suffix[0] in "eE":
        return Decimal(number.lstrip("+")) * Decimal(10) ** int(suffix[1:])
    return Decimal(number.lstrip("+")) * _SUFFIXES[suffix or ""]


def cpu_problem(text: str) -> str | None:
    """Why a CPU quantity is refused, or None."""
    try:
        cores = parse_quantity(text)
    except ValueError as error:
        return str(error)
    if not 0 < cores <= CPU_MAX_CORES:
        return f"must be more than 0 and at most {CPU_MAX_CORES} cores ({CPU_MAX_CORES * 1000}m)"
    if (cores * 1000) % 1:
        return "is finer than a millicore (1m), which Kubernetes cannot give"
    return None


def memory_problem(text: str) -> str | None:
    """Why a memory (or volume size) quantity is refused, or None."""
    try:
        size = parse_quantity(text)
    except ValueError as error:
        return str(error)
    if not parse_quantity(MEMORY_MIN) <= size <= parse_quantity(MEMORY_MAX):
        return f"must be at least {MEMORY_MIN} and at most {MEMORY_MAX}"
    if size % 1:
        return "is not a whole number of bytes (a memory quantity with 'm' means millibytes)"
    return None


def cpu_millicores(quantity: str) -> int:
    return int(parse_quantity(quantity) * 1000)


def memory_bytes(quantity: str) -> int:
    return int(parse_quantity(quantity))


def _format_bytes(size: int) -> str:
    mebibyte = 1024**2
    return f"{size // mebibyte}Mi" if size % mebibyte == 0 else str(size)


def _checked(problem: str | None, field: str) -> None:
    if problem:
        raise ValueError(f"{field} {problem}")


class ResourceSpec(FloeModel):
    cpu: str = Field(pattern=CPU_PATTERN, description="CPU in cores or millicores")
    memory: str = Field(pattern=MEMORY_PATTERN, description="Memory with unit suffix")

    @field_validator("cpu")
    @classmethod
    def _cpu_bounds(cls, cpu: str) -> str:
        _checked(cpu_problem(cpu), "cpu")
        return cpu

    @field_validator("memory")
    @classmethod
    def _memory_bounds(cls, memory: str) -> str:
        _checked(memory_problem(memory), "memory")
        return memory

    def scaled(self, factor: int) -> ResourceSpec:
        return ResourceSpec(
            cpu=f"{cpu_millicores(self.cpu) * factor}m",
            memory=_format_bytes(memory_bytes(self.memory) * factor),
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
        if memory_bytes(self.limits.memory) < memory_bytes(self.requests.memory):
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
