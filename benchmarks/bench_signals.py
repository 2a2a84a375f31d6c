"""Benchmark: `floe-deploy deploy` killed at random moments, then the next run (issue 13).

Each round changes the values (the platform's PostgreSQL memory limit and the jobs' Job TTL, as
per-environment overrides), starts `floe-deploy deploy` for the whole environment (platform,
then jobs) and, at a random moment within the length of a clean deploy, sends it SIGKILL (or,
in the SIGTERM rounds, SIGTERM). Then the next run, the same command with the same values and
``--lock-wait 45`` (a SIGKILLed deploy's Lease is not let go: the next run waits for it to
expire, 30 s after its last renewal), and one more run that must find nothing to do. Printed per
round: when the signal came, the exit code, the Lease the signal left (held or let go, seconds
until it expires), how long the next run took and whether it converged; then the totals:
rounds converged, the longest wait, and the next run's time against a clean deploy (the anchor).

Converged means: the next run exits 0, the run after it says `-> nothing` for both releases,
and each release's Helm history holds no pending revision and no gap in its numbers.

Run from the repository root (it uses the tests' support code), against a local control plane
you start yourself, or let it start one (``--port-base``; stopped and wiped at the end):

    .venv/bin/python -m benchmarks.bench_signals [--kills 20] [--terms 5] [--seed 13] \\
        [--kubeconfig PATH | --port-base 16900]
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from kubernetes import client
from kubernetes import config as kube_config

from floe_deploy_assets.kube.lease import DEFAULT_LEASE_SECONDS, lease_name
from localcluster import ClusterConfig, cluster
from tests.support.charts import ROOT
from tests.support.deployment import create_operator_secrets, write_config
from tests.support.waits import create_namespace_ready_for_pods

RELEASES = ("floe-platform", "floe-jobs")
PENDING = ("pending-install", "pending-upgrade", "pending-rollback")


@dataclass(frozen=True)
class Round:
    signal: str
    at: float  # seconds after the start
    exit_code: int | None  # None: killed
    lease: str  # what the signal left
    next_seconds: float
    next_exit: int
    converged: bool
    problem: str = ""


def _floe_deploy(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-c", "from floe_deploy_assets.cli import console; console()", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def _run(*args: str) -> tuple[int, str, float]:
    began = time.monotonic()
    process = _floe_deploy(*args)
    out, _ = process.communicate(timeout=600)
    return process.returncode, out, time.monotonic() - began


def _leases(coordination: client.CoordinationV1Api, namespace: str) -> str:
    said = []
    for release in RELEASES:
        try:
            lease = coordination.read_namespaced_lease(lease_name(release), namespace)
        except client.ApiException:
            continue
        spec = lease.spec
        if not spec.holder_identity:
            said.append(f"{release}: let go")
            continue
        left = (
            spec.renew_time.timestamp()
            + (spec.lease_duration_seconds or DEFAULT_LEASE_SECONDS)
            - datetime.now(UTC).timestamp()
        )
        said.append(f"{release}: held, expires in {max(left, 0):.0f} s")
    return "; ".join(said) or "none taken"


def _history_problems(core: client.CoreV1Api, namespace: str) -> str:
    problems = []
    for release in RELEASES:
        records = core.list_namespaced_secret(
            namespace, label_selector=f"owner=helm,name={release}"
        ).items
        revisions = sorted(int(r.metadata.labels["version"]) for r in records)
        statuses = {r.metadata.labels["status"] for r in records}
        if statuses & set(PENDING):
            problems.append(f"{release} pending: {sorted(statuses)}")
        if revisions != list(range(1, len(revisions) + 1)):
            problems.append(f"{release} revisions lost: {revisions}")
    return "; ".join(problems)


def _config(scratch: Path, kubeconfig: Path, namespace: str, round_number: int) -> list[str]:
    overrides = {
        "platform": {
            "postgresql": {"resources": {"limits": {"memory": f"{1024 + round_number}Mi"}}}
        },
        "jobs": {"job": {"ttlSecondsAfterFinished": 60 + round_number}},
    }
    directory = scratch / f"round-{round_number}"
    directory.mkdir()
    config = write_config(directory, kubeconfig, namespace, overrides)
    return [
        "--config",
        str(config),
        "--env",
        "dev",
        "--kubeconfig",
        str(kubeconfig),
        "--timeout",
        "180",
    ]


def run(kubeconfig: Path, kills: int, terms: int, seed: int) -> None:
    api = kube_config.new_client_from_config(str(kubeconfig))
    core, coordination = client.CoreV1Api(api), client.CoordinationV1Api(api)
    namespace = f"signals-{uuid.uuid4().hex[:6]}"
    create_namespace_ready_for_pods(core, namespace)
    scratch = Path(tempfile.mkdtemp(prefix="bench-signals-"))
    rng = random.Random(seed)
    try:
        create_operator_secrets(core, namespace)
        code, out, installed = _run("deploy", *_config(scratch, kubeconfig, namespace, 0))
        assert code == 0, out
        code, out, anchor = _run("deploy", *_config(scratch, kubeconfig, namespace, 1))
        assert code == 0, out
        print(f"anchor: install {installed:.1f} s, upgrade of both releases {anchor:.1f} s")
        rounds: list[Round] = []
        plan = [signal.SIGKILL] * kills + [signal.SIGTERM] * terms
        for number, signum in enumerate(plan, start=2):
            args = _config(scratch, kubeconfig, namespace, number)
            at = rng.uniform(0.5, anchor)
            process = _floe_deploy("deploy", *args)
            time.sleep(at)
            process.send_signal(signum)
            out, _ = process.communicate(timeout=120)
            exit_code = process.returncode
            lease = _leases(coordination, namespace)
            next_code, next_out, next_seconds = _run("deploy", *args, "--lock-wait", "45")
            again_code, again_out, _ = _run("deploy", *args)
            problem = _history_problems(core, namespace)
            if next_code != 0:
                problem += f" next run exit {next_code}: {next_out[-400:]}"
            if again_code != 0 or again_out.count("-> nothing") != 2:
                problem += f" the run after did something: {again_out[-400:]}"
            result = Round(
                signal.Signals(signum).name,
                at,
                None if exit_code == -signal.SIGKILL else exit_code,
                lease,
                next_seconds,
                next_code,
                not problem,
                problem.strip(),
            )
            rounds.append(result)
            print(
                f"round {number - 1:>2} {result.signal} at {at:4.1f} s: exit "
                f"{'killed' if result.exit_code is None else result.exit_code}; Lease: {lease}; "
                f"next run {next_seconds:.1f} s exit {next_code}; "
                f"{'converged' if result.converged else 'NOT converged: ' + result.problem}",
                flush=True,
            )
        for name in ("SIGKILL", "SIGTERM"):
            mine = [r for r in rounds if r.signal == name]
            if not mine:
                continue
            times = [r.next_seconds for r in mine]
            print(
                f"{name}: {sum(r.converged for r in mine)}/{len(mine)} converged on the next run;"
                f" next run {min(times):.1f}-{max(times):.1f} s (median "
                f"{sorted(times)[len(times) // 2]:.1f} s, {max(times) / anchor:.1f}x the "
                f"anchor at most); Lease held after the signal in "
                f"{sum('held' in r.lease for r in mine)}/{len(mine)} rounds"
            )
    finally:
        core.delete_namespace(namespace, propagation_policy="Background")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--terms", type=int, default=5)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--kubeconfig", type=Path)
    parser.add_argument("--port-base", type=int, default=16900)
    args = parser.parse_args()
    config = None
    kubeconfig = args.kubeconfig
    if kubeconfig is None:
        config = ClusterConfig(
            name="floe-bench-signals",
            state_dir=Path(tempfile.mkdtemp(prefix="bench-signals-cluster-")),
            port_base=args.port_base,
        )
        cluster.up(config)
        kubeconfig = config.admin_kubeconfig
    try:
        run(kubeconfig, args.kills, args.terms, args.seed)
    finally:
        if config is not None:
            cluster.down(config, wipe=True)


if __name__ == "__main__":
    main()
