"""OCI registries through Helm's own registry client (helm-python-sdk): log in, push a packaged
chart (with its provenance file), resolve a tag to its manifest digest, pull by digest.

Credentials come from FLOE_REGISTRY_USERNAME / FLOE_REGISTRY_PASSWORD (for the registry
FLOE_REGISTRY_HOST names; without it, for the configuration's only registry: with several, they
are refused rather than sent to each), else from a Docker-style credentials file's entry for
the registry (Helm's own by default, which ``helm registry login`` writes). They never cross
the network in plain HTTP (refused, but to a registry on this machine). They are given to Helm
for one login into a private, temporary credentials file, so the user's file is never
rewritten, and they never appear in a message: Helm's errors name the registry, not the
password.

helm-python-sdk's Python wrappers do not forward some options its C ABI documents (the CA file
of a login, ``verify_later`` of a pull; "keys are ABI: additive only"): ``_helm_c`` passes them
through (``_native``: the binding's own call table), and the tests against a real registry with
TLS and signed charts hold it to that.
"""

from __future__ import annotations

import base64
import binascii
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import helm_python
from helm_python import _native
from helm_python.registry import RegistryClient

from floe_deploy_assets.helm.sources import oci_tag, split_ref
from floe_deploy_assets.helm.transient import is_transient
from floe_deploy_assets.models.config import ConfigError

T = TypeVar("T")

USERNAME_VARIABLE = "FLOE_REGISTRY_USERNAME"
PASSWORD_VARIABLE = "FLOE_REGISTRY_PASSWORD"
HOST_VARIABLE = "FLOE_REGISTRY_HOST"  # HOST[:PORT] the two variables are for
HELM_CREDENTIALS_FILE = Path("~/.config/helm/registry/config.json")
# A registry that went away for a moment (a restart, a 503 from its proxy) is retried this long.
REGISTRY_DEADLINE_SECONDS = 60.0


class RegistryError(RuntimeError):
    """A registry refused or could not be reached; the message names the registry and the
    chart, never a credential. ``transient``: the registry's failure (retried until the
    deadline), not a verdict on the chart."""

    def __init__(self, message: str, transient: bool = False):
        super().__init__(message)
        self.transient = transient


@dataclass(frozen=True)
class RegistrySettings:
    """How to reach a registry: the CA to trust for its TLS certificate (besides the system's),
    where stored credentials are, and whether it speaks plain HTTP."""

    ca_file: Path | None = None
    credentials_file: Path | None = None
    plain_http: bool = False
    # Every registry (HOST[:PORT]) in use: the configuration's charts', or publish's own.
    registries: tuple[str, ...] = ()


def _variables_for(host: str, settings: RegistrySettings) -> tuple[str, str] | None:
    """The environment's username and password, if they are for ``host``: the registry
    FLOE_REGISTRY_HOST names, or without it the only one the configuration names (a second
    registry must not be handed the first one's password)."""
    username, password = os.environ.get(USERNAME_VARIABLE), os.environ.get(PASSWORD_VARIABLE)
    if bool(username) != bool(password):
        raise ConfigError(
            f"set both {USERNAME_VARIABLE} and {PASSWORD_VARIABLE} (one of them is empty)"
        )
    if not (username and password):
        return None
    hosts = sorted({host, *settings.registries})
    scope = os.environ.get(HOST_VARIABLE, "").strip()
    if scope:
        # As a reference or a bare HOST[:PORT]; host names are not case-sensitive.
        named = split_ref(scope)[0].lower()
        if named not in (h.lower() for h in hosts):
            raise ConfigError(
                f"{HOST_VARIABLE}={scope} names none of the registries in use ("
                f"{', '.join(hosts)}): set it to the HOST[:PORT] the credentials are for"
            )
        return (username, password) if named == host.lower() else None
    if len(hosts) > 1:
        raise ConfigError(
            f"{USERNAME_VARIABLE} and {PASSWORD_VARIABLE} would go to each registry the "
            f"configuration names ({', '.join(hosts)}): set {HOST_VARIABLE} to the one they are "
            "for (the others' credentials then come from the credentials file)"
        )
    return username, password


def credentials_for(host: str, settings: RegistrySettings) -> tuple[str, str] | None:
    """The username and password for ``host``: the environment's when they are for it, else
    the credentials file's entry for it (Docker's format: ``auths.HOST.auth``, base64 of
    user:password)."""
    variables = _variables_for(host, settings)
    if variables:
        return variables
    path = (settings.credentials_file or HELM_CREDENTIALS_FILE).expanduser()
    try:
        document = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: cannot read the registry credentials: {exc}") from None
    entry = (document.get("auths") or {}).get(host) if isinstance(document, dict) else None
    if entry is None:
        return None
    if not isinstance(entry, dict) or "auth" not in entry:
        raise ConfigError(
            f"{path}: the entry for {host} holds no user:password ('auth'; a credential helper "
            f"or an identity token is not read here): set {USERNAME_VARIABLE} and "
            f"{PASSWORD_VARIABLE}"
        )
    try:
        username, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
    except (binascii.Error, UnicodeDecodeError, TypeError):
        raise ConfigError(
            f"{path}: the entry for {host} is not base64 of user:password; log in again "
            "(helm registry login)"
        ) from None
    return username, password


def _loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0] if host.count(":") == 1 else host
    return name in ("localhost", "[::1]") or name.startswith("127.")


def with_retries(what: str, call: Callable[[], T]) -> T:
    """``call`` until it succeeds, fails for good, or the deadline passes; a transient failure
    (connection refused or reset, 429, 5xx) is not a verdict."""
    deadline = time.monotonic() + REGISTRY_DEADLINE_SECONDS
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except helm_python.HelmError as exc:
            transient = is_transient(str(exc))
            wait = min(0.5 * 2 ** (attempt - 1), 5.0)
            if not transient or time.monotonic() + wait > deadline:
                tail = f" (after {attempt} attempts)" if attempt > 1 else ""
                raise RegistryError(f"{what} failed{tail}: {exc}", transient) from None
            time.sleep(wait)


@contextmanager
def registry_client(host: str, settings: RegistrySettings) -> Iterator[RegistryClient]:
    """A client for ``host``, logged in when there are credentials for it; the login (and so
    the CA file's trust, which Helm ties to it) lives in a temporary credentials file, removed
    on exit."""
    credentials = credentials_for(host, settings)
    if credentials is not None and settings.plain_http and not _loopback(host):
        raise ConfigError(
            f"registry {host}: credentials would cross the network in plain HTTP; use TLS "
            "(plainHttp is for a registry on this machine)"
        )
    if settings.ca_file is not None and credentials is None:
        raise ConfigError(
            f"registry {host}: a CA file is given but no credentials; Helm's registry client "
            f"takes the CA with a login: set {USERNAME_VARIABLE} and {PASSWORD_VARIABLE} (and "
            f"{HOST_VARIABLE} to {host} if it is set) or run helm registry login"
        )
    with tempfile.TemporaryDirectory(prefix="floe-registry-") as private:
        client = RegistryClient(
            plain_http=settings.plain_http, credentials_file=Path(private) / "config.json"
        )
        try:
            if credentials is not None:
                options = {
                    "ca_file": str(settings.ca_file) if settings.ca_file else None,
                    "plain_http": settings.plain_http or None,
                }
                with_retries(
                    f"logging in to registry {host}",
                    lambda: _native.call_status(
                        "helm_registry_login",
                        client._raw(),
                        host,
                        credentials[0],
                        credentials[1],
                        json.dumps({k: v for k, v in options.items() if v is not None}),
                    ),
                )
            yield client
        finally:
            client.close()


@dataclass(frozen=True)
class PublishedChart:
    ref: str  # oci://HOST/PATH/NAME
    version: str
    digest: str  # of the manifest, which a configuration may pin


def push_chart(client: RegistryClient, archive: Path, remote: str) -> PublishedChart:
    """Push ``archive`` (and ``archive.prov`` beside it, which Helm pushes with it) under
    ``remote`` (oci://HOST/PATH), tagged with its version as Helm does."""
    try:
        chart = helm_python.Chart.load(archive)
    except helm_python.HelmError as exc:
        raise RegistryError(f"{archive}: not a chart archive Helm can load: {exc}") from None
    with chart:
        name, version = chart.name, chart.version
    with_retries(f"pushing {archive.name} to {remote}", lambda: client.push(archive, remote))
    ref = f"{remote}/{name}"
    return PublishedChart(ref, version, resolve_digest(client, ref, version))


def resolve_digest(client: RegistryClient, ref: str, version: str) -> str:
    """The manifest digest of ``ref`` at tag ``version`` (Helm tags a chart by its version)."""
    resolved = with_retries(
        f"resolving {ref}:{version}", lambda: client.resolve(f"{ref}:{oci_tag(version)}")
    )
    digest: str = resolved["digest"]
    return digest


def pull_by_digest(client: RegistryClient, ref: str, digest: str, destination: Path) -> None:
    """Pull ``ref@digest`` into ``destination`` with its provenance file when it has one
    (``verify_later``: fetched, verified by the caller)."""
    options = json.dumps({"dest_dir": str(destination), "verify_later": True})
    with_retries(
        f"pulling {ref}@{digest}",
        lambda: _native.call_string("helm_pull", client._raw(), f"{ref}@{digest}", options),
    )
