"""Argo CD and Flux objects that deploy what ``floe-deploy deploy`` deploys (issue 17).

floe-deploy knows every environment's cluster, namespace, releases and values; a team moving to
GitOps gets from it the objects its controller needs, instead of hand-written examples (upstream
floe's FR-070..072 examples had a buggy ApplicationSet and a HelmRelease with wrong values):

- Argo CD: an ``AppProject`` allowing exactly the charts' registry and the environments'
  destinations, and an ``ApplicationSet`` whose list generator holds one element per
  environment and release (the platform, and each data product's jobs), from the cluster
  mappings, with the values ``floe-deploy values`` gives inline;
- Flux: an ``OCIRepository`` per chart and a ``HelmRelease`` per environment and release, jobs
  depending on the platform, remediation as the release engine's default (roll back a failed
  upgrade, retry an install).

The charts come from the OCI registry they are published to (``--registry``), at the version
their Chart.yaml gives. The objects are plain data: the same inputs give byte-identical files,
and no credential is in them (the values pass the secret rules before anything is written; the
Secrets the releases need are named, never filled in).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

from floe_deploy_assets.helm.charts import CHARTS, read_chart_metadata
from floe_deploy_assets.helm.sources import chart_dir, oci_tag
from floe_deploy_assets.models.config import ConfigError, DeploymentConfig
from floe_deploy_assets.values.generator import HelmValuesGenerator

GitOpsFormat = Literal["argocd", "flux"]
PROJECT = "floe"
PART_OF = {"app.kubernetes.io/part-of": "floe", "app.kubernetes.io/managed-by": "floe-deploy"}
IN_CLUSTER = "in-cluster"  # the cluster mappings' and Argo CD's name for the controller's own
HELM_CHART_LAYER = "application/vnd.cncf.helm.chart.content.v1.tar+gzip"
REQUIRED_SECRETS_ANNOTATION = "floe.dev/required-secrets"
# As `floe-deploy deploy`: --timeout 300 s, a failed upgrade rolled back, an install retried.
RELEASE_TIMEOUT = "5m"
REMEDIATION_RETRIES = 3
SOURCE_INTERVAL = "10m"
RELEASE_INTERVAL = "30m"
KUBECONFIG_NAME_MAX = 200  # of a Secret name's 253, leaving room for the hash and suffix
REGISTRY = re.compile(r"^oci://([a-z0-9.-]+(:[0-9]+)?(/[a-z0-9._-]+)*)$")


@dataclass(frozen=True)
class GitOpsOptions:
    registry: str  # oci://HOST[:PORT]/PATH, where the charts are published
    argocd_namespace: str = "argocd"
    flux_namespace: str = "flux-system"
    # The cluster the GitOps controller runs in: its releases need no kubeconfig (Flux), and
    # Argo CD names it in-cluster.
    controller_cluster: str = IN_CLUSTER

    def __post_init__(self) -> None:
        if not REGISTRY.match(self.registry):
            raise ConfigError(
                f"--registry {self.registry!r} is not an OCI location; give "
                "oci://HOST[:PORT]/PATH (lowercase), where the charts are published"
            )

    @property
    def registry_path(self) -> str:
        """HOST[:PORT]/PATH: how Argo CD names a Helm OCI repository."""
        return self.registry.removeprefix("oci://")


@dataclass(frozen=True)
class Release:
    """One release of one environment, as the GitOps objects describe it."""

    environment: str
    cluster: str
    namespace: str
    release_name: str
    chart_kind: str
    chart_name: str
    chart_version: str
    chart_digest: str | None  # the manifest digest the configuration pins, if it does
    values: dict[str, Any]
    required_secrets: tuple[str, ...]

    @property
    def object_name(self) -> str:
        """The Application's or HelmRelease's name: releases of two environments may share a
        name (a namespace each), the controller's objects share its namespace."""
        return f"{self.environment}-{self.release_name}"


def configured_registry(config: DeploymentConfig) -> str | None:
    """oci://HOST/PATH, when the configuration names both charts by reference there."""
    refs = {config.chart_source(chart).ref for chart in CHARTS}
    parents = {ref.rsplit("/", 1)[0] for ref in refs if ref is not None}
    return parents.pop() if None not in refs and len(parents) == 1 else None


def registry_for(given: str | None, config: DeploymentConfig) -> str:
    """The registry given, else the one the configuration's chart refs name."""
    registry = given or configured_registry(config)
    if registry is None:
        raise ConfigError(
            "give the registry the charts are published to (--registry oci://HOST/PATH, or "
            "gitops.registry), or name both charts by ref in one registry path"
        )
    return registry


def write_gitops(
    fmt: GitOpsFormat,
    generators: Sequence[HelmValuesGenerator],
    options: GitOpsOptions,
    out: Path,
    environment: str | None = None,
) -> tuple[list[Path], list[Path]]:
    """The objects of the releases of ``generators`` (checked by the caller) written to
    ``out``: (written, removed), as ``write_objects``."""
    objects = gitops_objects(fmt, releases(generators), options, environment)
    return write_objects(objects, out)


def releases(generators: Iterable[HelmValuesGenerator]) -> list[Release]:
    """Each generator's release, its chart read from the configuration's chart folder."""
    found = []
    for generator in generators:
        metadata = read_chart_metadata(chart_dir(generator.config, generator.chart))
        found.append(
            Release(
                environment=generator.environment,
                cluster=generator.mapping.cluster,
                namespace=generator.mapping.namespace_for(generator.environment),
                release_name=generator.release_name,
                chart_kind=generator.chart,
                chart_name=metadata["name"],
                chart_version=str(metadata["version"]),
                chart_digest=generator.config.chart_source(generator.chart).digest,
                values=generator.helm_values(),
                required_secrets=tuple(s.name for s in generator.required_secrets),
            )
        )
    return found


def gitops_objects(
    fmt: GitOpsFormat,
    found: Sequence[Release],
    options: GitOpsOptions,
    environment: str | None = None,
) -> list[dict[str, Any]]:
    """``environment``: the objects of that environment alone (``found`` are its releases);
    Argo CD's then have a project and an ApplicationSet of their own, ``floe-<environment>``."""
    if fmt == "flux":
        return flux_objects(found, options)
    return argocd_objects(found, options, f"{PROJECT}-{environment}" if environment else PROJECT)


# --- Argo CD -----------------------------------------------------------------------------------
def _argocd_cluster(cluster: str, options: GitOpsOptions) -> str:
    return IN_CLUSTER if cluster == options.controller_cluster else cluster


def argocd_objects(
    found: Sequence[Release], options: GitOpsOptions, name: str = PROJECT
) -> list[dict[str, Any]]:
    """The AppProject and the ApplicationSet ``name``, which owns the Applications of
    ``found``: Argo CD deletes those of its Applications that its generator no longer lists."""
    destinations = sorted({(_argocd_cluster(r.cluster, options), r.namespace) for r in found})
    project = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "AppProject",
        "metadata": {"name": name, "namespace": options.argocd_namespace, "labels": PART_OF},
        "spec": {
            "description": "The floe platform and its data products' jobs, per environment "
            "(generated by floe-deploy gitops)",
            "sourceRepos": [options.registry_path],
            "destinations": [{"name": c, "namespace": n} for c, n in destinations],
            # CreateNamespace=true creates the environment's namespace; nothing else the charts
            # render is cluster-scoped. Group "*" (Argo CD globs it), not "": only the core group
            # has a Namespace, and Kubernetes before 1.22 or so refuses an empty string where a
            # CRD's schema requires a string (go-openapi reads it as null; seen on 1.20).
            "clusterResourceWhitelist": [{"group": "*", "kind": "Namespace"}],
        },
    }
    elements = [
        {
            "application": r.object_name,
            "environment": r.environment,
            "chartKind": r.chart_kind,
            "chart": r.chart_name,
            "version": r.chart_version,
            "release": r.release_name,
            "cluster": _argocd_cluster(r.cluster, options),
            "namespace": r.namespace,
            "requiredSecrets": ",".join(r.required_secrets),
            "helmValues": r.values,  # "values" is the list generator's own key without goTemplate
        }
        for r in found
    ]
    application_set = {
        "apiVersion": "argoproj.io/v1alpha1",
        "kind": "ApplicationSet",
        "metadata": {"name": name, "namespace": options.argocd_namespace, "labels": PART_OF},
        "spec": {
            "goTemplate": True,
            "goTemplateOptions": ["missingkey=error"],
            "generators": [{"list": {"elements": elements}}],
            "template": {
                "metadata": {
                    "name": "{{ .application }}",
                    "labels": release_labels("{{ .environment }}", "{{ .chartKind }}"),
                    "annotations": {REQUIRED_SECRETS_ANNOTATION: "{{ .requiredSecrets }}"},
                },
                "spec": {
                    "project": name,
                    "source": {
                        "repoURL": options.registry_path,
                        "chart": "{{ .chart }}",
                        "targetRevision": "{{ .version }}",
                        "helm": {"releaseName": "{{ .release }}"},
                    },
                    "destination": {"name": "{{ .cluster }}", "namespace": "{{ .namespace }}"},
                    "syncPolicy": {
                        # As the release engine: objects the chart no longer renders are
                        # removed, drift is reported (OutOfSync), not undone (deploy's
                        # --correct-drift is a choice), namespaces are created, and applies are
                        # server-side.
                        "automated": {"prune": True, "selfHeal": False},
                        "syncOptions": ["CreateNamespace=true", "ServerSideApply=true"],
                        "retry": {
                            "limit": REMEDIATION_RETRIES,
                            "backoff": {"duration": "5s", "factor": 2, "maxDuration": "3m"},
                        },
                    },
                },
            },
            # The values are an object: a template's strings cannot carry one, a patch can.
            "templatePatch": "spec:\n  source:\n    helm:\n"
            "      valuesObject: {{ toJson .helmValues }}\n",
        },
    }
    return [project, application_set]


# --- Flux --------------------------------------------------------------------------------------
def flux_objects(found: Sequence[Release], options: GitOpsOptions) -> list[dict[str, Any]]:
    charts = {(r.chart_name, r.chart_version, r.chart_digest or "") for r in found}
    names = {name for name, _, _ in charts}
    if len(names) != len(charts):
        raise ConfigError("two versions of one chart: each OCIRepository names one version")
    sources = [
        {
            "apiVersion": "source.toolkit.fluxcd.io/v1",
            "kind": "OCIRepository",
            "metadata": {"name": name, "namespace": options.flux_namespace, "labels": PART_OF},
            "spec": {
                "interval": SOURCE_INTERVAL,
                "url": f"{options.registry}/{name}",
                # A pinned digest takes precedence over the tag in Flux.
                "ref": {"tag": oci_tag(version), **({"digest": digest} if digest else {})},
                "layerSelector": {"mediaType": HELM_CHART_LAYER, "operation": "copy"},
            },
        }
        for name, version, digest in sorted(charts)
    ]
    platform_of = {r.environment: r for r in found if r.chart_kind == "platform"}
    return [*sources, *(_helm_release(r, platform_of, options) for r in found)]


def _helm_release(
    release: Release, platform_of: dict[str, Release], options: GitOpsOptions
) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "interval": RELEASE_INTERVAL,
        "releaseName": release.release_name,
        "targetNamespace": release.namespace,
        "storageNamespace": release.namespace,
        "chartRef": {
            "kind": "OCIRepository",
            "name": release.chart_name,
            "namespace": options.flux_namespace,
        },
        "timeout": RELEASE_TIMEOUT,
        "install": {"createNamespace": True, "remediation": {"retries": REMEDIATION_RETRIES}},
        "upgrade": {
            "remediation": {"retries": REMEDIATION_RETRIES, "strategy": "rollback"},
            "cleanupOnFail": True,
        },
    }
    platform = platform_of.get(release.environment)
    if release.chart_kind == "jobs" and platform is not None:
        spec["dependsOn"] = [{"name": platform.object_name}]
    if release.cluster != options.controller_cluster:
        # Another cluster: Flux reads its kubeconfig from a Secret the operator provides.
        spec["kubeConfig"] = {
            "secretRef": {"name": kubeconfig_secret(release.cluster), "key": "value"}
        }
    spec["values"] = release.values
    metadata: dict[str, Any] = {
        "name": release.object_name,
        "namespace": options.flux_namespace,
        "labels": release_labels(release.environment, release.chart_kind),
    }
    if release.required_secrets:
        metadata["annotations"] = {REQUIRED_SECRETS_ANNOTATION: ",".join(release.required_secrets)}
    return {
        "apiVersion": "helm.toolkit.fluxcd.io/v2",
        "kind": "HelmRelease",
        "metadata": metadata,
        "spec": spec,
    }


def release_labels(environment: str, chart_kind: str) -> dict[str, str]:
    """The labels of an Application or HelmRelease (Argo CD's template gives Go templates)."""
    return {**PART_OF, "floe.dev/environment": environment, "floe.dev/chart": chart_kind}


def kubeconfig_secret(cluster: str) -> str:
    """The Secret holding ``cluster``'s kubeconfig for Flux: ``<cluster>-kubeconfig``, the
    context's name made a valid object name (``kubernetes-admin@kubernetes`` or an EKS ARN is
    not one), with a hash of the name when it had to change, so two contexts never share one."""
    name = re.sub(r"[^a-z0-9-]+", "-", cluster.lower()).strip("-")[:KUBECONFIG_NAME_MAX]
    if name != cluster:
        name = f"{name}-{hashlib.sha256(cluster.encode()).hexdigest()[:8]}".lstrip("-")
    return f"{name}-kubeconfig"


# --- files -------------------------------------------------------------------------------------
def file_name(obj: dict[str, Any]) -> str:
    return f"{obj['kind'].lower()}-{obj['metadata']['name']}.yaml"


def dump(obj: dict[str, Any]) -> str:
    """One object as YAML, the same bytes for the same object."""
    return yaml.safe_dump(obj, sort_keys=False, allow_unicode=True, width=100)


def write_objects(objects: Sequence[dict[str, Any]], out: Path) -> tuple[list[Path], list[Path]]:
    """Each object to a file of its own in ``out`` (written once all were built: an input
    error leaves the directory as it was); then the files an earlier run wrote there for
    objects no longer generated (an environment or product removed) are deleted, so that the
    controller does not go on deploying them. Other files are left alone. Returns (written,
    removed)."""
    names = [file_name(obj) for obj in objects]
    doubled = sorted({n for n in names if names.count(n) > 1})
    if doubled:
        raise ConfigError(f"two objects would be written to {', '.join(doubled)}")
    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, obj in zip(names, objects, strict=True):
        path = out / name
        path.write_text(dump(obj), encoding="utf-8")
        written.append(path)
    removed = [
        path
        for path in sorted(out.glob("*.yaml"))
        if path.name not in names and _generated_here(path)
    ]
    for path in removed:
        path.unlink()
    return written, removed


def _generated_here(path: Path) -> bool:
    """Whether ``path`` holds one object this module wrote (its labels say so)."""
    try:
        obj = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, yaml.YAMLError):
        return False
    labels = obj.get("metadata", {}).get("labels") if isinstance(obj, dict) else None
    return isinstance(labels, dict) and all(labels.get(k) == v for k, v in PART_OF.items())
