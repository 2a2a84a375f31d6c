"""Render a chart offline into Kubernetes objects.

Local subcharts (``file://`` dependencies such as the floe-common library chart) are packaged
into the chart's ``charts/`` folder first, from its ``Chart.lock``, so a render always uses the
library as it is in the working tree.
"""

from __future__ import annotations

import fcntl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import helm_python
import yaml

from floe_deploy_assets.helm.charts import (
    dependencies_unpacked,
    local_dependency_dirs,
    read_chart_metadata,
)
from floe_deploy_assets.release.digests import DEPENDENCIES_STAMP, sources_digest


class RenderError(RuntimeError):
    """A chart failed to load or render; the message names the chart and the template."""


@dataclass(frozen=True)
class RenderedChart:
    objects: list[dict[str, Any]]  # every object, hooks included, in template order
    notes: str

    def by_kind(self, kind: str) -> list[dict[str, Any]]:
        return [o for o in self.objects if o.get("kind") == kind]

    def named(self, kind: str, name: str) -> dict[str, Any]:
        for obj in self.by_kind(kind):
            if obj["metadata"]["name"] == name:
                return obj
        raise KeyError(f"no {kind} named {name} in the rendered chart")


def local_dependencies(chart_dir: Path) -> list[Path]:
    """The chart directories of ``file://`` dependencies in Chart.yaml (checked first: a
    missing folder or a broken Chart.yaml is a ChartPathError naming the chart path)."""
    return local_dependency_dirs(chart_dir, read_chart_metadata(chart_dir))


def build_dependencies(chart_dir: Path) -> None:
    """Package local dependencies into ``charts/``, innermost first: a component subchart's own
    library dependency must be inside it before the umbrella packages it. Skipped when the
    packages were built from the sources as they are now (a stamp holds their digest): a
    rebuild rewrites the packages, so it happens only when a source changed, and one process
    at a time (two Dagster runs rendering the same chart would otherwise read each other's
    half-written packages)."""
    if dependencies_unpacked(chart_dir):
        return
    dependencies = local_dependencies(chart_dir)
    for dependency in dependencies:
        build_dependencies(dependency)
    lock_file = chart_dir / "Chart.lock"
    if not lock_file.exists():
        return
    stamp = chart_dir / "charts" / DEPENDENCIES_STAMP
    with lock_file.open() as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        wanted = sources_digest(chart_dir)
        packaged = list((chart_dir / "charts").glob("*.tgz"))
        if stamp.is_file() and stamp.read_text() == wanted and len(packaged) >= len(dependencies):
            return
        try:
            helm_python.dependency_build(str(chart_dir), skip_refresh=True)
        except helm_python.HelmError as exc:
            raise RenderError(f"{chart_dir}: building chart dependencies failed: {exc}") from None
        stamp.write_text(wanted)


def render_chart(
    chart_dir: Path, values: Mapping[str, Any], *, release_name: str, namespace: str
) -> RenderedChart:
    build_dependencies(chart_dir)
    try:
        chart = helm_python.Chart.load(str(chart_dir))
    except helm_python.HelmError as exc:
        raise RenderError(f"{chart_dir}: cannot load the chart: {exc}") from None
    try:
        files = chart.render(dict(values), name=release_name, namespace=namespace, is_install=True)
    except helm_python.HelmError as exc:
        raise RenderError(f"{chart_dir}: rendering failed: {exc}") from None
    finally:
        chart.close()
    objects: list[dict[str, Any]] = []
    notes = ""
    for path in sorted(files):
        if path.endswith("NOTES.txt"):
            notes = files[path]
            continue
        objects.extend(doc for doc in yaml.safe_load_all(files[path]) if doc)
    return RenderedChart(objects, notes)
