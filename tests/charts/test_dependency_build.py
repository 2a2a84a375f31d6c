"""Chart dependencies are packaged only when a source changed: a rebuild rewrites the packages
that another process may be reading."""

from __future__ import annotations

import shutil
from pathlib import Path

from floe_deploy_assets.helm.render import build_dependencies
from tests.support.charts import ROOT


def _packages(chart: Path) -> dict[str, int]:
    return {p.name: p.stat().st_mtime_ns for p in (chart / "charts").glob("*.tgz")}


def test_packages_are_rebuilt_only_when_a_source_changed(tmp_path: Path):
    charts = tmp_path / "charts"
    shutil.copytree(
        ROOT / "charts", charts, ignore=shutil.ignore_patterns("*.tgz", ".floe-dependencies")
    )
    platform = charts / "floe-platform"

    build_dependencies(platform)
    first = _packages(platform)
    build_dependencies(platform)

    assert len(first) == 7  # six components and the library chart
    assert _packages(platform) == first  # nothing rewritten

    values = charts / "components" / "otel-collector" / "values.yaml"
    values.write_text(values.read_text() + "\n# changed\n")
    build_dependencies(platform)

    rebuilt = _packages(platform)
    assert rebuilt.keys() == first.keys() and rebuilt != first
