"""The Helm engine: release operations over helm-python-sdk (Helm v4's Go SDK, in-process), with
Helm's errors mapped to our own, each naming the release, namespace and cluster.

The engine is deliberately thin: it performs one Helm operation and reports what Helm did.
Deciding *which* operation to run (install, upgrade, unlock, roll back, nothing) belongs to the
release logic, which talks to the ``HelmEngine`` protocol so tests can stand in for Helm.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Protocol, TypeVar

import helm_python
from kubernetes import config as kube_config

from floe_deploy_assets.helm.bounded import BoundedHelmConfig
from floe_deploy_assets.helm.render import build_dependencies
from floe_deploy_assets.helm.transient import CLUSTER_FAILURE_SIGNS, is_transient
from floe_deploy_assets.kube.relay import HelmRelay, api_client
from floe_deploy_assets.kube.retry import DEFAULT_DEADLINE, DEFAULT_POLICY, RetryPolicy

T = TypeVar("T")

DEFAULT_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class ReleaseRef:
    name: str
    namespace: str
    cluster: str

    def __str__(self) -> str:
        return f"release {self.name} in namespace {self.namespace} on cluster {self.cluster}"


class HelmEngineError(RuntimeError):
    """A Helm operation failed; ``release`` says which release, namespace and cluster.

    ``transient``: the cause was the cluster's, not the chart's or the values' (a dropped
    connection, 429, 5xx, a conflict on the release record, a watch ended with 410): repeating
    the operation may well succeed, and the failure says nothing about the values
    (``is_transient``). ``later`` collects what else went wrong while the deploy handled this
    error (settling, reading history, remediating): it is reported after this one, never
    instead of it."""

    def __init__(
        self, release: ReleaseRef, operation: str, detail: str, transient: bool | None = None
    ):
        super().__init__(f"{operation} of {release} failed: {detail}")
        self.release, self.operation, self.detail = release, operation, detail
        self.transient = is_transient(detail) if transient is None else transient
        self.later: list[str] = []

    def __str__(self) -> str:
        first = super().__str__()
        if self.transient:
            first += " (transient: the cluster's failure, not the values')"
        return "; ".join([first, *(f"then {what}" for what in self.later)])

    def add_later(self, what: str) -> None:
        """Record a secondary failure, to be reported after this (the first) one."""
        self.later.append(what)


class ReleaseNotFoundError(HelmEngineError):
    """The release has no revision in the cluster's release storage."""

    def __init__(self, release: ReleaseRef, operation: str, detail: str):
        super().__init__(release, operation, detail, transient=False)


class ReleaseLockedError(HelmEngineError):
    """Another operation holds the release (its latest revision is pending)."""

    def __init__(self, release: ReleaseRef, operation: str, detail: str):
        super().__init__(release, operation, detail, transient=False)


class ChartError(HelmEngineError):
    """The chart cannot be loaded or rendered, or the values do not fit its schema."""

    def __init__(self, release: ReleaseRef, operation: str, detail: str):
        super().__init__(release, operation, detail, transient=False)


class ClusterError(HelmEngineError):
    """The Kubernetes API refused or could not be reached."""


class ReleaseConflictError(HelmEngineError):
    """An object (often the release record) changed under the operation: 409 Conflict."""


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    revision: int
    status: str  # Helm's: deployed, failed, superseded, pending-install, ...
    chart_name: str
    chart_version: str
    app_version: str
    deployed_at: str
    manifest: str = ""
    notes: str = ""
    labels: dict[str, str] = field(default_factory=dict)
    # Helm's description of the revision's outcome, when the SDK reports it (0.2.2 does not:
    # what floe-deploy needs to know of an outcome is also in the revision's labels).
    description: str = ""

    @classmethod
    def from_sdk(cls, data: dict[str, Any]) -> Release:
        return cls(
            name=data["name"],
            namespace=data["namespace"],
            revision=data["revision"],
            status=data["status"],
            chart_name=data.get("chart_name", ""),
            chart_version=data.get("chart_version", ""),
            app_version=data.get("app_version", ""),
            deployed_at=data.get("deployed_at", ""),
            manifest=data.get("manifest", ""),
            notes=data.get("notes", ""),
            labels=dict(data.get("labels") or {}),
            description=data.get("description", ""),
        )


class HelmEngine(Protocol):
    def status(self, release: ReleaseRef) -> Release | None: ...
    def history(self, release: ReleaseRef) -> list[Release]: ...
    def install(
        self,
        release: ReleaseRef,
        chart: Path,
        values: dict[str, Any],
        timeout: int = DEFAULT_TIMEOUT_SECONDS,
        labels: dict[str, str] | None = None,
    ) -> Release: ...
    def upgrade(
        self,
        release: ReleaseRef,
        chart: Path,
        values: dict[str, Any],
        timeout: int = DEFAULT_TIMEOUT_SECONDS,
        labels: dict[str, str] | None = None,
    ) -> Release: ...
    def rollback(
        self, release: ReleaseRef, revision: int, timeout: int = DEFAULT_TIMEOUT_SECONDS
    ) -> Release: ...
    def uninstall(self, release: ReleaseRef, timeout: int = DEFAULT_TIMEOUT_SECONDS) -> None: ...
    def preview(self, release: ReleaseRef, chart: Path, values: dict[str, Any]) -> str: ...
    def test(self, release: ReleaseRef, timeout: int = DEFAULT_TIMEOUT_SECONDS) -> str: ...


def _map_error(
    release: ReleaseRef, operation: str, error: helm_python.HelmError
) -> HelmEngineError:
    detail = str(error)
    # Helm reports some failures only in its message (a schema failure during an upgrade comes
    # as a release error), so the message is read as well as the type.
    if isinstance(error, helm_python.HelmNotFoundError) or "release: not found" in detail:
        return ReleaseNotFoundError(release, operation, detail)
    if "another operation" in detail and "in progress" in detail:
        return ReleaseLockedError(release, operation, detail)
    if "don't meet the specifications of the schema" in detail or isinstance(
        error,
        helm_python.HelmValuesError
        | helm_python.HelmChartLoadError
        | helm_python.HelmChartInvalidError
        | helm_python.HelmRenderError,
    ):
        return ChartError(release, operation, detail)
    if "the object has been modified" in detail or "Operation cannot be fulfilled" in detail:
        return ReleaseConflictError(release, operation, detail)
    # helm-python-sdk raises its kube error type for few API failures: the rest are known by
    # what client-go says.
    if isinstance(error, helm_python.HelmKubeError) or any(
        sign in detail for sign in CLUSTER_FAILURE_SIGNS
    ):
        return ClusterError(release, operation, detail)
    return HelmEngineError(release, operation, detail)


def retry_transient(
    call: Callable[[], T],
    *,
    deadline: float,
    policy: RetryPolicy = DEFAULT_POLICY,
) -> T:
    """``call()``, repeated after a transient ``HelmEngineError`` with ``policy``'s backoff
    (``kube.retry``'s, with jitter) while ``deadline`` seconds from now leave room for
    another attempt; a final error is raised at once, and the last transient one when time
    runs out."""
    start = policy.clock()
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except HelmEngineError as error:
            wait = policy.backoff(attempt)
            if not error.transient or policy.clock() + wait - start >= deadline:
                raise
            policy.sleep(wait)


class SdkHelmEngine:
    """``HelmEngine`` over helm-python-sdk, for one cluster (a kubeconfig and context).

    Reads (``status``, ``history``) are repeated on a transient failure within
    ``read_deadline`` seconds; install, upgrade and rollback are not (repeating one means
    settling Helm's record of the attempt first, under the release lock: ``helm.deploy``)."""

    read_deadline: ClassVar[float] = DEFAULT_DEADLINE
    retry_policy: ClassVar[RetryPolicy] = DEFAULT_POLICY

    def __init__(
        self,
        kubeconfig: Path | None,
        context: str | None = None,
        *,
        relay: bool = True,
        create_namespace: bool = True,
    ):
        """``create_namespace``: an install creates its namespace when missing (False for an
        identity that may not create namespaces: Helm fails on the refusal)."""
        self.kubeconfig, self.context = kubeconfig, context
        self.create_namespace = create_namespace
        self._configs: dict[str, helm_python.Config] = {}
        self._retired: list[helm_python.Config] = []
        # Helm's requests go through a relay that repeats them on a transient failure
        # (kube/relay.py); ``relay=False`` lets tests reach Helm's own behaviour.
        self._relay: HelmRelay | None = None
        self._use_relay = relay

    def _helm_kubeconfig(self) -> tuple[str | None, str | None]:
        """The kubeconfig path and context Helm is given: the relay's, once started, or the
        cluster's own (without the relay, or when the kubeconfig cannot be read here: then
        Helm reports what is wrong with it, as it words it)."""
        if self._use_relay and self._relay is None:
            try:
                self._relay = HelmRelay(api_client(self.kubeconfig, self.context)).start()
            except (kube_config.ConfigException, OSError, ValueError):
                self._use_relay = False
        if self._relay is not None:
            return str(self._relay.kubeconfig), None
        return (str(self.kubeconfig) if self.kubeconfig else None), self.context

    def _config(self, namespace: str) -> helm_python.Config:
        # One Config per namespace: Helm keeps each release's storage in its own namespace.
        # Bounded: Helm's client cannot be given a request timeout, so each call has a
        # deadline of its own (helm/bounded.py).
        if namespace not in self._configs:
            kubeconfig, context = self._helm_kubeconfig()
            self._configs[namespace] = BoundedHelmConfig(
                kubeconfig_path=kubeconfig, kube_context=context, namespace=namespace
            )
        return self._configs[namespace]

    def close(self) -> None:
        for config in [*self._configs.values(), *self._retired]:
            config.close()
        self._configs.clear()
        self._retired.clear()
        if self._relay is not None:
            self._relay.close()
            self._relay = None

    def _forget(self, namespace: str) -> None:
        """After a transient failure: the next call gets a new Config, since Helm's client
        keeps some failures (its OpenAPI schema download is made once per client, and a 429 or
        500 there fails every later install or upgrade of that Config). The old one is closed
        with the engine (another thread may still be using it)."""
        config = self._configs.pop(namespace, None)
        if config is not None:
            self._retired.append(config)

    def _read(self, release: ReleaseRef, operation: str, call: Callable[[], T]) -> T:
        def once() -> T:
            try:
                return call()
            except helm_python.HelmError as error:
                raise self._mapped(release, operation, error) from None

        return retry_transient(once, deadline=self.read_deadline, policy=self.retry_policy)

    def _mapped(
        self, release: ReleaseRef, operation: str, error: helm_python.HelmError
    ) -> HelmEngineError:
        mapped = _map_error(release, operation, error)
        if mapped.transient:
            self._forget(release.namespace)
        return mapped

    def status(self, release: ReleaseRef) -> Release | None:
        try:
            data = self._read(
                release, "status", lambda: self._config(release.namespace).status(release.name)
            )
        except ReleaseNotFoundError:
            return None
        return Release.from_sdk(data)

    def history(self, release: ReleaseRef) -> list[Release]:
        try:
            revisions = self._read(
                release, "history", lambda: self._config(release.namespace).history(release.name)
            )
        except ReleaseNotFoundError:
            return []
        return sorted((Release.from_sdk(r) for r in revisions), key=lambda r: r.revision)

    def install(
        self,
        release: ReleaseRef,
        chart: Path,
        values: dict[str, Any],
        timeout: int = DEFAULT_TIMEOUT_SECONDS,
        labels: dict[str, str] | None = None,
    ) -> Release:
        return self._apply(
            "install",
            release,
            chart,
            values,
            timeout,
            labels,
            create_namespace=self.create_namespace,
        )

    def upgrade(
        self,
        release: ReleaseRef,
        chart: Path,
        values: dict[str, Any],
        timeout: int = DEFAULT_TIMEOUT_SECONDS,
        labels: dict[str, str] | None = None,
    ) -> Release:
        # reset_values: the values given are the whole desired state, never merged with
        # whatever an earlier revision carried.
        return self._apply("upgrade", release, chart, values, timeout, labels, reset_values=True)

    def preview(self, release: ReleaseRef, chart: Path, values: dict[str, Any]) -> str:
        """The manifest an install or upgrade would apply now: a server-side dry run, so the
        cluster's API versions and admission decide, and nothing is stored or applied."""
        installed = self.status(release) is not None
        operation = "upgrade" if installed else "install"
        options: dict[str, Any] = {"reset_values": True} if installed else {}
        return self._apply(
            operation, release, chart, values, 0, None, dry_run="server", **options
        ).manifest

    def _apply(
        self,
        operation: str,
        release: ReleaseRef,
        chart: Path,
        values: dict[str, Any],
        timeout: int,
        labels: dict[str, str] | None,
        **options: Any,
    ) -> Release:
        """Install or upgrade: package local dependencies, then wait for readiness (kstatus)."""
        build_dependencies(chart)
        action = getattr(self._config(release.namespace), operation)
        try:
            return Release.from_sdk(
                action(
                    str(chart),
                    release.name,
                    values,
                    namespace=release.namespace,
                    timeout=timeout,
                    wait="watcher" if "dry_run" not in options else None,
                    labels=labels,
                    **options,
                )
            )
        except helm_python.HelmError as error:
            raise self._mapped(release, operation, error) from None

    def rollback(
        self, release: ReleaseRef, revision: int, timeout: int = DEFAULT_TIMEOUT_SECONDS
    ) -> Release:
        try:
            self._config(release.namespace).rollback(
                release.name, version=revision, timeout=timeout, wait="watcher"
            )
        except helm_python.HelmError as error:
            raise self._mapped(release, "rollback", error) from None
        current = self.status(release)
        if current is None:
            raise ReleaseNotFoundError(release, "rollback", "the release vanished")
        return current

    def uninstall(self, release: ReleaseRef, timeout: int = DEFAULT_TIMEOUT_SECONDS) -> None:
        try:
            self._config(release.namespace).uninstall(release.name, wait="watcher", timeout=timeout)
        except helm_python.HelmError as error:
            raise self._mapped(release, "uninstall", error) from None

    def test(self, release: ReleaseRef, timeout: int = DEFAULT_TIMEOUT_SECONDS) -> str:
        """Run the release's `helm test` hooks; returns their logs, raises if one fails."""
        try:
            result = self._config(release.namespace).test(release.name, timeout=timeout, logs=True)
        except helm_python.HelmError as error:
            raise self._mapped(release, "test", error) from None
        return str(result.get("logs", ""))
