"""Transient failures (the cluster's, not the values'): how Helm's messages are classified, and
what the release engine does with each kind, with a scripted engine in place of Helm (no
cluster: the settling of Helm's records is in tests/cluster/test_fault_proxy.py)."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import helm_python
import pytest

from floe_deploy_assets.helm.deploy import (
    MIN_ATTEMPT_SECONDS,
    DeployPolicy,
    deploy,
    desired_digests,
)
from floe_deploy_assets.helm.engine import (
    ChartError,
    ClusterError,
    HelmEngineError,
    Release,
    ReleaseConflictError,
    ReleaseRef,
    SdkHelmEngine,
    _map_error,
    is_transient,
    retry_transient,
)
from floe_deploy_assets.helm.storage import failed_transiently
from floe_deploy_assets.kube.retry import RetryPolicy
from floe_deploy_assets.release.decide import Action
from floe_deploy_assets.release.digests import CHART_DIGEST_LABEL, VALUES_DIGEST_LABEL
from tests.support.charts import CONFIG

REF = ReleaseRef("floe-jobs", "floe-dev", "test-cluster")
CHART = CONFIG.chart_path("jobs")
APPLY = "server-side apply failed for object floe-dev/floe-compiled-artifacts /v1, Kind=ConfigMap"
RECORD = 'Operation cannot be fulfilled on secrets "sh.helm.release.v1.floe-jobs.v2"'

TRANSIENT = [
    f'{APPLY}: Patch "https://127.0.0.1:40001/api/v1/namespaces/floe-dev/configmaps/x": EOF',
    f"{APPLY}: Internal error occurred: injected: internal error",
    f"{APPLY}: injected: internal error ()",  # a 500 whose Status words it its own way
    f"{APPLY}: the server is currently unable to handle the request",
    f"{APPLY}: the server has received too many requests and has asked us to try again later",
    'create: failed to create: Post "https://127.0.0.1:40001/api/v1/...": read tcp '
    "127.0.0.1:5->127.0.0.1:40001: read: connection reset by peer",
    'Get "https://127.0.0.1:40001/api/v1/namespaces": dial tcp: connect: connection refused',
    'Get "https://127.0.0.1:40001/version": net/http: TLS handshake timeout',
    f"failed to update release: {RECORD}: the object has been modified; please apply your "
    "changes to the latest version and try again",
    'an error on the server ("") has prevented the request from succeeding',
    "watch error: too old resource version: 12 (40)",
    # The readiness wait never observed the objects (its lists and watches failed).
    "resource Deployment/floe-dev/floe-platform-marquez not ready. status: Unknown, message: \n"
    "resource Service/floe-dev/floe-platform-polaris not ready. status: Unknown, message: \n"
    "deadline of 145 s passed while upgrading and waiting for the release's workloads",
    # ...or its watch failed under it: it ended before its deadline (none in the message).
    "resource ServiceAccount/floe-dev/floe-platform-dagster not ready. status: Unknown, "
    "message: \nresource StatefulSet/floe-dev/floe-platform-postgresql not ready. status: "
    "InProgress, message: Ready: 0/1",
    "client rate limiter Wait returned an error: rate: Wait(n=1) would exceed context deadline"
    " (last answer: 429 Too Many Requests)",
]
FINAL = [
    "values don't meet the specifications of the schema(s) in the following chart(s)",
    'admission webhook "validate.example.com" denied the request: no',
    'Deployment.apps "floe-platform-dagster" is invalid: spec.template.spec.containers[0].image:'
    " Required value",
    'pods "x" is forbidden: violates PodSecurity "restricted:latest"',
    "resource Deployment/floe-dev/floe-platform-dagster not ready. status: InProgress, message:"
    " Available: 0/1; context deadline exceeded",
    "context deadline exceeded",  # the deploy's own deadline
    "client rate limiter Wait returned an error: context deadline exceeded",
    'Apply failed with 1 conflict: conflict with "kubectl": .spec.replicas',
    "resource Job/floe-dev/x not ready. status: Failed, message: BackoffLimitExceeded",
    "deadline of 300 s passed while upgrading and waiting for the release's workloads",
    "resource Deployment/floe-dev/x not ready. status: Unknown, message: \n"
    "resource Deployment/floe-dev/y not ready. status: InProgress, message: Available: 0/1\n"
    "deadline of 145 s passed while upgrading and waiting for the release's workloads",
]


@pytest.mark.parametrize("detail", TRANSIENT)
def test_the_clusters_failures_are_transient(detail: str):
    assert is_transient(detail)
    assert _map_error(REF, "upgrade", helm_python.HelmReleaseError(detail)).transient


@pytest.mark.parametrize("detail", FINAL)
def test_verdicts_on_the_release_and_its_deadline_are_final(detail: str):
    assert not is_transient(detail)
    assert not _map_error(REF, "upgrade", helm_python.HelmReleaseError(detail)).transient


def test_chart_errors_are_final_whatever_their_message_says():
    error = _map_error(
        REF, "upgrade", helm_python.HelmValuesError("schema: unexpected EOF in values")
    )
    assert isinstance(error, ChartError) and not error.transient


def test_a_conflict_on_the_release_record_is_transient():
    error = _map_error(
        REF, "upgrade", helm_python.HelmReleaseError(f"{RECORD}: the object has been modified")
    )
    assert isinstance(error, ReleaseConflictError) and error.transient


def test_the_first_error_stays_first_and_the_later_ones_follow():
    error = ClusterError(REF, "upgrade", f"{APPLY}: EOF")
    error.add_later("reading history failed: Internal error occurred")
    text = str(error)
    assert text.index("EOF") < text.index("then reading history failed")
    assert "transient" in text and error.detail == f"{APPLY}: EOF"


def test_a_revision_is_transient_only_by_its_own_mark():
    label = "floe.dev/transient-failure"
    assert failed_transiently(3, {label: "3"})
    assert not failed_transiently(4, {label: "3"})  # a copy Helm carried into the next revision
    assert failed_transiently(4, {}, "transient: floe-deploy: the upgrade failed ...")
    assert not failed_transiently(4, {}, 'Upgrade "floe-jobs" failed: ...')


class FakeClock:
    def __init__(self) -> None:
        self.now, self.slept = 0.0, []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds

    def policy(self) -> RetryPolicy:
        return RetryPolicy(sleep=self.sleep, clock=lambda: self.now, random=lambda: 1.0)


def test_retry_transient_repeats_transient_errors_within_the_deadline_only():
    clock = FakeClock()
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise ClusterError(REF, "history", "Internal error occurred: injected")
        return "ok"

    assert retry_transient(flaky, deadline=30, policy=clock.policy()) == "ok"
    assert len(calls) == 3 and clock.slept == [0.2, 0.4]

    def final() -> str:
        raise HelmEngineError(REF, "history", "is invalid")

    with pytest.raises(HelmEngineError):
        retry_transient(final, deadline=30, policy=clock.policy())

    def always() -> str:
        raise ClusterError(REF, "history", "EOF")

    clock.slept.clear()
    with pytest.raises(ClusterError):
        retry_transient(always, deadline=5, policy=clock.policy())
    assert sum(clock.slept) < 5


class ScriptedConfig:
    """helm_python.Config's reads, failing as scripted first."""

    def __init__(self, failures: list[Exception]):
        self.failures = failures
        self.calls = 0

    def status(self, name: str) -> dict[str, Any]:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return {"name": name, "namespace": "floe-dev", "revision": 2, "status": "deployed"}

    def history(self, name: str) -> list[dict[str, Any]]:
        return [self.status(name)]


def test_helm_reads_are_retried_on_a_transient_failure(monkeypatch: pytest.MonkeyPatch):
    engine = SdkHelmEngine(None)
    scripted = ScriptedConfig([helm_python.HelmKubeError("Internal error occurred: injected")] * 2)
    monkeypatch.setattr(engine, "_config", lambda namespace: scripted)
    monkeypatch.setattr(engine, "retry_policy", RetryPolicy(sleep=lambda s: None))
    release = engine.status(REF)
    assert release is not None and release.revision == 2 and scripted.calls == 3
    scripted.failures = [helm_python.HelmKubeError("EOF")]
    assert [r.revision for r in engine.history(REF)] == [2]

    scripted.failures = [helm_python.HelmKubeError('secrets is forbidden: User "x"')]
    with pytest.raises(ClusterError, match="forbidden"):
        engine.status(REF)  # not transient: at once


# -- the deploy's retries, with a scripted engine -------------------------------------------------


@dataclass
class ScriptedEngine:
    """Helm's history in memory; each install/upgrade/rollback/history call takes the next
    scripted failure for it, if any (``"new-failed"``: Helm made a revision and marked it
    failed before raising)."""

    revisions: list[Release] = field(default_factory=list)
    failures: dict[str, list[HelmEngineError | tuple[str, HelmEngineError]]] = field(
        default_factory=dict
    )
    calls: list[str] = field(default_factory=list)
    history_fails_after: int | None = None  # history raises once called this many times

    def _fail(self, operation: str, labels: dict[str, str] | None) -> None:
        self.calls.append(operation)
        scripted = self.failures.get(operation) or []
        if scripted:
            failure = scripted.pop(0)
            if isinstance(failure, tuple):
                self._record("failed", labels or {})
                failure = failure[1]
            raise failure

    def _record(self, status: str, labels: dict[str, str]) -> Release:
        for r in self.revisions:
            if r.status == "deployed" and status == "deployed":
                object.__setattr__(r, "status", "superseded")
        release = Release(
            REF.name, REF.namespace, len(self.revisions) + 1, status, "floe-jobs", "1", "1",
            "2026-11-29T12:00:00Z", labels=dict(labels),
        )  # fmt: skip
        self.revisions.append(release)
        return release

    def status(self, release: ReleaseRef) -> Release | None:
        return self.revisions[-1] if self.revisions else None

    def history(self, release: ReleaseRef) -> list[Release]:
        self.calls.append("history")
        failing = self.history_fails_after
        if failing is not None and self.calls.count("history") > failing:
            raise ClusterError(REF, "history", "Internal error occurred: still failing")
        return list(self.revisions)

    def install(self, release, chart, values, timeout=300, labels=None) -> Release:
        self._fail("install", labels)
        return self._record("deployed", labels or {})

    def upgrade(self, release, chart, values, timeout=300, labels=None) -> Release:
        self._fail("upgrade", labels)
        return self._record("deployed", labels or {})

    def rollback(self, release, revision, timeout=300) -> Release:
        self._fail("rollback", None)
        return self._record("deployed", dict(self.revisions[revision - 1].labels))

    def uninstall(self, release, timeout=300) -> None: ...
    def preview(self, release, chart, values) -> str:
        return ""

    def test(self, release, timeout=300) -> str:
        return ""


VALUES = {"job": {"ttlSecondsAfterFinished": 60}}
OLD_LABELS = {CHART_DIGEST_LABEL: "old", VALUES_DIGEST_LABEL: "old"}


def deployed_engine(**kwargs: Any) -> ScriptedEngine:
    engine = ScriptedEngine(**kwargs)
    engine._record("deployed", OLD_LABELS)
    return engine


def policy(clock: FakeClock, **changes: Any) -> DeployPolicy:
    return DeployPolicy(**{"timeout": timedelta(seconds=120), "retry": clock.policy(), **changes})


def transient(detail: str = f"{APPLY}: EOF") -> HelmEngineError:
    return ClusterError(REF, "upgrade", detail)


def test_a_transient_failure_of_an_upgrade_is_retried_in_the_same_deploy():
    clock = FakeClock()
    engine = deployed_engine(failures={"upgrade": [transient(), transient()]})
    outcome = deploy(engine, REF, CHART, VALUES, policy=policy(clock))
    assert outcome.succeeded, outcome.message
    assert engine.calls.count("upgrade") == 3 and "rollback" not in engine.calls
    assert len(outcome.retried) == 2 and "2 transient failure(s) retried" in outcome.message
    assert [r.status for r in engine.revisions] == ["superseded", "deployed"]
    assert engine.revisions[-1].labels[VALUES_DIGEST_LABEL] == desired_digests(CHART, VALUES).values
    assert clock.slept == [0.2, 0.4]  # the policy's backoff (kube.retry's)


def test_retries_run_out_at_the_attempt_limit_without_a_rollback():
    clock = FakeClock()
    engine = deployed_engine(failures={"upgrade": [transient()] * 10})
    outcome = deploy(engine, REF, CHART, VALUES, policy=policy(clock, transient_attempts=4))
    assert not outcome.succeeded and outcome.error is not None and outcome.error.transient
    assert engine.calls.count("upgrade") == 4 and "rollback" not in engine.calls
    assert outcome.remediation is not None
    assert outcome.remediation.action is Action.UPGRADE  # what the next deploy does
    assert "nothing is rolled back or held" in outcome.remediation.reason


def test_retries_stay_within_the_actions_deadline():
    clock = FakeClock()
    engine = deployed_engine(failures={"upgrade": [transient()] * 10})
    outcome = deploy(
        engine,
        REF,
        CHART,
        VALUES,
        policy=policy(clock, timeout=timedelta(seconds=20), transient_attempts=50),
    )
    assert outcome.error is not None
    # no retry starts with less than MIN_ATTEMPT_SECONDS of the deadline left
    assert clock.now <= 20 - MIN_ATTEMPT_SECONDS and engine.calls.count("upgrade") == 6


def test_a_final_failure_is_not_retried_and_is_rolled_back():
    clock = FakeClock()
    final = HelmEngineError(
        REF,
        "upgrade",
        "resource Deployment/x not ready. status: InProgress; context deadline exceeded",
    )
    engine = deployed_engine(failures={"upgrade": [("new-failed", final)]})
    outcome = deploy(engine, REF, CHART, VALUES, policy=policy(clock))
    assert engine.calls.count("upgrade") == 1
    assert outcome.remediation is not None and outcome.remediation.action is Action.ROLLBACK
    assert engine.calls.count("rollback") == 1
    assert [r.status for r in engine.revisions] == ["superseded", "failed", "deployed"]


def test_a_transient_failure_of_the_rollback_is_retried_to_the_same_revision():
    clock = FakeClock()
    final = HelmEngineError(
        REF,
        "upgrade",
        "resource Deployment/x not ready. status: InProgress; context deadline exceeded",
    )
    engine = deployed_engine(
        failures={"upgrade": [("new-failed", final)], "rollback": [transient()]}
    )
    outcome = deploy(engine, REF, CHART, VALUES, policy=policy(clock))
    assert engine.calls.count("rollback") == 2
    assert outcome.remediation is not None and "rollback failed" not in outcome.remediation.reason
    assert engine.revisions[-1].status == "deployed"
    assert engine.revisions[-1].labels == OLD_LABELS


def test_the_first_error_wins_over_a_failing_history_read():
    clock = FakeClock()
    final = HelmEngineError(
        REF,
        "upgrade",
        "resource Deployment/x not ready. status: InProgress; context deadline exceeded",
    )
    engine = deployed_engine(failures={"upgrade": [("new-failed", final)]})
    engine.history_fails_after = 2  # the decision's and the attempt's reads; then 500s
    outcome = deploy(engine, REF, CHART, VALUES, policy=policy(clock))
    assert outcome.error is final
    message = outcome.message
    assert message.startswith("upgrade of release floe-jobs")
    assert message.index("not ready") < message.index("then remediating failed")
    assert "still failing" in message


def test_an_install_whose_record_failed_transiently_continues_as_an_upgrade():
    clock = FakeClock()
    engine = ScriptedEngine(
        failures={"install": [("new-failed", ClusterError(REF, "install", f"{APPLY}: EOF"))]}
    )
    # Without cluster access nothing marks revision 1 transient, so mark it as the deploy
    # would (storage.set_status): the label naming its own revision.
    original = engine._record

    def record(status: str, labels: dict[str, str]) -> Release:
        release = original(status, labels)
        if status == "failed":
            release.labels["floe.dev/transient-failure"] = str(release.revision)
        return release

    engine._record = record  # type: ignore[method-assign]
    outcome = deploy(engine, REF, CHART, VALUES, policy=policy(clock))
    assert outcome.succeeded, outcome.message
    assert engine.calls.count("install") == 1 and engine.calls.count("upgrade") == 1
    assert [r.revision for r in engine.revisions] == [1, 2]


class Closable:
    closed = False

    def close(self) -> None:
        self.closed = True


def test_a_transient_failure_retires_helms_client_for_a_new_one(monkeypatch: pytest.MonkeyPatch):
    """Helm's client keeps some failures (its OpenAPI download is made once per client): after a
    transient one, the next call gets a new Config; the old one is closed with the engine."""
    engine = SdkHelmEngine(None)
    old = Closable()
    engine._configs[REF.namespace] = old  # type: ignore[assignment]
    error = engine._mapped(REF, "upgrade", helm_python.HelmReleaseError(f"{APPLY}: EOF"))
    assert error.transient and REF.namespace not in engine._configs and not old.closed
    engine._mapped(REF, "upgrade", helm_python.HelmReleaseError("x is invalid"))  # final: kept
    engine.close()
    assert old.closed


def test_a_failed_revision_of_ours_is_a_verdict_only_when_known_to_be_one():
    from floe_deploy_assets.helm.deploy import _revision
    from floe_deploy_assets.helm.storage import (
        FINAL_FAILURE_LABEL,
        TRANSIENT_FAILURE_LABEL,
        failed_finally,
    )

    def failed(number: int, **labels: str) -> Release:
        return Release(
            "floe-jobs", "floe-dev", number, "failed", "floe-jobs", "1", "1", "",
            labels={**OLD_LABELS, **labels},
        )  # fmt: skip

    assert not _revision(failed(3, **{FINAL_FAILURE_LABEL: "3"})).transient
    assert _revision(failed(3, **{TRANSIENT_FAILURE_LABEL: "3"})).transient
    # Never marked (the deploy lost its Lease, or was stopped, before it could say why), or
    # marked only by a copy of the last revision's label: another attempt, no verdict.
    assert _revision(failed(3)).transient
    assert _revision(failed(4, **{FINAL_FAILURE_LABEL: "3"})).transient
    # What this run knows wins over the record.
    assert not _revision(failed(3), {3: False}).transient
    assert _revision(failed(3, **{FINAL_FAILURE_LABEL: "3"}), {3: True}).transient
    # Made outside floe-deploy: no digests, never ours to judge.
    foreign = Release("floe-jobs", "floe-dev", 3, "failed", "floe-jobs", "1", "1", "")
    assert not _revision(foreign).transient
    assert failed_finally(3, {FINAL_FAILURE_LABEL: "3"}) and not failed_finally(4, {})
