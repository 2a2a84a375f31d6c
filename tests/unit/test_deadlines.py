"""Deadlines and the words for their failures: request timeouts cut to the deadline, default
timeouts on every request of our clients, Helm calls bounded as a whole, Go's deadline wording
translated, connection failures said in one line, signals turned into a clean stop."""

from __future__ import annotations

import os
import signal
import threading
import time
from typing import Any

import helm_python
import pytest
from kubernetes import client
from urllib3 import exceptions as urllib3_errors

from floe_deploy_assets.cli import Stopped, stop_on_signals
from floe_deploy_assets.defs.deploy_assets import Release
from floe_deploy_assets.defs.sensors import _Unanswered, _unreachable
from floe_deploy_assets.helm.bounded import HelmDeadlineError, call_within, translate_deadline
from floe_deploy_assets.helm.engine import ClusterError, ReleaseRef
from floe_deploy_assets.kube.access import ClusterAccess, bounded
from floe_deploy_assets.kube.errors import ClusterCallError, cluster_step
from floe_deploy_assets.kube.retry import (
    RetryDeadlineError,
    RetryPolicy,
    call_with_retry,
    describe,
)

REF = ReleaseRef("floe-jobs", "floe-dev", "floe-local")


class _Pool:
    scheme, host, port = "https", "127.0.0.1", 16443


def test_each_attempt_is_cut_to_what_is_left_of_the_deadline():
    now = [0.0]
    seen: list[Any] = []

    def slow(**options: Any) -> None:
        seen.append(options["_request_timeout"])
        now[0] += 8  # as a timed-out attempt would take
        raise urllib3_errors.ReadTimeoutError(_Pool(), "/", "Read timed out. (read timeout=8)")

    policy = RetryPolicy(sleep=lambda s: now.__setitem__(0, now[0] + s), clock=lambda: now[0])
    with pytest.raises(RetryDeadlineError) as raised:
        call_with_retry(slow, what="reading Secret x in namespace y", deadline=20, policy=policy)
    assert seen[0] == (5, 20) and all(read <= 20 - 8 * i for i, (_, read) in enumerate(seen))
    assert now[0] <= 20 + 8  # at most one attempt past the deadline's last retry decision
    assert "no answer from https://127.0.0.1:16443 within 8 s" in str(raised.value)


def test_a_timeout_the_caller_gives_is_used_as_given():
    seen: list[Any] = []
    call_with_retry(lambda **o: seen.append(o["_request_timeout"]), what="x", _request_timeout=3)
    assert seen == [3]


def test_our_clients_give_every_request_a_timeout_and_leave_retrying_to_us():
    given = client.ApiClient(client.Configuration())
    access = ClusterAccess(given)
    assert access.api is not given and given.configuration.retries is None  # left alone
    assert access.api.configuration.retries is False  # call_with_retry is the one retry layer

    configuration = client.Configuration()
    configuration.retries = 0
    api = client.ApiClient(configuration)
    sent: list[Any] = []
    api.rest_client.request = lambda method, url, **kwargs: sent.append(kwargs)
    bounded(api)
    api.rest_client.request("GET", "https://x/api/v1/pods", query_params=[])
    api.rest_client.request("GET", "https://x/api/v1/pods", _request_timeout=(1, 2))
    watch = [("watch", True), ("timeoutSeconds", 10)]
    api.rest_client.request("GET", "https://x/api/v1/pods", query_params=watch)
    assert [s["_request_timeout"] for s in sent] == [(5.0, 60.0), (1, 2), (5.0, 40.0)]
    assert bounded(api) is api and len(sent) == 3  # idempotent


def test_connection_failures_are_one_line_naming_the_endpoint():
    refused = urllib3_errors.NewConnectionError(
        None,  # type: ignore[arg-type]
        "Failed to establish a new connection: [Errno 111] Connection refused",
    )
    exhausted = urllib3_errors.MaxRetryError(_Pool(), "/api", reason=refused)  # type: ignore[arg-type]
    assert describe(exhausted) == "cannot connect to https://127.0.0.1:16443: connection refused"
    timed_out = urllib3_errors.ReadTimeoutError(_Pool(), "/", "Read timed out. (read timeout=5)")  # type: ignore[arg-type]
    assert describe(timed_out).startswith("no answer from https://127.0.0.1:16443 within 5 s")


def test_our_own_errors_are_not_prefixed_twice():
    error = ClusterError(REF, "status", "kubernetes cluster unreachable")
    assert describe(error).startswith("status of release floe-jobs in namespace floe-dev")
    assert "ClusterError" not in describe(error)
    assert describe(KeyError("x")) == "KeyError: 'x'"


def test_a_failed_step_names_step_release_namespace_and_cluster():
    with pytest.raises(ClusterCallError) as raised, cluster_step("checking the Secrets", REF):
        raise urllib3_errors.ReadTimeoutError(_Pool(), "/", "Read timed out. (read timeout=5)")  # type: ignore[arg-type]
    message = str(raised.value)
    assert message.startswith(
        "checking the Secrets for release floe-jobs in namespace floe-dev on cluster "
        "floe-local failed: no answer from https://127.0.0.1:16443 within 5 s"
    )
    assert "\n" not in message


def test_a_helm_call_that_does_not_return_ends_at_its_deadline():
    release = threading.Event()
    started = time.monotonic()
    with pytest.raises(HelmDeadlineError, match=r"deadline of 0.3 s passed while Helm's status"):
        call_within(0.3, release.wait, "Helm's status waited for the API server")
    assert time.monotonic() - started < 1
    release.set()
    assert isinstance(HelmDeadlineError("x"), helm_python.HelmKubeError)  # a cluster error
    with pytest.raises(ValueError, match="inner"):
        call_within(1, lambda: (_ for _ in ()).throw(ValueError("inner")), "x")


@pytest.mark.parametrize(
    ("detail", "said"),
    [
        (
            "client rate limiter Wait returned an error: rate: Wait(n=1) would exceed context "
            "deadline",
            "deadline of 300 s passed while upgrading and waiting for the release's workloads "
            "(no time was left to send a request)",
        ),
        (
            "resource Deployment/x not ready. status: InProgress; context deadline exceeded",
            "resource Deployment/x not ready. status: InProgress; deadline of 300 s passed "
            "while upgrading and waiting for the release's workloads",
        ),
    ],
)
def test_gos_deadline_wording_is_said_as_a_deadline(detail: str, said: str):
    assert translate_deadline(detail, "upgrade", 300) == said


def test_the_other_releases_of_an_unreachable_cluster_say_they_were_not_asked():
    other = ReleaseRef("floe-platform", "floe-prod", "floe-local")
    unanswered = _Unanswered(
        "ClusterError", describe(ClusterError(other, "status", "EOF")), other, "prod/platform"
    )
    asked = _unreachable("prod", Release("platform"), other, unanswered).observation.metadata
    skipped = _unreachable("prod", Release("jobs"), REF, unanswered)
    text = skipped.observation.metadata["unreachable"].value  # type: ignore[union-attr]
    assert asked["unreachable"].value.startswith("ClusterError: status of release floe-platform")  # type: ignore[union-attr]
    assert text.startswith("not asked this tick: cluster floe-local failed for another release")
    assert "ClusterError: ClusterError" not in text and "floe-platform" in text
    assert skipped.state == {"unreachable": "ClusterError"}  # what counts as news: unchanged


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_sigint_stop_the_main_thread_once(signum: int):
    cleaned: list[str] = []
    with pytest.raises(Stopped) as raised, stop_on_signals():
        try:
            os.kill(os.getpid(), signum)
            time.sleep(5)  # interrupted at once
        finally:
            os.kill(os.getpid(), signum)  # a second signal while cleaning up: noted only
            cleaned.append("done")
    assert raised.value.signum == signum and cleaned == ["done"]
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL or callable(
        signal.getsignal(signal.SIGTERM)
    )
