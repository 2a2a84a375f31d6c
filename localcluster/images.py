"""Container images without a registry: a root filesystem from Debian packages and host files,
written as an OCI image layout archive, and imported into a real node's containerd.

No registry is reachable from these machines, and none is needed: containerd imports an OCI
layout archive (``ctr image import``) as if it had been pulled. An image is described by an
``ImageRecipe``; its archive is cached under the cache directory by the digest of the recipe and
of every input file, so a recipe or input that changes makes a new image and an unchanged one is
built once per machine.

Names: the CRI normalizes ``local/pause:3.4`` to ``docker.io/local/pause:3.4`` and looks for that
(REAL-NODE.md), so images are imported under the normalized name; pods name them either way with
``imagePullPolicy: Never`` or ``IfNotPresent``, since nothing can be pulled.
"""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import tarfile
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from localcluster.build import run_command
from localcluster.errors import LocalClusterError

IMAGE_REGISTRY = "docker.io/local"
# The format of the cached archives; bump it when the layout written here changes.
LAYOUT_VERSION = "2"
DEFAULT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


@dataclass(frozen=True)
class ImageRecipe:
    """What goes into an image: Debian packages unpacked (not installed: no maintainer scripts
    run), host files copied in, symbolic links, and the process to start."""

    name: str
    tag: str
    debian_packages: tuple[str, ...] = ()
    files: tuple[tuple[str, Path], ...] = ()  # (path in the image, file on the host)
    busybox_applets: bool = False  # a link in /bin for each applet of the unpacked /bin/busybox
    entrypoint: tuple[str, ...] = ()
    cmd: tuple[str, ...] = ()
    env: tuple[str, ...] = (f"PATH={DEFAULT_PATH}",)
    labels: dict[str, str] = field(default_factory=dict)

    @property
    def reference(self) -> str:
        return f"{IMAGE_REGISTRY}/{self.name}:{self.tag}"

    def digest(self) -> str:
        """The recipe and the content of its host files: an archive built from them is the
        same image."""
        hasher = hashlib.sha256(LAYOUT_VERSION.encode())
        described = {
            "name": self.name,
            "tag": self.tag,
            "debian_packages": self.debian_packages,
            "files": [path for path, _ in self.files],
            "busybox_applets": self.busybox_applets,
            "entrypoint": self.entrypoint,
            "cmd": self.cmd,
            "env": self.env,
            "labels": self.labels,
        }
        hasher.update(json.dumps(described, sort_keys=True).encode())
        for _, host_file in self.files:
            hasher.update(hashlib.sha256(host_file.read_bytes()).digest())
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


def image_archive(recipe: ImageRecipe, cache_dir: Path) -> Path:
    """The recipe's OCI layout archive, built unless the cache has it."""
    archive = cache_dir / "images" / f"{recipe.name}-{recipe.tag}-{recipe.digest()[:16]}.tar"
    if archive.is_file():
        return archive
    archive.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="floe-image-", dir=archive.parent) as scratch:
        rootfs = Path(scratch) / "rootfs"
        rootfs.mkdir()
        _fill_rootfs(recipe, rootfs, cache_dir / "debs")
        staged = Path(scratch) / "image.tar"
        _write_layout_archive(recipe, _layer_of(rootfs), staged)
        staged.replace(archive)  # atomic: a half-written archive is never found
    return archive


def _fill_rootfs(recipe: ImageRecipe, rootfs: Path, deb_cache: Path) -> None:
    for package in recipe.debian_packages:
        deb = _downloaded_deb(package, deb_cache)
        run_command(["dpkg-deb", "-x", str(deb), str(rootfs)], what=f"unpacking {deb.name}")
    for image_path, host_file in recipe.files:
        target = rootfs / image_path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(host_file, target)
    if recipe.busybox_applets:
        busybox = rootfs / "bin" / "busybox"
        listed = subprocess.run(
            [str(busybox), "--list"], capture_output=True, text=True, check=True, timeout=30
        )
        for applet in listed.stdout.split():
            link = rootfs / "bin" / applet
            if not link.exists() and applet != "busybox":
                link.symlink_to("busybox")
    (rootfs / "tmp").mkdir(exist_ok=True, mode=0o1777)


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


def _layer_of(rootfs: Path) -> bytes:
    """The root filesystem as one uncompressed layer: entries sorted, owned by root, with
    the files' own modes, so the same tree gives the same bytes."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.PAX_FORMAT) as layer:
        for path in sorted(rootfs.rglob("*")):
            info = layer.gettarinfo(str(path), arcname=str(path.relative_to(rootfs)))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = 0
            if info.isfile():
                with path.open("rb") as content:
                    layer.addfile(info, content)
            else:
                layer.addfile(info)
    return buffer.getvalue()


def _blob(layout: tarfile.TarFile, content: bytes) -> str:
    digest = "sha256:" + hashlib.sha256(content).hexdigest()
    _add_file(layout, f"blobs/sha256/{digest.removeprefix('sha256:')}", content)
    return digest


def _add_file(layout: tarfile.TarFile, name: str, content: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(content)
    info.mode = 0o644
    layout.addfile(info, io.BytesIO(content))


def _write_layout_archive(recipe: ImageRecipe, layer: bytes, archive: Path) -> None:
    """An OCI image layout (oci-layout, index.json, blobs) as one tar, as ``ctr image import``
    reads it."""
    with tarfile.open(archive, mode="w") as layout:
        layer_digest = _blob(layout, layer)
        config = {
            "architecture": "amd64",
            "os": "linux",
            "config": {
                "Env": list(recipe.env),
                "Entrypoint": list(recipe.entrypoint) or None,
                "Cmd": list(recipe.cmd) or None,
                "Labels": recipe.labels or None,
            },
            "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        }
        config_bytes = json.dumps(config, sort_keys=True).encode()
        manifest = {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": _blob(layout, config_bytes),
                "size": len(config_bytes),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar",
                    "digest": layer_digest,
                    "size": len(layer),
                }
            ],
        }
        manifest_bytes = json.dumps(manifest, sort_keys=True).encode()
        index = {
            "schemaVersion": 2,
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": _blob(layout, manifest_bytes),
                    "size": len(manifest_bytes),
                    "annotations": {"org.opencontainers.image.ref.name": recipe.reference},
                }
            ],
        }
        _add_file(layout, "oci-layout", json.dumps({"imageLayoutVersion": "1.0.0"}).encode())
        _add_file(layout, "index.json", json.dumps(index, sort_keys=True).encode())


def import_image(recipe: ImageRecipe, archive: Path, containerd_socket: Path) -> None:
    """Import into the CRI's namespace (``k8s.io``) under the normalized reference."""
    run_command(
        [
            "ctr",
            "--address",
            str(containerd_socket),
            "--namespace",
            "k8s.io",
            "image",
            "import",
            str(archive),
        ],
        what=f"importing the image {recipe.reference}",
    )
