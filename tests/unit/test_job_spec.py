"""DataProductJob specs, names, run order and skips, pod readings: no cluster needed."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kubernetes.client import (
    V1ContainerState,
    V1ContainerStateRunning,
    V1ContainerStateTerminated,
    V1ContainerStateWaiting,
    V1ContainerStatus,
    V1ObjectMeta,
    V1Pod,
    V1PodCondition,
    V1PodSpec,
    V1PodStatus,
)

from floe_deploy_assets.jobs import pods
from floe_deploy_assets.jobs.plan import Outcome, RunPlan, select_models
from floe_deploy_assets.jobs.spec import RUN_LABEL, JobTemplate, job_name, with_job_settings
from floe_deploy_assets.models.artifacts import TransformModel
from floe_deploy_assets.models.config import ConfigError
from tests.support.charts import CONFIG, generated_values

NAME = re.compile(r"^[a-z][a-z0-9-]*$")
DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
DBT_NAMES = st.from_regex(r"[A-Za-z_][A-Za-z0-9_]{0,90}", fullmatch=True)


# --- names -----------------------------------------------------------------------------------
@given(DBT_NAMES, st.sampled_from(["r1", "a1b2c3d4", "Run_2024-01-01.retry"]))
def test_a_job_name_is_a_valid_kubernetes_name_whatever_the_model(model: str, run_id: str):
    name = job_name(model, run_id)
    assert NAME.match(name) and DNS1123_LABEL.match(name) and len(name) <= 63
    assert job_name(model, run_id) == name  # stable


def test_a_plain_short_model_keeps_its_name_and_the_run_id():
    assert job_name("customer_orders", "r1") == "customer-orders-r1"


def test_models_whose_slugs_coincide_get_distinct_names():
    names = {job_name(model, "r1") for model in ("orders", "Orders", "_orders", "or__ders")}
    assert len(names) == 4


def test_a_long_model_name_is_cut_with_a_stable_hash_and_stays_unique():
    long_a, long_b = "x" * 80 + "_a", "x" * 80 + "_b"
    assert len(job_name(long_a, "r1")) == 63
    assert job_name(long_a, "r1") != job_name(long_b, "r1")
    assert job_name(long_a, "r1") != job_name(long_a, "r2")


def test_a_run_id_that_is_no_label_value_is_refused():
    with pytest.raises(ConfigError, match="run id 'bad id!'"):
        job_name("orders", "bad id!")


# --- the rendered Job --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def template():
    values = with_job_settings(generated_values("jobs"), command="build")
    values["models"][0]["resources"] = {
        "requests": {"cpu": "300m", "memory": "1Gi"},
        "limits": {"cpu": "600m", "memory": "2Gi"},
    }
    with JobTemplate(
        CONFIG.chart_path("jobs"),
        values,
        release_name="floe-jobs",
        namespace="floe-dev",
        pod_annotations={"stg_orders": {"sim.kubelet.floe.dev/run-seconds": "5"}},
    ) as job_template:
        yield job_template


def test_the_job_comes_from_the_chart_with_the_runs_labels(template: JobTemplate):
    spec = template.render("stg_orders", "r1", depends_on=())
    manifest = spec.manifest
    assert manifest["metadata"]["name"] == "stg-orders-r1"
    assert manifest["metadata"]["namespace"] == "floe-dev"
    labels = manifest["metadata"]["labels"]
    assert labels[RUN_LABEL] == "r1"
    assert labels["floe.dev/model"] == "stg-orders"
    assert labels["floe.dev/environment"] == "dev" and labels["floe.dev/product"]
    settings = manifest["spec"]
    assert (settings["backoffLimit"], settings["activeDeadlineSeconds"]) == (0, 3600)
    assert settings["ttlSecondsAfterFinished"] == 3600
    pod = settings["template"]
    assert pod["metadata"]["annotations"]["sim.kubelet.floe.dev/run-seconds"] == "5"
    assert pod["spec"]["restartPolicy"] == "Never"


def test_the_data_product_job_is_read_back_from_the_rendered_job(template: JobTemplate):
    job = template.render("stg_orders", "r1").job
    assert job.command[:5] == [
        "python3",
        "/opt/floe-dbt/floe_dbt.py",  # runs dbt, then reports to Dagster
        "build",
        "--select",
        "file:stg_orders",
    ]
    assert job.namespace == "floe-dev" and job.image.startswith("ghcr.io/dbt-labs/")
    assert job.artifacts.name == "floe-jobs-artifacts"  # <release>-artifacts
    assert job.status is None


def test_a_models_own_resources_override_the_preset(template: JobTemplate):
    first = template.values["models"][0]["name"]
    other = template.values["models"][1]["name"]
    assert template.render(first, "r1").job.resources.requests.memory == "1Gi"
    assert template.render(other, "r1").job.resources.requests.memory == "256Mi"


# --- run order and skips -----------------------------------------------------------------------
def _model(name: str, *depends_on: str) -> TransformModel:
    return TransformModel(name=name, compute="duckdb", depends_on=list(depends_on))


def test_models_start_only_after_their_upstream_models_succeeded():
    plan = RunPlan({"a": (), "b": ("a",), "c": ("a",), "d": ("b", "c")})
    assert plan.take_ready(10) == ["a"]
    assert plan.take_ready(10) == []
    assert plan.record("a", succeeded=True) == {}
    assert plan.take_ready(1) == ["b"]  # bounded
    assert plan.take_ready(10) == ["c"]
    plan.record("b", succeeded=True)
    assert plan.take_ready(10) == []
    plan.record("c", succeeded=True)
    assert plan.take_ready(10) == ["d"]


def test_a_failure_skips_everything_downstream_with_the_reason_and_nothing_else():
    plan = RunPlan({"a": (), "b": ("a",), "c": ("b",), "other": ()})
    assert plan.take_ready(10) == ["a", "other"]
    assert plan.record("a", succeeded=False) == {
        "b": "upstream model a failed",
        "c": "upstream model a failed (via b)",
    }
    assert not plan.finished
    plan.record("other", succeeded=True)
    assert plan.finished
    assert plan.outcomes == {
        "a": Outcome.FAILED,
        "b": Outcome.SKIPPED,
        "c": Outcome.SKIPPED,
        "other": Outcome.SUCCEEDED,
    }


def test_upstream_models_outside_the_selection_count_as_built():
    selected = select_models([_model("a"), _model("b", "a"), _model("c", "b")], ["c", "b"])
    assert selected == {"b": ("a",), "c": ("b",)}
    assert RunPlan(selected).take_ready(10) == ["b"]


def test_an_unknown_selected_model_and_a_cycle_are_refused():
    with pytest.raises(ConfigError, match="--select nope: no such model"):
        select_models([_model("a")], ["nope"])
    with pytest.raises(ConfigError, match="dependency cycle among models: a, b"):
        RunPlan({"a": ("b",), "b": ("a",)})


# --- reading pods --------------------------------------------------------------------------
def _pod(phase="Pending", node="node-1", conditions=(), state=None, last=None) -> V1Pod:
    statuses = (
        [
            V1ContainerStatus(
                name="dbt",
                image="i",
                image_id="",
                ready=False,
                restart_count=0,
                state=state,
                last_state=last,
            )
        ]
        if state or last
        else None
    )
    return V1Pod(
        metadata=V1ObjectMeta(name="p"),
        spec=V1PodSpec(containers=[], node_name=node),
        status=V1PodStatus(phase=phase, conditions=list(conditions), container_statuses=statuses),
    )


def test_what_holds_a_pod_back_decides_its_deadline():
    unschedulable = V1PodCondition(
        type="PodScheduled", status="False", reason="Unschedulable", message="0/2 nodes"
    )
    assert pods.pod_hold(_pod(node=None, conditions=[unschedulable])) == pods.PodHold(
        pods.Hold.UNSCHEDULED, "Unschedulable", "0/2 nodes"
    )
    pulling = V1ContainerState(waiting=V1ContainerStateWaiting(reason="ImagePullBackOff"))
    assert pods.pod_hold(_pod(state=pulling)).kind is pods.Hold.IMAGE
    config = V1ContainerState(waiting=V1ContainerStateWaiting(reason="CreateContainerConfigError"))
    assert pods.pod_hold(_pod(state=config)).kind is pods.Hold.STARTING
    running = V1ContainerState(running=V1ContainerStateRunning(started_at=datetime.now(UTC)))
    assert pods.pod_hold(_pod(phase="Running", state=running)) is None


def test_the_exit_of_the_container_is_read_from_its_last_run():
    ended = V1ContainerState(
        terminated=V1ContainerStateTerminated(exit_code=137, reason="OOMKilled")
    )
    waiting = V1ContainerState(waiting=V1ContainerStateWaiting(reason="CrashLoopBackOff"))
    assert pods.termination(_pod(phase="Failed", state=waiting, last=ended)) == pods.Termination(
        137, "OOMKilled", None
    )
    assert pods.termination(_pod()) is None


def test_the_log_tail_is_bounded_in_bytes_and_starts_at_a_line():
    log = "".join(f"line {i}\n" for i in range(1000)).encode()
    tail = pods.last_bytes(log, 100)
    assert len(tail.encode()) <= 100 and tail.startswith("line ") and tail.endswith("line 999\n")
    assert pods.last_bytes(b"short\n", 100) == "short\n"
    assert pods.last_bytes("é".encode() * 100, 51)  # a cut inside a character does not raise
