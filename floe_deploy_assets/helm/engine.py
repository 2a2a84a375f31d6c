"""The Helm engine: release operations over helm-python-sdk (Helm v4's Go SDK, in-process), with
Helm's errors mapped to our own, each naming the release, namespace and cluster.

The engine is deliberately thin: it performs one Helm operation and reports what Helm did.
Deciding *which* operation to run (install, upgrade, unlock, roll back, nothing) belongs to the
release logic, which talks to the ``HelmEngine`` protocol so tests can stand in for Helm.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import helm_python

from floe_deploy_assets.helm.render import build_dependencies

DEFAULT_TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class ReleaseRef:
    name: str
    namespace: str
    cluster: str

    def __str__(self) -> str:
        return f"release {self.name} in namespace {self.namespace} on cluster {self.cluster}"


class HelmEngineError(RuntimeError):
    """A Helm operation failed; ``release`` says which release, namespace and cluster."""

    def __init__(self, release: ReleaseRef, operation: str, detail: str):
        super().__init__(f"{operation} of {release} failed: {detail}")
        self.release, self.operation, self.detail = release, operation, detail


class ReleaseNotFoundError(HelmEngineError):
    """The release has no revision in the cluster's release storage."""


class ReleaseLockedError(HelmEngineError):
    """Another operation holds the release (its latest revision is pending)."""


class ChartError(HelmEngineError):
    """The chart cannot be loaded or rendered, or the values do not fit its schema."""


class ClusterError(HelmEngineError):
    """The Kubernetes API refused or could not be reached."""


class ReleaseConflictError(HelmEngineError):
    """An object (often the release record) changed under the operation: 409 Conflict."""


CLUSTER_FAILURE_SIGNS = (
    "unable to handle the request",  # 503
    "Too Many Requests",
    "Internal error occurred",  # 500
    "EOF",
    "connection reset",
    "connection refused",
)


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


class SdkHelmEngine:
    """``HelmEngine`` over helm-python-sdk, for one cluster (a kubeconfig and context)."""

    def __init__(self, kubeconfig: Path | None, context: str | None = None):
        self.kubeconfig, self.context = kubeconfig, context
        self._configs: dict[str, helm_python.Config] = {}

    def _config(self, namespace: str) -> helm_python.Config:
        # One Config per namespace: Helm keeps each release's storage in its own namespace.
        if namespace not in self._configs:
            self._configs[namespace] = helm_python.Config(
                kubeconfig_path=str(self.kubeconfig) if self.kubeconfig else None,
                kube_context=self.context,
                namespace=namespace,
            )
        return self._configs[namespace]

    def close(self) -> None:
        for config in self._configs.values():
            config.close()
        self._configs.clear()

    def status(self, release: ReleaseRef) -> Release | None:
        try:
            return Release.from_sdk(self._config(release.namespace).status(release.name))
        except helm_python.HelmError as error:
            mapped = _map_error(release, "status", error)
            if isinstance(mapped, ReleaseNotFoundError):
                return None
            raise mapped from None

    def history(self, release: ReleaseRef) -> list[Release]:
        try:
            revisions = self._config(release.namespace).history(release.name)
        except helm_python.HelmError as error:
            mapped = _map_error(release, "history", error)
            if isinstance(mapped, ReleaseNotFoundError):
                return []
            raise mapped from None
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
            "install", release, chart, values, timeout, labels, create_namespace=True
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
            raise _map_error(release, operation, error) from None

    def rollback(
        self, release: ReleaseRef, revision: int, timeout: int = DEFAULT_TIMEOUT_SECONDS
    ) -> Release:
        try:
            self._config(release.namespace).rollback(
                release.name, version=revision, timeout=timeout, wait="watcher"
            )
        except helm_python.HelmError as error:
            raise _map_error(release, "rollback", error) from None
        current = self.status(release)
        if current is None:
            raise ReleaseNotFoundError(release, "rollback", "the release vanished")
        return current

    def uninstall(self, release: ReleaseRef, timeout: int = DEFAULT_TIMEOUT_SECONDS) -> None:
        try:
            self._config(release.namespace).uninstall(release.name, wait="watcher", timeout=timeout)
        except helm_python.HelmError as error:
            raise _map_error(release, "uninstall", error) from None

    def test(self, release: ReleaseRef, timeout: int = DEFAULT_TIMEOUT_SECONDS) -> str:
        """Run the release's `helm test` hooks; returns their logs, raises if one fails."""
        try:
            result = self._config(release.namespace).test(release.name, timeout=timeout, logs=True)
        except helm_python.HelmError as error:
            raise _map_error(release, "test", error) from None
        return str(result.get("logs", ""))
