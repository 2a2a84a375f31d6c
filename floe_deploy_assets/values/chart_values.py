"""The values contract of the floe-platform and floe-jobs charts, as pydantic models.

As in the Dagster Helm chart, the values are modelled in Python and each chart's
``values.schema.json`` is generated from its model (``python -m floe_deploy_assets.values.schema
--write``). The models' defaults are the charts' ``values.yaml``; every field's description
feeds the charts' README values tables.

Credentials never appear in values: a ``SecretKeyRef`` (or an ``existingSecret`` name) points
at a Secret the operator creates.
"""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    WithJsonSchema,
    field_validator,
    model_validator,
)
from pydantic.alias_generators import to_camel

from floe_deploy_assets.models.config import ENVIRONMENT_PATTERN
from floe_deploy_assets.models.resources import (
    CPU_FORMAT,
    CPU_PATTERN,
    MEMORY_FORMAT,
    MEMORY_PATTERN,
    ResourcePreset,
    ResourceRequirements,
    cpu_millicores,
    cpu_problem,
    memory_bytes,
    memory_problem,
)
from floe_deploy_assets.models.rules import (
    CRON_DESCRIPTORS,
    CRON_FORMAT,
    LABEL_KEY_LENGTH_PATTERN,
    LABEL_KEY_PATTERN,
    LABEL_NAME_MAX,
    LABEL_VALUE_PATTERN,
    LIMITS_KEYWORD,
    cron_problem,
    label_key_problem,
    label_value_problem,
)

# Every pattern is portable (models/rules.py): explicit ASCII classes, ^ and $ only, so Python,
# pydantic (Rust) and Helm (Go) give the same answer; our values check reads $ as Go does.
# Formats and the LIMITS_KEYWORD (models/rules.py) carry what a pattern cannot say (bounds,
# cron fields, limits >= requests): our values check enforces them (values/validation.py);
# Helm, which asserts no format and ignores unknown keywords, reads them as annotations.
DNS1123_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
SECRET_KEY_PATTERN = r"^[-._a-zA-Z0-9]+$"
IMAGE_REPOSITORY_PATTERN = r"^[a-z0-9]([a-z0-9._/:-]*[a-z0-9])?$"
# A Docker tag ([A-Za-z0-9_][A-Za-z0-9_.-]*) other than "latest", which is never reproducible.
# Helm validates patterns with Go's RE2, which has no lookahead, so "not latest" is spelled out:
# a tag differs from "latest" at its first character, or at a later one, or is shorter or longer.
_TAG_REST = "[A-Za-z0-9_.-]*"
IMAGE_TAG_PATTERN = (
    f"^(?:[A-Za-km-z0-9_]{_TAG_REST}"
    f"|l(?:[A-Zb-z0-9_.-]{_TAG_REST})?"
    f"|la(?:[A-Za-su-z0-9_.-]{_TAG_REST})?"
    f"|lat(?:[A-Za-df-z0-9_.-]{_TAG_REST})?"
    f"|late(?:[A-Za-rt-z0-9_.-]{_TAG_REST})?"
    f"|lates(?:[A-Za-su-z0-9_.-]{_TAG_REST})?"
    "|latest[A-Za-z0-9_.-]+)$"
)
Namespace = Annotated[str, StringConstraints(max_length=63, pattern=DNS1123_LABEL)]
DbtIdentifier = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
# A container environment variable's name, as a shell and dbt's env_var() read it.
EnvVarName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]
# The shape of a cron expression for Helm; the fields' ranges are the "cron" format's.
CRON_PATTERN = f"^({'|'.join(CRON_DESCRIPTORS)}|[-*/,?0-9A-Za-z]+( +[-*/,?0-9A-Za-z]+){{4}})$"


def _checked(problem: str | None, what: str) -> None:
    if problem:
        raise ValueError(f"{what} {problem}")


def _label_map(values: dict[str, str], *, check_values: bool) -> dict[str, str]:
    for key, value in values.items():
        _checked(label_key_problem(key), f"key {key[:LABEL_NAME_MAX]!r}")
        if check_values:
            _checked(label_value_problem(value), f"value of {key!r}")
    return values


def _label_schema(values: dict[str, Any]) -> WithJsonSchema:
    """Keys are Kubernetes qualified names: the shape, and (a pattern cannot count the prefix
    alone) the lengths, as two patterns both must match."""
    key_rules = [{"pattern": LABEL_KEY_PATTERN}, {"pattern": LABEL_KEY_LENGTH_PATTERN}]
    return WithJsonSchema(
        {
            "type": "object",
            "propertyNames": {"allOf": key_rules},
            "additionalProperties": {"type": "string", **values},
        }
    )


# Kubernetes label maps (keys and values) and annotation maps (keys; any string value).
Labels = Annotated[
    dict[str, str],
    AfterValidator(lambda labels: _label_map(labels, check_values=True)),
    _label_schema({"maxLength": LABEL_NAME_MAX, "pattern": LABEL_VALUE_PATTERN}),
]
Annotations = Annotated[
    dict[str, str],
    AfterValidator(lambda annotations: _label_map(annotations, check_values=False)),
    _label_schema({}),
]

DAGSTER_IMAGE = "docker.io/dagster/dagster-k8s"
DAGSTER_VERSION = "1.13.27"  # the Dagster release this project is built and tested with
# The Secret names the values generator asks the operator to create (values/mapping.py).
POSTGRES_SECRET = "floe-postgresql"
DBT_PROFILES_SECRET = "floe-dbt-profiles"


def require_non_null_keys(schema: dict[str, Any], model: type) -> None:
    """Helm validates values.yaml merged with the overrides, so every key with a non-null default
    is present unless an override deletes it with null. Requiring those keys turns such a
    deletion into a schema error instead of a nil pointer in a template; nullable keys stay
    optional, as Helm drops null keys before validating."""

    def nullable(prop: dict[str, Any]) -> bool:
        return prop.get("type") == "null" or any(
            option.get("type") == "null" for option in prop.get("anyOf", [])
        )

    schema["required"] = [k for k, v in schema.get("properties", {}).items() if not nullable(v)]


class ValuesModel(BaseModel):
    """Every floe-owned values object: camelCase keys, unknown keys rejected."""

    model_config = ConfigDict(
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        json_schema_extra=require_non_null_keys,
    )


class ListItemModel(ValuesModel):
    """An object inside a list. Helm replaces lists whole, so list items get no defaults from
    values.yaml: only the fields without a model default are required."""

    model_config = ConfigDict(json_schema_extra=None)


# --- shared pieces ---------------------------------------------------------------------------
class ResourceSpec(ValuesModel):
    cpu: str = Field(
        pattern=CPU_PATTERN,
        json_schema_extra={"format": CPU_FORMAT},
        description="CPU, a Kubernetes quantity: cores (`2`, `0.5`) or millicores (`500m`); "
        "more than 0, at most 1000 cores, whole millicores",
    )
    memory: str = Field(
        pattern=MEMORY_PATTERN,
        json_schema_extra={"format": MEMORY_FORMAT},
        description="Memory, a Kubernetes quantity (`512Mi`, `2Gi`, `1G`); 1Mi to 64Ti",
    )

    @field_validator("cpu")
    @classmethod
    def _cpu_bounds(cls, cpu: str) -> str:
        _checked(cpu_problem(cpu), "cpu")
        return cpu

    @field_validator("memory")
    @classmethod
    def _memory_bounds(cls, memory: str) -> str:
        _checked(memory_problem(memory), "memory")
        return memory


def limits_cover_requests(schema: dict[str, Any], model: type) -> None:
    """Kubernetes refuses a limit below its request; the values check enforces the keyword."""
    require_non_null_keys(schema, model)
    schema[LIMITS_KEYWORD] = True


class Resources(ValuesModel):
    # Requests and limits; a limit is never below its request.
    model_config = ConfigDict(json_schema_extra=limits_cover_requests)

    requests: ResourceSpec = Field(description="What the scheduler reserves for the container")
    limits: ResourceSpec = Field(description="The most the container may use")

    @model_validator(mode="after")
    def _limits_cover_requests(self) -> Resources:
        if cpu_millicores(self.limits.cpu) < cpu_millicores(self.requests.cpu):
            raise ValueError("limits.cpu is below requests.cpu")
        if memory_bytes(self.limits.memory) < memory_bytes(self.requests.memory):
            raise ValueError("limits.memory is below requests.memory")
        return self


def small_preset(component: str) -> Resources:
    """Resource defaults are the small tier of the presets, the size of the smallest environment;
    the values generator replaces them with the environment's own preset."""
    requirements = getattr(ResourcePreset.named("small"), component)
    return Resources.model_validate(requirements.to_document())


class Image(ValuesModel):
    repository: str = Field(
        pattern=IMAGE_REPOSITORY_PATTERN, description="Image repository, with its registry"
    )
    tag: str = Field(
        max_length=128, pattern=IMAGE_TAG_PATTERN, description="Pinned image tag (not `latest`)"
    )
    pull_policy: Literal["IfNotPresent", "Always", "Never"] = Field(
        default="IfNotPresent", description="Kubernetes imagePullPolicy"
    )


def image_field(repository: str, tag: str, description: str) -> Any:
    """An image field and its default. Object defaults are default factories throughout, so the
    schema carries scalar defaults only: values.yaml is where the full defaults are read."""
    return Field(
        default_factory=partial(Image, repository=repository, tag=tag), description=description
    )


class SecretKeyRef(ValuesModel):
    """The only way a credential enters values: a key of a Secret in the release namespace."""

    name: str = Field(max_length=253, pattern=DNS1123_SUBDOMAIN, description="Secret name")
    key: str = Field(max_length=253, pattern=SECRET_KEY_PATTERN, description="Key in the Secret")


def secret_name(default: str, description: str) -> Any:
    """An ``existingSecret`` field: the name of a Secret the operator creates."""
    return Field(
        default=default, max_length=253, pattern=DNS1123_SUBDOMAIN, description=description
    )


def toleration_rules(schema: dict[str, Any], model: type) -> None:
    """Kubernetes' own rules for a toleration (core/v1 validation), as schema conditions so the
    values check and Helm both refuse what the API server would."""
    without_key = "a toleration without a key must have operator Exists"
    with_seconds = "tolerationSeconds needs effect NoExecute"
    schema["allOf"] = [
        {
            "if": {"properties": {"operator": {"const": "Exists"}}, "required": ["operator"]},
            "then": {
                "properties": {
                    "value": {"const": "", "description": "operator Exists takes no value"}
                }
            },
        },
        {
            "if": {"not": {"required": ["key"]}},
            "then": {
                "properties": {"operator": {"const": "Exists", "description": without_key}},
                "required": ["operator"],
                "description": without_key,
            },
        },
        {
            "if": {"required": ["tolerationSeconds"]},
            "then": {
                "properties": {"effect": {"const": "NoExecute", "description": with_seconds}},
                "required": ["effect"],
                "description": with_seconds,
            },
        },
    ]


class Toleration(ListItemModel):
    """A pod's toleration of a node taint, as in a pod spec."""

    model_config = ConfigDict(json_schema_extra=toleration_rules)

    key: str | None = Field(
        default=None,
        max_length=317,
        pattern=LABEL_KEY_PATTERN,
        description="Taint key (a label key); none, with `Exists`: every taint",
    )
    operator: Literal["Exists", "Equal"] = Field(
        default="Equal", description="`Equal`: the taint's value must be `value`; `Exists`: any"
    )
    value: str | None = Field(
        default=None,
        max_length=63,
        pattern=LABEL_VALUE_PATTERN,
        description="Taint value (none with `Exists`)",
    )
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(
        default=None, description="Taint effect tolerated; none: every effect"
    )
    toleration_seconds: int | None = Field(
        default=None, ge=0, description="With `NoExecute`: how long the pod stays once tainted"
    )


class Affinity(ValuesModel):
    """Kubernetes affinity, as in a pod spec (each part is passed to the pod as written)."""

    node_affinity: dict[str, Any] | None = Field(
        default=None, description="Nodes the pods prefer or require (nodeAffinity)"
    )
    pod_affinity: dict[str, Any] | None = Field(
        default=None, description="Pods these pods are placed near (podAffinity)"
    )
    pod_anti_affinity: dict[str, Any] | None = Field(
        default=None, description="Pods these pods are kept away from (podAntiAffinity)"
    )


class Scheduled(ValuesModel):
    """Where a component's pods may run: the pod spec's nodeSelector, tolerations and affinity,
    passed as written (the local cluster's real node, for one, takes only pods that tolerate
    its taint)."""

    node_selector: Labels = Field(
        default_factory=dict, description="Node labels the pods require (nodeSelector)"
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, description="Node taints the pods tolerate"
    )
    affinity: Affinity = Field(default_factory=Affinity, description="Pod affinity rules")


class GlobalValues(ValuesModel):
    """Helm's `global`: shared with subcharts, and parent charts may add their own keys."""

    model_config = ConfigDict(extra="allow", json_schema_extra=None)

    environment: str = Field(
        default="dev", pattern=ENVIRONMENT_PATTERN, description="Logical environment name"
    )
    namespace: str = Field(
        default="floe-dev",
        max_length=63,
        pattern=DNS1123_LABEL,
        description="Namespace of the environment's workloads",
    )
    labels: Labels = Field(
        default_factory=dict,
        description="Labels added to every resource (Kubernetes label keys and values)",
    )
    isolation: Literal["namespace", "label"] = Field(
        default="namespace",
        description="How environments are separated: a namespace each, or labels in a shared one",
    )
    production: bool = Field(
        default=False,
        description="A production environment: the chart refuses development-only components",
    )
    otlp_endpoint: str | None = Field(
        default=None,
        pattern=r"^https?://",
        description="OTLP endpoint the workloads send telemetry to; null: telemetry off",
    )


def global_field() -> Any:
    return Field(
        default_factory=GlobalValues,
        alias="global",
        description="Helm's global values: environment, namespace, labels, isolation",
    )


class FloeIdentity(ValuesModel):
    """Which product and artifacts a release deploys; set by the values generator."""

    environment: str = Field(
        default="dev", pattern=ENVIRONMENT_PATTERN, description="Logical environment name"
    )
    product_name: str = Field(default="", description="Data product name")
    product_version: str = Field(default="", description="Data product version")
    artifacts_version: str = Field(default="", description="CompiledArtifacts schema version")
    artifacts_digest: str = Field(
        default="", description="sha256 of the CompiledArtifacts the values were generated from"
    )


def floe_field() -> Any:
    return Field(default_factory=FloeIdentity, description="The product and artifacts deployed")


# --- floe-platform ---------------------------------------------------------------------------
def fixed_resources(cpu: str, memory: str, description: str) -> Any:
    """Resources of a component the presets do not size (limits at twice the requests)."""
    requirements = ResourceRequirements.from_requests(cpu, memory).to_document()
    return Field(
        default_factory=partial(Resources.model_validate, requirements), description=description
    )


def preset_field(component: str, description: str) -> Any:
    """Resources from the environment's preset (the small tier until the generator sets them).
    They live inside each component's values because a subchart sees only its own key."""
    return Field(default_factory=partial(small_preset, component), description=description)


class AutoscalingSettings(ValuesModel):
    enabled: bool = Field(default=False, description="Autoscale the webserver (replaces replicas)")
    min_replicas: int = Field(default=1, ge=1, description="Fewest replicas")
    max_replicas: int = Field(default=3, ge=1, description="Most replicas")
    target_cpu_utilization_percentage: int = Field(
        default=80, ge=1, le=100, description="Average CPU use (% of requests) aimed at"
    )

    @model_validator(mode="after")
    def _range(self) -> AutoscalingSettings:
        if self.max_replicas < self.min_replicas:
            raise ValueError("autoscaling.maxReplicas is below autoscaling.minReplicas")
        return self


class DagsterWebserver(Scheduled):
    replicas: int = Field(default=1, ge=1, description="Webserver replicas")
    image: Image = image_field(DAGSTER_IMAGE, DAGSTER_VERSION, "Dagster webserver image")
    resources: Resources = preset_field("webserver", "Webserver resources (preset: webserver)")
    autoscaling: AutoscalingSettings = Field(
        default_factory=AutoscalingSettings, description="Scale the webserver on CPU (HPA)"
    )


class DagsterDaemon(Scheduled):
    # No replicas: the Dagster daemon must run as a single instance.
    image: Image = image_field(DAGSTER_IMAGE, DAGSTER_VERSION, "Dagster daemon image")
    resources: Resources = preset_field("daemon", "Daemon resources (preset: daemon)")


class DagsterUserCode(Scheduled):
    replicas: int = Field(default=1, ge=1, description="Code server replicas")
    image: Image = image_field(
        "docker.io/dagster/user-code-example",
        DAGSTER_VERSION,
        "The data product's code location image",
    )
    resources: Resources = preset_field("user_code", "Code server resources (preset: userCode)")
    module: str = Field(
        default="definitions",
        pattern=r"^[A-Za-z_][A-Za-z0-9_.]*$",
        description="Python module holding the code location's Definitions",
    )
    port: int = Field(default=3030, ge=1024, le=65535, description="gRPC port of the code server")


class RunLauncher(Scheduled):
    type: Literal["K8sRunLauncher"] = Field(
        default="K8sRunLauncher", description="Each run is a Kubernetes Job (the only launcher)"
    )
    job_namespace: str | None = Field(
        default=None,
        max_length=63,
        pattern=DNS1123_LABEL,
        description="Namespace of the run Jobs; null: the release namespace",
    )
    resources: Resources = preset_field("jobs", "Resources of each run's pod (preset: jobs)")


class DagsterStorage(ValuesModel):
    database: str = Field(
        default="dagster",
        max_length=63,
        pattern=r"^[a-z_][a-z0-9_]*$",
        description="PostgreSQL database of Dagster's run, event and schedule storage",
    )
    credentials: SecretKeyRef = Field(
        default_factory=partial(SecretKeyRef, name=POSTGRES_SECRET, key="password"),
        description="The PostgreSQL password (the same Secret as `postgresql.auth`)",
    )


class FloeDeploy(ValuesModel):
    """The graph hosting itself: the code server serves floe_deploy_assets with in-cluster
    Kubernetes access, and its runs deploy, through a ServiceAccount of its own whose Roles
    allow only what deploying, status, running models and the sensors need, in ``namespaces``."""

    enabled: bool = Field(
        default=False, description="The code location deploys from inside the cluster"
    )
    config_map: str = Field(
        default="floe-deploy-config",
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
        description="The operator's ConfigMap holding floe-deploy.yaml (key floe-deploy.yaml)",
    )
    namespaces: list[Namespace] = Field(
        default_factory=list,
        description="Namespaces it deploys to (a Role in each); empty: the release namespace",
    )


class DagsterValues(ValuesModel):
    enabled: bool = Field(default=True, description="Deploy Dagster")
    floe_deploy: FloeDeploy = Field(
        default_factory=FloeDeploy, description="The deployment graph as this Dagster's code"
    )
    webserver: DagsterWebserver = Field(default_factory=DagsterWebserver, description="Webserver")
    daemon: DagsterDaemon = Field(default_factory=DagsterDaemon, description="Daemon")
    user_code: DagsterUserCode = Field(default_factory=DagsterUserCode, description="Code server")
    run_launcher: RunLauncher = Field(default_factory=RunLauncher, description="Run launcher")
    postgresql: DagsterStorage = Field(default_factory=DagsterStorage, description="Storage")


class PolarisValues(Scheduled):
    enabled: bool = Field(default=True, description="Deploy the Polaris Iceberg catalog")
    image: Image = image_field("docker.io/apache/polaris", "1.1.0-incubating", "Polaris image")
    catalog_type: str | None = Field(
        default=None, min_length=1, description="The catalog plugin's type; null: none configured"
    )
    config: dict[str, str | bool | int | float] = Field(
        default_factory=dict, description="The catalog plugin's flat config (never credentials)"
    )
    credentials: SecretKeyRef | None = Field(
        default=None, description="The catalog client secret; null: none needed"
    )
    resources: Resources = fixed_resources("250m", "512Mi", "Resources of the Polaris pod")


class OtelBatch(ValuesModel):
    """The OpenTelemetry batch span processor (defaults: the SDK's)."""

    max_queue_size: int = Field(default=2048, gt=0, description="Spans buffered at most")
    max_export_batch_size: int = Field(default=512, gt=0, description="Spans per export")
    schedule_delay_millis: int = Field(default=5000, gt=0, description="Delay between exports")
    export_timeout_millis: int = Field(default=30000, gt=0, description="Export timeout")


class OtelConfig(ValuesModel):
    endpoint: str | None = Field(
        default=None, min_length=1, description="OTLP endpoint; null: the chart's own collector"
    )
    protocol: Literal["grpc", "http"] = Field(default="grpc", description="OTLP protocol")
    sampling_ratio: float = Field(
        default=1.0, ge=0, le=1, description="Share of traces sampled (0 to 1)"
    )
    batch: OtelBatch = Field(default_factory=OtelBatch, description="Batch span processor")
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"] = Field(
        default="INFO", description="Log level of the instrumented workloads"
    )


class OtelExporters(ValuesModel):
    backend: str = Field(
        default="console",
        pattern=r"^[a-z][a-z0-9-]*$",
        description="Telemetry backend: console, jaeger, datadog, grafana-cloud, otlp, ...",
    )
    endpoint: str | None = Field(
        default=None, min_length=1, description="The backend's endpoint; null: its default"
    )
    headers_secret: SecretKeyRef | None = Field(
        default=None, description="Authentication header for the backend; null: none"
    )


class OtelValues(Scheduled):
    enabled: bool = Field(default=True, description="Deploy the OpenTelemetry collector")
    image: Image = image_field(
        "docker.io/otel/opentelemetry-collector-contrib", "0.115.0", "OpenTelemetry collector image"
    )
    config: OtelConfig = Field(default_factory=OtelConfig, description="Telemetry settings")
    exporters: OtelExporters = Field(default_factory=OtelExporters, description="Export target")
    replicas: int = Field(default=1, ge=1, description="Collector replicas")
    resources: Resources = fixed_resources("100m", "256Mi", "Resources of the collector pod")


class MarquezValues(Scheduled):
    enabled: bool = Field(default=False, description="Deploy Marquez, the lineage backend")
    image: Image = image_field("docker.io/marquezproject/marquez", "0.50.0", "Marquez image")
    namespace: str | None = Field(
        default=None, min_length=1, description="OpenLineage namespace; null: Marquez's default"
    )
    database: str = Field(
        default="marquez", pattern=r"^[a-z_][a-z0-9_]*$", description="Marquez's database"
    )
    credentials: SecretKeyRef = Field(
        default_factory=partial(SecretKeyRef, name=POSTGRES_SECRET, key="password"),
        description="The PostgreSQL password (the same Secret as `postgresql.auth`)",
    )
    resources: Resources = fixed_resources("250m", "512Mi", "Resources of the Marquez pod")


class PostgresStorage(ValuesModel):
    size: str = Field(
        default="8Gi",
        pattern=MEMORY_PATTERN,
        json_schema_extra={"format": MEMORY_FORMAT},
        description="Volume size, a Kubernetes quantity; 1Mi to 64Ti",
    )
    storage_class: str | None = Field(
        default=None, min_length=1, description="StorageClass; null: the cluster's default"
    )


class PostgresAuth(ValuesModel):
    existing_secret: str = secret_name(POSTGRES_SECRET, "Secret with the PostgreSQL password")
    password_key: str = Field(
        default="password", pattern=SECRET_KEY_PATTERN, description="Key of the password"
    )


class PostgresqlValues(Scheduled):
    enabled: bool = Field(default=True, description="Deploy PostgreSQL (Dagster's storage)")
    image: Image = image_field("docker.io/library/postgres", "16.4", "PostgreSQL image")
    storage: PostgresStorage = Field(default_factory=PostgresStorage, description="Data volume")
    auth: PostgresAuth = Field(default_factory=PostgresAuth, description="Credentials")
    databases: list[Annotated[str, StringConstraints(pattern=r"^[a-z_][a-z0-9_]*$")]] = Field(
        default_factory=lambda: ["dagster", "marquez"],
        description="Databases created on first start (Dagster's storage, Marquez)",
    )
    resources: Resources = fixed_resources("250m", "512Mi", "Resources of the database pod")


class MinioAuth(ValuesModel):
    existing_secret: str = secret_name("floe-minio", "Secret with the MinIO root credentials")


class MinioValues(Scheduled):
    enabled: bool = Field(
        default=False, description="Deploy MinIO (development only; production uses S3)"
    )
    image: Image = image_field("quay.io/minio/minio", "RELEASE.2024-10-13T13-34-11Z", "MinIO image")
    auth: MinioAuth = Field(default_factory=MinioAuth, description="Credentials")
    resources: Resources = fixed_resources("100m", "256Mi", "Resources of the MinIO pod")


class NetworkPolicySettings(ValuesModel):
    enabled: bool = Field(default=False, description="Deny ingress from outside the release")
    allowed_namespaces: list[Namespace] = Field(
        default_factory=list, description="Namespaces also let in (e.g. the ingress controller's)"
    )


class PodDisruptionBudgetSettings(ValuesModel):
    enabled: bool = Field(default=False, description="Create PodDisruptionBudgets")
    # maxUnavailable, not minAvailable: a single replica must not block node drains.
    max_unavailable: int = Field(default=1, ge=1, description="Pods that may be down at once")


class ResourceQuotaSettings(ValuesModel):
    enabled: bool = Field(default=False, description="Cap the namespace's total resources")
    requests: ResourceSpec = Field(
        default_factory=partial(ResourceSpec, cpu="4", memory="8Gi"), description="Sum of requests"
    )
    limits: ResourceSpec = Field(
        default_factory=partial(ResourceSpec, cpu="8", memory="16Gi"), description="Sum of limits"
    )
    pods: int = Field(default=50, ge=1, description="Most pods")


class IngressSettings(ValuesModel):
    enabled: bool = Field(default=False, description="Expose the Dagster webserver")
    class_name: str | None = Field(
        default=None, min_length=1, description="IngressClass; null: the cluster's default"
    )
    host: str | None = Field(
        default=None, pattern=DNS1123_SUBDOMAIN, description="Host name; null: any host"
    )
    tls_secret_name: str | None = Field(
        default=None, pattern=DNS1123_SUBDOMAIN, description="TLS certificate Secret; null: no TLS"
    )
    annotations: Annotations = Field(
        default_factory=dict, description="Ingress annotations (keys as Kubernetes label keys)"
    )


class PlatformValues(ValuesModel):
    """Values of the floe-platform chart: the platform services of one environment."""

    global_: GlobalValues = global_field()
    floe: FloeIdentity = floe_field()
    dagster: DagsterValues = Field(default_factory=DagsterValues, description="Dagster")
    polaris: PolarisValues = Field(default_factory=PolarisValues, description="Polaris")
    otel: OtelValues = Field(default_factory=OtelValues, description="OpenTelemetry collector")
    marquez: MarquezValues = Field(default_factory=MarquezValues, description="Marquez")
    postgresql: PostgresqlValues = Field(default_factory=PostgresqlValues, description="Database")
    minio: MinioValues = Field(default_factory=MinioValues, description="Object storage (dev)")
    network_policy: NetworkPolicySettings = Field(
        default_factory=NetworkPolicySettings, description="NetworkPolicies"
    )
    pod_disruption_budget: PodDisruptionBudgetSettings = Field(
        default_factory=PodDisruptionBudgetSettings, description="PodDisruptionBudgets"
    )
    resource_quota: ResourceQuotaSettings = Field(
        default_factory=ResourceQuotaSettings, description="ResourceQuota"
    )
    ingress: IngressSettings = Field(default_factory=IngressSettings, description="Ingress")


# --- floe-jobs -------------------------------------------------------------------------------
class JobSettings(ValuesModel):
    backoff_limit: int = Field(
        default=0, ge=0, description="Pod retries; 0 because retries belong to the orchestrator"
    )
    active_deadline_seconds: int = Field(
        default=3600, gt=0, description="Seconds before a running job is stopped"
    )
    ttl_seconds_after_finished: int = Field(
        default=3600, ge=0, description="Seconds a finished job is kept for its logs"
    )
    command: Literal["run", "build", "test"] = Field(
        default="build",
        description="dbt command; build runs the model with the seeds it reads and its tests",
    )


class ArtifactsSettings(ValuesModel):
    config_map_name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
        description="ConfigMap holding the CompiledArtifacts mounted into the job; null: "
        "<release>-artifacts, so each data product's release has its own",
    )


def inline_profiles_need_content(schema: dict[str, Any], model: type) -> None:
    """The model's rule, repeated in the schema so Helm enforces it too."""
    require_non_null_keys(schema, model)
    schema["if"] = {"properties": {"source": {"const": "inline"}}, "required": ["source"]}
    schema["then"] = {"required": ["inline"], "properties": {"inline": {"type": "string"}}}


class DbtProfiles(ValuesModel):
    """Where profiles.yml comes from: the operator's Secret (``source: secret``) or this chart's
    ConfigMap (``source: inline``, only for profiles without credentials).

    An explicit switch rather than "whichever key is set": unsetting a default key takes a null
    override, and Helm's lint and template do not drop nulls the way install does."""

    model_config = ConfigDict(json_schema_extra=inline_profiles_need_content)

    source: Literal["secret", "inline"] = Field(
        default="secret", description="secret: mount existingSecret; inline: mount `inline`"
    )
    existing_secret: str = Field(
        default=DBT_PROFILES_SECRET,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
        description="Secret holding profiles.yml (needed when the profiles hold credentials)",
    )
    key: str = Field(
        default="profiles.yml",
        max_length=253,
        pattern=SECRET_KEY_PATTERN,
        description="Key of profiles.yml in the Secret",
    )
    inline: str | None = Field(
        default=None,
        min_length=1,
        description="profiles.yml content, only when it holds no credentials",
    )

    @model_validator(mode="after")
    def _inline_needs_content(self) -> DbtProfiles:
        if self.source == "inline" and self.inline is None:
            raise ValueError("dbt.profiles.source 'inline' needs dbt.profiles.inline")
        return self


class DbtSettings(ValuesModel):
    target: str = Field(default="dev", min_length=1, description="dbt target in profiles.yml")
    profiles: DbtProfiles = Field(default_factory=DbtProfiles, description="Where profiles.yml is")
    secret_env: dict[EnvVarName, SecretKeyRef] = Field(
        default_factory=dict,
        description="Environment variables from Secrets, for the profiles' env_var() "
        "references (DBT_ENV_SECRET_*: dbt keeps them out of its logs)",
    )


class DbtModel(ListItemModel):
    name: DbtIdentifier = Field(description="dbt model name")
    depends_on: list[DbtIdentifier] = Field(
        default_factory=list, description="Models run before this one"
    )
    tags: list[str] = Field(default_factory=list, description="dbt tags")
    schedule: str | None = Field(
        default=None,
        pattern=CRON_PATTERN,
        json_schema_extra={"format": CRON_FORMAT},
        description="Cron schedule of the model's CronJob (5 fields or a @macro, as both "
        "Kubernetes and Dagster read it); null: run with its dependencies",
    )
    resources: Resources | None = Field(
        default=None, description="Resources for this model's job; null: the chart's `resources`"
    )

    @field_validator("schedule")
    @classmethod
    def _cron(cls, schedule: str | None) -> str | None:
        if schedule is not None:
            _checked(cron_problem(schedule), "schedule")
        return schedule


class ServiceAccountSettings(ValuesModel):
    create: bool = Field(default=True, description="Create the job's ServiceAccount")
    name: str | None = Field(
        default=None,
        max_length=253,
        pattern=DNS1123_SUBDOMAIN,
        description="ServiceAccount name; null: derived from the release name",
    )


class RunSettings(ValuesModel):
    """Set by the DataProductJob runner, never in an installed release: rendering the chart with
    a model here yields that model's Job, so the chart's Job template is the one description of
    a model's pod. Installing the release starts no model."""

    model: DbtIdentifier | None = Field(default=None, description="dbt model to render a Job for")
    job_name: str | None = Field(
        default=None,
        max_length=63,
        pattern=DNS1123_LABEL,
        description="Run-unique Job name (the runner derives it from the model)",
    )
    run_id: str | None = Field(
        default=None,
        max_length=63,
        pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
        description="Orchestrator run id, recorded as a label",
    )


class JobsValues(Scheduled):
    """Values of the floe-jobs chart: the dbt runs of one data product."""

    global_: GlobalValues = global_field()
    floe: FloeIdentity = floe_field()
    image: Image = image_field("ghcr.io/dbt-labs/dbt-postgres", "1.8.2", "The dbt runner image")
    resources: Resources = Field(
        default_factory=partial(small_preset, "jobs"),
        description="Resources of each job (the environment preset's `jobs`)",
    )
    job: JobSettings = Field(default_factory=JobSettings, description="Kubernetes Job settings")
    artifacts: ArtifactsSettings = Field(
        default_factory=ArtifactsSettings, description="The compiled artifacts the job reads"
    )
    dbt: DbtSettings = Field(default_factory=DbtSettings, description="dbt settings")
    models: list[DbtModel] = Field(
        default_factory=list, description="The product's dbt models, in dependency order"
    )
    service_account: ServiceAccountSettings = Field(
        default_factory=ServiceAccountSettings, description="The jobs' ServiceAccount"
    )
    run: RunSettings = Field(
        default_factory=RunSettings, description="One model's Job to render (runner only)"
    )
