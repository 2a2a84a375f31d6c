"""Digests that decide whether a release is in sync (of the chart as packaged: see
``helm.packaging.chart_digest``; of the values handed to Helm), and of a chart's sources."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

# Stored as Helm release labels, whose values hold at most 63 characters; 40 hex digits
# (160 bits) are plenty to tell two charts or two sets of values apart.
LABEL_DIGEST_LENGTH = 40
CHART_DIGEST_LABEL = "floe.dev/chart-digest"
VALUES_DIGEST_LABEL = "floe.dev/values-digest"
# In a chart's charts/: the digest its packaged dependencies were built from (build output too).
DEPENDENCIES_STAMP = ".floe-dependencies"


def values_digest(values: Mapping[str, Any]) -> str:
    canonical = json.dumps(values, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()[:LABEL_DIGEST_LENGTH]


def sources_digest(chart_dir: Path) -> str:
    """Every source file of the chart and of its ``file://`` dependencies, by relative path;
    packaged dependencies (``charts/*.tgz``) are build output and left out. What the packaged
    dependencies were built from (the release's digest is ``helm.packaging.chart_digest``)."""
    digest = hashlib.sha256()
    for root in _chart_dirs(chart_dir.resolve()):
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            relative = path.relative_to(root)
            if relative.parts[0] == "charts" and (
                path.suffix == ".tgz" or path.name == DEPENDENCIES_STAMP
            ):
                continue
            digest.update(f"{root.name}/{relative}\0".encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:LABEL_DIGEST_LENGTH]


def _chart_dirs(chart_dir: Path) -> list[Path]:
    metadata = yaml.safe_load((chart_dir / "Chart.yaml").read_text()) or {}
    dirs = [chart_dir]
    for dependency in metadata.get("dependencies") or []:
        repository = dependency.get("repository", "")
        if repository.startswith("file://"):
            dirs += _chart_dirs((chart_dir / repository.removeprefix("file://")).resolve())
    return list(dict.fromkeys(dirs))
