"""A real OCI registry for the tests (Debian's docker-registry: the distribution registry v2),
on loopback with TLS from a CA made for the run and basic auth (htpasswd, bcrypt), and GPG keys
to sign charts with: one trusted, one a stranger's."""

from __future__ import annotations

import os
import ssl
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.support.dagster_processes import free_port
from tests.support.waits import wait_for

REGISTRY_PROGRAM = "/usr/bin/docker-registry"
USERNAME = "floe-publisher"
PASSWORD = "registry-test-password-3f9c"  # the test registry's own, made up


@dataclass(frozen=True)
class LocalRegistry:
    host: str  # 127.0.0.1:PORT
    ca_file: Path
    storage: Path  # the registry's filesystem storage (blobs and manifests)

    @property
    def remote(self) -> str:
        return f"oci://{self.host}/floe/charts"

    def credentials_env(self) -> dict[str, str]:
        return {"FLOE_REGISTRY_USERNAME": USERNAME, "FLOE_REGISTRY_PASSWORD": PASSWORD}


def _run(*command: str, cwd: Path) -> None:
    subprocess.run(command, cwd=cwd, check=True, capture_output=True, timeout=60)


def _certificates(work: Path) -> None:
    """A CA, and the registry's certificate for 127.0.0.1 signed by it."""
    _run(
        *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
        *("-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=floe test registry CA"),
        cwd=work,
    )
    _run(
        *("openssl", "req", "-newkey", "rsa:2048", "-nodes"),
        *("-keyout", "server.key", "-out", "server.csr", "-subj", "/CN=127.0.0.1"),
        cwd=work,
    )
    (work / "san.cnf").write_text("subjectAltName=IP:127.0.0.1\n")
    _run(
        *("openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key"),
        *("-CAcreateserial", "-out", "server.crt", "-days", "2", "-extfile", "san.cnf"),
        cwd=work,
    )


@contextmanager
def running_registry(work: Path) -> Iterator[LocalRegistry]:
    """The registry, started and answering on TLS; stopped on exit."""
    work.mkdir(parents=True, exist_ok=True)
    _certificates(work)
    htpasswd = subprocess.run(
        ["htpasswd", "-Bbn", USERNAME, PASSWORD], check=True, capture_output=True, text=True
    ).stdout
    (work / "htpasswd").write_text(htpasswd)
    port = free_port()
    (work / "config.yml").write_text(
        f"""version: 0.1
log: {{level: warn}}
storage:
  filesystem: {{rootdirectory: {work / "storage"}}}
  delete: {{enabled: true}}
http:
  addr: 127.0.0.1:{port}
  tls: {{certificate: {work / "server.crt"}, key: {work / "server.key"}}}
auth:
  htpasswd: {{realm: floe-test, path: {work / "htpasswd"}}}
"""
    )
    log = (work / "registry.log").open("w")
    process = subprocess.Popen(
        [REGISTRY_PROGRAM, "serve", str(work / "config.yml")], stdout=log, stderr=log
    )
    registry = LocalRegistry(f"127.0.0.1:{port}", work / "ca.crt", work / "storage")
    try:
        wait_for(
            lambda: _answers(registry) or process.poll() is not None,
            timeout=30,
            reason=f"the registry to answer on {registry.host}",
        )
        if process.poll() is not None:
            raise AssertionError(f"the registry exited: {(work / 'registry.log').read_text()}")
        yield registry
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.close()


def _answers(registry: LocalRegistry) -> bool:
    """/v2/ answers (401 without credentials: it asks for them) over TLS from our CA."""
    context = ssl.create_default_context(cafile=registry.ca_file)
    try:
        urllib.request.urlopen(f"https://{registry.host}/v2/", context=context, timeout=2)
    except urllib.error.HTTPError as answer:
        return answer.code == 401
    except OSError:
        return False
    return False  # an open registry: not the one configured


@dataclass(frozen=True)
class SigningKeys:
    name: str  # of the trusted key
    secret_keyring: Path
    public_keyring: Path  # the trusted key only
    stranger_name: str
    stranger_secret_keyring: Path


def signing_keys(work: Path) -> SigningKeys:
    """Two GPG keys without passphrases, exported as keyring files Helm reads."""
    home = work / "gnupg"
    home.mkdir(parents=True, mode=0o700)
    env = {**os.environ, "GNUPGHOME": str(home)}

    def gpg(*args: str) -> bytes:
        return subprocess.run(
            ["gpg", "--batch", *args], env=env, check=True, capture_output=True, timeout=120
        ).stdout

    names = ("floe chart signer <charts@floe.test>", "someone else <stranger@floe.test>")
    for name in names:
        gpg("--passphrase", "", "--quick-gen-key", name, "rsa2048", "sign", "never")
    (work / "secring.gpg").write_bytes(gpg("--export-secret-keys", names[0]))
    (work / "pubring.gpg").write_bytes(gpg("--export", names[0]))
    (work / "stranger-secring.gpg").write_bytes(gpg("--export-secret-keys", names[1]))
    return SigningKeys(
        "floe chart signer",
        work / "secring.gpg",
        work / "pubring.gpg",
        "someone else",
        work / "stranger-secring.gpg",
    )
