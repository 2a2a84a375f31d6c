"""Through the fault-injecting proxy: each injected fault is survived or reported clearly, and no
run leaves a release pending once the next run has had its turn.

What client-go (inside Helm) does with each fault was found by trying it, and is asserted as
found: it retries a 429 or 5xx only when the answer carries ``Retry-After``; it does not retry a
dropped connection on a write; a failed write of the *release record* after the objects were
applied is logged, not returned, so Helm reports success while the record stays pending.

What the release engine does about it (issue 13): a transient failure (the cluster's) is
retried in the same deploy, Helm's record of the attempt settled first, and is never a verdict
on the values (no rollback, no hold); Helm's reads are retried; the first error is reported
first. Random faults on every request: tests/cluster/test_random_faults.py.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, config

from floe_deploy_assets.helm.deploy import DeployOutcome, DeployPolicy, deploy, desired_digests
from floe_deploy_assets.helm.engine import HelmEngineError, ReleaseRef, SdkHelmEngine
from floe_deploy_assets.helm.storage import FINAL_FAILURE_LABEL, TRANSIENT_FAILURE_LABEL
from floe_deploy_assets.kube.access import ClusterAccess
from floe_deploy_assets.kube.retry import call_with_retry, watch_with_relist
from floe_deploy_assets.release.decide import Action
from floe_deploy_assets.release.digests import VALUES_DIGEST_LABEL
from tests.conftest import KubeCluster
from tests.support.charts import CONFIG, generated_values, values_generator
from tests.support.faultproxy import Fault, FaultProxy

pytestmark = pytest.mark.cluster
JOBS_CHART = CONFIG.chart_path("jobs")
POLICY = DeployPolicy(timeout=timedelta(seconds=60))
PENDING = ("pending-install", "pending-upgrade", "pending-rollback")
RELEASE_SECRETS = r"/namespaces/[^/]+/secrets$"  # Helm creates a revision's record here
RELEASE_RECORD = r"/namespaces/[^/]+/secrets/sh\.helm\.release\.v1\."  # and updates it here
APPLY = r"/namespaces/[^/]+/configmaps/floe-jobs-artifacts$"  # one object, server-side applied


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
            if event.type == "ADDED" and event.object["metadata"]["name"] == name:
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
    history_after: list[str]  # statuses in storage after the faulty run, oldest first
    answers: list[int | None]  # what the proxy answered to the matching requests
    retried: int = 0  # transient failures of Helm's action the deploy retried
    message: str = ""  # in the (first) retried error
    query: str | None = None


HELM_FAULTS = {
    # client-go retries a 429/5xx only when the answer says Retry-After; the deploy retries
    # the rest (nothing was recorded: the install is taken again).
    "create-record-503-no-retry-after": HelmFault(
        "install", "POST", RELEASE_SECRETS, Fault.unavailable(), 1,
        ["deployed"], [503, 201], 1, "unable to handle the request",
    ),
    "create-record-503-retry-after": HelmFault(
        "install", "POST", RELEASE_SECRETS, Fault.unavailable(retry_after=1), 2,
        ["deployed"], [503, 503, 201],
    ),
    "apply-429-retry-after": HelmFault(
        "install", "PATCH", APPLY, Fault.too_many_requests(retry_after=1), 2,
        ["deployed"], [429, 429, 201],
    ),
    # Helm marks the install failed; the deploy marks that failure transient and continues
    # with an upgrade (an install of an existing release would be refused).
    "apply-500": HelmFault(
        "install", "PATCH", APPLY, Fault.server_error(), 1,
        ["superseded", "deployed"], [500, 201], 1, "server-side apply failed",
    ),
    "create-record-dropped": HelmFault(
        "install", "POST", RELEASE_SECRETS, Fault.drop(), 1,
        ["deployed"], [None, 201], 1, "EOF",
    ),
    # The objects are applied, then the record's update to "deployed" fails: Helm logs it and
    # reports success, leaving the record pending; the deploy (holding the release lock)
    # records what Helm reported.
    "final-record-503": HelmFault(
        "install", "PUT", RELEASE_RECORD, Fault.unavailable(), 1,
        ["deployed"], [503],
    ),
    "final-record-dropped": HelmFault(
        "install", "PUT", RELEASE_RECORD, Fault.drop(), 1,
        ["deployed"], [None],
    ),
    # An upgrade's record updates: the old revision's "superseded" (its failure ignored by
    # Helm), then the new one's "deployed" (its failure reported, the revision left pending):
    # the deploy marks it failed, transient, and upgrades again in the same run.
    "upgrade-records-503": HelmFault(
        "upgrade", "PUT", RELEASE_RECORD, Fault.unavailable(), 2,
        ["superseded", "failed", "deployed"], [503, 503], 1, "failed to update",
    ),
    # 409 Conflict on the release record: creating the new revision's fails the upgrade, with
    # nothing written (retried); on superseding the old revision, Helm ignores it (two would
    # stay "deployed"), and the deploy supersedes the old one itself.
    "create-record-409": HelmFault(
        "upgrade", "POST", RELEASE_SECRETS, Fault.conflict(), 1,
        ["superseded", "deployed"], [409, 201], 1, "the object has been modified",
    ),
    "supersede-record-409": HelmFault(
        "upgrade", "PUT", RELEASE_RECORD, Fault.conflict(), 1,
        ["superseded", "deployed"], [409, 200],
    ),
    # Helm's readiness wait (kstatus) lists, then watches, the chart's kinds. A watch ended with
    # 410 Gone does not fail the install: here the list already showed every object ready, so
    # the wait ends without needing (or making) the reflector's relist.
    "wait-watch-410": HelmFault(
        "install", "GET", r"/namespaces/[^/]+/configmaps$", Fault.watch_gone(), 1,
        ["deployed"], [200], query=r"^(?!.*sendInitialEvents).*resourceVersion=[1-9]",
    ),
}  # fmt: skip


def run_deploy(
    engine: SdkHelmEngine,
    ref: ReleaseRef,
    values: dict[str, Any],
    cluster: ClusterAccess,
    policy: DeployPolicy = POLICY,
    chart: Path = JOBS_CHART,
) -> DeployOutcome:
    return deploy(engine, ref, chart, values, cluster=cluster, policy=policy)


@pytest.fixture
def proxied_engine(proxy: FaultProxy) -> Iterator[SdkHelmEngine]:
    # Without the relay (kube/relay.py), which would repeat the faulted requests: these tests
    # are of Helm's own behaviour and of the deploy's retries of whole actions, what is left
    # when a fault outlasts the relay's deadline. tests/cluster/test_helm_relay.py: with it.
    helm_engine = SdkHelmEngine(proxy.kubeconfig, relay=False)
    yield helm_engine
    helm_engine.close()


def assert_converged(
    engine: SdkHelmEngine, ref: ReleaseRef, chart: Path, values: dict[str, Any]
) -> None:
    """Deployed with the desired digests, nothing pending, every failed revision marked
    transient, no revision missing."""
    history = engine.history(ref)
    statuses = [r.status for r in history]
    assert statuses[-1] == "deployed", statuses
    assert history[-1].labels[VALUES_DIGEST_LABEL] == desired_digests(chart, values).values
    assert not set(statuses) & set(PENDING), statuses
    assert [r.revision for r in history] == list(range(1, len(history) + 1))
    for revision in history:
        if revision.status == "failed":
            assert revision.labels.get(TRANSIENT_FAILURE_LABEL) == str(revision.revision), (
                revision.revision,
                revision.description,
            )


@pytest.mark.parametrize("case", list(HELM_FAULTS.values()), ids=list(HELM_FAULTS))
def test_helm_through_the_proxy_survives_the_fault_in_the_same_run(
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
    assert outcome.succeeded, outcome.message
    assert outcome.remediation is None and outcome.decision.action is Action(case.operation)
    assert statuses() == case.history_after
    assert len(outcome.retried) == case.retried, [str(e) for e in outcome.retried]
    for error in outcome.retried:
        assert isinstance(error, HelmEngineError) and error.transient
        assert error.release == ref
        assert all(part in str(error) for part in (ref.name, namespace, "test-cluster"))
    if case.retried:
        assert case.message in str(outcome.retried[0])
        assert f"{case.retried} transient failure(s) retried" in outcome.decision.reason
    if case.fault.retry_after:  # each retry waited as told
        times = [r.at for r in matching[: len(case.answers)]]
        assert all(later - earlier >= 0.9 for earlier, later in itertools.pairwise(times)), times
    assert_converged(engine, ref, JOBS_CHART, values)

    # The next run, with the faults gone and the default policy, has nothing to do.
    proxy.clear_rules()
    again = run_deploy(proxied_engine, ref, values, direct, DeployPolicy())
    assert again.succeeded and again.decision.action is Action.NOTHING, again.message
    assert_converged(engine, ref, JOBS_CHART, values)


# -- issue 13: a blip is never a verdict on the values --------------------------------------------

PLATFORM_CHART = CONFIG.chart_path("platform")
POSTGRES_APPLY = r"/statefulsets/floe-platform-postgresql$"


def platform_values(kube_cluster: KubeCluster, namespace: str) -> dict[str, Any]:
    for secret in values_generator("platform").required_secrets:
        kube_cluster.core.create_namespaced_secret(
            namespace,
            {"metadata": {"name": secret.name}, "stringData": dict.fromkeys(secret.keys, "x")},
        )
    return generated_values("platform")


def test_a_dropped_apply_of_new_values_converges_in_the_same_run_without_a_rollback(
    proxy: FaultProxy,
    proxied_engine: SdkHelmEngine,
    engine: SdkHelmEngine,
    kube_cluster: KubeCluster,
    namespace: str,
):
    """The reproduction of issue 13: the PostgreSQL StatefulSet's server-side apply dropped
    once while new values are deployed. It used to leave the new revision failed, the next run
    rolled it back and the one after held the values."""
    ref = ReleaseRef("floe-platform", namespace, "test-cluster")
    direct = ClusterAccess(kube_cluster.api)
    through_proxy = ClusterAccess.from_kubeconfig(proxy.kubeconfig)
    values = platform_values(kube_cluster, namespace)
    policy = DeployPolicy(timeout=timedelta(seconds=240))
    # Installed straight, without the relay as it is upgraded: one owner of the objects (the
    # relay names it floe-deploy, Helm alone after this process; two would conflict).
    installer = SdkHelmEngine(kube_cluster.kubeconfig, relay=False)
    try:
        assert run_deploy(installer, ref, values, direct, policy, PLATFORM_CHART).succeeded
    finally:
        installer.close()
    values["postgresql"]["resources"]["limits"]["memory"] = "2Gi"

    proxy.add_rule("PATCH", POSTGRES_APPLY, Fault.drop(), times=1)
    outcome = run_deploy(proxied_engine, ref, values, through_proxy, policy, PLATFORM_CHART)

    assert [r.status for r in proxy.requests_matching("PATCH", POSTGRES_APPLY)][:1] == [None]
    assert outcome.succeeded, outcome.message
    assert outcome.decision.action is Action.UPGRADE and outcome.remediation is None
    assert len(outcome.retried) == 1 and "EOF" in str(outcome.retried[0])
    history = engine.history(ref)
    assert [r.status for r in history] == ["superseded", "failed", "deployed"]
    assert history[1].labels[TRANSIENT_FAILURE_LABEL] == "2"
    assert_converged(engine, ref, PLATFORM_CHART, values)

    again = run_deploy(proxied_engine, ref, values, through_proxy, DeployPolicy(), PLATFORM_CHART)
    assert again.decision.action is Action.NOTHING, again.message
    assert len(engine.history(ref)) == 3


def test_a_deploy_whose_retries_ran_out_is_retried_by_the_next_run_not_rolled_back(
    proxy: FaultProxy,
    proxied_engine: SdkHelmEngine,
    engine: SdkHelmEngine,
    kube_cluster: KubeCluster,
    namespace: str,
):
    """At worst, the next run with the same values and no flags converges: a revision that
    failed for a transient reason is recorded as such and upgraded again, whatever the
    remediation policy."""
    ref = ReleaseRef("floe-jobs", namespace, "test-cluster")
    direct = ClusterAccess(kube_cluster.api)
    values = generated_values("jobs")
    # Installed without the relay too (through the proxy, before any fault): Helm then names
    # the objects' owner after this process, the relay names it floe-deploy, and a second
    # owner's change would conflict.
    assert run_deploy(proxied_engine, ref, values, direct).succeeded
    values["job"]["ttlSecondsAfterFinished"] = 60

    proxy.add_rule("PATCH", APPLY, Fault.server_error())  # every attempt
    outcome = run_deploy(proxied_engine, ref, values, direct, replace(POLICY, transient_attempts=2))
    assert not outcome.succeeded and outcome.error is not None and outcome.error.transient
    assert len(outcome.retried) == 1
    assert outcome.remediation is not None
    assert outcome.remediation.action is Action.RETRY_UPGRADE, outcome.remediation
    assert "nothing is rolled back or held" in outcome.remediation.reason
    history = engine.history(ref)
    assert [r.status for r in history][-1] == "failed"
    assert history[-1].description.startswith("transient: ") or (
        history[-1].labels[TRANSIENT_FAILURE_LABEL] == str(history[-1].revision)
    )

    proxy.clear_rules()
    for policy in (DeployPolicy(), DeployPolicy()):  # the next run, then a no-op
        again = run_deploy(
            proxied_engine, ref, values, direct, replace(policy, timeout=POLICY.timeout)
        )
        assert again.succeeded, again.message
        assert again.decision.action in (Action.RETRY_UPGRADE, Action.NOTHING)
    assert_converged(engine, ref, JOBS_CHART, values)


HELM_READS = {"query": r"labelSelector=.*owner%3Dhelm"}  # Helm's history and status: a list


def test_a_500_on_helms_history_and_status_reads_is_retried(
    proxy: FaultProxy,
    proxied_engine: SdkHelmEngine,
    engine: SdkHelmEngine,
    kube_cluster: KubeCluster,
    namespace: str,
):
    ref = ReleaseRef("floe-jobs", namespace, "test-cluster")
    direct = ClusterAccess(kube_cluster.api)
    values = generated_values("jobs")
    proxy.add_rule("GET", RELEASE_SECRETS, Fault.server_error(), times=2, **HELM_READS)

    outcome = run_deploy(proxied_engine, ref, values, direct)

    assert outcome.succeeded, outcome.message
    reads = proxy.requests_matching("GET", RELEASE_SECRETS)
    assert [r.status for r in reads][:3] == [500, 500, 200]

    proxy.add_rule("GET", RELEASE_SECRETS, Fault.server_error(), times=1, **HELM_READS)
    status = proxied_engine.status(ref)
    assert status is not None and status.status == "deployed"
    proxy.add_rule("GET", RELEASE_SECRETS, Fault.unavailable(), times=1, **HELM_READS)
    assert [r.revision for r in proxied_engine.history(ref)] == [1]


INVALID = Fault.status(422, 'ConfigMap "floe-jobs-artifacts" is invalid: injected: refused')


class FaultsAfterUpgradeFails(SdkHelmEngine):
    """Our engine, adding proxy rules the moment an upgrade fails (to hit what follows)."""

    then: list[tuple[str, str, Fault, int | None]]
    proxy: FaultProxy

    def upgrade(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().upgrade(*args, **kwargs)
        except HelmEngineError:
            for method, path, fault, times in self.then:
                self.proxy.add_rule(method, path, fault, times=times, **HELM_READS)
            raise


@pytest.fixture
def faults_after_upgrade(proxy: FaultProxy) -> Iterator[FaultsAfterUpgradeFails]:
    helm_engine = FaultsAfterUpgradeFails(proxy.kubeconfig, relay=False)
    helm_engine.proxy, helm_engine.then = proxy, []
    yield helm_engine
    helm_engine.close()


def test_a_500_reading_history_after_a_failed_upgrade_neither_masks_it_nor_skips_the_rollback(
    proxy: FaultProxy,
    faults_after_upgrade: FaultsAfterUpgradeFails,
    engine: SdkHelmEngine,
    kube_cluster: KubeCluster,
    namespace: str,
):
    ref = ReleaseRef("floe-jobs", namespace, "test-cluster")
    direct = ClusterAccess(kube_cluster.api)
    values = generated_values("jobs")
    assert run_deploy(engine, ref, values, direct).succeeded
    values["job"]["ttlSecondsAfterFinished"] = 60
    proxy.add_rule("PATCH", APPLY, INVALID, times=1)  # a verdict: final
    faults_after_upgrade.then = [("GET", RELEASE_SECRETS, Fault.server_error(), 1)]

    outcome = run_deploy(faults_after_upgrade, ref, values, direct)

    assert outcome.error is not None and not outcome.error.transient
    assert "is invalid" in str(outcome.error) and outcome.error.operation == "upgrade"
    assert outcome.error.later == []  # the 500 was retried
    assert outcome.remediation is not None
    assert (outcome.remediation.action, outcome.remediation.target_revision) == (
        Action.ROLLBACK,
        1,
    )
    history = engine.history(ref)
    assert [r.status for r in history] == ["superseded", "failed", "deployed"]
    assert history[1].labels[FINAL_FAILURE_LABEL] == "2"  # a verdict, recorded as one
    assert 500 in [r.status for r in proxy.requests_matching("GET", RELEASE_SECRETS)]


def test_when_history_stays_unreadable_after_a_failed_upgrade_the_upgrades_error_comes_first(
    proxy: FaultProxy,
    faults_after_upgrade: FaultsAfterUpgradeFails,
    engine: SdkHelmEngine,
    kube_cluster: KubeCluster,
    namespace: str,
):
    ref = ReleaseRef("floe-jobs", namespace, "test-cluster")
    direct = ClusterAccess(kube_cluster.api)
    values = generated_values("jobs")
    assert run_deploy(engine, ref, values, direct).succeeded
    values["job"]["ttlSecondsAfterFinished"] = 60
    proxy.add_rule("PATCH", APPLY, INVALID, times=1)
    faults_after_upgrade.then = [("GET", RELEASE_SECRETS, Fault.server_error(), None)]
    faults_after_upgrade.read_deadline = 3.0

    outcome = run_deploy(faults_after_upgrade, ref, values, direct)

    error = outcome.error
    assert error is not None and error.operation == "upgrade" and "is invalid" in error.detail
    message = outcome.message
    assert message.startswith(f"upgrade of {ref} failed: ")
    assert message.index("is invalid") < message.index("then ")
    print(message)
    later = message.split("; then ", 1)[1]
    assert later.startswith("recording the failed attempt failed: history of release")
    assert "injected: internal error" in later
    assert outcome.remediation is None  # it could not be decided: nothing was rolled back
    proxy.clear_rules()
    # Nothing was lost: the next run (no faults) sees the failed revision and remediates it.
    assert [r.status for r in engine.history(ref)] == ["deployed", "failed"]
