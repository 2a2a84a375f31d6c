"""Issue 12 end to end, "no credential leaves in plaintext": credentials planted in more than 25
places of the inputs (the CompiledArtifacts, floe-deploy.yaml's overrides, the operator's
Secrets), each a unique random literal. Each place is either

- **referenced** from a Secret the operator provides: the deploy succeeds and the literal is
  found nowhere but in that Secret (every command's output, every object of the namespace, every
  Helm release record, every Dagster run, event and snapshot, every file of the instance), or
- **refused** by its JSON pointer: `values`, `render`, `deploy --dry-run` and `deploy` exit 1
  naming the pointer, the Dagster check `no_plaintext_secrets` fails naming it, nothing is applied
  to the cluster, and the literal is found nowhere either.

The unit-level cases of the same places are in tests/unit/test_secrets.py."""

from __future__ import annotations

import base64
import copy
import gzip
import json
import random
import time
import traceback
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml
from dagster_shared.serdes import serialize_value
from kubernetes import client

from floe_deploy_assets.cli import PROBLEMS_SHOWN, main
from floe_deploy_assets.defs.build import build_definitions
from floe_deploy_assets.models.artifacts import ArtifactsError
from tests.conftest import KubeCluster
from tests.support.charts import EXAMPLE
from tests.support.dagster_home import dagster_yaml
from tests.support.deployment import create_operator_secrets, deploy_through_graph, write_config

pytestmark = pytest.mark.cluster

DBT_PROFILES = ("floe-dbt-profiles", "profiles.yml")
_random = random.SystemRandom()


def _literal() -> str:
    return f"planted-{uuid.uuid4().hex}"


def _basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass(frozen=True)
class Place:
    id: str
    chart: str  # "platform" | "jobs": the chart whose values carry (or refuse) it
    literal: str  # what must never come out
    refused_at: str | None = None  # the pointer of the refusal; None: referenced from a Secret
    artifacts: Callable[[dict], None] | None = None  # plants into the CompiledArtifacts
    overrides: dict | None = None  # plants into floe-deploy.yaml's dev overrides (per chart)
    secret: tuple[str, str] | None = None  # the operator's Secret (and key) that holds it
    also: tuple[str, ...] = ()  # other forms to look for (the password inside a Basic value)

    @property
    def literals(self) -> tuple[str, ...]:
        return (self.literal, *self.also)


def _at(*path: str | int, value: Any) -> Callable[[dict], None]:
    """Plants ``value`` at ``path`` of the CompiledArtifacts document (maps created on the way)."""

    def plant(document: dict) -> None:
        node: Any = document
        for key in path[:-1]:
            node = node.setdefault(key, {}) if isinstance(key, str) else node[key]
        node[path[-1]] = value

    return plant


DEV = ("dbt_profiles", "customer_360", "outputs", "dev")
CATALOG = ("plugins", "catalog", "config")
L = [_literal() for _ in range(40)]
NUMERIC = _random.randrange(10**14, 10**15)  # a numeric password: 15 random digits
BASIC_DBT = _basic("dbt", L[8])
BASIC_CATALOG = _basic("root", L[21])
PEM = f"-----BEGIN PRIVATE KEY-----\nMIIEvQIBADAN{L[11]}\n-----END PRIVATE KEY-----"

PLACES = [
    # dbt_profiles of the artifacts: any credential sends the whole profiles to the operator's
    # floe-dbt-profiles Secret; the values only reference it.
    Place("profiles-dsn-password", "jobs", L[0], secret=DBT_PROFILES,
          artifacts=_at(*DEV, "dsn", value=f"host=db port=5432 user=dbt password={L[0]} dbname=x")),
    Place("profiles-pgpass-key", "jobs", L[1], secret=DBT_PROFILES,
          artifacts=_at(*DEV, "pgpass", value=f"db.floe.svc:5432:floe:dbt:{L[1]}")),
    Place("profiles-settings-authorization-bearer", "jobs", L[2], secret=DBT_PROFILES,
          artifacts=_at(*DEV, "settings", "Authorization", value=f"Bearer {L[2]}")),
    Place("profiles-password-key", "jobs", L[3], secret=DBT_PROFILES,
          artifacts=_at(*DEV, "password", value=L[3])),
    Place("profiles-numeric-password", "jobs", str(NUMERIC), secret=DBT_PROFILES,
          artifacts=_at("dbt_profiles", "customer_360", "outputs", "ci", "password",
                        value=NUMERIC)),
    Place("profiles-url-userinfo", "jobs", L[5], secret=DBT_PROFILES,
          artifacts=_at(*DEV, "uri", value=f"postgresql://dbt:{L[5]}@db:5432/floe")),
    Place("profiles-url-api-key", "jobs", L[6], secret=DBT_PROFILES,
          artifacts=_at(*DEV, "host", value=f"https://sql.example.com/api?api_key={L[6]}")),
    Place("profiles-odbc-pwd", "jobs", L[7], secret=DBT_PROFILES,
          artifacts=_at(*DEV, "connection_string",
                        value=f"Driver={{ODBC Driver 18}};Server=db;Uid=dbt;Pwd={L[7]};")),
    Place("profiles-basic-header", "jobs", BASIC_DBT, secret=DBT_PROFILES, also=(L[8],),
          artifacts=_at(*DEV, "settings", "h", value=f"Authorization: Basic {BASIC_DBT}")),
    Place("profiles-token", "jobs", L[9], secret=DBT_PROFILES,
          artifacts=_at(*DEV, "token", value=L[9])),
    Place("profiles-keyfile-json", "jobs", L[10], secret=DBT_PROFILES,
          artifacts=_at(*DEV, "keyfile_json",
                        value={"type": "service_account", "private_key_id": L[10]})),
    Place("profiles-pem-private-key", "jobs", L[11], secret=DBT_PROFILES,
          artifacts=_at(*DEV, "private_key", value=PEM)),
    # telemetry authentication of the artifacts: floe-otel-exporter-auth
    Place("telemetry-authentication-api-key", "platform", L[12],
          secret=("floe-otel-exporter-auth", "api-key"),
          artifacts=_at("observability", "telemetry", "authentication",
                        value={"auth_type": "api_key", "api_key": L[12]})),
    # the operator's own Secrets, which the values reference
    Place("operator-postgresql-password", "platform", L[13],
          secret=("floe-postgresql", "password")),
    Place("operator-polaris-client-secret", "platform", L[14],
          secret=("floe-polaris-credentials", "client-secret")),
    # the catalog plugin config: refused; the catalog's credential is floe-polaris-credentials
    Place("catalog-header-authorization-bearer", "platform", L[15],
          "/polaris/config/header.Authorization",
          _at(*CATALOG, "header.Authorization", value=f"Bearer {L[15]}")),
    Place("catalog-uri-access-token", "platform", L[16], "/polaris/config/uri",
          _at(*CATALOG, "uri", value=f"http://polaris:8181/api/catalog?access_token={L[16]}")),
    Place("catalog-credential", "platform", L[17], "/polaris/config/credential",
          _at(*CATALOG, "credential", value=f"floe-client:{L[17]}")),
    Place("catalog-token", "platform", L[18], "/polaris/config/token",
          _at(*CATALOG, "token", value=L[18])),
    Place("catalog-uri-userinfo", "platform", L[19], "/polaris/config/uri",
          _at(*CATALOG, "uri", value=f"http://root:{L[19]}@polaris:8181/api/catalog")),
    Place("catalog-presigned-warehouse", "platform", L[20], "/polaris/config/warehouse",
          _at(*CATALOG, "warehouse",
              value=f"https://b.s3.amazonaws.com/w?X-Amz-Signature={L[20]}")),
    Place("catalog-header-authorization-basic", "platform", BASIC_CATALOG,
          "/polaris/config/header.Authorization",
          _at(*CATALOG, "header.Authorization", value=f"Basic {BASIC_CATALOG}"), also=(L[21],)),
    Place("catalog-header-api-key", "platform", L[22], "/polaris/config/header.X-Api-Key",
          _at(*CATALOG, "header.X-Api-Key", value=L[22])),
    # other artifacts fields that pass through: refused
    Place("artifacts-otlp-endpoint-api-key", "platform", L[23], "/otel/config/endpoint",
          _at("observability", "telemetry", "otlp_endpoint",
              value=f"https://otlp.example.com:4318/v1?api_key={L[23]}")),
    # overrides in floe-deploy.yaml, the Ingress annotations, the inline dbt profiles: refused
    Place("override-polaris-config-header-authorization", "platform", L[25],
          "/polaris/config/header.Authorization",
          overrides={"platform": {"polaris": {"config": {
              "header.Authorization": f"Bearer {L[25]}"}}}}),
    Place("override-polaris-config-jdbc-password", "platform", L[26], "/polaris/config/jdbc",
          overrides={"platform": {"polaris": {"config": {
              "jdbc": f"jdbc:postgresql://db:5432/polaris?user=polaris&password={L[26]}"}}}}),
    Place("override-ingress-annotation-bearer", "platform", L[27],
          "/ingress/annotations/nginx.ingress.kubernetes.io~1configuration-snippet",
          overrides={"platform": {"ingress": {"enabled": True, "annotations": {
              "nginx.ingress.kubernetes.io/configuration-snippet":
                  f'proxy_set_header Authorization "Bearer {L[27]}";'}}}}),
    Place("override-ingress-annotation-url-token", "platform", L[28],
          "/ingress/annotations/nginx.ingress.kubernetes.io~1auth-url",
          overrides={"platform": {"ingress": {"enabled": True, "annotations": {
              "nginx.ingress.kubernetes.io/auth-url":
                  f"https://auth.example.com/?token={L[28]}"}}}}),
    Place("override-otel-exporter-endpoint", "platform", L[29], "/otel/exporters/endpoint",
          overrides={"platform": {"otel": {"exporters": {
              "backend": "otlp", "endpoint": f"https://otlp.example.com/?apikey={L[29]}"}}}}),
    Place("override-dbt-inline-password", "jobs", L[30], "/dbt/profiles/inline",
          overrides={"jobs": {"dbt": {"profiles": {"source": "inline", "inline":
              "p:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n"
              f"      password: {L[30]}\n"}}}}),
    Place("override-dbt-inline-json-token", "jobs", L[31], "/dbt/profiles/inline",
          overrides={"jobs": {"dbt": {"profiles": {"source": "inline", "inline":
              json.dumps({"p": {"outputs": {"dev": {"type": "databricks", "token": L[31]}}}})
          }}}}),
    Place("override-dbt-inline-ini-password", "jobs", L[32], "/dbt/profiles/inline",
          overrides={"jobs": {"dbt": {"profiles": {"source": "inline", "inline":
              f"[dev]\nhost = db\npassword = {L[32]}\n"}}}}),
    Place("override-floe-product-version-url", "jobs", L[33], "/floe/productVersion",
          overrides={"jobs": {"floe": {"productVersion": f"https://u:{L[33]}@git.example.com/x"}}}),
]  # fmt: skip

REFERENCED = [p for p in PLACES if p.refused_at is None]
REFUSED = [p for p in PLACES if p.refused_at is not None]
# The places issue 12 found leaking.
USED_TO_LEAK = {
    "profiles-dsn-password",
    "profiles-pgpass-key",
    "profiles-settings-authorization-bearer",
    "catalog-header-authorization-bearer",
    "catalog-uri-access-token",
    "override-polaris-config-header-authorization",
    "override-ingress-annotation-bearer",
    "override-dbt-inline-password",
}


def test_the_places_are_many_unique_and_cover_the_ones_that_used_to_leak():
    assert len(PLACES) >= 25
    assert len({p.id for p in PLACES}) == len(PLACES)
    literals = [literal for p in PLACES for literal in p.literals]
    assert len(set(literals)) == len(literals)
    assert {p.id for p in PLACES} >= USED_TO_LEAK
    assert {p.chart for p in REFERENCED} == {p.chart for p in REFUSED} == {"platform", "jobs"}


# --- where to look ------------------------------------------------------------------------------
@dataclass
class Haystack:
    """Every text that came out, by where it came from."""

    texts: list[tuple[str, str]] = field(default_factory=list)
    counts: dict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, kind: str, where: str, text: str) -> None:
        self.texts.append((where, text))
        self.counts[kind] += 1

    def leaks(self, places: Iterable[Place]) -> dict[str, list[str]]:
        found = {}
        for place in places:
            wheres = [w for w, text in self.texts if any(lit in text for lit in place.literals)]
            if wheres:
                found[place.id] = wheres
        return found


def _merge(into: dict, more: dict) -> dict:
    for key, value in more.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)
    return into


def _artifacts_document(places: Iterable[Place]) -> dict:
    document = json.loads(EXAMPLE.read_text())
    for place in places:
        if place.artifacts:
            place.artifacts(document)
    return document


def _inputs(
    folder: Path,
    kube_cluster: KubeCluster,
    namespace: str,
    places: Iterable[Place],
    more_overrides: dict | None = None,
) -> Path:
    """floe-deploy.yaml (dev in ``namespace``) and its CompiledArtifacts, ``places`` planted."""
    places = list(places)
    folder.mkdir(parents=True, exist_ok=True)
    artifacts = folder / "compiled-artifacts.json"
    artifacts.write_text(json.dumps(_artifacts_document(places)))
    overrides: dict = {}
    for place in places:
        if place.overrides:
            _merge(overrides, place.overrides)
    _merge(overrides, more_overrides or {})
    return write_config(
        folder, kube_cluster.kubeconfig, namespace, overrides or None, artifacts=artifacts
    )


class Cli:
    """``floe-deploy`` in-process; both file descriptors captured (Helm's Go code writes to them
    directly), every output kept in the haystack."""

    def __init__(self, capfd: pytest.CaptureFixture[str], haystack: Haystack):
        self.capfd = capfd
        self.haystack = haystack

    def __call__(self, label: str, *argv: str) -> tuple[int, str, str]:
        self.capfd.readouterr()
        code = main(list(argv))
        out, err = self.capfd.readouterr()
        self.haystack.add("command outputs", f"`floe-deploy {label}` stdout", out)
        self.haystack.add("command outputs", f"`floe-deploy {label}` stderr", err)
        return code, out, err


def _api_json(api: client.ApiClient, path: str) -> Any:
    response = api.call_api(
        path,
        "GET",
        auth_settings=["BearerToken"],
        _preload_content=False,
        _return_http_data_only=True,
    )
    return json.loads(response.data)


def _namespace_objects(api: client.ApiClient, namespace: str) -> list[dict]:
    """Every object in ``namespace``: every namespaced resource the API server lists, in every
    API group (at its preferred version), found by discovery."""
    listings = [("/api/v1", _api_json(api, "/api/v1"))]
    for group in _api_json(api, "/apis")["groups"]:
        version = group["preferredVersion"]["groupVersion"]
        listings.append((f"/apis/{version}", _api_json(api, f"/apis/{version}")))
    objects = []
    for prefix, listing in listings:
        for resource in listing["resources"]:
            if not resource["namespaced"] or "/" in resource["name"]:
                continue
            if "list" not in resource.get("verbs", []):
                continue
            found = _api_json(api, f"{prefix}/namespaces/{namespace}/{resource['name']}")
            for item in found.get("items", []):
                item.setdefault("kind", resource["kind"])
                objects.append(item)
    return objects


def _helm_release(encoded: str) -> dict:
    # The Secret's data is base64 (Kubernetes) of base64 (Helm) of gzip of the release JSON.
    return json.loads(gzip.decompress(base64.b64decode(base64.b64decode(encoded))))


def _decoded(data: dict[str, str] | None) -> dict[str, str]:
    return {k: base64.b64decode(v).decode("utf-8", "replace") for k, v in (data or {}).items()}


def _search_namespace(
    api: client.ApiClient, namespace: str, haystack: Haystack, operator_secrets: dict[str, str]
) -> tuple[list[dict], list[dict]]:
    """Adds every object of the namespace to the haystack: metadata (labels, annotations), specs
    (pod env values, volumes), data of ConfigMaps, decoded data of Secrets, and each Helm release
    record decoded (its values and manifest). The operator's Secrets (``operator_secrets``: name
    -> uid), the reference targets, are the only payloads allowed to hold a literal: their
    metadata is searched, their payload is not. Returns the objects and the Helm records."""
    objects = _namespace_objects(api, namespace)
    records = []
    for obj in objects:
        obj = copy.deepcopy(obj)
        kind, name = obj["kind"], obj["metadata"]["name"]
        where = f"{kind} {name}"
        if kind == "Secret":
            raw = obj.pop("data", None) or {}
            data = _decoded(raw)
            if obj.get("type") == "helm.sh/release.v1":
                record = _helm_release(raw["release"])
                records.append(record)
                haystack.add(
                    "helm records", f"Helm record {name}: config", json.dumps(record["config"])
                )
                haystack.add("helm records", f"Helm record {name}: manifest", record["manifest"])
                haystack.add("helm records", f"Helm record {name}", json.dumps(record))
            elif operator_secrets.get(name) != obj["metadata"]["uid"]:
                haystack.add("secret payloads", f"{where}: data (decoded)", json.dumps(data))
        if kind == "ConfigMap":
            binary = _decoded(obj.pop("binaryData", None))
            haystack.add(
                "configmap binaryData", f"{where}: binaryData (decoded)", json.dumps(binary)
            )
        haystack.add("namespace objects", where, json.dumps(obj))
    return objects, records


def _search_dagster(dagster_home: Path, haystack: Haystack) -> list[dg.EventLogEntry]:
    """Adds every run of the instance (the run, its job and execution plan snapshots, every event
    of its log, serialized as stored) and every file of the instance's directory. Returns the
    events."""
    events: list[dg.EventLogEntry] = []
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        for run in instance.get_runs():
            haystack.add("dagster runs", f"Dagster run {run.run_id}", serialize_value(run))
            if run.job_snapshot_id:
                snapshot = instance.get_job_snapshot(run.job_snapshot_id)
                haystack.add(
                    "dagster snapshots", f"job snapshot of {run.run_id}", serialize_value(snapshot)
                )
            if run.execution_plan_snapshot_id:
                plan = instance.get_execution_plan_snapshot(run.execution_plan_snapshot_id)
                haystack.add(
                    "dagster snapshots", f"plan snapshot of {run.run_id}", serialize_value(plan)
                )
            for record in instance.all_logs(run.run_id):
                events.append(record)
                what = record.dagster_event_type or "log message"
                haystack.add(
                    "dagster events",
                    f"Dagster event {what} ({record.step_key or 'run'}) of run {run.run_id}",
                    serialize_value(record),
                )
    for path in sorted(dagster_home.rglob("*")):
        if path.is_file():
            haystack.add(
                "dagster files",
                f"file {path.relative_to(dagster_home)} of DAGSTER_HOME",
                path.read_bytes().decode("latin-1"),
            )
    return events


def _search_definitions(config: Path, kubeconfig: Path, haystack: Haystack) -> None:
    """What the UI shows of the graph the configuration builds: each asset's description,
    metadata, tags, owners. A definitions error is searched too (it is what `dagster dev` and
    the code location print)."""
    try:
        defs = build_definitions(str(config), kubeconfig=str(kubeconfig))
        for spec in defs.resolve_all_asset_specs():
            haystack.add("asset specs", f"asset spec {spec.key.to_user_string()}", repr(spec))
    except Exception as error:
        haystack.add("graph errors", "loading the Dagster definitions", traceback.format_exc())
        haystack.add("graph errors", "loading the Dagster definitions: message", str(error))


JOBS_ASSETS = ["compiled_artifacts", "jobs_values", "jobs_manifests", "jobs_release"]


def _deploy_jobs_through_graph(config: Path, kubeconfig: Path, dagster_home: Path) -> None:
    """``deploy_through_graph`` for the floe-jobs release alone (the platform's assets are not
    selected), failing the same way."""
    with dg.DagsterInstance.from_config(str(dagster_home)) as instance:
        result = (
            build_definitions(str(config), kubeconfig=str(kubeconfig))
            .resolve_job_def("deploy_platform")
            .execute_in_process(
                partition_key="dev",
                instance=instance,
                asset_selection=[dg.AssetKey(key) for key in JOBS_ASSETS],
                raise_on_error=False,
            )
        )
    if not result.success:
        raise AssertionError(f"deploying dev's jobs through the graph failed: run {result.run_id}")


def _graph(
    config: Path,
    kube_cluster: KubeCluster,
    dagster_home: Path,
    capfd: pytest.CaptureFixture[str],
    jobs_only: bool = False,
) -> tuple[BaseException | None, str]:
    """``deploy_platform`` for dev through the graph (only the jobs' assets with ``jobs_only``),
    in-process, stored at ``dagster_home``; returns the error it raised (None: the run
    succeeded) and what it printed."""
    dagster_home.mkdir(parents=True)
    (dagster_home / "dagster.yaml").write_text(dagster_yaml("sqlite"))
    capfd.readouterr()
    error: BaseException | None = None
    try:
        if jobs_only:
            _deploy_jobs_through_graph(config, kube_cluster.kubeconfig, dagster_home)
        else:
            deploy_through_graph(config, kube_cluster.kubeconfig, dagster_home)
    except Exception as raised:
        error = raised
    out, err = capfd.readouterr()
    printed = out + err
    if error is not None:
        printed += "".join(traceback.format_exception(error))
    return error, printed


def _timed(timings: dict[str, float], name: str, started: float) -> float:
    now = time.monotonic()
    timings[name] = round(now - started, 1)
    return now


def _verdict(problems: dict[str, list[str]], leaks: dict[str, list[str]]) -> str:
    """Each place that failed: what went wrong, and where its literal was found."""
    lines = []
    for place in sorted(set(problems) | set(leaks)):
        lines.append(f"{place}:")
        lines += [f"  - {problem}" for problem in problems.get(place, [])]
        lines += [f"  - its literal is in: {where}" for where in leaks.get(place, [])]
    return "\n".join(lines)


def _report(title: str, haystack: Haystack, timings: dict[str, float]) -> None:
    counts = ", ".join(f"{kind}: {n}" for kind, n in sorted(haystack.counts.items()))
    print(f"\n{title}: searched {len(haystack.texts)} texts ({counts}); timings (s): {timings}")


# --- referenced: one real deploy carrying every accepted planting -------------------------------
def test_credentials_referenced_from_secrets_appear_nowhere_but_in_those_secrets(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
):
    timings: dict[str, float] = {}
    started = clock = time.monotonic()
    haystack = Haystack()
    cli = Cli(capfd, haystack)
    kubeconfig = str(kube_cluster.kubeconfig)

    # The operator's Secrets hold the credentials: the profiles the artifacts carry, the
    # exporter's API key, the database password and the catalog's client secret.
    document = _artifacts_document(REFERENCED)
    payloads: dict[str, dict[str, str]] = defaultdict(dict)
    for place in REFERENCED:
        assert place.secret is not None
        name, key = place.secret
        payloads[name][key] = (
            yaml.safe_dump(document["dbt_profiles"])
            if place.secret == DBT_PROFILES
            else place.literal
        )
    operator_secrets = {
        name: kube_cluster.core.create_namespaced_secret(
            namespace, {"metadata": {"name": name}, "stringData": data}
        ).metadata.uid
        for name, data in payloads.items()
    }
    config = _inputs(tmp_path / "deploy", kube_cluster, namespace, REFERENCED)
    base = ["--config", str(config), "--env", "dev"]
    cluster = [*base, "--kubeconfig", kubeconfig]

    # Each place on its own is a reference in the values, not a value.
    for place in REFERENCED:
        if place.artifacts is None:
            continue
        alone = tmp_path / "alone" / f"{place.id}.json"
        alone.parent.mkdir(exist_ok=True)
        alone.write_text(json.dumps(_artifacts_document([place])))
        code, out, _ = cli(f"values --chart {place.chart} ({place.id} alone)", "values", *base,
                           "--chart", place.chart, "--artifacts", str(alone))  # fmt: skip
        assert code == 0, place.id
        values = yaml.safe_load(out)
        if place.secret == DBT_PROFILES:
            assert values["dbt"]["profiles"]["source"] == "secret", place.id
            assert values["dbt"]["profiles"]["existingSecret"] == DBT_PROFILES[0], place.id
            assert "inline" not in values["dbt"]["profiles"], place.id
        else:
            assert values["otel"]["exporters"]["headersSecret"] == {
                "name": "floe-otel-exporter-auth",
                "key": "api-key",
            }
    clock = _timed(timings, "values of each place alone", clock)

    # All of them at once, through every command.
    required = set()
    for chart in ("platform", "jobs"):
        for extra in ([], ["--provenance"]):
            code, _, err = cli(f"values --chart {chart} {' '.join(extra)}", "values", *base,
                               "--chart", chart, *extra)  # fmt: skip
            assert code == 0
            required |= {line.split()[3] for line in err.splitlines() if "requires Secret" in line}
        code, out, _ = cli(f"render --chart {chart}", "render", *base, "--chart", chart)
        assert code == 0 and ("kind: Deployment" in out or "kind: Role" in out)
    assert required == set(operator_secrets)
    code, out, _ = cli("deploy --dry-run (install)", "deploy", *cluster, "--dry-run")
    assert code == 0 and "would install" in out and DBT_PROFILES[0] in out
    clock = _timed(timings, "values, render, dry run", clock)

    # Installed through the Dagster graph, into a DAGSTER_HOME of the test's.
    dagster_home = tmp_path / "dagster_home"
    error, printed = _graph(config, kube_cluster, dagster_home, capfd)
    haystack.add("command outputs", "the Dagster run's console output", printed)
    assert error is None, printed[-3000:]
    clock = _timed(timings, "install through the Dagster graph", clock)

    # Upgraded through the CLI (a new label on every object), then in sync; status, history,
    # and the models run as Jobs that mount the profiles Secret.
    labels = {"global": {"labels": {"floe.dev/planted-test": "upgraded"}}}
    both = {"platform": labels, "jobs": labels}
    upgraded = _inputs(tmp_path / "upgrade", kube_cluster, namespace, REFERENCED, both)
    cluster = ["--config", str(upgraded), "--env", "dev", "--kubeconfig", kubeconfig]
    code, out, _ = cli("deploy --dry-run (upgrade)", "deploy", *cluster, "--dry-run")
    assert code == 0 and "would upgrade" in out
    code, out, _ = cli("deploy (upgrade)", "deploy", *cluster, "--timeout", "120")
    assert code == 0 and "-> upgrade" in out, out
    code, out, _ = cli("deploy (in sync)", "deploy", *cluster)
    assert code == 0 and "in-sync -> nothing" in out
    for command in ("status", "history"):
        code, out, _ = cli(command, command, *cluster)
        assert code == 0
    code, out, _ = cli("run-models", "run-models", *cluster, "--run-id", "planted")
    assert code == 0 and out.count("Succeeded") == 4, out
    clock = _timed(timings, "CLI upgrade, in sync, status, history, run-models", clock)

    # Where they could have gone.
    objects, records = _search_namespace(kube_cluster.api, namespace, haystack, operator_secrets)
    events = _search_dagster(dagster_home, haystack)
    _search_definitions(upgraded, kube_cluster.kubeconfig, haystack)
    clock = _timed(timings, "search", clock)

    # The search reaches what it should: the releases' records and manifests, the models' Jobs,
    # the release metadata; and the operator's Secrets, the only holders, hold every literal.
    assert sorted((r["name"], r["version"]) for r in records) == [
        ("floe-jobs", 1), ("floe-jobs", 2), ("floe-platform", 1), ("floe-platform", 2),
    ]  # fmt: skip
    jobs_record = next(r for r in records if r["name"] == "floe-jobs" and r["version"] == 2)
    assert jobs_record["config"]["dbt"]["profiles"]["existingSecret"] == DBT_PROFILES[0]
    assert f'resourceNames: ["{DBT_PROFILES[0]}"]' in jobs_record["manifest"]
    model_jobs = [o for o in objects if o["kind"] == "Job"]
    assert len(model_jobs) == 4
    for job in model_jobs:
        volumes = job["spec"]["template"]["spec"]["volumes"]
        assert any(v.get("secret", {}).get("secretName") == DBT_PROFILES[0] for v in volumes)
    install = [
        e
        for e in events
        if e.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
        and "**Install**" in serialize_value(e)
    ]
    assert len(install) == 2  # both releases' metadata carry their install manifest
    held = {
        o["metadata"]["name"]: _decoded(o.get("data"))
        for o in objects
        if o["kind"] == "Secret" and o["metadata"]["name"] in operator_secrets
    }
    for place in REFERENCED:
        assert place.secret is not None
        assert place.literal in held[place.secret[0]][place.secret[1]], place.id
    for name, secret in held.items():
        assert secret == payloads[name], name  # untouched: no chart took them over
    # The search finds every form of every literal where there is one (the Secrets' payloads).
    control = Haystack()
    control.add("control", "the operator's Secrets", json.dumps(held))
    assert set(control.leaks(REFERENCED)) == {p.id for p in REFERENCED}
    assert not [
        o["metadata"]["name"]
        for o in objects
        if o["kind"] == "Secret"
        and o["metadata"]["name"] not in operator_secrets
        and o.get("type") not in ("helm.sh/release.v1", "kubernetes.io/service-account-token")
    ]  # no chart renders a Secret of its own

    _timed(timings, "total", started)
    _report("referenced", haystack, timings)
    leaks = haystack.leaks(REFERENCED)
    assert not leaks, _verdict({}, leaks)


# --- refused: each place by its pointer, and groups of them through the whole deploy and graph --
def _groups(places: list[Place]) -> list[list[Place]]:
    """The fewest groups in which no two places share a pointer (so each is named for itself),
    none larger than the findings the command line prints."""
    groups: list[list[Place]] = []
    for place in places:
        for group in groups:
            if len(group) < PROBLEMS_SHOWN and place.refused_at not in {
                p.refused_at for p in group
            }:
                group.append(place)
                break
        else:
            groups.append([place])
    return groups


def _check_evaluations(events: list[dg.EventLogEntry]) -> dict[str, tuple[bool, str]]:
    evaluations = {}
    for event in events:
        if event.dagster_event_type != dg.DagsterEventType.ASSET_CHECK_EVALUATION:
            continue
        assert event.dagster_event is not None
        evaluation = event.dagster_event.event_specific_data
        name = f"{evaluation.asset_key.to_user_string()}:{evaluation.check_name}"
        evaluations[name] = (evaluation.passed, serialize_value(evaluation.metadata))
    return evaluations


def test_refused_credentials_are_named_by_pointer_and_nothing_is_applied(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
):
    timings: dict[str, float] = {}
    started = clock = time.monotonic()
    haystack = Haystack()
    cli = Cli(capfd, haystack)
    problems: dict[str, list[str]] = defaultdict(list)
    kubeconfig = str(kube_cluster.kubeconfig)
    create_operator_secrets(kube_cluster.core, namespace)
    before = {
        (o["kind"], o["metadata"]["name"]) for o in _namespace_objects(kube_cluster.api, namespace)
    }

    # Each place alone: every command that reads the values refuses it, naming its pointer.
    for place in REFUSED:
        config = str(_inputs(tmp_path / place.id, kube_cluster, namespace, [place]))
        chart = ["--chart", place.chart]
        for command in (["values"], ["render"], ["deploy", "--dry-run"], ["deploy"]):
            argv = [*command, "--config", config, "--env", "dev", *chart]
            if command[0] == "deploy":
                argv += ["--kubeconfig", kubeconfig]
            label = f"{' '.join(command)} --chart {place.chart} ({place.id})"
            code, _, err = cli(label, *argv)
            if code != 1:
                problems[place.id].append(f"`{label}` exited {code}, not 1")
            if f"{place.refused_at} " not in err:
                problems[place.id].append(f"`{label}` did not name {place.refused_at}")
    clock = _timed(timings, f"{len(REFUSED)} places x 4 commands", clock)

    # Groups of places: the whole environment's deploy, and the Dagster graph.
    groups = _groups(REFUSED)
    for index, group in enumerate(groups):
        folder = tmp_path / f"group-{index}"
        config = _inputs(folder, kube_cluster, namespace, group)
        # The whole environment: the jobs' refusal must not leave the platform deployed. (The
        # graph's platform_release does not wait on the jobs' checks: a group of the jobs'
        # places alone goes through the jobs' assets alone there.)
        jobs_only = all(p.chart == "jobs" for p in group)
        deploy = ["deploy", "--config", str(config), "--env", "dev", "--kubeconfig", kubeconfig]
        code, _, err = cli(f"deploy (group {index})", *deploy)
        platform_refused = any(p.chart == "platform" for p in group)
        for place in group:
            if code != 1:
                problems[place.id].append(f"`deploy` of group {index} exited {code}, not 1")
            # Platform first: its refusal stops the deploy before the jobs' values are read.
            if (place.chart == "platform" or not platform_refused) and (
                f"{place.refused_at} " not in err
            ):
                problems[place.id].append(f"`deploy` of group {index} did not name the pointer")

        dagster_home = folder / "dagster_home"
        error, printed = _graph(config, kube_cluster, dagster_home, capfd, jobs_only)
        haystack.add("command outputs", f"the Dagster run's output (group {index})", printed)
        _search_definitions(config, kube_cluster.kubeconfig, haystack)
        events = _search_dagster(dagster_home, haystack)
        evaluations = _check_evaluations(events)
        released = {
            e.dagster_event.asset_key.to_user_string()
            for e in events
            if e.dagster_event_type == dg.DagsterEventType.ASSET_MATERIALIZATION
            and e.dagster_event is not None
            and e.dagster_event.asset_key is not None
        } & {"platform_release", "jobs_release"}
        for place in group:
            if not isinstance(error, AssertionError):  # deploy_through_graph: the run failed
                what = type(error).__name__ if error else "succeeded"
                problems[place.id].append(f"the graph (group {index}) did not fail its run: {what}")
            check = evaluations.get(f"{place.chart}_values:no_plaintext_secrets")
            if check is None or check[0] or place.refused_at not in check[1]:
                problems[place.id].append(
                    f"the graph (group {index}): {place.chart}_values:no_plaintext_secrets "
                    f"did not fail naming {place.refused_at}"
                )
            if evaluations.get(f"{place.chart}_values:values_match_schema", (True,))[0] is not True:
                problems[place.id].append(f"the graph (group {index}): the schema check failed")
            if f"{place.chart}_release" in released:
                problems[place.id].append(f"the graph (group {index}) materialized the release")
    clock = _timed(timings, f"{len(groups)} groups: deploy and the Dagster graph", clock)

    # Every literal was planted where it should be (the search would find it in the inputs).
    control = Haystack()
    for path in tmp_path.glob("*/*.*"):
        if path.suffix in (".json", ".yaml"):
            control.add("control", str(path), path.read_text())
    assert set(control.leaks(REFUSED)) == {p.id for p in REFUSED}

    # Nothing was applied: no release, no record, no lock, no object that was not there before.
    objects, records = _search_namespace(kube_cluster.api, namespace, haystack, {})
    after = {(o["kind"], o["metadata"]["name"]) for o in objects}
    assert records == []
    assert after - before == set()
    _timed(timings, "total", started)
    _report(f"refused ({len(groups)} groups: {[len(g) for g in groups]})", haystack, timings)
    leaks = haystack.leaks(REFUSED)
    assert not problems and not leaks, _verdict(problems, leaks)


def test_a_credential_in_a_model_tag_is_refused_when_the_artifacts_load(
    kube_cluster: KubeCluster, namespace: str, tmp_path: Path, capfd: pytest.CaptureFixture[str]
):
    """Model tags become tag keys of the model assets, which Dagster refuses with the tag in its
    message when the code location loads. The artifacts refuse a tag that is not a short name
    first: every command exits 2 naming the field, the definitions do not load, and the
    literal is in none of it."""
    literal = _literal()
    place = Place(
        "artifacts-model-tag-dsn", "jobs", literal, "transforms.models[0].tags",
        _at("transforms", "models", 0, "tags", value=[f"host=db user=dbt password={literal}"]),
    )  # fmt: skip
    haystack = Haystack()
    cli = Cli(capfd, haystack)
    config = str(_inputs(tmp_path, kube_cluster, namespace, [place]))
    kubeconfig = ["--kubeconfig", str(kube_cluster.kubeconfig)]
    for command in (
        ["values", "--chart", "jobs"],
        ["render", "--chart", "jobs"],
        ["deploy", "--dry-run", *kubeconfig],
        ["run-models", *kubeconfig],
    ):
        argv = [*command, "--config", config, "--env", "dev"]
        code, _, err = cli(" ".join(command), *argv)
        assert code == 2, (command, err)
        assert "transforms.models[0].tags: tag 0 is not a short name" in err, (command, err)
    with pytest.raises(ArtifactsError):
        build_definitions(config, kubeconfig=str(kube_cluster.kubeconfig))
    _search_definitions(Path(config), kube_cluster.kubeconfig, haystack)
    assert not haystack.leaks([place]), _verdict({}, haystack.leaks([place]))
