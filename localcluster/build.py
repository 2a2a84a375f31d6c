"""Install the test bed's system packages and build the Kubernetes binaries once.

kind, k3d and minikube need a Docker engine, which these machines lack. Debian bookworm ships the
full Kubernetes 1.20.2 tree (with ``vendor/``) as a *source* package, and Debian's Go 1.19 builds
it offline. Two sets are built from it: the control plane (every cluster needs it) and what a
real node runs (the kubelet, kube-proxy, and the pod sandbox's ``pause`` compiled from the
tree's ``build/pause/linux/pause.c``), with the container runtime's Debian packages. They are
cached outside the repository, keyed by version, so later starts (and every fresh clone on the
same machine) reuse them; ``up`` builds only the control plane unless it starts real nodes.
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
# Built with make from cmd/; pause is compiled on its own (see _build_pause).
NODE_GO_BINARIES = ("kubelet", "kube-proxy")
NODE_BINARIES = (*NODE_GO_BINARIES, "pause")
ALL_BINARIES = (*CONTROL_PLANE_BINARIES, *NODE_BINARIES)

# Debian package -> a program it provides, used to tell whether it is already installed.
RUNTIME_PACKAGES = {"etcd-server": "etcd", "openssl": "openssl"}
BUILD_PACKAGES = {
    "golang-go": "go",
    "rsync": "rsync",
    "make": "make",
    "dpkg-dev": "dpkg-source",
    "golang-github-modern-go-reflect2-dev": "/usr/share/gocode/src/github.com/modern-go/reflect2",
}
# The tree vendors reflect2 1.0.1, whose map iteration faults under Go 1.18 and later: the API
# server built with Debian's Go 1.19 crashed (SIGSEGV in reflect2's mapiterinit) serializing any
# object with a map for a pretty-printed answer, which it gives to `wget` and `curl` user agents
# and `?pretty=true`: a pod's `wget` of a ConfigMap took the control plane down. 1.0.2 fixed it,
# with the same API; Debian ships it.
REFLECT2_SOURCE = Path("/usr/share/gocode/src/github.com/modern-go/reflect2")
REFLECT2_VENDORED = Path("vendor/github.com/modern-go/reflect2")
# What a real node runs beside the kubelet (REAL-NODE.md): the container runtime, the CNI
# plugins (not on PATH: named by their path), iptables for kube-proxy and the pod network's
# rules, conntrack for kube-proxy's clean-up; gcc and a static libc for pause.
NODE_PACKAGES = {
    "containerd": "containerd",
    "runc": "runc",
    "containernetworking-plugins": "/usr/lib/cni/bridge",
    "iptables": "iptables",
    "conntrack": "conntrack",
    "dnsmasq-base": "/usr/sbin/dnsmasq",  # cluster DNS (no CoreDNS can be had here)
    "debootstrap": "debootstrap",  # the images' Debian base (images.py)
}
NODE_BUILD_PACKAGES = {"gcc": "gcc", "libc6-dev": "/usr/lib/x86_64-linux-gnu/libc.a"}
# What the chart registry tests run (tests/support/registry.py): the distribution registry v2,
# htpasswd for its basic auth (bcrypt), GnuPG for the signing keys. Installed with the rest, so
# `make setup` prepares a new machine for every test.
TEST_PACKAGES = {
    "docker-registry": "/usr/bin/docker-registry",
    "apache2-utils": "htpasswd",
    "gnupg": "gpg",
}
PAUSE_SOURCE = Path("build/pause/linux/pause.c")
# build/pause/Makefile's TAG; its REV comes from git, which the source package has not.
PAUSE_VERSION = "v3.4"

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
    """The packages whose program (a name on PATH, or an absolute path) is not there."""

    def present(program: str) -> bool:
        return Path(program).exists() if program.startswith("/") else bool(shutil.which(program))

    return [pkg for pkg, program in packages.items() if not present(program)]


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


def cached_binaries(
    config: ClusterConfig, names: tuple[str, ...] = CONTROL_PLANE_BINARIES
) -> dict[str, Path] | None:
    paths = {name: config.binaries_dir / name for name in names}
    if all(path.is_file() and os.access(path, os.X_OK) for path in paths.values()):
        return paths
    return None


def ensure_binaries(
    config: ClusterConfig, names: tuple[str, ...] = CONTROL_PLANE_BINARIES
) -> dict[str, Path]:
    """Return the binaries ``names``, building first those the cache lacks. One build at a
    time per cache: a second one would delete the first's work tree under it."""
    found = cached_binaries(config, names)
    if found:
        return found
    config.cache_dir.mkdir(parents=True, exist_ok=True)
    with (config.cache_dir / "build.lock").open("w") as lock:
        _wait_for_lock(lock, config.cache_dir / "build.log")
        missing = tuple(name for name in names if not cached_binaries(config, (name,)))
        if missing:  # else built by the one we waited for
            ensure_system_packages(BUILD_PACKAGES)
            if set(missing) & set(NODE_BINARIES):
                ensure_system_packages(NODE_BUILD_PACKAGES)
            build_binaries(config, missing)
    found = cached_binaries(config, names)
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
                    f"another build of the Kubernetes binaries held {lock.name} for more than "
                    f"{BUILD_LOCK_WAIT_SECONDS // 60} minutes (its log: {log}); stop it or "
                    "wait for it, then start again"
                ) from None
            if not told:
                print(
                    f"waiting for another build of the Kubernetes binaries (log: {log})", flush=True
                )
                told = True
            time.sleep(2)


def _ensure_deb_src() -> None:
    if DEB_SRC_FILE.exists():
        return
    if os.geteuid() != 0:
        raise LocalClusterError(f"need a deb-src entry for bookworm; as root write {DEB_SRC_FILE}")
    DEB_SRC_FILE.write_text(DEB_SRC_ENTRY)
    run_command(["apt-get", "update", "-q"], what="apt-get update (deb-src)")


def build_binaries(config: ClusterConfig, names: tuple[str, ...] = CONTROL_PLANE_BINARIES) -> None:
    """Fetch Debian's kubernetes source package and build ``names`` from it."""
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
    _patch_vendor(tree)
    # As Debian's packaging does: a GOPATH whose k8s.io/kubernetes points at the tree.
    gopath_link = tree / ".go" / "src" / "k8s.io" / "kubernetes"
    gopath_link.parent.mkdir(parents=True, exist_ok=True)
    if not gopath_link.exists():
        gopath_link.symlink_to(Path("../../.."))
    log = config.cache_dir / "build.log"
    print(
        f"building {', '.join(names)} from {dsc[-1].name} "
        f"(takes minutes the first time; log: {log})",
        flush=True,
    )
    env = {**os.environ, "GOPATH": str(tree / ".go")}
    control_plane = [name for name in names if name in CONTROL_PLANE_BINARIES]
    if control_plane:
        # Static: the control plane runs on the host as it is, nothing links against libc.
        _make(tree, control_plane, {**env, "CGO_ENABLED": "0"}, log)
    node = [name for name in names if name in NODE_GO_BINARIES]
    if node:
        # The kubelet as Kubernetes builds it (cgo on: its cAdvisor reads the host with it).
        _make(tree, node, env, config.cache_dir / "build-node.log")
    built = {name: tree / "_output" / "bin" / name for name in [*control_plane, *node]}
    if "pause" in names:
        built["pause"] = _build_pause(tree)
    config.binaries_dir.mkdir(parents=True, exist_ok=True)
    for name, path in built.items():
        staged = config.binaries_dir / f".{name}.tmp"
        shutil.copy2(path, staged)
        staged.replace(config.binaries_dir / name)  # atomic: a half-copied binary never counts
    manifest_file = config.binaries_dir / "manifest.json"
    manifest = json.loads(manifest_file.read_text()) if manifest_file.exists() else {}
    seconds = round(time.monotonic() - started, 1)
    manifest.update({"kubernetes_version": KUBERNETES_VERSION, "source_package": dsc[-1].name})
    builds = manifest.get("build_seconds")
    builds = builds if isinstance(builds, dict) else {}  # one number in earlier caches
    builds.update(dict.fromkeys(names, seconds))
    manifest["build_seconds"] = builds
    manifest_file.write_text(json.dumps(manifest, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    print(f"built in {seconds} s into {config.binaries_dir}", flush=True)


def _patch_vendor(tree: Path) -> None:
    """Replace the vendored reflect2 with Debian's 1.0.2 (see REFLECT2_SOURCE)."""
    vendored = tree / REFLECT2_VENDORED
    if not vendored.is_dir():
        raise LocalClusterError(f"the kubernetes source has no {REFLECT2_VENDORED} to replace")
    shutil.rmtree(vendored)
    shutil.copytree(
        REFLECT2_SOURCE, vendored, ignore=shutil.ignore_patterns("*_test.go", "go.mod", "go.sum")
    )


def _make(tree: Path, names: list[str], env: dict[str, str], log: Path) -> None:
    run_command(
        ["make", "WHAT=" + " ".join(f"cmd/{name}" for name in names)],
        what=f"building {', '.join(names)}",
        cwd=tree,
        env=env,
        log=log,
    )


def _build_pause(tree: Path) -> Path:
    """The pod sandbox's process, as build/pause/Makefile compiles it: static, a few KB."""
    output = tree / "_output" / "pause"
    run_command(
        [
            "gcc",
            "-Os",
            "-Wall",
            "-Werror",
            "-static",
            f"-DVERSION={PAUSE_VERSION}",
            "-o",
            str(output),
            str(tree / PAUSE_SOURCE),
        ],
        what="compiling pause",
    )
    return output
