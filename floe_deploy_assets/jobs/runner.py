"""Run a set of models as Kubernetes Jobs, in dependency order, with bounded concurrency.

Every wait has a deadline and a reason: a pod that cannot be scheduled fails at the schedule
deadline, one whose image cannot be pulled fails at once, one that does not start fails at the
start deadline, and a Job whose own ``activeDeadlineSeconds`` the cluster does not enforce fails
``finish_grace`` seconds after it (once a read of the Job shows no end: a watch event can be
late). A Job the runner fails itself is deleted (its pod with it);
the others are left to their ``ttlSecondsAfterFinished``, so their logs stay readable.

Re-running a model in the same run adopts its Job (create answers 409 AlreadyExists) instead of
creating a second one; a new attempt after a failure is a new run, with a new run id.

One thread (the caller's) owns all state: Job creations run on a small pool and report back
through the same queue as the watch events.
"""

from __future__ import annotations

import queue
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime

from kubernetes import client
from kubernetes.client import V1Job, V1JobCondition, V1Pod
from kubernetes.client.exceptions import ApiException

from floe_deploy_assets.jobs import pods
from floe_deploy_assets.jobs.plan import Outcome, RunPlan
from floe_deploy_assets.jobs.spec import RUN_LABEL, JobTemplate, ModelJob, job_name
from floe_deploy_assets.jobs.watch import (
    CountingApiClient,
    Observed,
    RunWatch,
    job_from_json,
    pod_from_json,
)
from floe_deploy_assets.kube.access import bounded_copy
from floe_deploy_assets.kube.retry import call_with_retry, describe, discard, read_json
from floe_deploy_assets.models.jobs import DataProductJob, JobPhase

ALREADY_EXISTS, NOT_FOUND = 409, 404
CREATE_WORKERS = 8
TERMINAL_CONDITIONS = {"Complete": JobPhase.SUCCEEDED, "Failed": JobPhase.FAILED}


class RunnerError(RuntimeError):
    """The run cannot go on (the release is missing, a watch died); the message says where."""


@dataclass(frozen=True)
class RunnerSettings:
    concurrency: int = 4
    schedule_deadline: float = 120.0  # seconds a pod may stay unscheduled
    start_deadline: float = 300.0  # seconds a scheduled pod may take to start its container
    finish_grace: float = 30.0  # beyond the Job's activeDeadlineSeconds, before the runner acts
    log_lines: int = 100
    log_bytes: int = 4096  # the logs a failed JobStatus carries, at most
    resync_seconds: float = 10.0
    tick: float = 0.5  # how often deadlines are checked when no event comes


@dataclass(frozen=True)
class ModelResult:
    model: str
    job_name: str
    outcome: Outcome
    job: DataProductJob | None = None  # None: skipped, no Job was created
    reason: str | None = None  # why it failed or was skipped
    message: str | None = None
    duration: float | None = None  # Job creation to the runner seeing it end, seconds
    adopted: bool = False  # the Job existed already in this run and was followed, not created
    seen_delay: float | None = None  # the Job's terminal condition to the runner seeing it
    created_at: float | None = None  # wall-clock time the create was sent
    pod_name: str | None = None  # the Job's pod, when one was seen

    @property
    def phase(self) -> str:
        return str(self.outcome)


@dataclass(frozen=True)
class RunReport:
    run_id: str
    namespace: str
    results: list[ModelResult]
    api_calls: dict[str, int]
    wall_seconds: float

    @property
    def failed(self) -> list[ModelResult]:
        return [r for r in self.results if r.outcome is Outcome.FAILED]

    @property
    def succeeded(self) -> bool:
        return all(r.outcome is Outcome.SUCCEEDED for r in self.results)

    def result(self, model: str) -> ModelResult:
        return next(r for r in self.results if r.model == model)


@dataclass
class _Active:
    """A model whose Job is being created or followed."""

    spec: ModelJob
    job: DataProductJob
    created: float  # monotonic, when the create was sent
    active_deadline: float
    # Monotonic, when the runner first saw the Job's startTime: activeDeadlineSeconds counts
    # from there, and a busy Job controller sets it late.
    started: float | None = None
    # The last state of the Job the watch showed before the create answered (and when it was
    # seen): a Job can end before its create's answer reaches the runner.
    early: tuple[V1Job, float | None] | None = None
    created_at: float = field(default_factory=time.time)
    created_confirmed: bool = False
    adopted: bool = False
    pod: V1Pod | None = None

    @property
    def phase(self) -> JobPhase | None:
        return self.job.status.phase if self.job.status else None


@dataclass
class _Created:
    name: str
    job: V1Job | None
    adopted: bool
    error: BaseException | None = None


@dataclass
class _RunState:
    plan: RunPlan
    run_id: str
    events: queue.Queue = field(default_factory=queue.Queue)
    active: dict[str, _Active] = field(default_factory=dict)  # by Job name
    results: dict[str, ModelResult] = field(default_factory=dict)  # by model
    submitted: int = 0  # Job creations handed to the pool


class JobRunner:
    def __init__(
        self,
        api: client.ApiClient,
        template: JobTemplate,
        settings: RunnerSettings | None = None,
    ) -> None:
        # A client of our own, so that its call counts are this runner's alone; every request
        # of it has a timeout (kube.access).
        self.api = bounded_copy(api, CountingApiClient)
        self.template, self.namespace = template, template.namespace
        self.settings = settings or RunnerSettings()
        # How a run that stopped early (an error, SIGTERM, Ctrl-C) left its Jobs, in words.
        self.abandoned: str | None = None
        self._batch, self._core = client.BatchV1Api(self.api), client.CoreV1Api(self.api)

    def run(self, models: Mapping[str, tuple[str, ...]], run_id: str) -> RunReport:
        """Run ``models`` (model -> upstream models, as ``plan.select_models`` gives them)."""
        started = time.monotonic()
        state = _RunState(RunPlan(models), run_id)
        watch = RunWatch(
            self.api, self.namespace, run_id, state.events, self.settings.resync_seconds
        )
        watch.start()
        pool = ThreadPoolExecutor(min(CREATE_WORKERS, self.settings.concurrency), "create-job")
        checked = time.monotonic()
        try:
            while not state.plan.finished:
                self._start_ready(state, pool)
                self._drain(state)
                # Deadlines are seconds long: checking them once a tick is enough, and the
                # check walks every active Job, so not after every burst of events.
                if time.monotonic() - checked >= self.settings.tick:
                    self._enforce_deadlines(state)
                    checked = time.monotonic()
        finally:
            # Also on KeyboardInterrupt (SIGINT, and SIGTERM as floe-deploy's main turns it):
            # the creations in flight end, then every Job of the run is deleted.
            watch.stop()
            pool.shutdown(wait=True, cancel_futures=True)
            if not state.plan.finished and state.submitted:
                self._abandon(run_id)
        return RunReport(
            run_id,
            self.namespace,
            [state.results[model] for model in models],
            dict(self.api.calls),
            time.monotonic() - started,
        )

    def _abandon(self, run_id: str) -> None:
        """The run stopped early (a watch died, the API failed, the process is being stopped):
        its Jobs go too, or they would run on unobserved and run again on the rerun. Best
        effort: the error that stopped the run is the one raised; ``abandoned`` says how the
        deletion went."""
        selector = f"{RUN_LABEL}={run_id}"
        try:
            call_with_retry(
                self._batch.delete_collection_namespaced_job,
                self.namespace,
                label_selector=selector,
                propagation_policy="Background",
                what=f"deleting the Jobs of run {run_id} in namespace {self.namespace}",
                deadline=10,
            )
            self.abandoned = f"deleted the Jobs of run {run_id} in namespace {self.namespace}"
        except Exception as error:
            self.abandoned = (
                f"could not delete the Jobs of run {run_id} in namespace {self.namespace} "
                f"({describe(error)}); delete them with: kubectl delete jobs -n "
                f"{self.namespace} -l {selector}"
            )

    # --- starting -------------------------------------------------------------------------
    def _start_ready(self, state: _RunState, pool: ThreadPoolExecutor) -> None:
        room = self.settings.concurrency - len(state.active)
        for model in state.plan.take_ready(room):
            spec = self.template.render(model, state.run_id, state.plan.upstream(model))
            if not state.results and not state.active:
                self._check_release(spec)
            state.active[spec.name] = _Active(
                spec,
                spec.job.transition_to(JobPhase.PENDING),
                time.monotonic(),
                float(spec.manifest["spec"]["activeDeadlineSeconds"]),
            )
            state.submitted += 1  # before: a signal between the two must not skip the clean-up
            pool.submit(self._create, spec, state.events)

    def _check_release(self, spec: ModelJob) -> None:
        """Without the floe-jobs release a Job's pod is never created or never starts; say so
        now, rather than at a deadline."""
        pod_spec = spec.manifest["spec"]["template"]["spec"]
        needed = {
            "ServiceAccount": (
                self._core.read_namespaced_service_account,
                pod_spec["serviceAccountName"],
            ),
            "ConfigMap": (self._core.read_namespaced_config_map, spec.job.artifacts.name),
        }
        for kind, (read, name) in needed.items():
            try:
                call_with_retry(
                    read,
                    name,
                    self.namespace,
                    what=f"reading {kind} {name} in namespace {self.namespace}",
                )
            except ApiException as error:
                if error.status != NOT_FOUND:
                    raise
                raise RunnerError(
                    f"{kind} {name} is missing in namespace {self.namespace}: the floe-jobs "
                    "release must be installed before models run (floe-deploy deploy --chart "
                    "jobs)"
                ) from None

    def _create(self, spec: ModelJob, events: queue.Queue) -> None:
        """On the pool: create the Job, or adopt the one this run already has. The created Job
        is not read back (the Job watch brings its status): its body is left unparsed."""
        what = f"creating Job {spec.name} in namespace {self.namespace}"
        try:
            try:
                response = call_with_retry(
                    self._batch.create_namespaced_job,
                    self.namespace,
                    spec.manifest,
                    _preload_content=False,
                    what=what,
                )
                discard(response)
                events.put(_Created(spec.name, None, adopted=False))
            except ApiException as error:
                if error.status != ALREADY_EXISTS:
                    raise
                job = call_with_retry(
                    self._batch.read_namespaced_job,
                    spec.name,
                    self.namespace,
                    _preload_content=False,
                    what=f"reading the existing Job {spec.name} in namespace {self.namespace}",
                )
                events.put(_Created(spec.name, job_from_json(read_json(job)), adopted=True))
        except Exception as error:
            events.put(_Created(spec.name, None, adopted=False, error=error))

    # --- events ---------------------------------------------------------------------------
    def _drain(self, state: _RunState) -> None:
        """Handle the next event (waiting up to a tick), then any others already queued."""
        try:
            item = state.events.get(timeout=self.settings.tick)
        except queue.Empty:
            return
        while True:
            self._handle(state, item)
            try:
                item = state.events.get_nowait()
            except queue.Empty:
                return

    def _handle(self, state: _RunState, item: _Created | Observed) -> None:
        if isinstance(item, _Created):
            self._on_created(state, item)
        elif item.type == "ERROR":
            raise RunnerError(
                f"the {item.kind} watch of run {state.run_id} in namespace {self.namespace} "
                f"failed: {describe(item.object)}"
            ) from item.object
        elif item.type == "SYNC":
            self._on_sync(state, item)
        elif item.kind == "Job":
            self._on_job(state, item.object, item.type == "DELETED", item.seen_at)
        else:
            self._on_pod(state, item.object, item.type == "DELETED")

    def _on_created(self, state: _RunState, created: _Created) -> None:
        active = state.active.get(created.name)
        if active is None:
            return
        if created.error is not None:
            self._finish(state, active, "CreateFailed", describe(created.error))
            return
        active.created_confirmed, active.adopted = True, created.adopted
        if created.adopted and created.job is not None:
            self._on_job(state, created.job, deleted=False, seen_at=None)
        if active.early is not None:
            # Conditions of a Job only ever get added: whichever of the two states is newer,
            # applying both leaves what the newer one says.
            early, seen_at = active.early
            active.early = None
            self._on_job(state, early, deleted=False, seen_at=seen_at)

    def _on_sync(self, state: _RunState, observed: Observed) -> None:
        listed = {obj.metadata.name for obj in observed.object}
        for obj in observed.object:
            if observed.kind == "Job":
                self._on_job(state, obj, deleted=False, seen_at=observed.seen_at)
            else:
                self._on_pod(state, obj, deleted=False)
        if observed.kind != "Job":
            return
        # A relist after a 410 carries no DELETED events: check Jobs that vanished.
        for name, active in list(state.active.items()):
            if active.created_confirmed and name not in listed and self._read_job(name) is None:
                self._finish(state, active, "JobDeleted", self._deleted_message(name))

    def _read_job(self, name: str) -> V1Job | None:
        """The Job as the API server has it now (the watch may lag); None once it is gone."""
        try:
            response = call_with_retry(
                self._batch.read_namespaced_job,
                name,
                self.namespace,
                _preload_content=False,
                what=f"reading Job {name} in namespace {self.namespace}",
            )
        except ApiException as error:
            if error.status == NOT_FOUND:
                return None
            raise
        return job_from_json(read_json(response))

    def _deleted_message(self, name: str) -> str:
        return f"Job {name} in namespace {self.namespace} was deleted before it finished"

    def _on_job(self, state: _RunState, job: V1Job, deleted: bool, seen_at: float | None) -> None:
        active = state.active.get(job.metadata.name)
        if active is None:
            return
        if not active.created_confirmed:
            # Kept for when the create answers. A deletion is not: it may be of a Job of this
            # name the run had before. (Should it be ours, the overdue check's read finds
            # the Job gone.)
            if not deleted:
                active.early = (job, seen_at)
            return
        if active.started is None and job.status.start_time is not None:
            active.started = time.monotonic()
        condition = _terminal_condition(job)
        if condition is None:
            if deleted:
                self._finish(state, active, "JobDeleted", self._deleted_message(active.spec.name))
            return
        delay = None
        if seen_at is not None and condition.last_transition_time is not None:
            delay = seen_at - condition.last_transition_time.timestamp()
        if condition.type == "Complete":
            self._succeed(state, active, job, delay)
        else:
            self._fail_from_job(state, active, condition, delay)

    def _on_pod(self, state: _RunState, pod: V1Pod, deleted: bool) -> None:
        active = state.active.get((pod.metadata.labels or {}).get("job-name", ""))
        if active is None:
            return
        active.pod = None if deleted else pod
        if deleted:
            return
        started = pods.started_at(pod)
        if started is not None and active.phase is JobPhase.PENDING:
            active.job = active.job.transition_to(JobPhase.RUNNING, start_time=started)
        hold = pods.pod_hold(pod)
        if hold is not None and hold.kind is pods.Hold.IMAGE:
            self._fail_and_delete(state, active, hold.reason, f"{hold.reason}: {hold.message}")

    # --- deadlines ------------------------------------------------------------------------
    def _enforce_deadlines(self, state: _RunState) -> None:
        now, settings = time.monotonic(), self.settings
        for active in list(state.active.values()):
            if not active.created_confirmed:
                continue  # the create's own retry deadline bounds this
            if now - (active.started or active.created) > active.active_deadline + (
                settings.finish_grace
            ):
                self._on_overdue(state, active)
                continue
            age = now - active.created
            if active.phase is not JobPhase.PENDING:
                continue
            hold = (
                pods.pod_hold(active.pod)
                if active.pod is not None
                else pods.PodHold(pods.Hold.UNSCHEDULED, "PodNotCreated", "no pod was created")
            )
            if hold is None:
                continue
            if hold.kind is pods.Hold.UNSCHEDULED:
                deadline, waiting_for = settings.schedule_deadline, "scheduled"
            else:
                deadline, waiting_for = settings.start_deadline, "started"
            if age > deadline:
                self._fail_and_delete(
                    state,
                    active,
                    hold.reason,
                    f"the pod of Job {active.spec.name} was not {waiting_for} within "
                    f"{deadline:g} s: {hold.reason}: {hold.message}",
                )

    def _on_overdue(self, state: _RunState, active: _Active) -> None:
        """The Job has not ended ``finish_grace`` seconds after its activeDeadlineSeconds. Its
        own verdict comes first (the watch event of it may be late); without one the runner
        fails and deletes it."""
        name = active.spec.name
        job = self._read_job(name)
        if job is None:
            self._finish(state, active, "JobDeleted", self._deleted_message(name))
        elif _terminal_condition(job) is not None:
            self._on_job(state, job, deleted=False, seen_at=None)
        else:
            self._fail_and_delete(
                state,
                active,
                "DeadlineNotEnforced",
                f"no end of Job {name} {self.settings.finish_grace:g} s after its "
                f"activeDeadlineSeconds ({active.active_deadline:g} s)",
            )

    # --- endings --------------------------------------------------------------------------
    def _succeed(self, state: _RunState, active: _Active, job: V1Job, delay: float | None) -> None:
        # Listed only when the pod watch has not shown the pod yet (it may lag the Job watch).
        pod = active.pod or self._latest_pod(active)
        if active.phase is JobPhase.PENDING:
            # It ran, though its pod may have come and gone between two events.
            active.job = active.job.transition_to(
                JobPhase.RUNNING, start_time=job.status.start_time
            )
        active.job = active.job.transition_to(
            JobPhase.SUCCEEDED, completion_time=job.status.completion_time
        )
        self._record(state, active, Outcome.SUCCEEDED, None, None, delay, pod)

    def _fail_from_job(
        self, state: _RunState, active: _Active, condition: V1JobCondition, delay: float | None
    ) -> None:
        """The Job controller failed the Job: the pod's exit says why, when it ran."""
        pod = self._latest_pod(active)
        ended = pods.termination(pod) if pod is not None else None
        reason = condition.reason or "Failed"
        if reason == "BackoffLimitExceeded" and ended is not None and ended.reason:
            reason = ended.reason  # OOMKilled, Error: more telling than the retry count
        message = condition.message or reason
        if ended is not None and ended.exit_code is not None:
            message = f"{message}; container {pods.DBT_CONTAINER} exited with {ended.exit_code}"
        self._finish(state, active, reason, message, pod=pod, ended=ended, delay=delay)

    def _fail_and_delete(
        self, state: _RunState, active: _Active, reason: str, message: str
    ) -> None:
        """The runner fails the Job itself: it keeps what the pod says, then deletes the Job so
        no pod lingers until a deadline."""
        pod = active.pod
        ended = pods.termination(pod) if pod is not None else None
        self._finish(state, active, reason, message, pod=pod, ended=ended)
        try:
            call_with_retry(
                self._batch.delete_namespaced_job,
                active.spec.name,
                self.namespace,
                propagation_policy="Background",
                what=f"deleting Job {active.spec.name} in namespace {self.namespace}",
            )
        except ApiException as error:
            if error.status != NOT_FOUND:
                raise

    def _finish(
        self,
        state: _RunState,
        active: _Active,
        reason: str,
        message: str,
        *,
        pod: V1Pod | None = None,
        ended: pods.Termination | None = None,
        delay: float | None = None,
    ) -> None:
        active.job = active.job.transition_to(
            JobPhase.FAILED,
            completion_time=datetime.now().astimezone(),
            reason=reason,
            exit_code=ended.exit_code if ended else None,
            logs=self._log_tail(pod) if pod is not None else None,
        )
        self._record(state, active, Outcome.FAILED, reason, message, delay, pod)

    def _record(
        self,
        state: _RunState,
        active: _Active,
        outcome: Outcome,
        reason: str | None,
        message: str | None,
        delay: float | None,
        pod: V1Pod | None,
    ) -> None:
        del state.active[active.spec.name]
        model = active.spec.model
        state.results[model] = ModelResult(
            model,
            active.spec.name,
            outcome,
            active.job,
            reason,
            message,
            time.monotonic() - active.created,
            active.adopted,
            None if active.adopted else delay,
            active.created_at,
            pod.metadata.name if pod is not None else None,
        )
        for skipped, why in state.plan.record(model, outcome is Outcome.SUCCEEDED).items():
            state.results[skipped] = ModelResult(
                skipped,
                job_name(skipped, state.run_id),
                Outcome.SKIPPED,
                reason="Skipped",
                message=why,
            )

    # --- reading the pod ------------------------------------------------------------------
    def _latest_pod(self, active: _Active) -> V1Pod | None:
        """The Job's pod as it is now (the pod watch may lag the Job watch by an event)."""
        response = call_with_retry(
            self._core.list_namespaced_pod,
            self.namespace,
            label_selector=f"job-name={active.spec.name}",
            _preload_content=False,
            what=f"listing the pods of Job {active.spec.name} in namespace {self.namespace}",
        )
        listed = [pod_from_json(item) for item in read_json(response).get("items") or []]
        if not listed:
            return active.pod
        return max(listed, key=lambda p: p.metadata.creation_timestamp)

    def _log_tail(self, pod: V1Pod) -> str | None:
        """The end of the dbt container's log, when it ran; None when there is none to read."""
        if pods.started_at(pod) is None:
            return None
        try:
            response = call_with_retry(
                self._core.read_namespaced_pod_log,
                pod.metadata.name,
                self.namespace,
                container=pods.DBT_CONTAINER,
                tail_lines=self.settings.log_lines,
                _preload_content=False,
                what=f"reading the log of pod {pod.metadata.name} in namespace {self.namespace}",
            )
        except ApiException as error:
            if error.status in (400, NOT_FOUND):  # the pod or its container is gone
                return None
            raise
        return pods.last_bytes(response.data, self.settings.log_bytes)


def _terminal_condition(job: V1Job) -> V1JobCondition | None:
    for condition in (job.status.conditions if job.status else None) or []:
        if condition.type in TERMINAL_CONDITIONS and condition.status == "True":
            return condition
    return None
