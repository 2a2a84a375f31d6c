"""Where a chart's folder is: the configuration's ``path``, or the chart pulled from an OCI
registry (``ref`` at ``version``) into a cache with one folder per manifest digest.

A pulled chart is resolved (tag to digest) once per process and pulled once per digest. A
digest pinned in the configuration is pulled by that digest, wherever the version's tag points
now, and once cached, nothing is asked of the registry: the cache is trusted as a chart folder
is, and verified with the keyring when there is one. A chart refused is removed from the cache.
With ``registry.keyring`` set, the archive's provenance must be signed by a key in that
keyring and match the archive, and the unpacked folder must be that archive's content, at
every process's first use: a tampered chart is refused before anything is rendered or applied.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from floe_deploy_assets.helm.charts import CHARTS, ChartPathError, read_chart_metadata
from floe_deploy_assets.models.config import ChartKind, ChartSource, DeploymentConfig

if TYPE_CHECKING:
    from helm_python.registry import RegistryClient

    from floe_deploy_assets.helm.registry import RegistrySettings

CACHE_VARIABLE = "FLOE_CHART_CACHE"


class ChartVerificationError(ChartPathError):
    """A chart from a registry is not what its provenance says, or is not signed by a trusted
    key, or not the chart the configuration names."""


def split_ref(ref: str) -> tuple[str, str]:
    """``oci://HOST[:PORT]/PATH`` as (host, path)."""
    host, _, path = ref.removeprefix("oci://").partition("/")
    return host, path


def oci_tag(version: str) -> str:
    """Helm's tag for a chart version: OCI tags cannot hold '+', Helm writes '_'."""
    return version.replace("+", "_")


def cache_root() -> Path:
    """$FLOE_CHART_CACHE, else $XDG_CACHE_HOME/floe-deploy/charts (~/.cache by default)."""
    if os.environ.get(CACHE_VARIABLE):
        return Path(os.environ[CACHE_VARIABLE])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "floe-deploy" / "charts"


# (ref, version, pinned digest, keyring) -> the chart's folder, for this process.
_pulled: dict[tuple[str, str, str | None, Path | None], Path] = {}


def chart_dir(config: DeploymentConfig, chart: ChartKind) -> Path:
    """The folder of the chart the configuration names for ``chart``."""
    source = config.chart_source(chart)
    if source.path is not None:
        return config.resolve(source.path)
    keyring = config.resolve(config.registry.keyring) if config.registry.keyring else None
    key = (str(source.ref), str(source.version), source.digest, keyring)
    if key not in _pulled:
        _pulled[key] = _pulled_chart(config, chart, source, keyring)
    return _pulled[key]


def _pulled_chart(
    config: DeploymentConfig, chart: ChartKind, source: ChartSource, keyring: Path | None
) -> Path:
    assert source.ref is not None and source.version is not None  # the model requires both
    ref, version, pinned = source.ref, source.version, source.digest
    root = cache_root()
    entry = _entry(root, pinned) if pinned else None
    if entry is None or not entry.is_dir():
        # Only now the registry client (Helm's native library, Go's TLS): a pinned chart in
        # the cache needs neither.
        from floe_deploy_assets.helm.registry import registry_client, resolve_digest

        with registry_client(split_ref(ref)[0], _registry_settings(config)) as client:
            # Pinned: that manifest, wherever the version's tag points now.
            digest = pinned or resolve_digest(client, ref, version)
            entry = _entry(root, digest)
            if not entry.is_dir():
                _fetch(client, ref, digest, entry)
    folder = _chart_folder(chart, entry)
    try:
        _check_is_named_chart(chart, folder, ref.rsplit("/", 1)[1], version)
        if keyring is not None:
            _verify(chart, entry, folder, keyring)
    except ChartVerificationError:
        # Not kept for a later run that has no keyring, or names another version.
        shutil.rmtree(entry, ignore_errors=True)
        raise
    return folder


def _registry_settings(config: DeploymentConfig) -> RegistrySettings:
    from floe_deploy_assets.helm.registry import RegistrySettings

    access = config.registry
    refs = [config.chart_source(chart).ref for chart in CHARTS]
    return RegistrySettings(
        ca_file=config.resolve(access.ca_file) if access.ca_file else None,
        credentials_file=config.resolve(access.credentials_file)
        if access.credentials_file
        else None,
        plain_http=access.plain_http,
        registries=tuple(sorted({split_ref(ref)[0] for ref in refs if ref})),
    )


def _entry(root: Path, digest: str) -> Path:
    return root / digest.replace(":", "-")


def _fetch(client: RegistryClient, ref: str, digest: str, entry: Path) -> None:
    """Pull into a scratch folder beside the entry, unpack, then rename it into place: the
    entry exists only complete, and two processes pulling the same chart both succeed."""
    import helm_python

    from floe_deploy_assets.helm.registry import pull_by_digest

    entry.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".pull-", dir=entry.parent))
    try:
        pull_by_digest(client, ref, digest, scratch)
        pulled = [p for p in scratch.iterdir() if p.name.endswith(".tgz")]
        if len(pulled) != 1:
            raise ChartVerificationError(f"{ref}@{digest}: the registry gave no chart archive")
        try:
            with helm_python.Chart.load(pulled[0]) as loaded:
                name, version = loaded.name, loaded.version
        except helm_python.HelmError as exc:
            raise ChartVerificationError(f"{ref}@{digest}: not a chart: {exc}") from None
        # A provenance file names the archive <name>-<version>.tgz, and Helm checks that name.
        archive = scratch / f"{name}-{version}.tgz"
        for file in scratch.iterdir():
            file.rename(str(archive) + file.name[file.name.index(".tgz") + len(".tgz") :])
        helm_python.expand(scratch, archive)
        try:
            scratch.rename(entry)
        except OSError:  # another process put it there first
            if not entry.is_dir():
                raise
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def _chart_folder(chart: ChartKind, entry: Path) -> Path:
    folders = [p for p in entry.iterdir() if p.is_dir()]
    if len(folders) != 1:
        raise ChartVerificationError(
            f"charts.{chart}: the cached {entry} holds no single chart; delete it and run again"
        )
    return folders[0]


def _check_is_named_chart(chart: ChartKind, folder: Path, name: str, version: str) -> None:
    metadata = read_chart_metadata(folder)
    if (metadata["name"], metadata["version"]) != (name, version):
        raise ChartVerificationError(
            f"charts.{chart}: the registry's chart is {metadata['name']} "
            f"{metadata['version']}, not {name} {version}; the ref's last part is the chart's "
            "name and version its Chart.yaml version"
        )


def _verify(chart: ChartKind, entry: Path, folder: Path, keyring: Path) -> None:
    import helm_python

    from floe_deploy_assets.helm.packaging import archive_digest, chart_digest

    archives = sorted(entry.glob("*.tgz"))
    if len(archives) != 1 or not Path(f"{archives[0]}.prov").is_file():
        raise ChartVerificationError(
            f"charts.{chart}: {folder.name} from the registry has no provenance file, so it "
            f"cannot be verified against {keyring}; publish it signed (floe-deploy package "
            "--sign-key) or remove registry.keyring"
        )
    try:
        helm_python.verify(archives[0], keyring)
    except helm_python.HelmError as exc:
        raise ChartVerificationError(
            f"charts.{chart}: {archives[0].name} failed verification against {keyring}: {exc}; "
            "the chart was changed after it was signed, or signed by a key not in the keyring"
        ) from None
    if chart_digest(folder) != archive_digest(archives[0]):
        raise ChartVerificationError(
            f"charts.{chart}: the cached folder {folder} differs from its verified archive; "
            f"delete {entry} and run again"
        )
