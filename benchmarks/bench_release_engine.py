"""Benchmark: the release engine against the local control plane (issue 5).

1. Deploy through our engine (``helm.deploy.deploy`` over ``SdkHelmEngine``) against the same
   install and upgrade straight through helm-python-sdk (the anchor), for the floe-jobs and
   floe-platform charts: N repetitions, each in a fresh namespace, alternating which side runs
   first. Also times the no-op redeploy (identical chart and values: no new revision) against a
   raw identical ``helm upgrade`` (which writes a new revision), and breaks our overhead down into
   its parts (dependency build, chart digest, release history, status).
2. A health pass over 20 releases with 1,000 pods (18 Deployments and 2 StatefulSets in 4
   namespaces, created directly through the Kubernetes client): time per full pass, API calls per
   pass and per release (counted in the ApiClient), pods per second; against the floor of the
   same list calls with no evaluation.

Prints medians, ratios ours/anchor and peak memory (max RSS; Helm runs in-process, so the
process's own RSS includes it; the benchmark starts no child processes).

    .venv/bin/python -m localcluster --name bench --port-base 16540 up \\
        --nodes 2 --node-pods 600 --node-cpu 64 --node-memory 256Gi
    .venv/bin/python benchmarks/bench_release_engine.py \\
        --kubeconfig ~/.local/state/floe-deploy/localcluster/bench/admin.kubeconfig [--quick]

``--quick``: one repetition and 200 pods, to check the benchmark itself. Every wait has a
deadline and names what it waited for; every namespace it creates is deleted at the end.
"""

from __future__ import annotations

import argparse
import copy
import inspect
import json
import resource
import statistics
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import helm_python
from kubernetes import client
from kubernetes import config as kube_config

from floe_deploy_assets.health.rules import workload_health
from floe_deploy_assets.helm.charts import CHARTS
from floe_deploy_assets.helm.deploy import deploy
from floe_deploy_assets.helm.engine import ReleaseRef, SdkHelmEngine
from floe_deploy_assets.helm.inputs import values_generator
from floe_deploy_assets.helm.packaging import chart_digest
from floe_deploy_assets.helm.render import build_dependencies
from floe_deploy_assets.kube.health import RELEASE_LABEL, _matches, _selector, release_health
from floe_deploy_assets.models.config import ChartKind, load_deployment_config
from floe_deploy_assets.models.deployment import WorkloadType
from floe_deploy_assets.models.products import load_products
from floe_deploy_assets.release.decide import Action
from floe_deploy_assets.release.digests import values_digest
from floe_deploy_assets.values.generator import HelmValuesGenerator

ROOT = Path(__file__).resolve().parents[1]
CONFIG = load_deployment_config(ROOT / "floe-deploy.yaml")
BENCH_LABEL = "floe.dev/benchmark"
STAGES = ("created", "scheduled", "running", "ready")
T = TypeVar("T")


# --- small helpers -----------------------------------------------------------------------------


def wait_for(check: Callable[[], T | None], *, timeout: float, reason: str, interval=0.5) -> T:
    """Call ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise TimeoutError(f"timed out after {timeout:.0f} s waiting for {reason}; last: {last!r}")


def max_rss_mib(who: int = resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def fmt_s(seconds: float) -> str:
    return f"{seconds:8.3f} s" if seconds >= 0.1 else f"{seconds * 1000:8.1f} ms"


@contextmanager
def timed(into: list[float]) -> Iterator[None]:
    started = time.perf_counter()
    yield
    into.append(time.perf_counter() - started)


class CountingApiClient(client.ApiClient):
    """An ApiClient that counts the HTTP requests it sends (by verb and path) and the bytes it
    receives; every typed API call goes through ``request``."""

    def __init__(self, configuration: client.Configuration):
        super().__init__(configuration)
        self.calls: Counter[tuple[str, str]] = Counter()
        self.received = 0

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        response = super().request(method, url, *args, **kwargs)
        self.calls[(method, url.split("?", 1)[0].split("/", 3)[-1])] += 1
        # RESTResponse, or urllib3's response with _preload_content=False: reading ``data``
        # here buffers the body, which the caller then reads from the buffer.
        self.received += len(getattr(response, "data", b"") or b"")
        return response

    def reset(self) -> None:
        self.calls.clear()
        self.received = 0


def api_client(kubeconfig: Path) -> CountingApiClient:
    configuration = client.Configuration()
    kube_config.load_kube_config(str(kubeconfig), client_configuration=configuration)
    return CountingApiClient(configuration)


def _generator(chart: ChartKind) -> HelmValuesGenerator:
    return values_generator(CONFIG, load_products(CONFIG), "dev", chart)


def chart_values(chart: ChartKind) -> dict[str, Any]:
    generator = _generator(chart)
    problems = generator.validate()
    assert not problems, problems
    return generator.helm_values()


def required_secrets(chart: ChartKind) -> list[tuple[str, tuple[str, ...]]]:
    return [(secret.name, tuple(secret.keys)) for secret in _generator(chart).required_secrets]


def changed(chart: ChartKind, values: dict[str, Any]) -> dict[str, Any]:
    """The values with one change that makes a real upgrade (a rolled pod for the platform)."""
    values = copy.deepcopy(values)
    if chart == "jobs":
        values["job"]["ttlSecondsAfterFinished"] = 60
    else:
        values["postgresql"]["resources"]["limits"]["memory"] = "2Gi"
    return values


class Namespaces:
    """Creates benchmark namespaces (labelled), and deletes them, waiting with a deadline."""

    def __init__(self, core: client.CoreV1Api):
        self.core = core
        self.created: list[str] = []

    def fresh(self, prefix: str, secrets: Sequence[tuple[str, tuple[str, ...]]] = ()) -> str:
        name = f"bench-{prefix}-{uuid.uuid4().hex[:6]}"
        self.core.create_namespace({"metadata": {"name": name, "labels": {BENCH_LABEL: "1"}}})
        self.created.append(name)

        def default_account_has_token() -> bool:
            accounts = self.core.list_namespaced_service_account(
                name, field_selector="metadata.name=default"
            ).items
            return bool(accounts and accounts[0].secrets)

        wait_for(
            default_account_has_token,
            timeout=60,
            reason=f"the default ServiceAccount token in namespace {name} (pods need it)",
        )
        for secret, keys in secrets:  # what an operator provides before the platform starts
            self.core.create_namespaced_secret(
                name,
                {"metadata": {"name": secret}, "stringData": {k: "bench-only" for k in keys}},
            )
        return name

    def delete(self, names: list[str], timeout: float) -> list[str]:
        """Delete, then wait (up to ``timeout``) until they are gone; returns those still there."""
        for name in names:
            try:
                self.core.delete_namespace(name, propagation_policy="Background")
            except client.ApiException as error:
                if error.status != 404:
                    raise
        remaining = set(names)

        def all_gone() -> bool:
            remaining.intersection_update(
                ns.metadata.name
                for ns in self.core.list_namespace(label_selector=BENCH_LABEL).items
            )
            return not remaining

        with suppress(TimeoutError):  # the caller reports what is left
            wait_for(
                all_gone,
                timeout=timeout,
                reason=f"namespaces {sorted(names)} to finish terminating",
                interval=1.0,
            )
        return sorted(remaining)


# --- 1. our engine against raw helm-python-sdk -------------------------------------------------

RAW, OURS, OURS_CLUSTER = "raw sdk", "ours", "ours+cluster"
PARTS = ("build_dependencies", "chart_digest", "values_digest", "history", "status")


def deploy_options(timeout: int, cluster: Any | None) -> dict[str, Any]:
    """Keyword options for ``deploy`` as its signature has them now: the timeout alone or in a
    ``DeployPolicy``, and cluster access (lock, workload health, drift) when it takes one."""
    parameters = inspect.signature(deploy).parameters
    options: dict[str, Any] = {}
    if "policy" in parameters:
        from floe_deploy_assets.helm import deploy as deploy_module

        options["policy"] = deploy_module.DeployPolicy(timeout=timedelta(seconds=timeout))
    elif "timeout" in parameters:
        options["timeout"] = timeout
    if cluster is not None:
        options["cluster"] = cluster
    return options


def cluster_access(api: client.ApiClient) -> Any | None:
    """``ClusterAccess`` over ``api`` if the engine has it (``deploy(..., cluster=...)``)."""
    if "cluster" not in inspect.signature(deploy).parameters:
        return None
    try:
        from floe_deploy_assets.kube.access import ClusterAccess
    except ImportError:
        return None
    return ClusterAccess(api)


@dataclass
class DeployTimes:
    """Seconds per side and operation, API calls our side made from Python, and the parts of
    our overhead each timed alone on a deployed release."""

    seconds: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    calls: dict[str, list[int]] = field(default_factory=dict)  # ours+cluster, per operation
    parts: dict[str, list[float]] = field(default_factory=dict)

    def add(self, side: str, operation: str, seconds: float) -> None:
        self.seconds.setdefault(side, {}).setdefault(operation, []).append(seconds)

    def median(self, side: str, operation: str) -> float:
        return median(self.seconds.get(side, {}).get(operation, []))


def run_raw(
    kubeconfig: Path,
    chart_dir: Path,
    release: str,
    namespace: str,
    values: dict,
    new_values: dict,
    timeout: int,
    times: DeployTimes,
) -> None:
    def helm_call(operation: str, action: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        started = time.perf_counter()
        result = action()
        times.add(RAW, operation, time.perf_counter() - started)
        return result

    def install() -> dict[str, Any]:
        return helm.install(
            str(chart_dir),
            release,
            values,
            namespace=namespace,
            timeout=timeout,
            wait="watcher",
            create_namespace=True,
        )

    def upgrade() -> dict[str, Any]:
        return helm.upgrade(
            str(chart_dir),
            release,
            new_values,
            namespace=namespace,
            timeout=timeout,
            wait="watcher",
            reset_values=True,
        )

    started = time.perf_counter()
    helm = helm_python.Config(kubeconfig_path=str(kubeconfig), namespace=namespace)
    configured = time.perf_counter() - started  # part of a raw install, as it is of ours
    try:
        installed = helm_call("install", install)
        times.seconds[RAW]["install"][-1] += configured
        assert installed["status"] == "deployed", installed["status"]
        upgraded = helm_call("upgrade", upgrade)
        assert (upgraded["revision"], upgraded["status"]) == (2, "deployed"), upgraded["status"]
        again = helm_call("redeploy", upgrade)
        assert again["revision"] == 3  # what plain Helm does on a redeploy: one more revision
    finally:
        helm.close()


def run_ours(
    engine: SdkHelmEngine,
    side: str,
    cluster: Any | None,
    chart_dir: Path,
    release: str,
    namespace: str,
    values: dict,
    new_values: dict,
    timeout: int,
    times: DeployTimes,
) -> None:
    ref = ReleaseRef(release, namespace, "bench")
    options = deploy_options(timeout, cluster)
    steps = [
        ("install", values, Action.INSTALL),
        ("redeploy", values, Action.NOTHING),
        ("upgrade", new_values, Action.UPGRADE),
        ("redeploy after upgrade", new_values, Action.NOTHING),
    ]
    for operation, step_values, expected in steps:
        if cluster is not None:
            cluster.api.reset()
        started = time.perf_counter()
        outcome = deploy(engine, ref, chart_dir, step_values, **options)
        times.add(side, operation, time.perf_counter() - started)
        if cluster is not None:
            times.calls.setdefault(operation, []).append(sum(cluster.api.calls.values()))
        assert outcome.decision.action is expected, (expected, outcome.decision)
        assert getattr(outcome, "error", None) is None, outcome
    revisions = [(r.revision, r.status) for r in engine.history(ref)]
    assert revisions == [(1, "superseded"), (2, "deployed")], revisions
    if cluster is None:  # the parts of the overhead, each alone
        parts: dict[str, Callable[[], object]] = {
            "build_dependencies": lambda: build_dependencies(chart_dir),
            "chart_digest": lambda: chart_digest(chart_dir),
            "values_digest": lambda: values_digest(new_values),
            "history": lambda: engine.history(ref),
            "status": lambda: engine.status(ref),
        }
        for name, part in parts.items():
            started = time.perf_counter()
            part()
            times.parts.setdefault(name, []).append(time.perf_counter() - started)


def bench_deploys(
    kubeconfig: Path,
    namespaces: Namespaces,
    charts: Sequence[ChartKind],
    repetitions: int,
    timeout: int,
) -> dict[str, DeployTimes]:
    results: dict[str, DeployTimes] = {}
    engine = SdkHelmEngine(kubeconfig)
    cluster = cluster_access(api_client(kubeconfig))
    sides = [RAW, OURS] + ([OURS_CLUSTER] if cluster is not None else [])
    try:
        for chart in charts:
            chart_dir = CONFIG.chart_path(chart)
            release = CONFIG.release_name(chart, "dev")
            build_dependencies(chart_dir)  # the raw side needs them; ours rebuilds on each apply
            values = chart_values(chart)
            new_values = changed(chart, values)
            secrets = required_secrets(chart)
            times = results[chart] = DeployTimes()
            for repetition in range(repetitions):
                shift = repetition % len(sides)  # rotate which side runs first
                for side in sides[shift:] + sides[:shift]:
                    namespace = namespaces.fresh(chart, secrets)
                    print(f"  {chart} #{repetition + 1} {side:12} in {namespace}", flush=True)
                    if side == RAW:
                        run_raw(
                            kubeconfig,
                            chart_dir,
                            release,
                            namespace,
                            values,
                            new_values,
                            timeout,
                            times,
                        )
                    else:
                        run_ours(
                            engine,
                            side,
                            cluster if side == OURS_CLUSTER else None,
                            chart_dir,
                            release,
                            namespace,
                            values,
                            new_values,
                            timeout,
                            times,
                        )
                    # Let the namespace go before the next measurement, so its teardown does
                    # not compete with it for the two cores.
                    left = namespaces.delete([namespace], timeout=120)
                    if left:
                        print(f"    (namespace {namespace} still terminating after 120 s)")
    finally:
        engine.close()
    return results


def print_deploys(results: dict[str, DeployTimes], repetitions: int) -> None:
    print(f"\n== Deploy: our engine vs raw helm-python-sdk (median of {repetitions}) ==")
    sides = [s for s in (OURS, OURS_CLUSTER) if any(s in t.seconds for t in results.values())]
    header = f"{'chart':9} {'operation':23} {'raw sdk':>11}" + "".join(
        f" {s:>12} {s + '/raw':>17}" for s in sides
    )
    print(header)
    print("-" * len(header))
    rows = [
        ("install", "install"),
        ("upgrade (1 value)", "upgrade"),
        ("redeploy, same values", "redeploy"),
        ("redeploy after upgrade", "redeploy after upgrade"),
    ]
    for chart, t in results.items():
        for label, operation in rows:
            raw = t.median(RAW, "redeploy" if "redeploy" in operation else operation)
            cells = "".join(
                f" {fmt_s(t.median(s, operation)):>12} {t.median(s, operation) / raw:16.2f}x"
                for s in sides
            )
            print(f"{chart:9} {label:23} {fmt_s(raw):>11}{cells}")
    print("  raw redeploy: `helm upgrade` with identical values (writes a new revision);")
    print("  ours redeploy: decided from digests, no new revision (asserted).")
    print(f"  {OURS}: deploy(engine, ...) without cluster access;")
    print(f"  {OURS_CLUSTER}: deploy(..., cluster=...): release lock, workload health, drift.")
    if any(t.calls for t in results.values()):
        print("\n-- Kubernetes API calls made from Python by ours+cluster (median; Helm's own")
        print("   calls from Go are not counted) --")
        for chart, t in results.items():
            cells = ", ".join(f"{op} {statistics.median(c):.0f}" for op, c in t.calls.items())
            print(f"  {chart:9} {cells}")
    print("\n-- parts of our overhead, each timed alone on a deployed release (median) --")
    print(f"{'chart':9} " + " ".join(f"{p:>18}" for p in PARTS))
    for chart, t in results.items():
        cells = " ".join(f"{fmt_s(median(t.parts.get(p, []))):>18}" for p in PARTS)
        print(f"{chart:9} {cells}")
    print("  install/upgrade = build_dependencies + digests + history + Helm's install/upgrade")
    print("  redeploy        = digests + history + status")
    print("\n-- every run, seconds --")
    for chart, t in results.items():
        for side, operations in t.seconds.items():
            for operation, runs in operations.items():
                print(f"  {chart:9} {side:12} {operation:23} {', '.join(f'{x:.2f}' for x in runs)}")


# --- 2. health pass over 20 releases and 1,000 pods --------------------------------------------


@dataclass(frozen=True)
class FakeRelease:
    namespace: str
    name: str
    kind: str  # Deployment or StatefulSet
    replicas: int


def workload(release: FakeRelease) -> dict[str, Any]:
    labels = {RELEASE_LABEL: release.name, "app.kubernetes.io/name": "bench", BENCH_LABEL: "1"}
    selector = {RELEASE_LABEL: release.name, "app.kubernetes.io/name": "bench"}
    pod_spec = {
        "terminationGracePeriodSeconds": 0,
        "automountServiceAccountToken": False,
        "containers": [
            {
                "name": "app",
                "image": "registry.example/bench:1.0",
                "resources": {
                    "requests": {"cpu": "1m", "memory": "1Mi"},
                    "limits": {"cpu": "2m", "memory": "2Mi"},
                },
            }
        ],
    }
    spec: dict[str, Any] = {
        "replicas": release.replicas,
        "selector": {"matchLabels": selector},
        "template": {"metadata": {"labels": labels}, "spec": pod_spec},
    }
    if release.kind == "StatefulSet":
        spec |= {"serviceName": release.name, "podManagementPolicy": "Parallel"}
    return {
        "apiVersion": "apps/v1",
        "kind": release.kind,
        "metadata": {"name": release.name, "labels": labels},
        "spec": spec,
    }


def fake_releases(namespaces: list[str], total_pods: int) -> list[FakeRelease]:
    releases = []
    per_release, extra = divmod(total_pods, 20)
    for i in range(20):
        kind = "StatefulSet" if i in (9, 19) else "Deployment"
        replicas = per_release + (1 if i < extra else 0)
        releases.append(
            FakeRelease(namespaces[i % len(namespaces)], f"rel-{i:02d}", kind, replicas)
        )
    return releases


def pod_census(api: client.ApiClient) -> dict[str, int]:
    response = client.CoreV1Api(api).list_pod_for_all_namespaces(
        label_selector=f"{BENCH_LABEL}=1", _preload_content=False
    )
    pods = json.loads(response.data)["items"]
    census = Counter(created=len(pods))
    for pod in pods:
        status = pod.get("status", {})
        census["scheduled"] += bool(pod["spec"].get("nodeName"))
        census["running"] += status.get("phase") == "Running"
        census["ready"] += any(
            c["type"] == "Ready" and c["status"] == "True" for c in status.get("conditions") or []
        )
    return dict(census)


def release_health_json(api: client.ApiClient, namespace: str, release: str) -> list[Any]:
    """``kube.health.release_health`` with the same calls, read as JSON rather than as typed
    models turned back into dicts (a prototype of a fix; the health rules take plain dicts)."""
    apps, batch, core = client.AppsV1Api(api), client.BatchV1Api(api), client.CoreV1Api(api)
    selector = f"{RELEASE_LABEL}={release}"

    def items(lister: Callable[..., Any]) -> list[dict[str, Any]]:
        response = lister(namespace, label_selector=selector, _preload_content=False)
        return json.loads(response.data)["items"]

    pods = items(core.list_namespaced_pod)
    listers = {
        WorkloadType.DEPLOYMENT: apps.list_namespaced_deployment,
        WorkloadType.STATEFUL_SET: apps.list_namespaced_stateful_set,
        WorkloadType.DAEMON_SET: apps.list_namespaced_daemon_set,
        WorkloadType.JOB: batch.list_namespaced_job,
    }
    components = []
    for kind, lister in listers.items():
        for obj in items(lister):
            owned: list[Mapping[str, Any]] = [
                pod for pod in pods if _matches(pod, _selector(obj, kind))
            ]
            components.append(workload_health(kind, obj, owned))
    return sorted(components, key=lambda c: (c.type, c.name))


def list_only(api: client.ApiClient, namespace: str, selector: str, raw: bool) -> int:
    """The five list calls of one health pass, without evaluation; returns the objects seen."""
    apps, batch, core = client.AppsV1Api(api), client.BatchV1Api(api), client.CoreV1Api(api)
    listers = (
        core.list_namespaced_pod,
        apps.list_namespaced_deployment,
        apps.list_namespaced_stateful_set,
        apps.list_namespaced_daemon_set,
        batch.list_namespaced_job,
    )
    seen = 0
    for lister in listers:
        if raw:
            response = lister(namespace, label_selector=selector, _preload_content=False)
            seen += len(json.loads(response.data)["items"])
        else:
            seen += len(lister(namespace, label_selector=selector).items)
    return seen


@dataclass
class PassStats:
    seconds: list[float] = field(default_factory=list)
    calls: list[int] = field(default_factory=list)
    received: list[int] = field(default_factory=list)
    objects: int = 0
    by_resource: Counter[str] = field(default_factory=Counter)  # calls of the last pass


def measure(api: CountingApiClient, passes: int, one_pass: Callable[[], int]) -> PassStats:
    stats = PassStats()
    one_pass()  # warm-up: connections, and the models' first use
    for _ in range(passes):
        api.reset()
        started = time.perf_counter()
        stats.objects = one_pass()
        stats.seconds.append(time.perf_counter() - started)
        stats.calls.append(sum(api.calls.values()))
        stats.received.append(api.received)
    stats.by_resource = Counter()
    for (_, path), count in api.calls.items():
        stats.by_resource[path.rsplit("/", 1)[-1]] += count
    return stats


def bench_health(
    kubeconfig: Path, namespaces: Namespaces, total_pods: int, passes: int, pods_deadline: float
) -> None:
    setup_api = api_client(kubeconfig)
    names = [namespaces.fresh(f"health{i}") for i in range(4)]
    releases = fake_releases(names, total_pods)
    apps = client.AppsV1Api(setup_api)
    print(f"  creating 20 releases with {total_pods} pods in {len(names)} namespaces", flush=True)
    started = time.monotonic()
    for release in releases:
        if release.kind == "Deployment":
            apps.create_namespaced_deployment(release.namespace, workload(release))
        else:
            apps.create_namespaced_stateful_set(release.namespace, workload(release))
    milestones: dict[str, float] = {}
    census: dict[str, int] = {}
    timeline: list[tuple[float, dict[str, int]]] = []

    def everything_ready() -> bool:
        census.update(pod_census(setup_api))
        elapsed = time.monotonic() - started
        timeline.append((elapsed, dict(census)))
        for stage in STAGES:
            if stage not in milestones and census.get(stage, 0) >= total_pods:
                milestones[stage] = elapsed
        return census.get("ready", 0) >= total_pods

    try:
        wait_for(
            everything_ready,
            timeout=pods_deadline,
            reason=f"the simulated kubelet to report {total_pods} pods Ready",
            interval=2.0,
        )
    except TimeoutError:
        print(f"  (not all pods ready after {pods_deadline:.0f} s: {census})")
    print(f"\n== Pod start-up: {total_pods} pods, 20 workloads (18 Deployments, 2 StatefulSets) ==")
    for stage in STAGES:
        at = milestones.get(stage)
        when = f"all after {at:6.1f} s" if at is not None else "not all by the deadline"
        print(f"  {stage:9} {census.get(stage, 0):5} / {total_pods}  {when}")
    samples = timeline[:: max(1, len(timeline) // 12)]
    if timeline and samples[-1] is not timeline[-1]:
        samples.append(timeline[-1])
    for elapsed, seen in samples:
        counts = ", ".join(f"{stage} {seen.get(stage, 0)}" for stage in STAGES)
        print(f"    at {elapsed:6.1f} s: {counts}")
    print(f"  peak RSS so far {max_rss_mib():.0f} MiB")

    api = api_client(kubeconfig)
    verdicts: Counter[str] = Counter()

    def health_pass() -> int:
        verdicts.clear()
        pods = 0
        for release in releases:
            for component in release_health(api, release.namespace, release.name):
                verdicts[component.health] += 1
                pods += component.replicas.desired
        return pods

    def json_health_pass() -> int:
        pods = 0
        for release in releases:
            for component in release_health_json(api, release.namespace, release.name):
                pods += component.replicas.desired
        return pods

    def list_pass(raw: bool) -> Callable[[], int]:
        return lambda: sum(
            list_only(api, r.namespace, f"{RELEASE_LABEL}={r.name}", raw) for r in releases
        )

    def per_namespace_pass() -> int:
        # A design alternative: the same five lists once per namespace, for all its releases.
        selector = f"{RELEASE_LABEL} in ({','.join(r.name for r in releases)})"
        return sum(list_only(api, ns, selector, raw=True) for ns in names)

    variants = [
        ("release_health x 20 (ours)", health_pass),
        ("release_health on raw JSON (*)", json_health_pass),
        ("list calls only, typed models", list_pass(raw=False)),
        ("list calls only, raw JSON", list_pass(raw=True)),
        ("per-namespace lists, raw JSON", per_namespace_pass),
    ]
    agrees = all(
        release_health_json(api, r.namespace, r.name) == release_health(api, r.namespace, r.name)
        for r in releases
    )
    results = [(name, measure(api, passes, run)) for name, run in variants]
    pods_now = census.get("created", 0)
    print(f"\n== Health pass over 20 releases, {pods_now} pods (median of {passes} passes) ==")
    header = (
        f"{'variant':31} {'per pass':>11} {'calls/pass':>10} {'calls/rel':>9} "
        f"{'MiB/pass':>8} {'pods/s':>8} {'vs floor':>8}"
    )
    print(header)
    print("-" * len(header))
    floor = median(results[2][1].seconds)
    for name, stats in results:
        seconds = median(stats.seconds)
        calls = statistics.median(stats.calls)
        print(
            f"{name:31} {fmt_s(seconds)} {calls:10.0f} {calls / 20:9.1f} "
            f"{statistics.median(stats.received) / 2**20:8.2f} {pods_now / seconds:8.0f} "
            f"{seconds / floor:7.2f}x"
        )
    tally = dict(sorted((str(health), count) for health, count in verdicts.items()))
    print(f"  ours: {sum(verdicts.values())} components, health {tally}")
    print("  floor: the same list calls deserialized into typed models, no evaluation")
    print("  (*) a prototype of a fix, not product code: release_health's logic on the lists'")
    print(
        "      JSON (_preload_content=False), without typed models and sanitize_for_serialization"
    )
    print(f"      it judges every release as release_health does: {'yes' if agrees else 'NO'}")
    health_stats = results[0][1]
    print(f"  calls of one pass of ours, by resource: {dict(health_stats.by_resource)}")
    print(f"  ours, every pass: {', '.join(f'{x:.2f} s' for x in health_stats.seconds)}")


# --- main --------------------------------------------------------------------------------------


def chart_kinds(text: str, parser: argparse.ArgumentParser) -> list[ChartKind]:
    """The charts of ``--charts`` (comma-separated), each one of ``CHARTS``."""
    charts: list[ChartKind] = []
    for name in (c.strip() for c in text.split(",")):
        if name in CHARTS:
            charts.append(name)
        elif name:
            parser.error(f"--charts: unknown chart {name!r}; charts: {', '.join(CHARTS)}")
    return charts


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kubeconfig", type=Path, required=True, help="admin kubeconfig")
    parser.add_argument("--quick", action="store_true", help="1 repetition, 200 pods")
    parser.add_argument("--repetitions", type=int, help="deploy repetitions per side (3)")
    parser.add_argument("--pods", type=int, help="pods across the 20 releases (1000)")
    parser.add_argument("--passes", type=int, help="health passes per variant (5)")
    parser.add_argument("--charts", default="jobs,platform", help="charts to deploy")
    parser.add_argument("--skip-deploy", action="store_true")
    parser.add_argument("--skip-health", action="store_true")
    parser.add_argument("--timeout", type=int, default=180, help="per Helm operation, seconds")
    args = parser.parse_args()
    repetitions = args.repetitions or (1 if args.quick else 3)
    total_pods = args.pods or (200 if args.quick else 1000)
    passes = args.passes or (2 if args.quick else 5)
    charts = chart_kinds(args.charts, parser)

    core = client.CoreV1Api(api_client(args.kubeconfig))
    nodes = core.list_node().items
    capacity = sum(int(n.status.allocatable["pods"]) for n in nodes)
    print(
        f"cluster: {len(nodes)} nodes, {capacity} pods allocatable; charts {charts}; "
        f"{repetitions} repetitions; {total_pods} pods; {passes} passes"
    )
    if not args.skip_health and capacity < total_pods + 50:
        print(
            f"not enough pod capacity for {total_pods} pods: start the cluster with more "
            "--node-pods/--nodes"
        )
        return 2
    namespaces = Namespaces(core)
    started = time.perf_counter()
    try:
        if not args.skip_deploy:
            results = bench_deploys(args.kubeconfig, namespaces, charts, repetitions, args.timeout)
            print_deploys(results, repetitions)
            print(f"  peak RSS so far {max_rss_mib():.0f} MiB")
        if not args.skip_health:
            bench_health(
                args.kubeconfig, namespaces, total_pods, passes, 900 if total_pods > 200 else 300
            )
    finally:
        cleanup = time.perf_counter()
        left = namespaces.delete(namespaces.created, timeout=300)
        print(
            f"\ncleanup: {len(namespaces.created)} namespaces deleted in "
            f"{time.perf_counter() - cleanup:.1f} s"
            + (f"; still terminating: {left}" if left else "")
        )
    print(
        f"total {time.perf_counter() - started:.0f} s; peak RSS {max_rss_mib():.0f} MiB "
        f"(children {max_rss_mib(resource.RUSAGE_CHILDREN):.0f} MiB; Helm runs in-process)"
    )
    print("2 shared CPU cores run the control plane, the simulated kubelet and this benchmark:")
    print("figures are noisy; compare ratios within one run rather than across machines.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
