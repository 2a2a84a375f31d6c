"""The CompiledArtifacts -> Helm values mapping (the seed's section 5), one layer per source.

| CompiledArtifacts field       | values (floe-platform / floe-jobs)                       |
|-------------------------------|----------------------------------------------------------|
| plugins.orchestrator          | dagster.enabled                                          |
| plugins.catalog               | polaris.enabled, polaris.catalogType, polaris.config     |
| telemetry backend (*)         | otel.exporters.backend                                   |
| plugins.lineage_backend       | marquez.enabled, marquez.namespace                       |
| observability.telemetry       | otel.enabled, otel.config.* (endpoint, protocol,         |
|                               | samplingRatio, batch, logLevel)                          |
| transforms.models             | jobs: models[] (name, dependsOn, tags)                   |
| dbt_profiles                  | jobs: dbt.profiles (inline, or a Secret reference)       |

(*) ``observability.telemetry.backend`` in upstream documents, or ``plugins.telemetry_backend``.

Credentials never become values. Per place, by the secret rules (``values/secrets.py``: secret
keys, and credentials inside strings under any key: DSN ``password=``, URL userinfo and token
parameters, ``Bearer``/``Basic``/``Authorization`` values, pgpass lines, embedded documents):

- telemetry ``authentication``: a reference to ``floe-otel-exporter-auth``;
- ``dbt_profiles``: any finding anywhere in them (or a number under a secret key) sends the
  *whole* profiles to the operator's ``floe-dbt-profiles`` Secret; only a reference is a value;
  profiles that name their credentials as dbt does, ``{{ env_var('DBT_ENV_SECRET_<X>') }}``, are
  inlined, and each such variable is read from that Secret's key ``DBT_ENV_SECRET_<X>``
  (``dbt.secretEnv``);
- the catalog plugin config, the telemetry endpoint and everything else that passes through:
  kept as is, so the values validation refuses the finding with its JSON pointer (the catalog's
  credential is ``floe-polaris-credentials``, the exporter's is its ``authentication``);
  overrides and annotations are refused the same way (the rules run on the merged values).

The ``required_secrets`` of a layer say which Secrets the operator provides.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from floe_deploy_assets.models.artifacts import CompiledArtifacts
from floe_deploy_assets.models.config import ConfigError
from floe_deploy_assets.values.secrets import find_plaintext_secrets

POSTGRES_SECRET = "floe-postgresql"
DBT_PROFILES_SECRET = "floe-dbt-profiles"
OTEL_AUTH_SECRET = "floe-otel-exporter-auth"
POLARIS_SECRET = "floe-polaris-credentials"
# ``{{ env_var('DBT_ENV_SECRET_PG_PASSWORD') }}``, quoted either way.
SECRET_ENV_REFERENCE = re.compile(r"""env_var\(\s*['"](DBT_ENV_SECRET_[A-Za-z0-9_]+)['"]""")


@dataclass(frozen=True)
class RequiredSecret:
    """A Secret the operator must create in the environment's namespace before deploying."""

    name: str
    keys: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class ArtifactsLayer:
    values: dict[str, Any]
    required_secrets: tuple[RequiredSecret, ...]


def sampling_ratio(artifacts: CompiledArtifacts, environment: str) -> float:
    """Upstream documents give ratios for dev, staging and prod only; any other environment
    gets the lowest of them, so an unknown (possibly production) environment is never sampled
    more heavily than production."""
    sampling = artifacts.observability.telemetry.sampling
    ratios = {"dev": sampling.dev, "staging": sampling.staging, "prod": sampling.prod}
    return ratios.get(environment, min(ratios.values()))


def _plugin_type(artifacts: CompiledArtifacts, slot: str) -> str | None:
    plugin = getattr(artifacts.plugins, slot, None) if artifacts.plugins else None
    return plugin.type if plugin else None


def _scalar_config(config: dict[str, Any] | None) -> dict[str, Any]:
    """Plugin config passes through when it is flat; nested config is the plugin's business.
    A credential in it is not moved anywhere: the values validation refuses it by pointer
    (``/polaris/config/<key>``), as the catalog's credential is the operator's Secret."""
    return {k: v for k, v in (config or {}).items() if isinstance(v, str | int | float | bool)}


def platform_layer(artifacts: CompiledArtifacts, environment: str) -> ArtifactsLayer:
    telemetry = artifacts.observability.telemetry
    batch = telemetry.batch_processor
    secrets = [
        RequiredSecret(
            POSTGRES_SECRET,
            ("password",),
            "PostgreSQL password for Dagster storage and the database",
        )
    ]
    exporters: dict[str, Any] = {"backend": artifacts.telemetry_backend or "console"}
    if telemetry.authentication is not None:
        key = "api-key" if telemetry.authentication.auth_type == "api_key" else "bearer-token"
        exporters["headersSecret"] = {"name": OTEL_AUTH_SECRET, "key": key}
        secrets.append(
            RequiredSecret(
                OTEL_AUTH_SECRET, (key,), "telemetry exporter authentication from the artifacts"
            )
        )
    values: dict[str, Any] = {
        "dagster": {"enabled": _plugin_type(artifacts, "orchestrator") in (None, "dagster")},
        "otel": {
            "enabled": telemetry.enabled,
            "config": {
                "protocol": telemetry.otlp_protocol,
                "samplingRatio": sampling_ratio(artifacts, environment),
                "batch": {
                    "maxQueueSize": batch.max_queue_size,
                    "maxExportBatchSize": batch.max_export_batch_size,
                    "scheduleDelayMillis": batch.schedule_delay_millis,
                    "exportTimeoutMillis": batch.export_timeout_millis,
                },
                "logLevel": telemetry.logging.log_level,
            },
            "exporters": exporters,
        },
    }
    if telemetry.otlp_endpoint:
        values["otel"]["config"]["endpoint"] = telemetry.otlp_endpoint
    catalog = _plugin_type(artifacts, "catalog")
    if catalog is not None:
        config = (
            artifacts.plugins.catalog.config
            if artifacts.plugins and artifacts.plugins.catalog
            else None
        )
        values["polaris"] = {
            "enabled": catalog == "polaris",
            "catalogType": catalog,
            "config": _scalar_config(config),
        }
        if catalog == "polaris":
            values["polaris"]["credentials"] = {"name": POLARIS_SECRET, "key": "client-secret"}
            secrets.append(
                RequiredSecret(POLARIS_SECRET, ("client-secret",), "Polaris catalog client secret")
            )
    lineage = _plugin_type(artifacts, "lineage_backend")
    values["marquez"] = {"enabled": lineage == "marquez" and artifacts.observability.lineage}
    if values["marquez"]["enabled"]:
        values["marquez"]["namespace"] = artifacts.observability.lineage_namespace
    return ArtifactsLayer(values, tuple(secrets))


def merge_platform_layers(layers: Mapping[str, ArtifactsLayer]) -> ArtifactsLayer:
    """The platform layer of several data products (keyed by product name): what each needs.
    A component any product enables is enabled (``enabled: true`` wins over ``false``); any
    other setting two products give differently is a ConfigError naming both and the pointer,
    since one platform cannot serve both."""
    merged: dict[str, Any] = {}
    owners: dict[str, str] = {}  # pointer -> the product that set it first
    for product, layer in layers.items():
        _merge_needs(merged, layer.values, "", product, owners)
    secrets: dict[str, RequiredSecret] = {}
    for layer in layers.values():
        for secret in layer.required_secrets:
            known = secrets.get(secret.name)
            keys = tuple(dict.fromkeys((*known.keys, *secret.keys))) if known else secret.keys
            secrets[secret.name] = RequiredSecret(secret.name, keys, secret.why)
    return ArtifactsLayer(merged, tuple(secrets.values()))


def _merge_needs(
    merged: dict[str, Any], values: Mapping[str, Any], pointer: str, product: str, owners: dict
) -> None:
    for key, value in values.items():
        at = f"{pointer}/{key}"
        if key not in merged:
            merged[key] = copy.deepcopy(value)
            owners[at] = product
        elif isinstance(value, Mapping) and isinstance(merged[key], dict):
            _merge_needs(merged[key], value, at, product, owners)
        elif key == "enabled" and isinstance(value, bool) and isinstance(merged[key], bool):
            merged[key] = merged[key] or value
        elif merged[key] != value:
            other = owners.get(at) or _owner_above(owners, at)
            raise ConfigError(
                f"data products {other} and {product} need different platform settings at "
                f"{at}: {_shown(merged[key])} and {_shown(value)}; one platform release serves "
                "both, so make their CompiledArtifacts agree or deploy them to different "
                "environments"
            )


def _owner_above(owners: dict[str, str], pointer: str) -> str:
    while pointer and pointer not in owners:
        pointer = pointer.rsplit("/", 1)[0]
    return owners.get(pointer, "another product")


def _shown(value: Any) -> str:
    """A value for a message, unless it might be a credential."""
    if find_plaintext_secrets({"value": value}):
        return "(a value not shown: it may hold a credential)"
    text = json.dumps(value)
    return text if len(text) <= 80 else text[:77] + "..."


def jobs_layer(artifacts: CompiledArtifacts, profiles_secret: str) -> ArtifactsLayer:
    transforms = artifacts.transforms
    models = [
        {"name": model.name, "dependsOn": list(model.depends_on), "tags": list(model.tags)}
        for model in (transforms.models_in_dependency_order() if transforms else [])
    ]
    values: dict[str, Any] = {"models": models}
    secrets: list[RequiredSecret] = []
    profiles = artifacts.dbt_profiles
    if profiles:
        values["dbt"] = {"target": _dbt_target(profiles)}
        if profiles_hold_credentials(profiles):
            # The profiles hold credentials: mount them from a Secret, never from values.
            values["dbt"]["profiles"] = {"source": "secret", "existingSecret": profiles_secret}
            secrets.append(
                RequiredSecret(
                    profiles_secret,
                    ("profiles.yml",),
                    "dbt profiles.yml (the artifacts' dbt_profiles hold credentials)",
                )
            )
        else:
            values["dbt"]["profiles"] = {
                "source": "inline",
                "inline": yaml.safe_dump(profiles, sort_keys=True),
            }
        references = secret_env_references(profiles)
        if references:
            # The profiles name their credentials by env_var(): each is read from the product's
            # profiles Secret, under a key of the variable's name.
            values["dbt"]["secretEnv"] = {
                name: {"name": profiles_secret, "key": name} for name in references
            }
            secrets.append(
                RequiredSecret(
                    profiles_secret,
                    references,
                    "the values of the env_var() references in the artifacts' dbt_profiles",
                )
            )
    return ArtifactsLayer(values, tuple(secrets))


def secret_env_references(profiles: Any) -> tuple[str, ...]:
    """The ``DBT_ENV_SECRET_*`` variables dbt profiles read with ``env_var()``, sorted: dbt's
    own convention for a credential kept out of a profile (and out of dbt's logs)."""
    if isinstance(profiles, str):
        return tuple(sorted(set(SECRET_ENV_REFERENCE.findall(profiles))))
    if isinstance(profiles, Mapping):
        profiles = list(profiles.values())
    if isinstance(profiles, list):
        found = {name for item in profiles for name in secret_env_references(item)}
        return tuple(sorted(found))
    return ()


def profiles_hold_credentials(profiles: dict[str, Any]) -> bool:
    """Whether dbt profiles hold any credential, anywhere (a ``password`` key, a DSN with
    ``password=``, a ``pgpass`` line, an ``Authorization`` header in ``settings``, a token in a
    URL...): then none of them is inlined, the whole profiles.yml is the operator's Secret.
    Also when the inlined YAML itself would be flagged, so an inline ConfigMap never fails."""
    if find_plaintext_secrets(profiles):
        return True
    inline = {"profiles": yaml.safe_dump(profiles, sort_keys=True)}
    return bool(find_plaintext_secrets(inline))


def _dbt_target(profiles: dict[str, Any]) -> str:
    """The target of the first profile (dbt's default when the project names none)."""
    first: Any = next(iter(profiles.values()), {})
    return str(first.get("target", "dev")) if isinstance(first, dict) else "dev"
