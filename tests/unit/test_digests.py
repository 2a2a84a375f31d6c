"""The digests that decide whether a release is in sync."""

from __future__ import annotations

import shutil
from pathlib import Path

import helm_python

from floe_deploy_assets.helm.packaging import archive_digest, chart_digest
from floe_deploy_assets.release.digests import LABEL_DIGEST_LENGTH, sources_digest, values_digest

ROOT = Path(__file__).resolve().parents[2]


def test_values_digest_ignores_key_order_and_fits_a_label():
    one = values_digest({"a": 1, "b": {"c": [1, 2]}})
    assert one == values_digest({"b": {"c": [1, 2]}, "a": 1})
    assert one != values_digest({"a": 1, "b": {"c": [2, 1]}})
    assert len(one) == LABEL_DIGEST_LENGTH <= 63


def test_sources_digest_follows_the_chart_and_its_local_dependencies(tmp_path: Path):
    charts = tmp_path / "charts"
    shutil.copytree(ROOT / "charts", charts, ignore=shutil.ignore_patterns("*.tgz"))
    before = sources_digest(charts / "floe-jobs")
    assert sources_digest(charts / "floe-jobs") == before

    (charts / "floe-jobs" / "charts").mkdir(exist_ok=True)
    (charts / "floe-jobs" / "charts" / "floe-common-0.1.0.tgz").write_bytes(b"build output")
    assert sources_digest(charts / "floe-jobs") == before  # packaged dependencies do not count

    labels = charts / "floe-common" / "templates" / "_labels.tpl"
    labels.write_text(labels.read_text() + "\n{{/* changed */}}\n")
    assert sources_digest(charts / "floe-jobs") != before  # the library chart is part of it


def test_chart_digest_is_the_packaged_content_from_a_folder_or_its_archive(tmp_path: Path):
    """A release installed from the chart's folder and one from the same chart pulled from a
    registry (an archive, unpacked) record one digest; a change in the library chart, which
    is packaged inside, changes it."""
    charts = tmp_path / "charts"
    shutil.copytree(ROOT / "charts", charts, ignore=shutil.ignore_patterns("*.tgz", ".floe-*"))
    for chart in ("floe-jobs", "floe-platform"):
        from_folder = chart_digest(charts / chart)
        assert len(from_folder) == LABEL_DIGEST_LENGTH
        archive = Path(helm_python.package(charts / chart, destination=tmp_path))
        assert archive_digest(archive) == from_folder
        unpacked = tmp_path / "unpacked" / chart
        helm_python.expand(unpacked, archive)
        assert chart_digest(unpacked / chart) == from_folder

    before = chart_digest(charts / "floe-jobs")
    labels = charts / "floe-common" / "templates" / "_labels.tpl"
    labels.write_text(labels.read_text() + "\n{{/* changed */}}\n")
    assert chart_digest(charts / "floe-jobs") != before
