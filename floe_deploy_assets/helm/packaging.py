"""Charts as Helm packages them: the archive, its provenance signature, and the digest of its
content, which is what a release records (``floe.dev/chart-digest``).

The digest is taken of the package's files (names and bytes; not the archive's bytes, which
carry timestamps), so a chart installed from its folder and the same chart pulled from a
registry have one digest: switching an environment from ``path`` to ``ref`` is a no-op.
"""

from __future__ import annotations

import hashlib
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path

import helm_python

from floe_deploy_assets.helm.charts import ChartPathError
from floe_deploy_assets.helm.render import RenderError, build_dependencies
from floe_deploy_assets.release.digests import LABEL_DIGEST_LENGTH


@dataclass(frozen=True)
class SigningKey:
    """A GPG key to sign provenance files with: its name (a unique part of its user id) in a
    secret keyring file (``gpg --export-secret-keys``), and the file holding its passphrase
    when it has one."""

    name: str
    keyring: Path
    passphrase_file: Path | None = None


@dataclass(frozen=True)
class PackagedChart:
    archive: Path
    provenance: Path | None


def archive_digest(archive: Path) -> str:
    """Every file in the archive, by path, with its bytes, in path order."""
    digest = hashlib.sha256()
    with tarfile.open(archive) as tar:
        for member in sorted((m for m in tar if m.isfile()), key=lambda m: m.name):
            content = tar.extractfile(member)
            assert content is not None  # a regular file
            digest.update(f"{member.name}\0{member.size}\0".encode())
            digest.update(content.read())
    return digest.hexdigest()[:LABEL_DIGEST_LENGTH]


def _package(chart_dir: Path, destination: Path) -> Path:
    """The archive of a chart whose dependencies are built."""
    try:
        return Path(helm_python.package(chart_dir, destination=destination))
    except helm_python.HelmError as exc:
        raise RenderError(f"{chart_dir}: packaging the chart failed: {exc}") from None


def chart_digest(chart_dir: Path) -> str:
    """The digest of the chart as Helm packages it, its dependencies included."""
    build_dependencies(chart_dir)
    with tempfile.TemporaryDirectory(prefix="floe-chart-digest-") as scratch:
        return archive_digest(_package(chart_dir, Path(scratch)))


def package_chart(chart_dir: Path, out_dir: Path, key: SigningKey | None) -> PackagedChart:
    """``out_dir/<name>-<version>.tgz`` with its locked dependencies (every one of Chart.yaml's
    dependencies present in charts/ at the version locked), and its ``.prov`` when signed."""
    build_dependencies(chart_dir)  # reads and checks Chart.yaml first
    unmet = [d for d in helm_python.dependency_list(chart_dir) if d["status"] not in OK_STATUSES]
    if unmet:
        listed = ", ".join(f"{d['name']} {d['version']} ({d['status']})" for d in unmet)
        raise ChartPathError(f"{chart_dir}: dependencies not in charts/ as locked: {listed}")
    out_dir.mkdir(parents=True, exist_ok=True)
    archive = _package(chart_dir, out_dir)
    provenance = Path(f"{archive}.prov")
    provenance.unlink(missing_ok=True)  # an earlier run's signature is not this archive's
    if key is not None:
        try:
            provenance = Path(
                helm_python.sign(
                    archive,
                    key=key.name,
                    keyring=key.keyring,
                    passphrase_file=key.passphrase_file,
                )
            )
        except helm_python.HelmError as exc:
            archive.unlink()
            raise ChartPathError(
                f"{chart_dir}: signing with key {key.name!r} from {key.keyring} failed: {exc}"
            ) from None
    return PackagedChart(archive, provenance if key is not None else None)


# Helm's words for a dependency that is there: packaged (ok) or as a folder (unpacked).
OK_STATUSES = frozenset({"ok", "unpacked"})
