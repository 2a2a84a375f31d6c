"""Container images without a registry: a root filesystem from Debian packages, PyPI and host
files, written as an OCI image layout archive, and imported into a real node's containerd.

No registry is reachable from these machines, and none is needed: containerd imports an OCI
layout archive (``ctr image import``) as if it had been pulled. An image is described by an
``ImageRecipe``; its archive is cached under the cache directory by the digest of the recipe and
of every input file, so a recipe or input that changes makes a new image and an unchanged one is
built once per machine.

How a root filesystem is made (each step only if the recipe asks for it):
1. Debian's minimal base (``debootstrap --variant=minbase``) with the recipe's packages installed
   by dpkg, maintainer scripts and all; the base is cached as a tar by its package list, so images
   that share it bootstrap once.
2. A setup script run in the root filesystem (``chroot``, with the host's resolver, so apt-get in
   it reaches Debian's mirror; services are not started: policy-rc.d says no).
3. Python packages in a virtual environment at ``/opt/venv``: the host's pip resolves and builds
   wheels (it has the host's index settings and certificates), pip in the image installs exactly
   those wheels, offline, with the image's own Python.
4. Debian packages unpacked without installing (for a lone static binary), then host files.
The image is one uncompressed layer of that tree, without what a slim image drops (package
lists and caches, documentation, manuals, translations) and what the runtime provides (/dev,
/proc, /sys, /tmp's contents); owners are kept by number.

Names: the CRI normalizes ``local/pause:3.4`` to ``docker.io/local/pause:3.4`` and looks for that
(REAL-NODE.md), so images are imported under the normalized name; pods name them either way with
``imagePullPolicy: Never`` or ``IfNotPresent``, since nothing can be pulled.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from floe_deploy_assets.helm.render import build_dependencies
from floe_deploy_assets.release.digests import DEPENDENCIES_STAMP
from localcluster.build import run_command
from localcluster.errors import LocalClusterError

IMAGE_REGISTRY = "docker.io/local"
# The format of the cached archives; bump it when the layout written here changes.
LAYOUT_VERSION = "3"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
DEBIAN_SUITE = "bookworm"
DEBIAN_MIRROR = "http://deb.debian.org/debian"
VENV = "/opt/venv"
IMAGE_PYTHON = (3, 11)  # bookworm's python3
# Left out of every image: what a slim image drops, and what the runtime mounts over.
SLIMMED = (
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/cache/debconf",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
)
PROVIDED_BY_THE_RUNTIME = ("dev", "proc", "sys", "tmp")
# The chroot's environment: nothing of the host's but what a package manager needs.
CHROOT_ENV = {
    "PATH": DEFAULT_PATH,
    "HOME": "/root",
    "LANG": "C.UTF-8",
    "DEBIAN_FRONTEND": "noninteractive",
}
PROJECT_ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class ProjectSource:
    """A Python project of this machine's, installed into an image: the wheel is built from a
    copy of ``parts`` (files or directories under ``root``), which is also what the image's
    digest covers."""

    root: Path
    parts: tuple[str, ...]

    def files(self) -> Iterator[tuple[str, Path]]:
        for part in self.parts:
            path = self.root / part
            if not path.exists():
                raise LocalClusterError(
                    f"{path} is missing: an image installs the project at {self.root} from "
                    f"{', '.join(self.parts)}; build images from a checkout of it"
                )
            candidates = [path] if path.is_file() else sorted(path.rglob("*"))
            for file in candidates:
                if file.is_file() and not _generated(file.relative_to(self.root)):
                    yield str(file.relative_to(self.root)), file


def _generated(relative: Path) -> bool:
    """Made on this machine, not part of the source: byte code, build metadata, hidden files,
    charts' packaged dependencies (``helm dependency build`` makes them)."""
    return any(
        part == "__pycache__" or part.startswith(".") or part.endswith(".egg-info")
        for part in relative.parts
    ) or relative.suffix in (".pyc", ".tgz")


@dataclass(frozen=True)
class ImageRecipe:
    """What goes into an image (see the module's docstring for the order of the steps) and the
    process to start."""

    name: str
    tag: str
    debootstrap: tuple[str, ...] | None = None  # packages installed on Debian's minbase
    setup_script: str = ""  # run by /bin/sh -e in the root filesystem, after debootstrap
    pip_requirements: tuple[str, ...] = ()  # pinned; installed into /opt/venv
    pip_projects: tuple[ProjectSource, ...] = ()  # installed into /opt/venv with them
    debian_packages: tuple[str, ...] = ()  # unpacked, not installed
    files: tuple[tuple[str, Path], ...] = ()  # (path in the image, file on the host)
    busybox_applets: bool = False  # a link in /bin for each applet of the unpacked /bin/busybox
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = (f"PATH={DEFAULT_PATH}",)
    labels: dict[str, str] = field(default_factory=dict)
    stop_signal: str = ""  # what the runtime sends to stop the container (default SIGTERM)
    working_dir: str = ""  # the process's working directory (default /)

    @property
    def reference(self) -> str:
        return f"{IMAGE_REGISTRY}/{self.name}:{self.tag}"

    def digest(self) -> str:
        """The recipe, how this module builds it (Debian suite and mirror, the host's Python,
        which resolves the wheels) and the content and mode of every input file (host files,
        project files): an archive built from them is the same image."""
        hasher = hashlib.sha256(LAYOUT_VERSION.encode())
        described = {
            "name": self.name,
            "tag": self.tag,
            "debootstrap": self.debootstrap,
            "setup_script": self.setup_script,
            "pip_requirements": self.pip_requirements,
            "debian_packages": self.debian_packages,
            "files": [path for path, _ in self.files],
            "busybox_applets": self.busybox_applets,
            "entrypoint": self.entrypoint,
            "cmd": self.cmd,
            "env": self.env,
            "labels": self.labels,
            "stop_signal": self.stop_signal,
            "working_dir": self.working_dir,
            "built_with": [DEBIAN_SUITE, DEBIAN_MIRROR, VENV, list(sys.version_info[:2])],
        }
        hasher.update(json.dumps(described, sort_keys=True).encode())
        inputs = [host_file for _, host_file in self.files]
        for project in self.pip_projects:
            for relative, file in project.files():
                hasher.update(relative.encode())
                inputs.append(file)
        for file in inputs:
            hasher.update(hashlib.sha256(file.read_bytes()).digest())
            hasher.update(str(file.stat().st_mode & 0o777).encode())
        return hasher.hexdigest()


PAUSE_NAME, PAUSE_TAG = "pause", "3.4"
# The pod sandbox's image, as containerd's CRI and the kubelet are told it.
PAUSE_IMAGE = f"{IMAGE_REGISTRY}/{PAUSE_NAME}:{PAUSE_TAG}"


def pause_recipe(pause_binary: Path) -> ImageRecipe:
    """The pod sandbox's image: Kubernetes' own pause program (built by ``build``), alone."""
    return ImageRecipe(
        name=PAUSE_NAME, tag=PAUSE_TAG, files=(("/pause", pause_binary),), entrypoint=("/pause",)
    )


def busybox_recipe() -> ImageRecipe:
    """A shell and the usual commands: Debian's static busybox, one file."""
    return ImageRecipe(
        name="busybox",
        tag="debian-bookworm",
        debian_packages=("busybox-static",),
        busybox_applets=True,
        cmd=("sh",),
    )


# The Dagster stack the project is tested with (pyproject.toml's ranges, pinned).
DAGSTER_VERSION = "1.13.27"
DAGSTER_LIBRARIES_VERSION = "0.29.27"
DAGSTER_STACK = (
    f"dagster=={DAGSTER_VERSION}",
    f"dagster-webserver=={DAGSTER_VERSION}",
    f"dagster-k8s=={DAGSTER_LIBRARIES_VERSION}",
    f"dagster-postgres=={DAGSTER_LIBRARIES_VERSION}",
)
PYTHON_IMAGE = f"{IMAGE_REGISTRY}/floe-python:{DAGSTER_VERSION}"
# dbt with the adapters the examples and the floe-jobs chart's default use.
# dagster-pipes (no dependencies of its own): the floe-jobs chart's floe_dbt.py reports dbt's
# results to Dagster with it.
DBT_STACK = (
    "dbt-core==1.8.9",
    "dbt-duckdb==1.8.4",
    "dbt-postgres==1.8.2",
    f"dagster-pipes=={DAGSTER_VERSION}",
)
DBT_IMAGE = f"{IMAGE_REGISTRY}/dbt:1.8.9"
DBT_PROJECT_DIR = "/usr/app/dbt"
EXAMPLE_DBT_PROJECT = "examples/customer_360"  # the example data product's dbt project
POSTGRES_MAJOR = "15"  # bookworm's PostgreSQL
POSTGRES_IMAGE = f"{IMAGE_REGISTRY}/postgres:{POSTGRES_MAJOR}-bookworm"
RECIPES_DIR = Path(__file__).resolve().parent / "recipes"
PYTHON_BASE = ("python3", "python3-venv")
FLOE_DIR = "/opt/floe"
# The deployment configuration and what it names, relative to it.
DEPLOYMENT_FILES = (
    "floe-deploy.yaml",
    "examples/compiled-artifacts.json",
    "examples/customer_360",
    "charts",
)
DEPLOYMENT_CHARTS = ("charts/floe-platform", "charts/floe-jobs")
VENV_ENV = (f"PATH={VENV}/bin:{DEFAULT_PATH}", "PYTHONUNBUFFERED=1", "LANG=C.UTF-8")


def _recipe_for(reference: str, **fields: Any) -> ImageRecipe:
    """A recipe named and tagged by the reference pods use (``docker.io/local/NAME:TAG``)."""
    name, tag = reference.removeprefix(IMAGE_REGISTRY + "/").split(":")
    return ImageRecipe(name=name, tag=tag, **fields)


def python_recipe() -> ImageRecipe:
    """Debian's Python with the pinned Dagster stack and this project in /opt/venv, first on
    PATH (``python3 -m http.server``, ``dagster-webserver``, ``floe-deploy``), and in /opt/floe
    the deployment configuration with what it names (the charts, the example CompiledArtifacts),
    so ``dagster api grpc -m floe_deploy_assets.definitions`` serves the project's code location
    (``FLOE_DEPLOY_CONFIG`` names it)."""
    return _recipe_for(
        PYTHON_IMAGE,
        debootstrap=PYTHON_BASE,
        pip_requirements=DAGSTER_STACK,
        pip_projects=(
            ProjectSource(
                PROJECT_ROOT,
                # Not localcluster (the product does not import it): the image is not rebuilt
                # when only the local cluster changes.
                ("pyproject.toml", "README.md", "floe_deploy_assets"),
            ),
        ),
        files=tuple(
            (f"{FLOE_DIR}/{file.relative_to(PROJECT_ROOT)}", file) for file in _deployment_files()
        ),
        env=(*VENV_ENV, f"FLOE_DEPLOY_CONFIG={FLOE_DIR}/floe-deploy.yaml"),
        cmd=("python3",),
    )


def _deployment_files() -> list[Path]:
    """The deployment configuration, what it names, and the charts' dependencies as Helm
    packages them (built here first, when their sources changed): a run in the image renders
    the charts, and cannot package them on its read-only root filesystem."""
    for chart in DEPLOYMENT_CHARTS:
        build_dependencies(PROJECT_ROOT / chart)
    sources = [file for _, file in ProjectSource(PROJECT_ROOT, DEPLOYMENT_FILES).files()]
    packaged = (PROJECT_ROOT / "charts").glob("**/charts/*")
    return sources + sorted(
        file for file in packaged if file.suffix == ".tgz" or file.name == DEPENDENCIES_STAMP
    )


def dbt_recipe() -> ImageRecipe:
    """dbt-core with the duckdb and postgres adapters, on the same Debian base as the Python
    image; ``dbt`` is the entrypoint, as in dbt Labs' images, and the example data product's
    dbt project is in the working directory (/usr/app/dbt, as there), so the floe-jobs chart's
    ``dbt build --select ...`` runs its models."""
    return _recipe_for(
        DBT_IMAGE,
        debootstrap=PYTHON_BASE,
        pip_requirements=DBT_STACK,
        files=tuple(
            (f"{DBT_PROJECT_DIR}/{relative.removeprefix(EXAMPLE_DBT_PROJECT + '/')}", file)
            for relative, file in ProjectSource(PROJECT_ROOT, (EXAMPLE_DBT_PROJECT,)).files()
        ),
        env=(
            *VENV_ENV,
            f"DBT_PROJECT_DIR={DBT_PROJECT_DIR}",
            # No usage reporting (nothing outside is reachable, and it writes ~/.dbt).
            "DBT_SEND_ANONYMOUS_USAGE_STATS=false",
        ),
        entrypoint=("dbt",),
        cmd=("--help",),
        working_dir=DBT_PROJECT_DIR,
    )


def postgres_recipe() -> ImageRecipe:
    """Debian's PostgreSQL behind the official image's entrypoint contract (POSTGRES_PASSWORD,
    POSTGRES_USER, POSTGRES_DB, POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD, the *_FILE
    forms, PGDATA, /docker-entrypoint-initdb.d), user postgres with uid and gid 999 as there."""
    binaries = f"/usr/lib/postgresql/{POSTGRES_MAJOR}/bin"
    return _recipe_for(
        POSTGRES_IMAGE,
        debootstrap=(),
        setup_script=(RECIPES_DIR / "postgres-setup.sh").read_text(),
        files=(("/usr/local/bin/docker-entrypoint.sh", RECIPES_DIR / "postgres-entrypoint.sh"),),
        env=(
            f"PATH={binaries}:{DEFAULT_PATH}",
            "LANG=C.UTF-8",
            "PGDATA=/var/lib/postgresql/data",
        ),
        entrypoint=("docker-entrypoint.sh",),
        cmd=("postgres",),
        # Fast shutdown (SIGTERM would wait for every client to leave), as the official image.
        stop_signal="SIGINT",
    )


def node_recipes(pause_binary: Path) -> tuple[ImageRecipe, ...]:
    """Every image a real node is given at ``up``."""
    return (
        pause_recipe(pause_binary),
        busybox_recipe(),
        python_recipe(),
        dbt_recipe(),
        postgres_recipe(),
    )


def image_archive(recipe: ImageRecipe, cache_dir: Path) -> Path:
    """The recipe's OCI layout archive, built unless the cache has it."""
    archive = cache_dir / "images" / f"{recipe.name}-{recipe.tag}-{recipe.digest()[:16]}.tar"
    if archive.is_file():
        return archive
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="floe-image-", dir=archive.parent) as scratch:
        rootfs = Path(scratch) / "rootfs"
        rootfs.mkdir()
        _fill_rootfs(recipe, rootfs, cache_dir)
        layer = Path(scratch) / "layer.tar"
        _write_layer(rootfs, layer)
        staged = Path(scratch) / "image.tar"
        _write_layout_archive(recipe, layer, staged)
        staged.replace(archive)  # atomic: a half-written archive is never found
    for older in archive.parent.glob(f"{recipe.name}-{recipe.tag}-*.tar"):
        digest = older.name.removeprefix(f"{recipe.name}-{recipe.tag}-").removesuffix(".tar")
        if older != archive and len(digest) == 16:  # this image's, not a longer tag's
            older.unlink(missing_ok=True)  # an image is rebuilt when its inputs change
    return archive


def _fill_rootfs(recipe: ImageRecipe, rootfs: Path, cache_dir: Path) -> None:
    if recipe.debootstrap is not None:
        _unpack_debian_base(recipe.debootstrap, rootfs, cache_dir)
    if recipe.setup_script:
        _in_chroot(rootfs, recipe.setup_script, f"the setup script of the image {recipe.name}")
    if recipe.pip_requirements or recipe.pip_projects:
        _install_python_packages(recipe, rootfs)
    for package in recipe.debian_packages:
        deb = _downloaded_deb(package, cache_dir / "debs")
        run_command(["dpkg-deb", "-x", str(deb), str(rootfs)], what=f"unpacking {deb.name}")
    for image_path, host_file in recipe.files:
        target = rootfs / image_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(host_file, target)
        if os.geteuid() == 0:
            os.chown(target, 0, 0)  # root's in the image, whoever owns it on the host
    if recipe.busybox_applets:
        busybox = rootfs / "bin" / "busybox"
        listed = subprocess.run(
            [str(busybox), "--list"], capture_output=True, text=True, check=True, timeout=30
        )
        for applet in listed.stdout.split():
            link = rootfs / "bin" / applet
            if not link.exists() and applet != "busybox":
                link.symlink_to("busybox")
    (rootfs / "tmp").mkdir(exist_ok=True)
    (rootfs / "tmp").chmod(0o1777)  # mkdir's mode is masked by the umask


def _unpack_debian_base(packages: tuple[str, ...], rootfs: Path, cache_dir: Path) -> None:
    """Debian's minbase with ``packages``, from the cache's tar of it or bootstrapped (and
    cached) now."""
    key = hashlib.sha256(json.dumps([DEBIAN_SUITE, DEBIAN_MIRROR, sorted(packages)]).encode())
    base = cache_dir / "images" / "bases" / f"debian-{DEBIAN_SUITE}-{key.hexdigest()[:16]}.tar"
    if not base.is_file():
        base.parent.mkdir(parents=True, exist_ok=True)
        include = [f"--include={','.join(packages)}"] if packages else []
        run_command(
            [
                "debootstrap",
                "--variant=minbase",
                *include,
                DEBIAN_SUITE,
                str(rootfs),
                DEBIAN_MIRROR,
            ],
            what=f"bootstrapping Debian {DEBIAN_SUITE} (minbase, {', '.join(packages)})",
        )
        # A name of its own: two builds at once each publish a whole archive.
        staged = Path(tempfile.mkstemp(dir=base.parent, suffix=".partial")[1])
        try:
            run_command(
                ["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(staged), "."],
                what=f"archiving the Debian base in {base}",
            )
            staged.replace(base)
        finally:
            staged.unlink(missing_ok=True)
        return
    run_command(
        ["tar", "--numeric-owner", "-C", str(rootfs), "-xpf", str(base)],
        what=f"unpacking the Debian base {base}",
    )


def _in_chroot(rootfs: Path, script: str, what: str) -> None:
    """Run ``script`` in the root filesystem with the host's resolver (so apt-get reaches the
    mirror) and no service started (policy-rc.d); both are taken out again."""
    resolv = rootfs / "etc" / "resolv.conf"
    policy = rootfs / "usr" / "sbin" / "policy-rc.d"
    # Unlinked first: a link in the image (to /run/...) must not lead to the host's file.
    resolv.unlink(missing_ok=True)
    shutil.copyfile("/etc/resolv.conf", resolv)
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    try:
        run_command(["chroot", str(rootfs), "/bin/sh", "-ec", script], what=what, env=CHROOT_ENV)
    finally:
        policy.unlink()
        resolv.unlink(missing_ok=True)
        resolv.write_text("")  # the kubelet mounts the pod's own over it


def _install_python_packages(recipe: ImageRecipe, rootfs: Path) -> None:
    """Wheels resolved and built by the host's pip, installed offline by the image's: so the
    host's Python must be the image's (Debian bookworm's 3.11), or the wheels and the markers
    would be another Python's."""
    if sys.version_info[:2] != IMAGE_PYTHON:
        raise LocalClusterError(
            f"the image {recipe.name} has Python {'.'.join(map(str, IMAGE_PYTHON))} and its "
            f"wheels are chosen by this Python ({sys.version.split()[0]}): build images with "
            f"a {'.'.join(map(str, IMAGE_PYTHON))} virtual environment"
        )
    wheels = rootfs / "tmp" / "wheels"
    wheels.mkdir(parents=True)
    with tempfile.TemporaryDirectory(prefix="floe-project-") as copies:
        projects = []
        for index, project in enumerate(recipe.pip_projects):
            copy = Path(copies) / str(index)
            for relative, file in project.files():
                (copy / relative).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(file, copy / relative)
            projects.append(str(copy))
        run_command(
            [
                *(sys.executable, "-m", "pip", "wheel", "--quiet", "--wheel-dir", str(wheels)),
                *recipe.pip_requirements,
                *projects,
            ],
            what=f"fetching and building the wheels of the image {recipe.name}",
        )
    _in_chroot(
        rootfs,
        f"python3 -m venv {VENV}\n"
        f"{VENV}/bin/pip install --quiet --no-index --no-deps --no-cache-dir /tmp/wheels/*.whl\n"
        "rm -rf /tmp/wheels",
        f"installing the wheels of the image {recipe.name}",
    )


def _downloaded_deb(package: str, deb_cache: Path) -> Path:
    """The package's .deb for this machine's Debian, fetched once (``apt-get download``)."""
    deb_cache.mkdir(parents=True, exist_ok=True)
    found = sorted(deb_cache.glob(f"{package}_*.deb"))
    if not found:
        run_command(
            ["apt-get", "download", "-q", package],
            what=f"downloading the Debian package {package}",
            cwd=deb_cache,
        )
        found = sorted(deb_cache.glob(f"{package}_*.deb"))
    if not found:
        raise LocalClusterError(
            f"apt-get download {package} left no {package}_*.deb in {deb_cache}"
        )
    return found[-1]


def _layer_entries(rootfs: Path) -> Iterator[Path]:
    """Every path of the tree in a fixed order, without symbolic links followed and without
    what images leave out (the directories themselves stay)."""
    for directory, subdirectories, files in os.walk(rootfs):
        if Path(directory).relative_to(rootfs).as_posix() in (*PROVIDED_BY_THE_RUNTIME, *SLIMMED):
            subdirectories.clear()  # the directory is in the image, empty
            continue
        subdirectories.sort()
        for name in sorted(files + subdirectories):
            yield Path(directory) / name


def _write_layer(rootfs: Path, layer: Path) -> None:
    """The root filesystem as one uncompressed layer: entries sorted, owners kept by number,
    times zeroed, so the same tree gives the same bytes."""
    with tarfile.open(layer, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for path in _layer_entries(rootfs):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(rootfs)))
            if info is None:  # a socket: nothing an image can carry
                continue
            info.uname = info.gname = ""
            info.mtime = 0
            if info.isreg():
                with path.open("rb") as content:
                    tar.addfile(info, content)
            else:
                tar.addfile(info)


def _file_digest(path: Path) -> str:
    hasher = hashlib.sha256()
    with path.open("rb") as content:
        while chunk := content.read(1 << 20):
            hasher.update(chunk)
    return "sha256:" + hasher.hexdigest()


def _add_blob(layout: tarfile.TarFile, content: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    _add_file(layout, f"blobs/sha256/{digest.removeprefix('sha256:')}", content)
    return digest


def _add_file(layout: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    info.mode = 0o644
    layout.addfile(info, io.BytesIO(content))


def _write_layout_archive(recipe: ImageRecipe, layer: Path, archive: Path) -> None:
    """An OCI image layout (oci-layout, index.json, blobs) as one tar, as ``ctr image import``
    reads it."""
    with tarfile.open(archive, mode="w") as layout:
        layer_digest = _file_digest(layer)
        info = tarfile.TarInfo(f"blobs/sha256/{layer_digest.removeprefix('sha256:')}")
        info.size, info.mode = layer.stat().st_size, 0o644
        with layer.open("rb") as content:
            layout.addfile(info, content)
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": list(recipe.env),
                "Entrypoint": list(recipe.entrypoint) or None,
                "Cmd": list(recipe.cmd) or None,
                "Labels": recipe.labels or None,
                "StopSignal": recipe.stop_signal or None,
                "WorkingDir": recipe.working_dir or None,
            },
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }
        config_bytes = json.dumps(config, sort_keys=True).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _add_blob(layout, config_bytes),
                "size": len(config_bytes),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest,
                    "size": layer.stat().st_size,
                }
            ],
        }
        manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": _add_blob(layout, manifest_bytes),
                    "size": len(manifest_bytes),
                    "annotations": {"org.opencontainers.image.ref.name": recipe.reference},
                }
            ],
        }
        _add_file(layout, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        _add_file(layout, "index.json", json.dumps(index, sort_keys=True).encode())


def node_images(cache_dir: Path, pause_binary: Path) -> list[tuple[ImageRecipe, Path]]:
    """Every image a real node is given, each with its archive (built now unless cached)."""
    return [(recipe, image_archive(recipe, cache_dir)) for recipe in node_recipes(pause_binary)]


def import_images(images: list[tuple[ImageRecipe, Path]], containerd_socket: Path) -> list[str]:
    """Import each image unless containerd has it already, as built (a node restarted without
    wiping keeps its images); returns the references imported."""
    imported = []
    for recipe, archive in images:
        present = ctr(containerd_socket, "image", "ls", f"name=={recipe.reference}").stdout
        if _manifest_digest(archive) in present.split():
            continue
        ctr(containerd_socket, "image", "import", str(archive), timeout=600)
        imported.append(recipe.reference)
    return imported


def _manifest_digest(archive: Path) -> str:
    try:
        with tarfile.open(archive) as layout:
            index = layout.extractfile("index.json")
            [manifest] = json.load(index)["manifests"]  # type: ignore[arg-type]
        return str(manifest["digest"])
    except (OSError, tarfile.TarError, KeyError, ValueError, TypeError) as error:
        raise LocalClusterError(
            f"{archive} is not an image archive of this module's ({error}): delete it and build "
            "again (`python -m localcluster build`)"
        ) from error


def ctr(
    containerd_socket: Path, *arguments: str, check: bool = True, timeout: float = 30
) -> subprocess.CompletedProcess[str]:
    """containerd's own client, in the CRI's namespace (``k8s.io``, where the kubelet finds
    images). A failure, or no answer within ``timeout``, is an error when ``check``; otherwise
    the answer (exit code 124 for no answer), so a clean-up goes on."""
    command = ["ctr", "--address", str(containerd_socket), "--namespace", "k8s.io", *arguments]
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        if check:
            raise LocalClusterError(
                f"containerd at {containerd_socket} did not answer `ctr {' '.join(arguments)}` "
                f"in {timeout:.0f} s"
            ) from None
        return subprocess.CompletedProcess(command, 124, "", "timed out")
    if check and result.returncode != 0:
        raise LocalClusterError(
            f"`ctr {' '.join(arguments)}` exited {result.returncode}: {result.stderr.strip()}"
        )
    return result
