"""HelmValuesGenerator (seed section 1): the values of one chart for one environment: the
platform's from every data product of the environment, a product's jobs from its own document.

Layers, lowest first, each recorded as the provenance of the leaves it sets:

1. ``chart defaults``  the chart's values.yaml
2. ``preset:<tier>``   the environment's resource preset (from its cluster mapping)
3. ``environment:<e>`` namespace, labels, isolation and product identity
4. ``compiled artifacts`` values derived from CompiledArtifacts (see ``values/mapping.py``; the
   platform's merged over the products, ``merge_platform_layers``)
5. ``overrides``       the environment's explicit overrides in the deployment configuration
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from functools import cached_property
from typing import Any

from floe_deploy_assets.models.artifacts import CompiledArtifacts
from floe_deploy_assets.models.config import ChartKind, DeploymentConfig
from floe_deploy_assets.models.products import DataProduct
from floe_deploy_assets.values.layers import LayeredValues
from floe_deploy_assets.values.mapping import (
    DBT_PROFILES_SECRET,
    RequiredSecret,
    jobs_layer,
    merge_platform_layers,
    platform_layer,
)
from floe_deploy_assets.values.secrets import find_plaintext_secrets
from floe_deploy_assets.values.validation import ValuesProblem, schema_problems

LABEL_VALUE_MAX = 63


class HelmValuesGenerator:
    def __init__(
        self,
        products: Sequence[DataProduct],
        environment: str,
        chart_defaults: Mapping[str, Any],
        *,
        config: DeploymentConfig,
        chart: ChartKind,
        schema: Mapping[str, Any],
    ):
        if not products or (chart == "jobs" and len(products) != 1):
            raise ValueError(f"the {chart} values are made from {len(products)} data products")
        self.products = tuple(products)
        self.environment = environment
        self.chart_defaults = chart_defaults
        self.config = config
        self.chart = chart
        self.schema = schema
        self.mapping = config.mapping_for(environment)  # an unknown environment fails here

    @property
    def product(self) -> DataProduct:
        """The jobs' product (the platform's only one, in a single-product configuration)."""
        if len(self.products) != 1:
            raise ValueError(f"the {self.chart} values serve {len(self.products)} products")
        return self.products[0]

    @property
    def product_named(self) -> bool:
        """Whether the configuration names its products (``artifacts.paths``)."""
        return self.products[0].named_objects

    @property
    def artifacts(self) -> CompiledArtifacts:
        return self.product.artifacts

    @property
    def artifacts_version(self) -> str:
        """The CompiledArtifacts version(s) the values come from (distinct, sorted)."""
        return ", ".join(sorted({p.artifacts.version for p in self.products}))

    @property
    def release_name(self) -> str:
        product = self.product.slug if self.chart == "jobs" else None
        return self.config.release_name(self.chart, self.environment, product)

    @property
    def title(self) -> str:
        """What these values are of, for messages: ``platform``, ``jobs`` or ``jobs of <p>``."""
        named = self.chart == "jobs" and self.product_named
        return f"jobs of {self.product.name}" if named else self.chart

    @cached_property
    def _artifacts_layer(self):
        if self.chart == "jobs":
            return jobs_layer(self.artifacts, self.product.object_name(DBT_PROFILES_SECRET))
        return merge_platform_layers(
            {p.name: platform_layer(p.artifacts, self.environment) for p in self.products}
        )

    @property
    def plugin_values(self) -> dict[str, Any]:
        """The seed's computed ``pluginValues``: what the artifacts contribute."""
        return copy.deepcopy(self._artifacts_layer.values)

    @property
    def required_secrets(self) -> tuple[RequiredSecret, ...]:
        return self._artifacts_layer.required_secrets

    def _preset_layer(self) -> dict[str, Any]:
        preset = self.mapping.resources
        if self.chart == "jobs":
            return {"resources": preset.jobs.to_document()}
        return {
            "dagster": {
                "webserver": {"resources": preset.webserver.to_document()},
                "daemon": {"resources": preset.daemon.to_document()},
                "userCode": {"resources": preset.user_code.to_document()},
                "runLauncher": {"resources": preset.jobs.to_document()},
            }
        }

    def _environment_layer(self) -> dict[str, Any]:
        labels = {"app.kubernetes.io/part-of": "floe", "floe.dev/environment": self.environment}
        namespace = self.mapping.namespace_for(self.environment)
        environment_global: dict[str, Any] = {
            "environment": self.environment,
            "namespace": namespace,
            "labels": labels,
            "isolation": str(self.mapping.isolation),
        }
        identity: dict[str, Any] = {"environment": self.environment}
        # With named products (artifacts.paths) the platform names none of them, even when it
        # serves one: adding a product must not change (and so redeploy) it unless the product
        # needs something of it. The one product of artifacts.path is named, as it always was.
        if self.chart == "jobs" or not self.product_named:
            metadata = self.artifacts.metadata
            if len(metadata.product_name) <= LABEL_VALUE_MAX:
                labels["floe.dev/product"] = metadata.product_name
            identity |= {
                "productName": metadata.product_name,
                "productVersion": metadata.product_version,
                "artifactsVersion": self.artifacts.version,
                "artifactsDigest": self.artifacts.digest,
            }
        # Workloads of both charts send to the platform's own collector in the environment,
        # which runs when any product's telemetry is enabled (the products agree on its
        # settings, or merging their platform layers refused them).
        enabled = [p.artifacts.observability.telemetry for p in self.products]
        telemetry = next((t for t in enabled if t.enabled), None)
        if telemetry is not None:
            collector = f"{self.config.release_name('platform', self.environment)}-otel-collector"
            port = 4317 if telemetry.otlp_protocol == "grpc" else 4318
            environment_global["otlpEndpoint"] = f"http://{collector}.{namespace}.svc:{port}"
        return {"global": environment_global, "floe": identity}

    @cached_property
    def layered(self) -> LayeredValues:
        return (
            LayeredValues()
            .apply("chart defaults", self.chart_defaults)
            .apply(f"preset:{self.mapping.resources.name}", self._preset_layer())
            .apply(f"environment:{self.environment}", self._environment_layer())
            .apply("compiled artifacts", self._artifacts_layer.values)
            .apply("overrides", self.config.overrides_for(self.chart, self.environment))
        )

    def generate(self) -> dict[str, Any]:
        """The merged values, ready for Helm."""
        return copy.deepcopy(self.layered.values)

    def helm_values(self) -> dict[str, Any]:
        """The values to hand to Helm, which merges them over the chart defaults again: a key
        our layers deleted must reach Helm as an explicit null, or the default comes back."""
        return _with_deletions(self.chart_defaults, self.generate())

    def validate(self) -> list[ValuesProblem]:
        """Every problem: the chart's schema on the merged values, then the secret rules."""
        values = self.layered.values
        problems = schema_problems(values, self.schema)
        problems += [
            ValuesProblem(finding.pointer, finding.message, rule=finding.rule)
            for finding in find_plaintext_secrets(values)
        ]
        return problems


def _with_deletions(defaults: Mapping[str, Any], merged: dict[str, Any]) -> dict[str, Any]:
    for key, default in defaults.items():
        if key not in merged:
            merged[key] = None
        elif isinstance(default, Mapping) and isinstance(merged[key], dict):
            _with_deletions(default, merged[key])
    return merged
