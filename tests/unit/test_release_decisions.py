"""Release classification and the one action taken for each state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from floe_deploy_assets.models.deployment import DeploymentStatus
from floe_deploy_assets.release.decide import (
    Action,
    Digests,
    ReleaseState,
    Remediation,
    Revision,
    decide,
    history_table,
    platform_status,
)

NOW = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
DESIRED = Digests(chart="c" * 64, values="v" * 64)
DEADLINE = timedelta(minutes=10)


def rev(
    number: int,
    status: str,
    *,
    age: timedelta = timedelta(hours=1),
    digests: Digests | None = DESIRED,
    transient: bool = False,
) -> Revision:
    return Revision(number, status, NOW - age, digests, transient)


def run(
    history: list[Revision],
    *,
    held: bool = False,
    remediation: Remediation = Remediation.ROLLBACK,
    lock_held: bool = False,
):
    return decide(
        history,
        DESIRED,
        now=NOW,
        pending_deadline=DEADLINE,
        held_by_live_operation=held,
        remediation=remediation,
        lock_held=lock_held,
    )


def test_absent_installs():
    decision = run([])
    assert (decision.state, decision.action) == (ReleaseState.ABSENT, Action.INSTALL)


def test_in_sync_does_nothing_so_no_new_revision():
    decision = run([rev(1, "superseded"), rev(2, "deployed")])
    assert (decision.state, decision.action) == (ReleaseState.IN_SYNC, Action.NOTHING)


@pytest.mark.parametrize(
    ("digests", "changed"),
    [
        (Digests("x" * 64, DESIRED.values), "chart changed"),
        (Digests(DESIRED.chart, "y" * 64), "values changed"),
        (Digests("x" * 64, "y" * 64), "chart and values changed"),
        (None, "made outside floe-deploy"),
    ],
)
def test_out_of_sync_upgrades_and_says_what_changed(digests, changed):
    decision = run([rev(1, "deployed", digests=digests)])
    assert (decision.state, decision.action) == (ReleaseState.OUT_OF_SYNC, Action.UPGRADE)
    assert changed in decision.reason


@pytest.mark.parametrize("status", ["pending-install", "pending-upgrade", "pending-rollback"])
def test_a_young_pending_release_is_waited_for(status: str):
    decision = run([rev(1, "deployed"), rev(2, status, age=timedelta(minutes=2))])
    assert (decision.state, decision.action) == (ReleaseState.PENDING_LOCKED, Action.WAIT)
    assert "within its 600 s deadline" in decision.reason


def test_a_pending_release_held_by_a_live_operation_is_never_unlocked():
    decision = run([rev(1, "pending-upgrade", age=timedelta(hours=5))], held=True)
    assert (decision.state, decision.action) == (ReleaseState.PENDING_LOCKED, Action.WAIT)
    assert "a live operation holds it" in decision.reason


def test_a_stale_unheld_pending_release_is_unlocked():
    decision = run([rev(1, "deployed"), rev(2, "pending-upgrade", age=timedelta(minutes=11))])
    assert (decision.state, decision.action) == (ReleaseState.PENDING_STALE, Action.UNLOCK)
    assert "past its 600 s deadline" in decision.reason


def test_failed_rolls_back_to_the_last_good_revision():
    history = [rev(1, "superseded"), rev(2, "deployed"), rev(3, "failed"), rev(4, "failed")]
    decision = run(history)
    assert (decision.action, decision.target_revision) == (Action.ROLLBACK, 2)


def test_failed_without_a_good_revision_holds_rather_than_guessing():
    decision = run([rev(1, "failed")])
    assert decision.action is Action.HOLD
    assert "no earlier revision was ever deployed" in decision.reason


@pytest.mark.parametrize(
    ("policy", "action"),
    [(Remediation.RETRY, Action.RETRY_UPGRADE), (Remediation.HOLD, Action.HOLD)],
)
def test_failed_follows_the_remediation_policy(policy: Remediation, action: Action):
    decision = run([rev(1, "deployed"), rev(2, "failed")], remediation=policy)
    assert (decision.state, decision.action) == (ReleaseState.FAILED, action)


@pytest.mark.parametrize(
    ("helm", "seed"),
    [
        ("pending-install", "pending"),
        ("pending-upgrade", "pending"),
        ("uninstalling", "pending"),
        ("deployed", "deployed"),
        ("superseded", "superseded"),
        ("failed", "failed"),
        ("unknown", "failed"),
    ],
)
def test_helm_statuses_map_to_the_seeds_statuses(helm: str, seed: str):
    assert platform_status(helm) == DeploymentStatus(seed)


statuses = st.sampled_from(
    [
        "deployed",
        "superseded",
        "failed",
        "pending-install",
        "pending-upgrade",
        "pending-rollback",
        "uninstalled",
    ]
)


@given(
    history=st.lists(statuses, max_size=6),
    held=st.booleans(),
    policy=st.sampled_from(list(Remediation)),
    order=st.randoms(),
)
def test_exactly_one_decision_whatever_the_history_order(history, held, policy, order):
    revisions = [rev(i + 1, s, age=timedelta(minutes=5 * (6 - i))) for i, s in enumerate(history)]
    shuffled = list(revisions)
    order.shuffle(shuffled)

    first = run(revisions, held=held, remediation=policy)
    assert run(shuffled, held=held, remediation=policy) == first
    assert first.reason
    if first.action is Action.ROLLBACK:
        assert first.target_revision is not None and first.target_revision < len(history)


OTHER = Digests(chart="c" * 64, values="o" * 64)


def test_a_pending_revision_of_ours_is_stale_at_once_under_the_release_lock():
    young = [rev(1, "deployed"), rev(2, "pending-upgrade", age=timedelta(seconds=5))]
    assert run(young).action is Action.WAIT  # without the lock a live deploy may hold it
    decision = run(young, lock_held=True)
    assert (decision.state, decision.action) == (ReleaseState.PENDING_STALE, Action.UNLOCK)
    assert "no floe-deploy operation holds the release lock" in decision.reason


def test_a_young_pending_revision_made_outside_floe_deploy_waits_even_under_the_lock():
    foreign = [
        rev(1, "deployed"),
        rev(2, "pending-upgrade", age=timedelta(seconds=5), digests=None),
    ]
    assert run(foreign, lock_held=True).action is Action.WAIT


def test_digests_that_already_failed_and_were_rolled_back_are_held_not_retried():
    history = [
        rev(1, "superseded", digests=OTHER),
        rev(2, "failed"),  # the desired digests failed...
        rev(3, "deployed", digests=OTHER),  # ...and were rolled back to revision 1
    ]
    decision = run(history)
    assert (decision.state, decision.action) == (ReleaseState.OUT_OF_SYNC, Action.HOLD)
    assert "already failed as revision 2" in decision.reason
    assert run(history, remediation=Remediation.RETRY).action is Action.UPGRADE


def test_a_failed_release_with_new_desired_digests_tries_them():
    decision = run([rev(1, "deployed", digests=OTHER), rev(2, "failed", digests=OTHER)])
    assert (decision.state, decision.action) == (ReleaseState.FAILED, Action.UPGRADE)
    assert "values changed since" in decision.reason


# -- a transient failure (the cluster's, not the values') is no verdict ---------------------------


@pytest.mark.parametrize("policy", list(Remediation))
def test_a_transient_failure_is_retried_whatever_the_policy_never_rolled_back_or_held(
    policy: Remediation,
):
    history = [rev(1, "superseded"), rev(2, "deployed"), rev(3, "failed", transient=True)]
    decision = run(history, remediation=policy, lock_held=True)
    assert (decision.state, decision.action) == (ReleaseState.FAILED, Action.RETRY_UPGRADE)
    assert "transient" in decision.reason
    assert decision.target_revision is None


def test_a_first_install_that_failed_transiently_is_retried_not_held():
    decision = run([rev(1, "failed", transient=True)])
    assert decision.action is Action.RETRY_UPGRADE  # a final failure here is held (above)


def test_digests_that_failed_transiently_and_were_rolled_back_are_tried_again_not_held():
    history = [
        rev(1, "superseded", digests=OTHER),
        rev(2, "failed", transient=True),  # the desired digests failed, the cluster's fault...
        rev(3, "deployed", digests=OTHER),  # ...and were rolled back (before issue 13)
    ]
    decision = run(history)
    assert (decision.state, decision.action) == (ReleaseState.OUT_OF_SYNC, Action.UPGRADE)


def test_only_the_newest_attempt_of_the_digests_counts_for_the_hold():
    final_then_transient = [
        rev(1, "superseded", digests=OTHER),
        rev(2, "failed"),  # a verdict...
        rev(3, "superseded", digests=OTHER),
        rev(4, "failed", transient=True),  # ...then a fair new attempt cut short by the cluster
        rev(5, "deployed", digests=OTHER),
    ]
    assert run(final_then_transient).action is Action.UPGRADE
    transient_then_final = [
        rev(1, "superseded", digests=OTHER),
        rev(2, "failed", transient=True),
        rev(3, "superseded", digests=OTHER),
        rev(4, "failed"),  # the values' own failure
        rev(5, "deployed", digests=OTHER),
    ]
    decision = run(transient_then_final)
    assert decision.action is Action.HOLD
    assert "already failed as revision 4" in decision.reason


def test_a_transient_failure_after_a_final_one_is_retried():
    history = [
        rev(1, "deployed", digests=OTHER),
        rev(2, "failed"),
        rev(3, "failed", transient=True),
    ]
    assert run(history).action is Action.RETRY_UPGRADE
    # ...and the final failure is still remediated when it is the latest
    assert run(history[:2]).action is Action.ROLLBACK


def test_a_transient_failure_of_other_digests_tries_the_new_state():
    decision = run(
        [rev(1, "deployed", digests=OTHER), rev(2, "failed", digests=OTHER, transient=True)]
    )
    assert (decision.state, decision.action) == (ReleaseState.FAILED, Action.UPGRADE)


def test_the_history_table_says_which_failures_were_transient():
    table = history_table([rev(1, "deployed"), rev(2, "failed", transient=True), rev(3, "failed")])
    assert "| 2 | failed (transient) |" in table
    assert "| 3 | failed |" in table


@given(
    history=st.lists(st.tuples(statuses, st.booleans()), min_size=1, max_size=6),
    policy=st.sampled_from(list(Remediation)),
    lock_held=st.booleans(),
)
def test_a_latest_transient_failure_never_leads_to_a_rollback_or_a_hold(history, policy, lock_held):
    revisions = [
        rev(i + 1, s, age=timedelta(minutes=5 * (6 - i)), transient=t and s == "failed")
        for i, (s, t) in enumerate(history)
    ]
    revisions[-1] = rev(len(history), "failed", transient=True)
    decision = run(revisions, remediation=policy, lock_held=lock_held)
    assert decision.action is Action.RETRY_UPGRADE


def test_a_rollback_cut_short_by_the_cluster_is_done_again_not_the_values_that_failed():
    history = [
        rev(1, "deployed", digests=OTHER),
        rev(2, "failed"),  # the desired digests' own failure...
        rev(3, "failed", digests=OTHER, transient=True),  # ...then the rollback hit a blip
    ]
    decision = run(history)
    assert (decision.action, decision.target_revision) == (Action.ROLLBACK, 1)
    assert run(history, remediation=Remediation.HOLD).action is Action.HOLD
    assert run(history, remediation=Remediation.RETRY).action is Action.UPGRADE
    # A rollback that failed for a reason of its own: the desired state is tried (as before).
    history[2] = rev(3, "failed", digests=OTHER)
    assert run(history).action is Action.UPGRADE
