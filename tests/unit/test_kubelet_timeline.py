"""The simulated kubelet's pod timeline, without a cluster."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from localcluster.kubelet.behaviour import BehaviourError, PodBehaviour, behaviour_for
from localcluster.kubelet.logserver import shape_logs
from localcluster.kubelet.timeline import (
    Backoff,
    ContainerFacts,
    PodFacts,
    container_moment,
    pod_status,
)
from tests.support.objects import sim

STARTED = datetime(2026, 1, 1, tzinfo=UTC)
BACKOFF = Backoff(base=10, cap=40)
MAIN = ContainerFacts("main", "img:1")


def _pod(restart_policy: str = "Always", **extra) -> PodFacts:
    return PodFacts("ns", "p", "uid-1", restart_policy, (MAIN,), **extra)


def _status(behaviour: PodBehaviour, t: float, **pod) -> tuple[dict, float | None]:
    return pod_status(_pod(**pod), behaviour, STARTED, t, BACKOFF, "10.244.0.2", "127.0.0.1")


def test_job_pods_exit_after_one_second_by_default_and_always_pods_run_forever():
    assert behaviour_for({}, "Never", ["img"]).run_seconds == 1.0
    assert behaviour_for({}, "Always", ["img"]).run_seconds is None


def test_unknown_fault_and_bad_numbers_are_named():
    with pytest.raises(BehaviourError, match="fault='boom' is unknown; use one of"):
        behaviour_for(sim(fault="boom"), "Always", ["img"])
    with pytest.raises(BehaviourError, match="exit-code='x' is not a int"):
        behaviour_for(sim(exit_code="x"), "Always", ["img"])
    with pytest.raises(BehaviourError, match="must not be negative"):
        behaviour_for(sim(run_seconds=-1), "Always", ["img"])


def test_crash_loop_restarts_at_once_then_backs_off_doubling_up_to_the_cap():
    crash = behaviour_for(sim(fault="crash-loop"), "Always", ["img"])
    # run 0: [0,1); restart at once; run 1: [1,2); back-off 10; run 2: [12,13); back-off 20;
    # run 3: [33,34); back-off 40 (capped); run 4: [74,75)
    expected = [
        (0.5, "running", 0),
        (1.5, "running", 1),
        (5, "waiting", 1),
        (12.5, "running", 2),
        (20, "waiting", 2),
        (33.5, "running", 3),
        (60, "waiting", 3),
        (74.5, "running", 4),
    ]
    for t, state, restarts in expected:
        moment = container_moment(t, MAIN, crash, "Always", BACKOFF)
        assert (moment.state, moment.restart_count) == (state, restarts), t
    waiting = container_moment(20, MAIN, crash, "Always", BACKOFF)
    assert (waiting.reason, waiting.next_change, waiting.last_run) == (
        "CrashLoopBackOff",
        33,
        (12, 13),
    )


def test_crash_loop_status_shows_last_state_and_running_phase():
    crash = behaviour_for(sim(fault="crash-loop", exit_code=3), "Always", ["img"])
    status, next_change = _status(crash, 5)
    container = status["containerStatuses"][0]
    assert status["phase"] == "Running"
    assert container["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    assert container["lastState"]["terminated"]["exitCode"] == 3
    assert container["restartCount"] == 1 and next_change == 12


def test_image_pull_error_turns_into_back_off_after_the_first_back_off_period():
    pull = behaviour_for(sim(fault="image-pull-error"), "Always", ["img"])
    assert container_moment(1, MAIN, pull, "Always", BACKOFF).reason == "ErrImagePull"
    assert container_moment(11, MAIN, pull, "Always", BACKOFF).reason == "ImagePullBackOff"
    status, next_change = _status(pull, 11)
    assert status["phase"] == "Pending" and "podIP" not in status and next_change is None


def test_successful_job_pod_completes_and_oom_reports_its_reason():
    status, _ = _status(behaviour_for({}, "Never", ["img"]), 2, restart_policy="Never")
    assert status["phase"] == "Succeeded"
    assert status["containerStatuses"][0]["state"]["terminated"]["reason"] == "Completed"
    oom, _ = _status(
        behaviour_for(sim(fault="oom-killed"), "Never", ["img"]), 2, restart_policy="Never"
    )
    terminated = oom["containerStatuses"][0]["state"]["terminated"]
    assert (oom["phase"], terminated["reason"], terminated["exitCode"]) == (
        "Failed",
        "OOMKilled",
        137,
    )


def test_on_failure_pods_restart_only_on_non_zero_exit():
    ok = behaviour_for({}, "OnFailure", ["img"])
    assert container_moment(5, MAIN, ok, "OnFailure", BACKOFF).state == "terminated"
    failing = behaviour_for(sim(exit_code=1), "OnFailure", ["img"])
    assert container_moment(1.5, MAIN, failing, "OnFailure", BACKOFF).restart_count == 1


def test_readiness_waits_for_the_probe_delay():
    probed = ContainerFacts("main", "img:1", readiness_delay=5)
    behaviour = behaviour_for({}, "Always", ["img"])
    assert not container_moment(4, probed, behaviour, "Always", BACKOFF).ready
    assert container_moment(5, probed, behaviour, "Always", BACKOFF).ready


def test_active_deadline_fails_a_running_pod_but_not_one_that_finished_before_it():
    forever = behaviour_for({}, "Always", ["img"])
    status, next_change = _status(forever, 1, active_deadline_seconds=3)
    assert status["phase"] == "Running" and next_change == 3
    late, _ = _status(forever, 3, active_deadline_seconds=3)
    assert (late["phase"], late["reason"]) == ("Failed", "DeadlineExceeded")
    quick, _ = _status(
        behaviour_for({}, "Never", ["img"]), 5, restart_policy="Never", active_deadline_seconds=3
    )
    assert quick["phase"] == "Succeeded"


@given(
    t=st.floats(min_value=0, max_value=10_000),
    run=st.floats(min_value=0.1, max_value=50),
    code=st.integers(min_value=0, max_value=255),
)
def test_restart_count_never_decreases_over_time(t: float, run: float, code: int):
    behaviour = PodBehaviour(run_seconds=run, exit_code=code)
    now = container_moment(t, MAIN, behaviour, "Always", BACKOFF)
    later = container_moment(t + 7.5, MAIN, behaviour, "Always", BACKOFF)
    assert later.restart_count >= now.restart_count
    assert now.next_change is None or now.next_change > t


def test_log_query_options_are_applied():
    text = "a\nb\nc\n"
    assert shape_logs(text, {"tailLines": ["2"]}) == "b\nc\n"
    assert shape_logs(text, {"limitBytes": ["3"]}) == "a\nb"
    assert shape_logs(text, {"timestamps": ["true"], "tailLines": ["1"]}).endswith("Z c\n")
