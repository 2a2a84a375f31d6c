"""Install the test bed's system packages and build the Kubernetes control-plane binaries once.

kind, k3d and minikube need a Docker engine, which these machines lack. Debian bookworm ships the
full Kubernetes 1.20.2 tree (with ``vendor/``) as a *source* package, and Debian's Go 1.19 builds
it offline. The three binaries are cached outside the repository, keyed by version, so later
starts (and every fresh clone on the same machine) reuse them.
"""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import IO

from localcluster.config import KUBERNETES_VERSION, ClusterConfig
from localcluster.errors import LocalClusterError

CONTROL_PLANE_BINARIES = ("kube-apiserver", "kube-controller-manager", "kube-scheduler")

# Debian package -> a program it provides, used to tell whether it is already installed.
RUNTIME_PACKAGES = {"etcd-server": "etcd", "openssl": "openssl"}
BUILD_PACKAGES = {"golang-go": "go", "rsync": "rsync", "make": "make", "dpkg-dev": "dpkg-source"}

DEB_SRC_FILE = Path("/etc/apt/sources.list.d/floe-localcluster-deb-src.sources")
DEB_SRC_ENTRY = """\
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
"""
BUILD_LOG_TAIL_LINES = 40
BUILD_LOCK_WAIT_SECONDS = 60 * 60  # a build takes 7-20 minutes on 2 cores


def run_command(
    command: list[str],
    *,
    what: str,
    cwd: Path | None = None,
    env: dict | None = None,
    log: Path | None = None,
) -> None:
    """Run a command; on failure raise an error naming it and showing the end of its output."""
    try:
        if log is None:
            result = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True)
            output = (result.stdout or "") + (result.stderr or "")
        else:
            with log.open("w") as handle:
                result = subprocess.run(
                    command, cwd=cwd, env=env, stdout=handle, stderr=subprocess.STDOUT, text=True
                )
            output = log.read_text(errors="replace")
    except FileNotFoundError as exc:
        raise LocalClusterError(f"{what}: command not found: {command[0]}") from exc
    if result.returncode != 0:
        tail = "\n".join(output.splitlines()[-BUILD_LOG_TAIL_LINES:])
        where = f" (full log: {log})" if log else ""
        raise LocalClusterError(
            f"{what} failed: `{' '.join(command)}` exited {result.returncode}{where}\n{tail}"
        )


def missing_system_packages(packages: dict[str, str]) -> list[str]:
    return [pkg for pkg, program in packages.items() if shutil.which(program) is None]


def ensure_system_packages(packages: dict[str, str] = RUNTIME_PACKAGES) -> None:
    """apt-get install what is missing; a package that cannot be installed is named."""
    missing = missing_system_packages(packages)
    if not missing:
        return
    if os.geteuid() != 0:
        raise LocalClusterError(
            f"missing system packages {', '.join(missing)}; install them as root: "
            f"apt-get install -y {' '.join(missing)}"
        )
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    run_command(["apt-get", "update", "-q"], what="apt-get update", env=env)
    for package in missing:
        run_command(
            ["apt-get", "install", "-y", "-q", package],
            what=f"installing package {package}",
            env=env,
        )


def cached_binaries(config: ClusterConfig) -> dict[str, Path] | None:
    paths = {name: config.binaries_dir / name for name in CONTROL_PLANE_BINARIES}
    if all(path.is_file() and os.access(path, os.X_OK) for path in paths.values()):
        return paths
    return None


def ensure_binaries(config: ClusterConfig) -> dict[str, Path]:
    """Return the control-plane binaries, building them first if the cache lacks them. One
    build at a time per cache: a second one would delete the first's work tree under it."""
    found = cached_binaries(config)
    if found:
        return found
    config.cache_dir.mkdir(parents=True, exist_ok=True)
    with (config.cache_dir / "build.lock").open("w") as lock:
        _wait_for_lock(lock, config.cache_dir / "build.log")
        found = cached_binaries(config)  # built by the one we waited for
        if found:
            return found
        ensure_system_packages(BUILD_PACKAGES)
        build_binaries(config)
    found = cached_binaries(config)
    if not found:
        raise LocalClusterError(f"build finished but binaries are missing in {config.binaries_dir}")
    return found


def _wait_for_lock(lock: IO[str], log: Path) -> None:
    """Take the build lock, waiting at most BUILD_LOCK_WAIT_SECONDS for a build in progress."""
    deadline = time.monotonic() + BUILD_LOCK_WAIT_SECONDS
    told = False
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise LocalClusterError(
                    f"another build of the control plane held {lock.name} for more than "
                    f"{BUILD_LOCK_WAIT_SECONDS // 60} minutes (its log: {log}); stop it or "
                    "wait for it, then start again"
                ) from None
            if not told:
                print(f"waiting for another build of the control plane (log: {log})", flush=True)
                told = True
            time.sleep(2)


def _ensure_deb_src() -> None:
    if DEB_SRC_FILE.exists():
        return
    if os.geteuid() != 0:
        raise LocalClusterError(f"need a deb-src entry for bookworm; as root write {DEB_SRC_FILE}")
    DEB_SRC_FILE.write_text(DEB_SRC_ENTRY)
    run_command(["apt-get", "update", "-q"], what="apt-get update (deb-src)")


def build_binaries(config: ClusterConfig) -> None:
    """Fetch Debian's kubernetes source package and build the three control-plane binaries."""
    _ensure_deb_src()
    work = config.cache_dir / "build"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    started = time.monotonic()
    run_command(
        ["apt-get", "source", "--download-only", "kubernetes"],
        what="fetching the kubernetes source package",
        cwd=work,
    )
    dsc = sorted(work.glob("kubernetes_*.dsc"))
    if not dsc:
        raise LocalClusterError(f"apt-get source left no kubernetes_*.dsc in {work}")
    tree = work / "src"
    run_command(
        ["dpkg-source", "-x", dsc[-1].name, "src"], what="unpacking the kubernetes source", cwd=work
    )
    # As Debian's packaging does: a GOPATH whose k8s.io/kubernetes points at the tree.
    gopath_link = tree / ".go" / "src" / "k8s.io" / "kubernetes"
    gopath_link.parent.mkdir(parents=True, exist_ok=True)
    if not gopath_link.exists():
        gopath_link.symlink_to(Path("../../.."))
    env = {**os.environ, "GOPATH": str(tree / ".go"), "CGO_ENABLED": "0"}
    log = config.cache_dir / "build.log"
    print(
        f"building {', '.join(CONTROL_PLANE_BINARIES)} from {dsc[-1].name} "
        f"(takes minutes the first time; log: {log})",
        flush=True,
    )
    run_command(
        ["make", "WHAT=" + " ".join(f"cmd/{name}" for name in CONTROL_PLANE_BINARIES)],
        what="building the Kubernetes control plane",
        cwd=tree,
        env=env,
        log=log,
    )
    config.binaries_dir.mkdir(parents=True, exist_ok=True)
    for name in CONTROL_PLANE_BINARIES:
        built = tree / "_output" / "bin" / name
        staged = config.binaries_dir / f".{name}.tmp"
        shutil.copy2(built, staged)
        staged.replace(config.binaries_dir / name)  # atomic: a half-copied binary never counts
    manifest = {
        "kubernetes_version": KUBERNETES_VERSION,
        "source_package": dsc[-1].name,
        "build_seconds": round(time.monotonic() - started, 1),
    }
    (config.binaries_dir / "manifest.json").write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    print(f"built in {manifest['build_seconds']} s into {config.binaries_dir}", flush=True)
