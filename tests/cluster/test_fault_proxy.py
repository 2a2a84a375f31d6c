"""Through the fault-injecting proxy: each injected fault is survived or reported clearly, and no
run leaves a release pending once the next run has had its turn.

What client-go (inside Helm) does with each fault was found by trying it, and is asserted as
found: it retries a 429 or 5xx only when the answer carries ``Retry-After``; it does not retry a
dropped connection on a write; a failed write of the *release record* after the objects were
applied is logged, not returned, so Helm reports success while the record stays pending.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import Any

import pytest
from kubernetes import client, config

from floe_deploy_assets.helm.deploy import DeployOutcome, DeployPolicy, deploy
from floe_deploy_assets.helm.engine import HelmEngineError, ReleaseRef, SdkHelmEngine
from floe_deploy_assets.kube.access import ClusterAccess
from floe_deploy_assets.kube.retry import call_with_retry, watch_with_relist
from floe_deploy_assets.release.decide import Remediation
from tests.conftest import KubeCluster
from tests.support.charts import CONFIG, generated_values
from tests.support.faultproxy import Fault, FaultProxy

pytestmark = pytest.mark.cluster
JOBS_CHART = CONFIG.chart_path("jobs")
POLICY = DeployPolicy(timeout=timedelta(seconds=60))
PENDING = ("pending-install", "pending-upgrade", "pending-rollback")
RELEASE_SECRETS = r"/namespaces/[^/]+/secrets$"  # Helm creates a revision's record here
RELEASE_RECORD = r"/namespaces/[^/]+/secrets/sh\.helm\.release\.v1\."  # and updates it here
APPLY = r"/namespaces/[^/]+/configmaps/floe-compiled-artifacts$"  # one object, server-side applied


@pytest.fixture
def proxy(kube_cluster: KubeCluster) -> Iterator[FaultProxy]:
    with FaultProxy(kube_cluster.kubeconfig) as running:
        yield running


def proxied_client(proxy: FaultProxy, urllib3_retries: bool = False) -> client.ApiClient:
    """A client through the proxy; by default without urllib3's own (silent) retries, so that
    ``call_with_retry`` is the only layer retrying."""
    configuration = client.Configuration()
    config.load_kube_config(str(proxy.kubeconfig), client_configuration=configuration)
    if not urllib3_retries:
        configuration.retries = False
    return client.ApiClient(configuration)


# -- (a) the Python client with call_with_retry ---------------------------------------------------


@pytest.mark.parametrize(
    ("fault", "times", "answers"),
    [
        (Fault.too_many_requests(retry_after=1), 2, [429, 429, 200]),
        (Fault.server_error(), 2, [500, 500, 200]),
        (Fault.unavailable(), 2, [503, 503, 200]),
        (Fault.drop(), 2, [None, None, 200]),  # None: closed without an answer
    ],
    ids=["429-retry-after", "500", "503", "dropped"],
)
def test_a_list_call_survives_the_fault_with_call_with_retry(
    proxy: FaultProxy, namespace: str, fault: Fault, times: int, answers: list[int | None]
):
    core = client.CoreV1Api(proxied_client(proxy))
    path = rf"/api/v1/namespaces/{namespace}/configmaps$"
    proxy.add_rule("GET", path, fault, times=times)
    attempts: list[int] = []

    def listing(ns: str, **options: Any) -> Any:
        attempts.append(1)
        return core.list_namespaced_config_map(ns, **options)

    listed = call_with_retry(listing, namespace, what="listing ConfigMaps", deadline=20)

    assert [c.metadata.name for c in listed.items] == ["kube-root-ca.crt"]
    assert [r.status for r in proxy.requests_matching("GET", path)] == answers
    assert len(attempts) == times + 1  # each retry was ours
    if fault.retry_after:
        first, second = proxy.requests_matching("GET", path)[:2]
        assert second.at - first.at >= 0.9  # Retry-After: 1 was honoured


def test_urllib3_retries_a_429_with_retry_after_on_its_own(proxy: FaultProxy, namespace: str):
    """With the client's default configuration, urllib3 retries a GET answered 429/503 with
    Retry-After (and a dropped GET) itself, before call_with_retry sees anything."""
    core = client.CoreV1Api(proxied_client(proxy, urllib3_retries=True))
    path = rf"/api/v1/namespaces/{namespace}/configmaps$"
    proxy.add_rule("GET", path, Fault.too_many_requests(retry_after=1), times=1)
    attempts: list[int] = []

    def listing(ns: str, **options: Any) -> Any:
        attempts.append(1)
        return core.list_namespaced_config_map(ns, **options)

    call_with_retry(listing, namespace, what="listing ConfigMaps", deadline=20)

    assert [r.status for r in proxy.requests_matching("GET", path)] == [429, 200]
    assert len(attempts) == 1


# -- (b) a watch ended with 410 Gone is relisted --------------------------------------------------


def test_a_watch_ended_with_410_gone_is_relisted_and_sees_later_events(
    proxy: FaultProxy, kube_cluster: KubeCluster, namespace: str
):
    core = client.CoreV1Api(proxied_client(proxy))
    path = rf"/api/v1/namespaces/{namespace}/configmaps$"
    proxy.add_rule("GET", path, Fault.watch_gone(), times=1)
    name = f"late-{uuid.uuid4().hex[:6]}"
    seen: list[tuple[str, int]] = []

    events = watch_with_relist(
        core.list_namespaced_config_map, namespace, what="watching ConfigMaps", duration=30
    )
    try:
        for event in events:
            seen.append((event.type, event.relists))
            if event.type == "SYNC" and event.relists == 1:  # relisted after the 410
                kube_cluster.core.create_namespaced_config_map(
                    namespace, {"metadata": {"name": name}}
                )
            if event.type == "ADDED" and event.object.metadata.name == name:
                break
    finally:
        events.close()

    assert seen == [("SYNC", 0), ("SYNC", 1), ("ADDED", 1)], f"never saw {name} added"
    lists = proxy.requests_matching("GET", path, watch=False)
    watches = proxy.requests_matching("GET", path, watch=True)
    assert [r.status for r in lists] == [200, 200]
    assert [(r.status, r.fault) for r in watches] == [(200, "watch-gone"), (200, None)]


# -- (c) Helm through the proxy -------------------------------------------------------------------


@dataclass(frozen=True)
class HelmFault:
    operation: str  # install or upgrade (after a direct install)
    method: str
    path: str
    fault: Fault
    times: int
    succeeds: bool  # what Helm reports (our engine's outcome)
    history_after: list[str]  # statuses in storage after the faulty run, oldest first
    answers: list[int | None]  # what the proxy answered to the matching requests
    message: str = ""  # in the error, when it fails
    query: str | None = None


HELM_FAULTS = {
    # client-go retries a 429/5xx only when the answer says Retry-After.
    "create-record-503-no-retry-after": HelmFault(
        "install", "POST", RELEASE_SECRETS, Fault.unavailable(), 1,
        False, [], [503], "unable to handle the request",
    ),
    "create-record-503-retry-after": HelmFault(
        "install", "POST", RELEASE_SECRETS, Fault.unavailable(retry_after=1), 2,
        True, ["deployed"], [503, 503, 201],
    ),
    "apply-429-retry-after": HelmFault(
        "install", "PATCH", APPLY, Fault.too_many_requests(retry_after=1), 2,
        True, ["deployed"], [429, 429, 201],
    ),
    "apply-500": HelmFault(
        "install", "PATCH", APPLY, Fault.server_error(), 1,
        False, ["failed"], [500], "server-side apply failed",
    ),
    "create-record-dropped": HelmFault(
        "install", "POST", RELEASE_SECRETS, Fault.drop(), 1,
        False, [], [None], "EOF",
    ),
    # The objects are applied, then the record's update to "deployed" fails: Helm logs it and
    # reports success, leaving the record pending; the deploy (holding the release lock)
    # records what Helm reported.
    "final-record-503": HelmFault(
        "install", "PUT", RELEASE_RECORD, Fault.unavailable(), 1,
        True, ["deployed"], [503],
    ),
    "final-record-dropped": HelmFault(
        "install", "PUT", RELEASE_RECORD, Fault.drop(), 1,
        True, ["deployed"], [None],
    ),
    # An upgrade's record updates: the old revision's "superseded" (its failure ignored by
    # Helm), then the new one's "deployed" (its failure reported, the revision left pending):
    # the deploy marks it failed and the policy rolls back to revision 1, in the same run.
    "upgrade-records-503": HelmFault(
        "upgrade", "PUT", RELEASE_RECORD, Fault.unavailable(), 2,
        False, ["superseded", "failed", "deployed"], [503, 503], "failed to update",
    ),
    # 409 Conflict on the release record: creating the new revision's fails the upgrade, with
    # nothing written; on superseding the old revision, Helm ignores it (two would stay
    # "deployed"), and the deploy supersedes the old one itself.
    "create-record-409": HelmFault(
        "upgrade", "POST", RELEASE_SECRETS, Fault.conflict(), 1,
        False, ["deployed"], [409], "the object has been modified",
    ),
    "supersede-record-409": HelmFault(
        "upgrade", "PUT", RELEASE_RECORD, Fault.conflict(), 1,
        True, ["superseded", "deployed"], [409, 200],
    ),
    # Helm's readiness wait (kstatus) lists, then watches, the chart's kinds. A watch ended with
    # 410 Gone does not fail the install: here the list already showed every object ready, so
    # the wait ends without needing (or making) the reflector's relist.
    "wait-watch-410": HelmFault(
        "install", "GET", r"/namespaces/[^/]+/configmaps$", Fault.watch_gone(), 1,
        True, ["deployed"], [200], query=r"^(?!.*sendInitialEvents).*resourceVersion=[1-9]",
    ),
}  # fmt: skip


def run_deploy(
    engine: SdkHelmEngine,
    ref: ReleaseRef,
    values: dict[str, Any],
    cluster: ClusterAccess,
    policy: DeployPolicy = POLICY,
) -> DeployOutcome:
    return deploy(engine, ref, JOBS_CHART, values, cluster=cluster, policy=policy)


@pytest.fixture
def proxied_engine(proxy: FaultProxy) -> Iterator[SdkHelmEngine]:
    helm_engine = SdkHelmEngine(proxy.kubeconfig)
    yield helm_engine
    helm_engine.close()


@pytest.mark.parametrize("case", list(HELM_FAULTS.values()), ids=list(HELM_FAULTS))
def test_helm_through_the_proxy_survives_or_reports_the_fault_and_leaves_nothing_pending(
    case: HelmFault,
    proxy: FaultProxy,
    proxied_engine: SdkHelmEngine,
    engine: SdkHelmEngine,
    kube_cluster: KubeCluster,
    namespace: str,
):
    ref = ReleaseRef("floe-jobs", namespace, "test-cluster")
    # The lock, the release storage and the health pass go straight to the API server: the
    # faults are for Helm's requests.
    direct = ClusterAccess(kube_cluster.api)
    values = generated_values("jobs")
    if case.operation == "upgrade":
        assert run_deploy(engine, ref, values, direct).succeeded
        values["job"]["ttlSecondsAfterFinished"] = 60

    proxy.add_rule(case.method, case.path, case.fault, times=case.times, query=case.query)
    outcome = run_deploy(proxied_engine, ref, values, direct)

    def statuses() -> list[str]:
        return [r.status for r in engine.history(ref)]

    matching = [
        r for r in proxy.requests_matching(case.method, case.path) if r.fault or r.method != "GET"
    ]
    assert [r.status for r in matching][: len(case.answers)] == case.answers
    assert outcome.succeeded is case.succeeds, outcome.error
    assert statuses() == case.history_after
    if not case.succeeds:
        error = outcome.error
        assert isinstance(error, HelmEngineError)
        assert (error.release, error.operation) == (ref, case.operation)
        assert all(part in str(error) for part in (ref.name, namespace, "test-cluster"))
        assert case.message in str(error)
    if case.fault.retry_after:  # each retry waited as told
        times = [r.at for r in matching[: len(case.answers)]]
        assert all(later - earlier >= 0.9 for earlier, later in itertools.pairwise(times)), times

    # The next run, with the faults gone and a policy that retries a failed release (the
    # default, roll back, holds a failed first install), converges: nothing pending.
    proxy.clear_rules()
    again = run_deploy(
        proxied_engine, ref, values, direct, replace(POLICY, remediation=Remediation.RETRY)
    )
    assert again.succeeded, again.error
    after = statuses()
    assert not set(after) & set(PENDING), after
    assert after[-1] == "deployed"
