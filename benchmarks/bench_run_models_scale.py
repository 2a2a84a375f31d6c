"""Benchmark: ``floe-deploy run-models`` on 20, 200 and 2,000 models (issue 14).

For each size, the generated DAG of ``bench_code_location`` (depth 11, fan-in 1 to 6, the same
every run) is written as a CompiledArtifacts document with a floe-deploy.yaml naming it, in a
temporary directory; the environment's namespace is one of the benchmark's own
(``bench-rm-<random>-dev``), its cluster the kubeconfig's current context. Then, each in a child
process, as a user would run them:

1. ``examples/demo_secrets.py``: the namespace and the Secrets the Jobs read;
2. ``floe-deploy deploy --chart jobs``: the floe-jobs release (ServiceAccount, ConfigMaps);
3. ``floe-deploy run-models --concurrency N``: the real command, in a child started through a
   small wrapper that runs ``floe_deploy_assets.cli.main`` as the ``floe-deploy`` script does and
   also writes the run's API call counts (``RunReport.api_calls``, which the command does not
   print) to a file.

Reported per size: the run's outcome (from the command's table), wall time (the child's, start
to exit: imports, values, the chart and the run), Jobs started per second over the run (first to
last creation) and the median over 10 s windows (complete windows between the first and the
last creation), how many Jobs were active (created, not ended) at the 1 s samples (median and
maximum: at the concurrency limit the cluster's Job latency limits the rate; below it the runner
or the DAG's ready models do), the child's peak RSS (``ru_maxrss`` from ``os.wait4``) and CPU
seconds, API calls per Job, and the ratio 2,000/200 of peak RSS. Creation and end times come
from a watch of the namespace's Jobs in this process (raw JSON, a thread of its own), stamped
when each Job's ADDED event and terminal condition reach it.

Targets: 2,000 models all Succeeded, peak RSS under 300 MiB and flat in the model count, and at
least 20 Jobs/s started.

The cluster needs room for ``--concurrency`` pods at once (a finished pod holds none): the Job
pods request 250m CPU and 512Mi memory each (the chart's small profile), so with 2 nodes:

    .venv/bin/python -m localcluster --name scale --state-dir /tmp/scalecluster \\
        --port-base 25000 up --nodes 2 --node-pods 250 --node-cpu 128 --node-memory 512Gi
    .venv/bin/python -m benchmarks.bench_run_models_scale --kubeconfig \\
        $(.venv/bin/python -m localcluster --name scale --state-dir /tmp/scalecluster \\
        --port-base 25000 kubeconfig) [--sizes 20 200 2000] [--concurrency 100]
    .venv/bin/python -m localcluster --name scale --state-dir /tmp/scalecluster \\
        --port-base 25000 down --wipe

Each namespace it creates is deleted at the end (and waited for, so that one size's clean-up
does not load the next); every wait has a deadline. About 4 minutes for the three sizes on 2
cores.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import yaml
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines

from benchmarks.bench_code_location import generated_dag, write_inputs

ROOT = Path(__file__).resolve().parents[1]
SIZES = (20, 200, 2000)
CONCURRENCY = 100
CONTROL_PLANE_MANAGERS = ("kube-controller-manager", "kube-scheduler", "kube-apiserver")
WINDOW = 10.0  # seconds: the windows of the sustained rate
TARGET_RATE, TARGET_RSS = 20.0, 300.0

# The child: floe-deploy's own main, with the run's API call counts written to a file.
WRAPPER = """
import json, os, sys
import floe_deploy_assets.jobs.run_models as run_models
from floe_deploy_assets.cli import main
shown = run_models.print_report
def print_report(report):
    with open(os.environ["BENCH_API_CALLS"], "w") as out:
        json.dump(dict(report.api_calls), out)
    shown(report)
run_models.print_report = print_report
if os.environ.get("BENCH_PROFILE"):  # --profile: where the command's CPU goes
    import cProfile
    profile = cProfile.Profile()
    try:
        code = profile.runcall(main, sys.argv[1:])
    finally:
        profile.dump_stats(os.environ["BENCH_PROFILE"])
    sys.exit(code)
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class JobObserver:
    """A raw watch of a namespace's Jobs: when each was first seen and when it was seen
    ended, and how many were active at each 1 s sample."""

    api: client.ApiClient
    namespace: str
    created: dict[str, float] = field(default_factory=dict)
    ended: dict[str, float] = field(default_factory=dict)
    samples: list[tuple[float, int]] = field(default_factory=list)
    error: BaseException | None = None

    def __post_init__(self) -> None:
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._watch, daemon=True),
            threading.Thread(target=self._sample, daemon=True),
        ]
        for thread in self._threads:
            thread.start()

    def _watch(self) -> None:
        batch = client.BatchV1Api(self.api)
        version = "0"
        try:
            while not self._stop.is_set():
                response = batch.list_namespaced_job(
                    self.namespace,
                    watch=True,
                    resource_version=version,
                    allow_watch_bookmarks=True,
                    timeout_seconds=5,
                    _preload_content=False,
                    _request_timeout=(5, 35),
                )
                try:
                    for line in iter_resp_lines(response):
                        if not line:
                            continue
                        now = time.time()
                        event = json.loads(line)
                        body = event["object"]
                        if event["type"] == "ERROR":
                            version = "0"  # too old: from the cache's current state
                            break
                        version = body["metadata"]["resourceVersion"]
                        if event["type"] in ("BOOKMARK", "DELETED"):
                            continue
                        name = body["metadata"]["name"]
                        self.created.setdefault(name, now)
                        conditions = (body.get("status") or {}).get("conditions") or []
                        if any(
                            c["type"] in ("Complete", "Failed") and c["status"] == "True"
                            for c in conditions
                        ):
                            self.ended.setdefault(name, now)
                finally:
                    response.close()
                    response.release_conn()
        except Exception as error:  # reported with the figures
            self.error = error

    def _sample(self) -> None:
        while not self._stop.wait(1.0):
            self.samples.append((time.time(), len(self.created) - len(self.ended)))

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=15)


def _stamp(text: str | None) -> float | None:
    return datetime.fromisoformat(text).timestamp() if text else None


def status_written(pod: dict) -> str | None:
    """When the kubelet last wrote the pod's status: the time of its managedFields entry (the
    control plane's own managers aside)."""
    times = [
        entry.get("time")
        for entry in pod["metadata"].get("managedFields") or []
        if entry.get("manager") not in CONTROL_PLANE_MANAGERS
    ]
    return max((t for t in times if t), default=None)


def stage_delays(api: client.ApiClient, namespace: str) -> dict[str, list[float]]:
    """Per Job of the namespace, seconds spent in each stage of its life, from the objects'
    own timestamps (1 s resolution): the Job controller creating the pod, the scheduler
    binding it, the (simulated) kubelet starting its container, the container's run, the
    kubelet writing the pod's final status (``finishedAt`` is when the container ended on the
    kubelet's timeline, the kubelet's managedFields time when that status reached the API
    server), and the Job controller marking the Job complete."""
    batch, core = client.BatchV1Api(api), client.CoreV1Api(api)
    jobs = json.loads(batch.list_namespaced_job(namespace, _preload_content=False).data)
    pods = json.loads(core.list_namespaced_pod(namespace, _preload_content=False).data)
    by_job = {
        p["metadata"].get("labels", {}).get("job-name"): p for p in pods["items"] if "metadata" in p
    }
    stages: dict[str, list[float]] = {
        "Job created -> pod created": [],
        "pod created -> scheduled": [],
        "scheduled -> container started": [],
        "container started -> finished": [],
        "finished -> its status written": [],
        "status written -> Job complete": [],
    }
    for job in jobs["items"]:
        pod = by_job.get(job["metadata"]["name"])
        if pod is None:
            continue
        conditions = {c["type"]: c for c in pod["status"].get("conditions") or []}
        terminated = next(
            (
                c["state"]["terminated"]
                for c in pod["status"].get("containerStatuses") or []
                if "terminated" in (c.get("state") or {})
            ),
            None,
        )
        points = [
            _stamp(job["metadata"]["creationTimestamp"]),
            _stamp(pod["metadata"]["creationTimestamp"]),
            _stamp(conditions.get("PodScheduled", {}).get("lastTransitionTime")),
            _stamp(terminated.get("startedAt")) if terminated else None,
            _stamp(terminated.get("finishedAt")) if terminated else None,
            _stamp(status_written(pod)),
            _stamp((job.get("status") or {}).get("completionTime")),
        ]
        for name, start, end in zip(stages, points, points[1:], strict=False):
            if start is not None and end is not None:
                stages[name].append(end - start)
    return stages


# The processes whose CPU time is shown beside the run's: the control plane and its
# simulated kubelets (every cluster on the machine: run the benchmark against one).
CLUSTER_PROCESSES = {
    "kube-apiserver": "kube-apiserver",
    "etcd": "etcd",
    "kube-controller-manager": "kube-controller-manager",
    "kube-scheduler": "kube-scheduler",
    "localcluster.kubelet": "simulated kubelets",
}
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_by_component() -> dict[str, float]:
    """CPU seconds so far of the cluster's processes, by component, and the machine's busy
    and total CPU seconds (``/proc/stat``), to say where the CPU of a run went."""
    seconds: dict[str, float] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().split(b"\0")
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone meanwhile
        text = " ".join(part.decode(errors="replace") for part in command[:3])
        for needle, component in CLUSTER_PROCESSES.items():
            if needle in text:
                used = (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
                seconds[component] = seconds.get(component, 0.0) + used
                break
    jiffies = [int(x) for x in Path("/proc/stat").read_text().split("\n")[0].split()[1:]]
    idle = jiffies[3] + jiffies[4]  # idle + iowait
    seconds["(machine busy)"] = (sum(jiffies) - idle) / CLOCK_TICKS
    seconds["(machine total)"] = sum(jiffies) / CLOCK_TICKS
    return seconds


@dataclass
class Result:
    size: int
    exit_code: int
    outcomes: dict[str, int]
    wall: float
    rss_mib: float
    cpu_seconds: float
    api_calls: dict[str, int]
    created: list[float]
    active: list[int]
    deploy_seconds: float
    latencies: list[float]  # per Job: created to seen ended, by the observer
    stages: dict[str, list[float]]
    cpu_used: dict[str, float]  # CPU seconds during run-models, by component (cpu_by_component)

    @property
    def overall_rate(self) -> float:
        span = self.created[-1] - self.created[0] if len(self.created) > 1 else 0.0
        return (len(self.created) - 1) / span if span > 0 else float("nan")

    @property
    def window_rates(self) -> list[float]:
        """Jobs created per second in each complete 10 s window from the first creation."""
        if not self.created:
            return []
        start, end = self.created[0], self.created[-1]
        count = int((end - start) // WINDOW)
        rates = [0] * count
        for stamp in self.created:
            index = int((stamp - start) // WINDOW)
            if index < count:
                rates[index] += 1
        return [r / WINDOW for r in rates]

    @property
    def sustained_rate(self) -> float:
        rates = self.window_rates
        return statistics.median(rates) if rates else self.overall_rate

    @property
    def calls_per_job(self) -> float:
        return sum(self.api_calls.values()) / self.size


def bench_config(directory: Path, size: int, context: str, namespace_prefix: str) -> Path:
    """The generated inputs, with the environment in the benchmark's namespace and cluster."""
    path = write_inputs(directory, {k: list(v) for k, v in generated_dag(size).items()})
    config = yaml.safe_load(path.read_text())
    for mapping in config["clusterMappings"]:
        mapping["cluster"] = context
        mapping["namespaceTemplate"] = namespace_prefix + "-{{.environment}}"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


def profile_env(directory: Path | None, size: int) -> dict[str, str]:
    if directory is None:
        return {}
    directory.mkdir(parents=True, exist_ok=True)
    return {"BENCH_PROFILE": str(directory.resolve() / f"run-models-{size}.pstats")}


def run_child(
    argv: list[str], env: dict[str, str], deadline: float, log: Path
) -> tuple[int, float, float, float]:
    """``argv`` in a child with its output in ``log``: (exit code, wall seconds, peak RSS in
    MiB, CPU seconds); killed at ``deadline`` seconds."""
    started = time.monotonic()
    with log.open("w") as out:
        child = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    while True:
        pid, status, usage = os.wait4(child.pid, os.WNOHANG)
        if pid:
            break
        if time.monotonic() - started > deadline:
            child.kill()
            _, status, usage = os.wait4(child.pid, 0)
            print(f"  killed after its {deadline:.0f} s deadline: {' '.join(argv[:4])} ...")
            break
        time.sleep(0.2)
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.monotonic() - started
    return child.returncode, wall, usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime


def outcomes_of(table: str) -> dict[str, int]:
    """Models per phase in the command's printed table."""
    counts: dict[str, int] = {}
    for line in table.splitlines():
        words = line.split()
        if len(words) >= 3 and words[2] in ("Succeeded", "Failed", "Skipped"):
            counts[words[2]] = counts.get(words[2], 0) + 1
    return counts


def delete_namespace(core: client.CoreV1Api, namespace: str, deadline: float = 600.0) -> None:
    try:
        core.delete_namespace(namespace, propagation_policy="Background")
    except ApiException as error:
        if error.status == 404:
            return
        raise
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        try:
            core.read_namespace(namespace, _preload_content=False).release_conn()
        except ApiException as error:
            if error.status == 404:
                return
            raise
        time.sleep(1.0)
    print(f"  namespace {namespace} still terminating after {deadline:.0f} s; left to finish")


def run_size(
    size: int,
    kubeconfig: Path,
    context: str,
    concurrency: int,
    keep_output: Path | None,
    profile: Path | None = None,
) -> Result:
    api = kube_config.new_client_from_config(str(kubeconfig))
    core = client.CoreV1Api(api)
    prefix = f"bench-rm-{uuid.uuid4().hex[:6]}"
    namespace = f"{prefix}-dev"
    with tempfile.TemporaryDirectory(prefix="bench-run-models-") as tmp:
        directory = Path(tmp)
        config = bench_config(directory, size, context, prefix)
        env = {**os.environ, "KUBECONFIG": str(kubeconfig), "PYTHONPATH": str(ROOT)}
        common = ["--config", str(config), "--env", "dev", "--kubeconfig", str(kubeconfig)]
        try:
            code, _, _, _ = run_child(
                [sys.executable, "examples/demo_secrets.py", *common[:4]],
                env,
                120,
                directory / "secrets.log",
            )
            if code != 0:
                raise SystemExit((directory / "secrets.log").read_text())
            # As the floe-deploy script starts it.
            floe_deploy = [
                sys.executable,
                "-c",
                "from floe_deploy_assets.cli import console; console()",
            ]
            code, deploy_seconds, _, _ = run_child(
                [*floe_deploy, "deploy", "--chart", "jobs", *common],
                env,
                300,
                directory / "deploy.log",
            )
            if code != 0:
                raise SystemExit((directory / "deploy.log").read_text())
            observer = JobObserver(kube_config.new_client_from_config(str(kubeconfig)), namespace)
            calls_file = directory / "api-calls.json"
            run_options = ["--concurrency", str(concurrency), "--run-id", "bench"]
            cpu_before = cpu_by_component()
            try:
                code, wall, rss, cpu = run_child(
                    [sys.executable, "-c", WRAPPER, "run-models", *common, *run_options],
                    {**env, "BENCH_API_CALLS": str(calls_file), **profile_env(profile, size)},
                    max(300.0, size * 1.0),
                    directory / "run-models.log",
                )
                cpu_after = cpu_by_component()
                time.sleep(1.0)  # the last events to reach the observer
            finally:
                observer.stop()
            output = (directory / "run-models.log").read_text()
            if keep_output is not None:
                (keep_output / f"run-models-{size}.log").write_text(output)
            if observer.error is not None:
                print(f"  the Job observer failed: {observer.error!r}")
            api_calls = json.loads(calls_file.read_text()) if calls_file.exists() else {}
            if code != 0:
                print(f"  run-models exited with {code}; last lines:")
                print("\n".join("    " + line for line in output.splitlines()[-15:]))
            try:
                stages = stage_delays(api, namespace)
            except Exception as error:  # the figures above stand without it
                print(f"  reading the stage timestamps failed: {error!r}")
                stages = {}
            return Result(
                size,
                code,
                outcomes_of(output),
                wall,
                rss,
                cpu,
                api_calls,
                sorted(observer.created.values()),
                [active for _, active in observer.samples],
                deploy_seconds,
                [
                    observer.ended[name] - created
                    for name, created in observer.created.items()
                    if name in observer.ended
                ],
                stages,
                {k: cpu_after[k] - cpu_before.get(k, 0.0) for k in cpu_after},
            )
        finally:
            delete_namespace(core, namespace)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def report(result: Result, concurrency: int) -> None:
    outcome = ", ".join(f"{count} {phase}" for phase, count in sorted(result.outcomes.items()))
    active = result.active or [0]
    windows = result.window_rates
    print(f"\n== {result.size} models, concurrency {concurrency} (exit {result.exit_code})")
    print(f"  outcome: {outcome or 'no table'}")
    print(f"  floe-deploy deploy --chart jobs: {result.deploy_seconds:.1f} s")
    print(f"  run-models wall time: {result.wall:.1f} s, CPU {result.cpu_seconds:.1f} s")
    print(
        f"  Jobs started/s: {result.overall_rate:.1f} overall (first to last creation), "
        f"median of {len(windows)} 10 s windows {result.sustained_rate:.1f}"
        + (f" (min {min(windows):.1f}, max {max(windows):.1f})" if windows else "")
    )
    print(
        f"  Jobs active at 1 s samples: median {statistics.median(active):.0f}, max {max(active)}"
    )
    if result.latencies:
        print(
            "  Job created -> seen ended (the observer): "
            f"median {statistics.median(result.latencies):.1f} s, "
            f"p90 {percentile(result.latencies, 0.9):.1f} s"
        )
    for stage, delays in result.stages.items():
        if delays:
            print(
                f"    {stage}: median {statistics.median(delays):.1f} s, "
                f"p90 {percentile(delays, 0.9):.1f} s, max {max(delays):.0f} s"
            )
    print(f"  peak RSS of run-models: {result.rss_mib:.0f} MiB")
    used = dict(result.cpu_used)
    total, busy = used.pop("(machine total)", 0.0), used.pop("(machine busy)", 0.0)
    if total > 0:
        cores = os.cpu_count() or 1
        shares = ", ".join(f"{name} {seconds:.0f}" for name, seconds in used.items())
        print(
            f"  CPU during the run: machine {100 * busy / total:.0f} % busy of {cores} cores; "
            f"seconds: run-models {result.cpu_seconds:.0f}, {shares}"
        )
    print(
        f"  API calls: {sum(result.api_calls.values())} ({result.calls_per_job:.2f} per Job): "
        f"{dict(sorted(result.api_calls.items()))}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", type=Path, required=True)
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--concurrency", type=int, default=CONCURRENCY)
    parser.add_argument("--keep-output", type=Path, help="a directory for each run's printed table")
    parser.add_argument(
        "--profile",
        type=Path,
        help="a directory for each run's cProfile statistics (run-models-SIZE.pstats); the "
        "profiler slows the command, so its figures are then not the command's own",
    )
    args = parser.parse_args()
    context = yaml.safe_load(args.kubeconfig.read_text())["current-context"]
    results = {}
    for size in args.sizes:
        results[size] = result = run_size(
            size, args.kubeconfig, context, args.concurrency, args.keep_output, args.profile
        )
        report(result, args.concurrency)
    print(
        f"\n{'models':>7} {'outcome':>16} {'wall s':>7} {'Jobs/s overall':>14} "
        f"{'Jobs/s median 10s':>17} {'peak RSS MiB':>12} {'CPU s':>6} {'calls/Job':>9}"
    )
    for size, r in results.items():
        ok = f"{r.outcomes.get('Succeeded', 0)}/{size} ok"
        print(
            f"{size:>7} {ok:>16} {r.wall:>7.1f} {r.overall_rate:>14.1f} "
            f"{r.sustained_rate:>17.1f} {r.rss_mib:>12.0f} {r.cpu_seconds:>6.1f} "
            f"{r.calls_per_job:>9.2f}"
        )
    if 2000 in results and 200 in results:
        big, small = results[2000], results[200]
        met = (
            big.outcomes.get("Succeeded", 0) == 2000
            and big.rss_mib < TARGET_RSS
            and big.sustained_rate >= TARGET_RATE
        )
        print(
            f"peak RSS 2,000/200: {big.rss_mib / small.rss_mib:.2f}; targets (2,000 all "
            f"Succeeded, < {TARGET_RSS:.0f} MiB, >= {TARGET_RATE:.0f} Jobs/s sustained): "
            f"{'met' if met else 'MISSED'}"
        )


if __name__ == "__main__":
    main()
