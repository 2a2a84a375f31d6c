"""The data products of a deployment: one CompiledArtifacts document each, all sharing the
environment's platform release, each with its own jobs release (and so its own ConfigMaps,
ServiceAccount and Role), profiles Secret and model assets.

A product is known by its ``metadata.product_name``; its *slug* (lowercase, ``_`` as ``-``) is
what names its Kubernetes objects and selects it on the command line.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path

from floe_deploy_assets.models.artifacts import CompiledArtifacts, load_compiled_artifacts
from floe_deploy_assets.models.config import (
    HELM_RELEASE_NAME_MAX,
    ConfigError,
    DeploymentConfig,
)
from floe_deploy_assets.models.rules import summarize

LABEL_VALUE_MAX = 63


def product_slug(product_name: str) -> str:
    """``Customer_360`` -> ``customer-360``: a DNS label part (product names already start with
    a letter and hold only letters, digits, ``_`` and ``-``)."""
    return product_name.lower().replace("_", "-").rstrip("-")


@dataclass(frozen=True)
class DataProduct:
    artifacts: CompiledArtifacts
    source: Path
    # With ``artifacts.paths`` a product's objects carry its slug; with ``artifacts.path`` the
    # one product keeps the charts' plain names (see models/config.py ArtifactsSource).
    named_objects: bool
    dbt_project: Path | None = None  # its dbt project's directory, when the configuration says

    @property
    def name(self) -> str:
        return self.artifacts.metadata.product_name

    @property
    def slug(self) -> str:
        return product_slug(self.name)

    def object_name(self, base: str) -> str:
        """The name of one of this product's own objects: ``floe-dbt-profiles`` becomes
        ``floe-dbt-profiles-<slug>`` when products are named."""
        return f"{base}-{self.slug}" if self.named_objects else base

    def run_id(self, run_id: str) -> str:
        """The run id this product's Jobs carry in run ``run_id``: the products of one run
        must neither share Job names nor see each other's Jobs in their watches. A label
        value (at most 63 characters), so a long run id is shortened to its hash."""
        if not self.named_objects:
            return run_id
        scoped = f"{run_id}-{self.slug}"
        if len(scoped) > LABEL_VALUE_MAX:
            scoped = f"{hashlib.sha256(run_id.encode()).hexdigest()[:10]}-{self.slug}"
        return scoped

    def __str__(self) -> str:
        return f"data product {self.name} ({self.source})"


def single_product(artifacts: CompiledArtifacts, source: Path = Path("<document>")) -> DataProduct:
    """A document as the one product of an ``artifacts.path`` configuration."""
    return DataProduct(artifacts, source, named_objects=False)


def load_products(config: DeploymentConfig, override: Path | None = None) -> list[DataProduct]:
    """Every product the configuration names (or only the ``override`` document, as
    ``--artifacts`` asks), validated; raises ArtifactsError for a broken document and
    ConfigError for two documents of one product or a release name too long."""
    sources = [override] if override is not None else config.artifacts_paths()
    named = config.artifacts.per_product_names
    products = [DataProduct(load_compiled_artifacts(path), path, named) for path in sources]
    products = _with_dbt_projects(config, products, every=override is None)
    by_slug: dict[str, list[DataProduct]] = {}
    for product in products:
        by_slug.setdefault(product.slug, []).append(product)
    for slug, same in by_slug.items():
        if len(same) > 1:
            raise ConfigError(
                f"data product {slug!r} is compiled in more than one document: "
                f"{summarize(str(p.source) for p in same)}; list each product once (product "
                "names differing only in case or '_' vs '-' name the same product)"
            )
    for product in products:
        for environment in config.environments:
            release = config.release_name("jobs", environment, product.slug)
            if len(release) > HELM_RELEASE_NAME_MAX:
                raise ConfigError(
                    f"{product.source}: the jobs release of {product} in {environment} would "
                    f"be {release!r}, {len(release)} characters (Helm allows "
                    f"{HELM_RELEASE_NAME_MAX}); shorten charts.jobs.releaseName or the "
                    "product's name"
                )
    return products


def _with_dbt_projects(
    config: DeploymentConfig, products: list[DataProduct], *, every: bool
) -> list[DataProduct]:
    """The products with the dbt projects ``artifacts.dbtProjects`` gives them (by product
    name); each must hold a dbt_project.yml, and, when ``every`` product was loaded, name one."""
    projects = config.artifacts.dbt_projects
    names = {product.name for product in products}
    unknown = sorted(set(projects) - names)
    if every and unknown:
        raise ConfigError(
            f"artifacts.dbtProjects names {summarize(unknown)}, not a data product of the "
            f"configuration ({summarize(sorted(names))}); key each project by its product's "
            "metadata.product_name"
        )
    for name, directory in projects.items():
        if name in names and not (config.resolve(directory) / "dbt_project.yml").is_file():
            raise ConfigError(
                f"artifacts.dbtProjects.{name}: {config.resolve(directory)} has no "
                "dbt_project.yml; give the directory of the product's dbt project"
            )
    return [
        replace(product, dbt_project=config.resolve(projects[product.name]))
        if product.name in projects
        else product
        for product in products
    ]


def select_products(
    products: Sequence[DataProduct], names: Iterable[str] | None
) -> list[DataProduct]:
    """The products asked for by name or slug (all of them when none is asked for)."""
    wanted = list(names or ())
    if not wanted:
        return list(products)
    known = {key: p for p in products for key in (p.name, p.slug)}
    unknown = [name for name in wanted if name not in known]
    if unknown:
        raise ConfigError(
            f"no data product {summarize(map(repr, unknown))} in the configuration; its "
            f"products: {summarize(p.name for p in products)}"
        )
    chosen = {known[name].slug: known[name] for name in wanted}
    return [p for p in products if p.slug in chosen]
