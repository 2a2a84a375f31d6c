"""The relay between Helm and the API server (kube/relay.py), in front of the fault proxy.

What the relay must do: pass every request and answer on unchanged (watches as a stream),
refuse a request without its token, repeat a request that failed transiently until it gets
through or its deadline passes (then pass the last answer on), and so let a Helm action whose
requests blip get through in one attempt: the issue-13 reproduction (the PostgreSQL
StatefulSet's apply dropped while new values are deployed) leaves no failed revision at all.
"""

from __future__ import annotations

import base64
import os
import stat
import threading
import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
import urllib3
import yaml
from kubernetes import client, watch
from kubernetes import config as kube_config

from floe_deploy_assets.helm.deploy import DeployPolicy, deploy
from floe_deploy_assets.helm.engine import ReleaseRef, SdkHelmEngine
from floe_deploy_assets.kube.access import ClusterAccess
from floe_deploy_assets.kube.relay import (
    FIELD_MANAGER,
    HelmRelay,
    RelayPolicy,
    api_client,
    with_field_manager,
)
from floe_deploy_assets.kube.retry import RetryPolicy
from floe_deploy_assets.release.decide import Action
from tests.cluster.test_fault_proxy import POSTGRES_APPLY, platform_values
from tests.conftest import KubeCluster
from tests.support.charts import CONFIG, generated_values
from tests.support.faultproxy import Fault, FaultProxy

pytestmark = pytest.mark.cluster
CONFIGMAPS = r"/namespaces/[^/]+/configmaps$"
QUICK = RelayPolicy(deadline=3.0, retry=RetryPolicy(initial_backoff=0.05, max_backoff=0.2))


@pytest.fixture
def relay(proxy: FaultProxy) -> Iterator[HelmRelay]:
    with HelmRelay(api_client(proxy.kubeconfig, None), QUICK) as running:
        yield running


def through(relay: HelmRelay) -> client.CoreV1Api:
    """A Python client using the relay's kubeconfig, as Helm does; no retries of its own."""
    configuration = client.Configuration()
    kube_config.load_kube_config(str(relay.kubeconfig), client_configuration=configuration)
    configuration.retries = False
    return client.CoreV1Api(client.ApiClient(configuration))


def test_requests_and_answers_pass_unchanged_and_the_kubeconfig_is_private(
    relay: HelmRelay, kube_cluster: KubeCluster, namespace: str
):
    assert stat.S_IMODE(os.stat(relay.kubeconfig).st_mode) == 0o600
    core = through(relay)
    created = core.create_namespaced_config_map(
        namespace, {"metadata": {"name": "relayed"}, "data": {"k": "v" * 200_000}}
    )
    direct = kube_cluster.core.read_namespaced_config_map("relayed", namespace)
    assert direct.data == {"k": "v" * 200_000}
    assert created.metadata.uid == direct.metadata.uid
    core.patch_namespaced_config_map("relayed", namespace, {"data": {"k": "w"}})
    assert kube_cluster.core.read_namespaced_config_map("relayed", namespace).data == {"k": "w"}
    with pytest.raises(client.ApiException) as missing:
        core.read_namespaced_config_map("absent", namespace)
    assert missing.value.status == 404 and "absent" in missing.value.body
    core.delete_namespaced_config_map("relayed", namespace)
    assert relay.attempts_repeated == 0


def test_a_request_without_the_token_is_refused(relay: HelmRelay, namespace: str):
    cluster = yaml.safe_load(relay.kubeconfig.read_text())["clusters"][0]["cluster"]
    address = cluster["server"]
    authority = base64.b64decode(cluster["certificate-authority-data"]).decode()
    pool = urllib3.PoolManager(ca_cert_data=authority)
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        answer = pool.request(
            "GET", f"{address}/api/v1/namespaces/{namespace}/secrets", headers=headers
        )
        assert answer.status == 401, answer.data
        assert b"token" in answer.data


@pytest.mark.parametrize(
    "fault",
    [Fault.server_error(), Fault.unavailable(), Fault.status(429, "slow down"), Fault.drop()],
    ids=["500", "503", "429-without-retry-after", "dropped"],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
def test_a_transient_failure_is_repeated_until_the_request_gets_through(
    fault: Fault, method: str, relay: HelmRelay, proxy: FaultProxy, namespace: str
):
    proxy.add_rule(method, CONFIGMAPS, fault, times=3)
    core = through(relay)
    if method == "GET":
        assert isinstance(core.list_namespaced_config_map(namespace).items, list)
    else:
        core.create_namespaced_config_map(namespace, {"metadata": {"name": "made-once"}})
    answers = [r.status for r in proxy.requests_matching(method, CONFIGMAPS)]
    failed = None if fault.kind == "drop" else fault.code  # None: closed without an answer
    assert answers[:3] == [failed] * 3 and answers[3] in (200, 201), answers
    assert relay.attempts_repeated == 3


def test_past_its_deadline_the_last_answer_is_passed_on_and_nothing_hangs(
    relay: HelmRelay, proxy: FaultProxy, namespace: str
):
    proxy.add_rule("GET", CONFIGMAPS, Fault.server_error())  # every attempt
    began = time.monotonic()
    with pytest.raises(client.ApiException) as failed:
        through(relay).list_namespaced_config_map(namespace)
    assert failed.value.status == 500 and "injected" in failed.value.body
    assert time.monotonic() - began < QUICK.deadline + 2
    assert relay.attempts_repeated >= 3

    proxy.clear_rules()
    proxy.add_rule("GET", CONFIGMAPS, Fault.drop())
    with pytest.raises(client.ApiException) as dropped:
        through(relay).list_namespaced_config_map(namespace)
    assert dropped.value.status == 503
    assert "connection to the API server" in dropped.value.body
    assert "unexpected EOF" in dropped.value.body  # how Helm's classifier knows it transient


def test_a_watch_is_streamed_and_repeated_only_until_established(
    relay: HelmRelay, proxy: FaultProxy, kube_cluster: KubeCluster, namespace: str
):
    proxy.add_rule("GET", CONFIGMAPS, Fault.unavailable(), times=2, query="(?i)watch=true")
    seen: list[str] = []

    def watching() -> None:
        for event in watch.Watch().stream(
            through(relay).list_namespaced_config_map, namespace, timeout_seconds=20
        ):
            seen.append(f"{event['type']} {event['object'].metadata.name}")
            if event["object"].metadata.name == "later":
                return

    thread = threading.Thread(target=watching, daemon=True)
    thread.start()
    time.sleep(1.5)  # the watch is established (after its two 503s)
    kube_cluster.core.create_namespaced_config_map(namespace, {"metadata": {"name": "later"}})
    thread.join(timeout=20)
    assert not thread.is_alive(), "the event did not come through the relay"
    assert "ADDED later" in seen
    assert relay.attempts_repeated == 2


def test_helm_gets_through_a_dropped_apply_in_one_attempt_without_a_failed_revision(
    proxy: FaultProxy, engine: SdkHelmEngine, kube_cluster: KubeCluster, namespace: str
):
    """The issue-13 reproduction, with Helm behind the relay (as floe-deploy runs it): the
    apply is repeated by the relay, the upgrade succeeds at once."""
    ref = ReleaseRef("floe-platform", namespace, "test-cluster")
    chart = CONFIG.chart_path("platform")
    direct = ClusterAccess(kube_cluster.api)
    values = platform_values(kube_cluster, namespace)
    policy = DeployPolicy(timeout=timedelta(seconds=240))
    assert deploy(engine, ref, chart, values, cluster=direct, policy=policy).succeeded
    values["postgresql"]["resources"]["limits"]["memory"] = "2Gi"

    proxy.add_rule("PATCH", POSTGRES_APPLY, Fault.drop(), times=1)
    relayed = SdkHelmEngine(proxy.kubeconfig)  # the default: through the relay
    try:
        outcome = deploy(relayed, ref, chart, values, cluster=direct, policy=policy)
    finally:
        relayed.close()

    assert [r.status for r in proxy.requests_matching("PATCH", POSTGRES_APPLY)][:2] == [
        None,
        200,
    ]
    assert outcome.succeeded, outcome.message
    assert outcome.decision.action is Action.UPGRADE and not outcome.retried
    assert [r.status for r in engine.history(ref)] == ["superseded", "deployed"]


def test_what_helm_applies_through_the_relay_has_one_owner_wherever_it_runs(
    kube_cluster: KubeCluster, namespace: str
):
    # Helm would name the owner after the process (here "python"; "python3" in the image's
    # runs, another name in a CLI): two deploys of a release from two places then conflict.
    engine = SdkHelmEngine(kube_cluster.kubeconfig)  # through the relay, as floe-deploy runs it
    try:
        engine.install(
            ReleaseRef("floe-jobs", namespace, "test-cluster"),
            CONFIG.chart_path("jobs"),
            generated_values("jobs"),
            timeout=60,
        )
    finally:
        engine.close()
    owners = {
        entry.manager
        for config_map in kube_cluster.core.list_namespaced_config_map(namespace).items
        if config_map.metadata.name.startswith("floe-jobs")
        for entry in config_map.metadata.managed_fields or []
    }
    assert owners == {FIELD_MANAGER}


def test_only_the_field_manager_parameter_is_rewritten():
    assert with_field_manager("/api/v1/namespaces/n/pods") == "/api/v1/namespaces/n/pods"
    assert (
        with_field_manager("/apis/apps/v1/x?fieldManager=python3&force=false")
        == "/apis/apps/v1/x?fieldManager=floe-deploy&force=false"
    )
    assert with_field_manager("/x?dryRun=All&fieldManager=helm") == (
        "/x?dryRun=All&fieldManager=floe-deploy"
    )
