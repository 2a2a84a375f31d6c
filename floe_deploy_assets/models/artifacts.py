"""The CompiledArtifacts document: the output of upstream ``floe compile``, our input.

Field names are snake_case, exactly as upstream writes them (no camelCase aliases here).

Extra-key policy. The parts the values generator reads (``plugins``, ``transforms`` and its
models, ``observability.telemetry``) forbid unknown keys, so a typo is an error rather than a
silently missing setting. The other parts allow unknown keys, because later minor versions of
the contract (0.7 to 0.10 and beyond) add fields there that we only pass through; an unknown key
that is a near-miss of a known one (``transfroms``) is still refused. ``governance``,
``enforcement_result``, ``data_contracts`` and ``quality_config`` are kept as plain JSON.

Versions: major 0 only. Minor versions newer than 0.10 are accepted (forward-compatible:
upstream only adds optional fields within a major), see ``newer_than_known``.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import re
from collections import Counter
from datetime import datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    FieldSerializationInfo,
    SecretStr,
    ValidationError,
    field_serializer,
    field_validator,
    model_validator,
)

from floe_deploy_assets.models.base import format_validation_error
from floe_deploy_assets.models.inputs import (
    ARTIFACTS_MAX_BYTES,
    MAX_NESTING,
    json_nesting_exceeds,
    read_text,
    refuse_duplicate_keys,
)
from floe_deploy_assets.models.rules import LABEL_NAME_PATTERN, echo, summarize

SUPPORTED_MAJOR = 0
NEWEST_KNOWN_MINOR = 10
# Portable patterns (models/rules.py), matched whole: "0.5.0\n" and Arabic-Indic digits are no
# versions, and a number has at most 9 digits, so it is always a small int.
SEMVER = re.compile(r"^([0-9]{1,9})\.([0-9]{1,9})\.([0-9]{1,9})$", re.ASCII)
DBT_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$", re.ASCII)
# The longest cycle a message spells out.
CYCLE_SHOWN = 6
# JSON-Schema annotations that golden fixtures carry; they are not part of the contract.
IGNORED_TOP_LEVEL_KEYS = frozenset({"$comment", "$schema"})
# How upstream dumps a SecretStr: the credential itself lives elsewhere (a Kubernetes Secret).
MASKED_SECRET = "**********"
_REVEAL = "reveal_secrets"
JSON_TYPE_NAMES: dict[type, str] = {
    list: "an array",
    str: "a string",
    int: "a number",
    float: "a number",
    bool: "a boolean",
}


class ArtifactsError(ValueError):
    """The CompiledArtifacts document cannot be used; the message names the file and field."""


class _Strict(BaseModel):
    # hide_input_in_errors: a ValidationError's str() would otherwise echo credentials.
    # defer_build: built on first use, as FloeModel's.
    model_config = ConfigDict(
        frozen=True, extra="forbid", hide_input_in_errors=True, defer_build=True
    )


class _PassThrough(BaseModel):
    model_config = ConfigDict(
        frozen=True, extra="allow", hide_input_in_errors=True, defer_build=True
    )

    @model_validator(mode="after")
    def _no_near_misses(self) -> _PassThrough:
        """Unknown keys are tolerated as newer-contract fields, unless they look like typos."""
        for key in self.model_extra or {}:
            close = difflib.get_close_matches(key, list(type(self).model_fields), n=1, cutoff=0.85)
            if close:
                raise ValueError(f"unknown field {key!r}; did you mean {close[0]!r}?")
        return self


def check_version(version: str) -> str:
    """Refuse anything but a semver string of a major version this tool reads."""
    match = SEMVER.fullmatch(version)
    if not match:
        raise ValueError(f"{echo(version)} is not a semver X.Y.Z version")
    if int(match.group(1)) != SUPPORTED_MAJOR:
        raise ValueError(
            f"unsupported CompiledArtifacts version {version} (this tool reads "
            f"{SUPPORTED_MAJOR}.x, up to {SUPPORTED_MAJOR}.{NEWEST_KNOWN_MINOR}); upgrade "
            "floe-deploy-assets or recompile with a compatible floe"
        )
    return version


# --- metadata, identity ----------------------------------------------------------------------
class Metadata(_PassThrough):
    compiled_at: datetime
    floe_version: str
    source_hash: str
    product_name: str = Field(min_length=1, max_length=128, pattern=r"^[a-zA-Z][a-zA-Z0-9_-]*$")
    product_version: str


class Identity(_PassThrough):
    product_id: str = Field(min_length=1)
    domain: str = Field(min_length=1)
    repository: str
    namespace_registered: bool = False
    registration_timestamp: datetime | None = None


class ManifestRef(_PassThrough):
    name: str
    version: str
    scope: Literal["enterprise", "domain"]
    ref: str


# --- observability ---------------------------------------------------------------------------
class Sampling(_Strict):
    dev: float = Field(default=1.0, ge=0.0, le=1.0)
    staging: float = Field(default=0.5, ge=0.0, le=1.0)
    prod: float = Field(default=0.1, ge=0.0, le=1.0)


Environment = Literal["dev", "staging", "prod"]


class ResourceAttributes(_Strict):
    # Only the service identity is required: the v0.2.0 schema's own example omits the rest.
    service_name: str = Field(min_length=1, max_length=128)
    service_version: str
    deployment_environment: Environment | None = None
    floe_namespace: str | None = None
    floe_product_name: str | None = None
    floe_product_version: str | None = None
    floe_mode: Environment | None = None


class Authentication(_Strict):
    """OTLP exporter credentials. Upstream dumps them as ``**********`` (see MASKED_SECRET);
    a literal value is accepted too. SecretStr keeps both out of repr, logs and errors."""

    auth_type: Literal["api_key", "bearer"]
    api_key: SecretStr | None = None
    bearer_token: SecretStr | None = None
    header_name: str = "Authorization"

    @model_validator(mode="after")
    def _credential_for_auth_type(self) -> Authentication:
        if self.credential is None:
            field = "api_key" if self.auth_type == "api_key" else "bearer_token"
            raise ValueError(f"auth_type {self.auth_type!r} needs {field}")
        return self

    @field_serializer("api_key", "bearer_token", when_used="json")
    def _dump_secret(self, value: SecretStr | None, info: FieldSerializationInfo) -> str | None:
        """JSON dumps stay masked, except for ``digest``, which must change with the secret."""
        if value is None:
            return None
        revealed = bool(info.context and info.context.get(_REVEAL))
        return value.get_secret_value() if revealed else str(value)

    @property
    def credential(self) -> SecretStr | None:
        return self.api_key if self.auth_type == "api_key" else self.bearer_token

    @property
    def credential_masked(self) -> bool:
        """True when the document holds no usable credential, only upstream's mask."""
        return self.credential is not None and self.credential.get_secret_value() == MASKED_SECRET


class BatchProcessor(_Strict):
    max_queue_size: int = Field(default=2048, ge=1)
    max_export_batch_size: int = Field(default=512, ge=1)
    schedule_delay_millis: int = Field(default=5000, ge=1)
    export_timeout_millis: int = Field(default=30000, ge=1)


class Logging(_Strict):
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = "INFO"
    json_output: bool = False


class Telemetry(_Strict):
    enabled: bool = True
    # None: not said; the values generator points at the platform's own collector.
    otlp_endpoint: str | None = None
    otlp_protocol: Literal["grpc", "http"] = "grpc"
    sampling: Sampling = Field(default_factory=Sampling)
    resource_attributes: ResourceAttributes
    authentication: Authentication | None = None
    batch_processor: BatchProcessor = Field(default_factory=BatchProcessor)
    logging: Logging = Field(default_factory=Logging)
    # None rather than upstream's default "console", so that an unset backend cannot
    # conflict with plugins.telemetry_backend.
    backend: str | None = Field(default=None, min_length=1)


class Observability(_PassThrough):
    telemetry: Telemetry
    lineage: bool = True
    lineage_namespace: str = Field(min_length=1)
    lineage_endpoint: str | None = None  # 0.8+
    lineage_transport: Literal["http", "console", "noop"] | None = None  # 0.8+


# --- plugins ---------------------------------------------------------------------------------
class PluginRef(_Strict):
    type: str = Field(min_length=1)
    version: str = Field(pattern=SEMVER.pattern)
    config: dict[str, Any] | None = None


class Plugins(_Strict):
    """The resolved plugins. The optional slots are the union of upstream's model and the
    v0.2.0 JSON schema. ``telemetry_backend`` is the data model spec's name for the telemetry
    backend (upstream has it at observability.telemetry.backend); it is a PluginRef like its
    sibling ``lineage_backend``, and its ``type`` names the backend."""

    compute: PluginRef
    orchestrator: PluginRef
    catalog: PluginRef | None = None
    storage: PluginRef | None = None
    ingestion: PluginRef | None = None
    semantic: PluginRef | None = None
    lineage_backend: PluginRef | None = None
    telemetry_backend: PluginRef | None = None
    quality: PluginRef | None = None
    lineage: PluginRef | None = None
    secrets: PluginRef | None = None
    identity: PluginRef | None = None
    telemetry: PluginRef | None = None
    dbt: PluginRef | None = None


# --- transforms ------------------------------------------------------------------------------
MODEL_TAG = re.compile(LABEL_NAME_PATTERN, re.ASCII)


class TransformModel(_Strict):
    name: str
    compute: str = Field(min_length=1)
    # A plain [] (pydantic copies it per instance): default_factory=list costs inspecting
    # list's signature, which ``floe-deploy values`` would pay at start-up.
    tags: list[str] = []
    depends_on: list[str] = []
    quality_checks: list[dict[str, Any]] = []
    quality_tier: Literal["bronze", "silver", "gold"] | None = None

    @field_validator("tags", "depends_on", "quality_checks", mode="before")
    @classmethod
    def _null_is_empty(cls, value: Any) -> Any:
        # Upstream dumps an unset list as null.
        return [] if value is None else value

    @field_validator("tags")
    @classmethod
    def _short_names(cls, tags: list[str]) -> list[str]:
        # Tags become Dagster tag keys of the model's asset and may reach labels: short names
        # only. Never echoed: a tag that is not a name may be a planted credential.
        for index, tag in enumerate(tags):
            if not MODEL_TAG.fullmatch(tag):
                raise ValueError(
                    f"tag {index} is not a short name (letters, digits, '-', '_' and '.', "
                    "starting and ending with a letter or digit, at most 63 characters)"
                )
        return tags

    @field_validator("name")
    @classmethod
    def _dbt_identifier(cls, name: str) -> str:
        if not DBT_IDENTIFIER.fullmatch(name):
            raise ValueError(
                f"model name {echo(name)} is not a dbt identifier (letters, digits and '_', "
                "not starting with a digit)"
            )
        return name


class Transforms(_Strict):
    models: list[TransformModel] = Field(min_length=1)
    default_compute: str = Field(min_length=1)

    @model_validator(mode="after")
    def _dependency_graph(self) -> Transforms:
        counts = Counter(model.name for model in self.models)
        doubled = sorted(name for name, count in counts.items() if count > 1)
        if doubled:
            raise ValueError(f"model name {summarize(doubled)} is used by more than one model")
        for model in self.models:
            for dependency in model.depends_on:
                if dependency not in counts:
                    raise ValueError(
                        f"model {model.name!r} depends on {echo(dependency)}, which is not a "
                        "model in this document"
                    )
        self.models_in_dependency_order()  # raises on a cycle
        return self

    def models_in_dependency_order(self) -> list[TransformModel]:
        """Every model after the models it depends on; otherwise in document order: in rounds,
        each round the models whose dependencies all ran in earlier rounds, in document order.
        Linear in models and dependencies (a hostile document can have many of both)."""
        position = {model.name: index for index, model in enumerate(self.models)}
        waiting = {model.name: len(set(model.depends_on)) for model in self.models}
        dependents: dict[str, list[str]] = {}
        for model in self.models:
            for dependency in set(model.depends_on):
                dependents.setdefault(dependency, []).append(model.name)
        order: list[TransformModel] = []
        ready = [model.name for model in self.models if waiting[model.name] == 0]
        while ready:
            following = []
            for name in ready:
                order.append(self.models[position[name]])
                for dependent in dependents.get(name, []):
                    waiting[dependent] -= 1
                    if waiting[dependent] == 0:
                        following.append(dependent)
            ready = sorted(following, key=position.__getitem__)
        if len(order) < len(self.models):
            stuck = {m.name: m for m in self.models if waiting[m.name] > 0}
            raise ValueError(f"dependency cycle: {_a_cycle(stuck)} ('->': depends on)")
        return order


def _a_cycle(stuck: dict[str, TransformModel]) -> str:
    """Each stuck model waits on another stuck model, so walking those waits must loop. A long
    cycle is cut to its first models and its length."""
    seen: dict[str, int] = {}
    path: list[str] = []
    name = next(iter(stuck))
    while name not in seen:
        seen[name] = len(path)
        path.append(name)
        name = next(d for d in stuck[name].depends_on if d in stuck)
    cycle = path[seen[name] :]
    if len(cycle) > CYCLE_SHOWN:
        return (
            f"{' -> '.join(cycle[:CYCLE_SHOWN])} -> ... -> {name} "
            f"({len(cycle)} models in the cycle, {len(cycle) - CYCLE_SHOWN} not shown)"
        )
    return " -> ".join([*cycle, name])


# --- the document ----------------------------------------------------------------------------
class CompiledArtifacts(_PassThrough):
    version: str
    metadata: Metadata
    identity: Identity
    mode: Literal["simple", "centralized", "mesh"] = "simple"
    inheritance_chain: list[ManifestRef] = []
    observability: Observability
    # Absent before 0.2 (the v0.1 golden fixture has none of them).
    plugins: Plugins | None = None
    transforms: Transforms | None = None
    dbt_profiles: dict[str, Any] | None = None
    # Passed through, never interpreted.
    governance: dict[str, Any] | None = None
    enforcement_result: dict[str, Any] | None = None
    data_contracts: list[dict[str, Any]] = []
    quality_config: dict[str, Any] | None = None

    @model_validator(mode="before")
    @classmethod
    def _drop_annotations(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if k not in IGNORED_TOP_LEVEL_KEYS}
        return data

    @field_validator("version")
    @classmethod
    def _supported_version(cls, version: str) -> str:
        return check_version(version)

    @model_validator(mode="after")
    def _one_telemetry_backend(self) -> CompiledArtifacts:
        upstream = self.observability.telemetry.backend
        spec = self.plugins.telemetry_backend if self.plugins else None
        if upstream and spec and upstream != spec.type:
            raise ValueError(
                f"observability.telemetry.backend {upstream!r} and plugins.telemetry_backend "
                f"{spec.type!r} disagree; set the telemetry backend in one place"
            )
        return self

    @property
    def telemetry_backend(self) -> str | None:
        """The telemetry backend from either place; if both are set they are equal."""
        spec = self.plugins.telemetry_backend if self.plugins else None
        return spec.type if spec else self.observability.telemetry.backend

    @property
    def newer_than_known(self) -> bool:
        """A 0.x version past 0.10: read as usual, but worth a warning in the run log."""
        return int(self.version.split(".")[1]) > NEWEST_KNOWN_MINOR

    @property
    def digest(self) -> str:
        """sha256 of the canonical JSON of the validated document: the Dagster data version.

        It is independent of key order, whitespace, ``$comment`` and spellings pydantic
        normalises (``1`` vs ``1.0``, null vs absent). Secrets are hashed as given, so that
        rotating a literal credential changes the digest.
        """
        document = self.model_dump(mode="json", context={_REVEAL: True})
        canonical = json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False)
        return hashlib.sha256(canonical.encode()).hexdigest()


# --- loading ---------------------------------------------------------------------------------
def _reject_constant(name: str) -> Any:
    # NaN and Infinity are not JSON; Python's json module accepts them unless told not to.
    raise ValueError(f"{name} is not a JSON value")


def parse_compiled_artifacts(text: str, source: str = "<string>") -> CompiledArtifacts:
    """Parse and validate a CompiledArtifacts document; every problem is an ArtifactsError."""
    if not text.strip():
        raise ArtifactsError(f"{source}: the file is empty, not a CompiledArtifacts document")
    # The parser recurses once per level, and so would validation and the digest after it.
    if json_nesting_exceeds(text):
        raise ArtifactsError(
            f"{source}: objects and arrays nested more than {MAX_NESTING} levels deep; a "
            "CompiledArtifacts document needs far fewer"
        )
    try:
        document = json.loads(
            text, parse_constant=_reject_constant, object_pairs_hook=refuse_duplicate_keys
        )
    except json.JSONDecodeError as exc:
        # Cut-off text fails at its end, inside a literal (``tru``), or, for a string, at the
        # string's opening quote.
        rest = text[exc.pos :].rstrip()
        at_end = any(w.startswith(rest) for w in ("true", "false", "null"))
        at_end = at_end or exc.msg.startswith("Unterminated string")
        truncated = " (the document ends too early: truncated?)" if at_end else ""
        raise ArtifactsError(
            f"{source}: not valid JSON at line {exc.lineno}, column {exc.colno}: "
            f"{exc.msg}{truncated}"
        ) from None
    except ValueError as exc:  # NaN, a key twice in one object, a 5000-digit number
        raise ArtifactsError(f"{source}: not valid JSON: {exc}") from None
    except RecursionError:  # not reached after the nesting check; kept as a guard
        raise ArtifactsError(f"{source}: objects and arrays nested too deeply") from None
    if not isinstance(document, dict):
        raise ArtifactsError(
            f"{source}: the top level must be a JSON object (the CompiledArtifacts document), "
            f"not {JSON_TYPE_NAMES.get(type(document), 'null')}"
        )
    # An unsupported major version is the one message worth giving: the rest of a document in
    # another major's shape would only add noise.
    version = document.get("version")
    if isinstance(version, str):
        try:
            check_version(version)
        except ValueError as exc:
            raise ArtifactsError(f"{source}: version: {exc}") from None
    try:
        return CompiledArtifacts.model_validate(document)
    except ValidationError as exc:
        raise ArtifactsError(format_validation_error(source, exc)) from None


def load_compiled_artifacts(path: str | Path) -> CompiledArtifacts:
    path = Path(path)
    text = read_text(
        path,
        what="the CompiledArtifacts document",
        limit=ARTIFACTS_MAX_BYTES,
        error=ArtifactsError,
    )
    return parse_compiled_artifacts(text, str(path))
