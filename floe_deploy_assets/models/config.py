"""The deployment configuration (``floe-deploy.yaml``): where environments run and how.

It holds the ClusterMappings of the seed (logical environment -> cluster, namespace, isolation
and resource preset), the charts and their release names, where the CompiledArtifacts document
comes from, and optional per-environment value overrides.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from enum import StrEnum
from glob import glob
from os.path import isfile
from pathlib import Path, PurePosixPath
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)

from floe_deploy_assets.models.base import FloeModel, format_validation_error
from floe_deploy_assets.models.inputs import CONFIG_MAX_BYTES, load_yaml, read_text
from floe_deploy_assets.models.resources import ResourcePreset
from floe_deploy_assets.models.rules import cron_problem, echo, summarize

# Patterns are portable (see models/rules.py) and matched whole (fullmatch, ASCII).
# An environment is a label value (floe.dev/environment) and part of namespaces, release names
# and Dagster names: a lowercase DNS-1123 label that starts with a letter.
ENVIRONMENT_PATTERN = r"^[a-z]([-a-z0-9]*[a-z0-9])?$"
ENVIRONMENT_MAX = 63
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", re.ASCII)
DNS1123_LABEL_MAX = 63
# Go-template syntax, the only one accepted: {{.environment}} with optional inner spaces.
ENVIRONMENT_PLACEHOLDER = re.compile(r"\{\{[ ]*\.environment[ ]*\}\}", re.ASCII)
DEFAULT_NAMESPACE_TEMPLATE = "floe-{{.environment}}"
# Namespaces Kubernetes itself uses: a target only with allowSystemNamespaces on the mapping.
SYSTEM_NAMESPACES = frozenset({"default", "kube-system", "kube-public", "kube-node-lease"})
# Helm refuses a release name longer than 53 characters. The floe-platform chart derives names
# that Kubernetes limits further and that are not cut: the PostgreSQL StatefulSet
# "<release>-postgresql", whose pods carry the label "controller-revision-hash:
# <StatefulSet>-<hash of up to 10 characters>" (a label value has at most 63, so the
# StatefulSet name at most 52), and its "<StatefulSet>-headless" Service (at most 63).
HELM_RELEASE_NAME_MAX = 53
RELEASE_NAME_MAX = {"platform": 52 - len("-postgresql"), "jobs": HELM_RELEASE_NAME_MAX}


class ConfigError(ValueError):
    """The deployment configuration is invalid; the message names the file and field."""


class Isolation(StrEnum):
    NAMESPACE = "namespace"
    LABEL = "label"


def render_namespace(template: str, environment: str) -> str:
    """Render a namespace template; any template syntax other than ``{{.environment}}`` is an
    error, so a Jinja-style ``{{ environment }}`` cannot silently become a literal name."""
    rendered = ENVIRONMENT_PLACEHOLDER.sub(environment, template)
    if "{{" in rendered or "}}" in rendered or "${" in rendered:
        raise ValueError(
            f"namespaceTemplate {echo(template)} uses unsupported template syntax; the only "
            "placeholder is {{.environment}}"
        )
    if len(rendered) > DNS1123_LABEL_MAX:
        raise ValueError(
            f"namespaceTemplate {echo(template)} renders {echo(rendered)} for environment "
            f"{environment!r}: {len(rendered)} characters, more than the {DNS1123_LABEL_MAX} "
            "a namespace may have"
        )
    if not DNS1123_LABEL.fullmatch(rendered):
        raise ValueError(
            f"namespaceTemplate {echo(template)} renders {echo(rendered)} for environment "
            f"{environment!r}, which is not a valid namespace (DNS-1123 label: lowercase "
            "letters, digits and '-', starting and ending with a letter or digit)"
        )
    return rendered


class ClusterMapping(FloeModel):
    name: str = Field(min_length=1, description="Mapping identifier (e.g. non-prod, prod)")
    cluster: str = Field(min_length=1, description="kubeconfig context, or 'in-cluster'")
    environments: list[str] = Field(min_length=1)
    namespace_template: str = DEFAULT_NAMESPACE_TEMPLATE
    isolation: Isolation = Isolation.NAMESPACE
    # default, kube-system, kube-public and kube-node-lease are refused as targets unless this
    # is true.
    allow_system_namespaces: bool = False
    resources: ResourcePreset

    @field_validator("environments")
    @classmethod
    def _environment_names(cls, environments: list[str]) -> list[str]:
        for environment in environments:
            if len(environment) > ENVIRONMENT_MAX or not re.fullmatch(
                ENVIRONMENT_PATTERN, environment, re.ASCII
            ):
                raise ValueError(
                    f"environment {echo(environment)} must match {ENVIRONMENT_PATTERN} and have "
                    f"at most {ENVIRONMENT_MAX} characters (it is used in namespaces, labels and "
                    "release names)"
                )
        duplicates = sorted(e for e, n in Counter(environments).items() if n > 1)
        if duplicates:
            raise ValueError(f"environment {summarize(duplicates)} is listed twice")
        return environments

    @model_validator(mode="after")
    def _namespaces_render(self) -> ClusterMapping:
        namespaces = {e: render_namespace(self.namespace_template, e) for e in self.environments}
        system = {e: n for e, n in namespaces.items() if n in SYSTEM_NAMESPACES}
        if system and not self.allow_system_namespaces:
            raise ValueError(
                "namespaceTemplate gives environment "
                + summarize(f"{e} the system namespace {n}" for e, n in system.items())
                + f" ({', '.join(sorted(SYSTEM_NAMESPACES))} are Kubernetes' own); set "
                "allowSystemNamespaces: true on the mapping if that is really meant"
            )
        if self.isolation is Isolation.NAMESPACE and len(set(namespaces.values())) < len(
            namespaces
        ):
            raise ValueError(
                "isolation 'namespace' needs a namespace per environment, but namespaceTemplate "
                f"{self.namespace_template!r} gives the same one to several; use "
                "{{.environment}} in it, or isolation 'label'"
            )
        return self

    def namespace_for(self, environment: str) -> str:
        return render_namespace(self.namespace_template, environment)


class ArtifactsSource(FloeModel):
    """Where the CompiledArtifacts documents are read from, relative to the configuration: one
    data product's document (``path``), or any number of products' (``paths``: files and globs).

    The two differ in naming, not only in count: with ``path`` the product's jobs release and
    profiles Secret keep the chart's names (``floe-jobs``, ``floe-dbt-profiles``), as before
    several products existed; with ``paths`` every product's carry its name
    (``floe-jobs-<product>``), even when one is listed, so adding or removing a product never
    renames another's."""

    path: Path | None = None
    paths: list[str] | None = Field(default=None, min_length=1)
    # A product's dbt project, by product name: its declared dbt tests become asset checks.
    dbt_projects: dict[str, Path] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_of_path_and_paths(self) -> ArtifactsSource:
        if (self.path is None) == (self.paths is None):
            raise ValueError(
                "give either path (one CompiledArtifacts document) or paths (a list of files "
                "and globs, one document per data product), not "
                + ("both" if self.path is not None else "neither")
            )
        return self

    @property
    def per_product_names(self) -> bool:
        return self.paths is not None


# oci://HOST[:PORT]/PATH/CHART, as Helm names a chart in an OCI registry (no tag: see version).
OCI_CHART_REF = r"^oci://[A-Za-z0-9.-]+(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)+$"
CHART_VERSION = r"^[0-9]+\.[0-9]+\.[0-9]+(-[0-9A-Za-z.-]+)?(\+[0-9A-Za-z.-]+)?$"
OCI_DIGEST = r"^sha256:[0-9a-f]{64}$"


class ChartSource(FloeModel):
    """Where a chart comes from: a folder (``path``), or a registry (``ref`` at ``version``,
    optionally pinned to the manifest ``digest`` the registry gave when it was published)."""

    path: Path | None = Field(
        default=None, description="chart directory, relative to the configuration"
    )
    ref: str | None = Field(
        default=None, pattern=OCI_CHART_REF, description="oci://HOST/PATH/CHART"
    )
    version: str | None = Field(
        default=None, pattern=CHART_VERSION, description="the chart version"
    )
    digest: str | None = Field(
        default=None, pattern=OCI_DIGEST, description="manifest digest to pin"
    )
    release_name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=53)

    @model_validator(mode="after")
    def _path_or_registry(self) -> ChartSource:
        if (self.path is None) == (self.ref is None):
            raise ValueError(
                "give the chart's path (a folder) or its ref (oci://HOST/PATH/CHART with a "
                "version), not " + ("both" if self.path is not None else "neither")
            )
        if self.ref is not None and self.version is None:
            raise ValueError(
                f"ref {self.ref} needs the chart version to install (version: 0.1.0); a "
                "registry's newest version is not a deployment decision"
            )
        if self.path is not None and (self.version or self.digest):
            raise ValueError(
                "version and digest belong to a chart from a registry (ref); a chart folder's "
                "version is its Chart.yaml's"
            )
        return self


class GitOpsSettings(FloeModel):
    """The Dagster graph's ``gitops_files`` asset: each environment's Argo CD or Flux files
    written to ``out/<environment>/``, as ``floe-deploy gitops --env <environment>`` writes
    them."""

    format: Literal["argocd", "flux"]
    out: Path = Field(description="directory, relative to the configuration")
    registry: str | None = Field(
        default=None, description="oci://HOST/PATH; default: where the charts' refs are"
    )
    controller_cluster: str = "in-cluster"
    argocd_namespace: str = "argocd"
    flux_namespace: str = "flux-system"


class RegistryAccess(FloeModel):
    """How charts named by ``oci://`` references are pulled. Credentials are not held here:
    ``credentialsFile`` (default: Helm's own, which ``helm registry login`` writes) or the
    environment's FLOE_REGISTRY_USERNAME and FLOE_REGISTRY_PASSWORD give them (for the
    registry FLOE_REGISTRY_HOST names; without it, only when the charts name one registry)."""

    ca_file: Path | None = Field(
        default=None,
        description="CA certificate(s) the registry's TLS certificate is checked against",
    )
    credentials_file: Path | None = None
    keyring: Path | None = Field(
        default=None,
        description="public GPG keyring: when set, a chart is used only if its provenance "
        "file is signed by a key in it and its hash matches",
    )
    plain_http: bool = False


class Charts(FloeModel):
    platform: ChartSource = ChartSource(
        path=Path("charts/floe-platform"), release_name="floe-platform"
    )
    jobs: ChartSource = ChartSource(path=Path("charts/floe-jobs"), release_name="floe-jobs")


ChartKind = Literal["platform", "jobs"]


class EnvironmentOverrides(FloeModel):
    """Explicit user overrides: the top layer of the values, per chart."""

    platform: dict[str, Any] = Field(default_factory=dict)
    jobs: dict[str, Any] = Field(default_factory=dict)


DEFAULT_REDEPLOY_CRON = "0 * * * *"  # hourly


def _release_name(base: str, mapping: ClusterMapping, environment: str) -> str:
    return f"{base}-{environment}" if mapping.isolation is Isolation.LABEL else base


def _valid_cron(cron: str) -> str:
    problem = cron_problem(cron)
    if problem:
        raise ValueError(problem)
    return cron


# A cron expression Dagster and Kubernetes both accept (models/rules.py).
CronSchedule = Annotated[str, AfterValidator(_valid_cron)]


class DeploymentConfig(FloeModel):
    api_version: Literal["floe.dev/v1alpha1"] = "floe.dev/v1alpha1"
    kind: Literal["DeploymentConfig"] = "DeploymentConfig"
    artifacts: ArtifactsSource
    charts: Charts = Charts()
    registry: RegistryAccess = RegistryAccess()
    gitops: GitOpsSettings | None = None
    cluster_mappings: list[ClusterMapping] = Field(min_length=1)
    overrides: dict[str, EnvironmentOverrides] = Field(default_factory=dict)
    # Cron of each environment's scheduled redeploy (an in-sync release makes it a no-op).
    redeploy_schedules: dict[str, CronSchedule] = Field(default_factory=dict)
    # Relative paths in the file are relative to the file's folder.
    _base_dir: Path = PrivateAttr(default=Path("."))

    @model_validator(mode="after")
    def _each_environment_in_exactly_one_mapping(self) -> DeploymentConfig:
        names = Counter(mapping.name for mapping in self.cluster_mappings)
        doubled_names = sorted(name for name, count in names.items() if count > 1)
        if doubled_names:
            raise ValueError(
                f"cluster mapping name {summarize(map(repr, doubled_names))} is used by more "
                "than one mapping; each mapping needs its own name"
            )
        owners: dict[str, list[str]] = {}
        for mapping in self.cluster_mappings:
            for environment in mapping.environments:
                owners.setdefault(environment, []).append(mapping.name)
        doubled = {e: names for e, names in owners.items() if len(names) > 1}
        if doubled:
            detail = summarize((f"{e} in {', '.join(n)}" for e, n in doubled.items()), sep="; ")
            raise ValueError(f"each environment must be in exactly one cluster mapping: {detail}")
        for field, named in (
            ("overrides", self.overrides),
            ("redeploySchedules", self.redeploy_schedules),
        ):
            unmapped = sorted(set(named) - set(owners))
            if unmapped:
                raise ValueError(
                    f"{field} name environment {summarize(unmapped)}, which no "
                    f"cluster mapping lists (environments: {summarize(self.environments)})"
                )
        charts: tuple[ChartKind, ...] = ("platform", "jobs")
        for mapping, environment in ((m, e) for m in self.cluster_mappings for e in m.environments):
            for chart in charts:
                name = _release_name(self._release_base(chart), mapping, environment)
                limit = RELEASE_NAME_MAX[chart]
                if len(name) > limit:
                    why = f"Helm allows {HELM_RELEASE_NAME_MAX}"
                    if chart == "platform":
                        why += ", and the chart's PostgreSQL StatefulSet '<release>-postgresql' 52"
                    raise ValueError(
                        f"environment {environment}: the {chart} release name {name!r} has "
                        f"{len(name)} characters, more than {limit} ({why}); shorten "
                        f"charts.{chart}.releaseName or the environment's name"
                    )
        return self

    def redeploy_cron(self, environment: str) -> str:
        return self.redeploy_schedules.get(environment, DEFAULT_REDEPLOY_CRON)

    @property
    def environments(self) -> list[str]:
        return [e for mapping in self.cluster_mappings for e in mapping.environments]

    def mapping_for(self, environment: str) -> ClusterMapping:
        for mapping in self.cluster_mappings:
            if environment in mapping.environments:
                return mapping
        raise ConfigError(
            f"environment {environment!r} is in no cluster mapping; known environments: "
            f"{', '.join(self.environments)}"
        )

    def _release_base(self, chart: ChartKind) -> str:
        return getattr(self.charts, chart).release_name

    def release_name(self, chart: ChartKind, environment: str, product: str | None = None) -> str:
        """Environments sharing a namespace (isolation 'label') need distinct release names,
        and so do data products sharing an environment: with ``artifacts.paths`` a product's
        jobs release is ``<releaseName>-<product>`` (``product``: its slug)."""
        base = self._release_base(chart)
        if chart == "jobs" and self.artifacts.per_product_names:
            if product is None:
                raise ValueError("the jobs release of which data product? (none given)")
            base = f"{base}-{product}"
        return _release_name(base, self.mapping_for(environment), environment)

    def overrides_for(self, chart: ChartKind, environment: str) -> dict[str, Any]:
        self.mapping_for(environment)
        env_overrides = self.overrides.get(environment)
        return getattr(env_overrides, chart) if env_overrides else {}

    def resolve(self, path: Path) -> Path:
        """A path from the file, made relative to the file's folder."""
        return self._base_dir / path

    def artifacts_paths(self) -> list[Path]:
        """Every CompiledArtifacts document named, in the order given (each glob's matches
        sorted), each once. A glob that matches nothing is an error: a product silently
        missing would look like a product removed."""
        if self.artifacts.path is not None:
            return [self.resolve(self.artifacts.path)]
        found: dict[Path, None] = {}
        for index, pattern in enumerate(self.artifacts.paths or ()):
            if not any(char in pattern for char in "*?["):
                found[self.resolve(Path(pattern))] = None
                continue
            matches = sorted(
                Path(match) for match in glob(str(self.resolve(Path(pattern)))) if isfile(match)
            )
            if not matches:
                raise ConfigError(
                    f"artifacts.paths[{index}]: {echo(pattern)} matches no file in "
                    f"{self._base_dir}; fix the pattern or remove it"
                )
            found.update(dict.fromkeys(matches))
        return list(found)

    def chart_source(self, chart: ChartKind) -> ChartSource:
        source: ChartSource = getattr(self.charts, chart)
        return source

    def chart_path(self, chart: ChartKind) -> Path:
        """The chart's folder; a chart from a registry has none until it is pulled (that is
        ``helm.sources.chart_dir``, which every user of a chart goes through)."""
        path = self.chart_source(chart).path
        if path is None:
            raise ValueError(f"charts.{chart} comes from a registry, not a folder")
        return self.resolve(path)

    def relocated(self, tree: Path, root: PurePosixPath) -> dict[str, Any]:
        """This configuration as a document whose paths (artifacts, dbt projects, charts) are
        absolute under ``root``, where the files under ``tree`` are elsewhere: in an image, for
        the code location hosted in the cluster (``dagster.floeDeploy``). A path outside
        ``tree`` is an error: the image would not have it."""

        base = tree.absolute()

        def moved(path: str | Path, what: str) -> str:
            local = Path(os.path.normpath(self.resolve(Path(path)).absolute()))
            if not local.is_relative_to(base):
                raise ConfigError(
                    f"{what}: {local} is not under {tree}, so it is not in the image; keep "
                    "what the configuration names inside the tree the image carries"
                )
            return str(root / local.relative_to(base).as_posix())

        document = self.to_document()
        artifacts = document["artifacts"]
        if "path" in artifacts:
            artifacts["path"] = moved(artifacts["path"], "artifacts.path")
        if "paths" in artifacts:
            artifacts["paths"] = [
                moved(pattern, f"artifacts.paths[{index}]")
                for index, pattern in enumerate(artifacts["paths"])
            ]
        for name, project in artifacts.get("dbtProjects", {}).items():
            artifacts["dbtProjects"][name] = moved(project, f"artifacts.dbtProjects.{name}")
        for chart, source in document["charts"].items():
            if "path" in source:
                source["path"] = moved(source["path"], f"charts.{chart}.path")
        registry = document["registry"]
        for field in ("caFile", "credentialsFile", "keyring"):
            if field in registry:
                registry[field] = moved(registry[field], f"registry.{field}")
        return document


def parse_deployment_config(text: str, source: str, base_dir: Path = Path(".")) -> DeploymentConfig:
    # Duplicate keys, alias bombs and deep nesting are refused here (models/inputs.py).
    document = load_yaml(text, source, ConfigError)
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: the top level must be a mapping (apiVersion, kind, ...)")
    try:
        config = DeploymentConfig.model_validate(document)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(source, exc)) from None
    config._base_dir = base_dir
    return config


def load_deployment_config(path: str | Path) -> DeploymentConfig:
    path = Path(path)
    text = read_text(
        path, what="the deployment configuration", limit=CONFIG_MAX_BYTES, error=ConfigError
    )
    return parse_deployment_config(text, str(path), path.parent)
