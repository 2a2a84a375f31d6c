"""A chart's files that values generation reads: values.yaml (the defaults) and
values.schema.json (the contract the merged values must meet)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from floe_deploy_assets.models.config import ConfigError

SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class ChartFiles:
    path: Path

    def _read(self, name: str) -> str:
        file = self.path / name
        try:
            return file.read_text()
        except OSError as exc:
            raise ConfigError(
                f"{file}: cannot read the chart's {name} ({exc.strerror}); check charts.*.path "
                "in the deployment configuration"
            ) from None

    def defaults(self) -> dict[str, Any]:
        try:
            # libyaml's parser when there is one: a tenth of the time of PyYAML's own.
            document = yaml.load(self._read("values.yaml"), Loader=SAFE_LOADER) or {}
        except yaml.YAMLError:
            raise ConfigError(f"{self.path / 'values.yaml'}: not valid YAML") from None
        if not isinstance(document, dict):
            raise ConfigError(f"{self.path / 'values.yaml'}: the top level must be a mapping")
        return document

    def schema(self) -> dict[str, Any]:
        try:
            return json.loads(self._read("values.schema.json"))
        except json.JSONDecodeError as exc:
            raise ConfigError(
                f"{self.path / 'values.schema.json'}: not valid JSON (line {exc.lineno})"
            ) from None
