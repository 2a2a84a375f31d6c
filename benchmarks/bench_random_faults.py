"""Benchmark: whole deploys under random transient faults (issue 13).

Runs the sequence of ``tests/cluster/test_random_faults.py`` (deploy the environment, deploy
changed values, deploy again unchanged, then status and a run of every model; Helm's requests,
through its relay, through one fault-injecting proxy, ours through another, each answering a
share of requests, at random, with 429 (with and without Retry-After), 500, 503, a dropped
connection, or ending a watch with 410) for 20 seeds in each configuration (by default 10 % of
every request), and prints per configuration: how many converged within the sequence (and
without any catch-up run), how many violated the rules (a rollback, hold or final failure
caused by a transient fault, a pending or lost revision, a model failed), how many of the rest
one clean run then converged, the faults injected and retried, and timings per step against
the same steps without faults (the anchor). ``--without-relay``: Helm talks to the API server
directly, to measure what the deploy's retries of whole actions do alone.

Run from the repository root (it uses the tests' support code), against a local control plane
you start yourself, or let it start one (``--port-base``; stopped and wiped at the end):

    .venv/bin/python -m benchmarks.bench_random_faults [--seeds 20] \\
        [--config 0.1:0.1 ...] [--without-relay] [--kubeconfig PATH | --port-base 16800]

Every namespace it creates is deleted at the end.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

from floe_deploy_assets.release.decide import Action
from localcluster import ClusterConfig, cluster
from tests.cluster.test_random_faults import SeedResult, run_seed, summary


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.1f}" if values else "-"


def _report(anchor: SeedResult, results: list[SeedResult]) -> None:
    n = len(results)
    first = results[0]
    converged = sum(r.converged for r in results)
    first_time = sum(r.converged_first_time for r in results)
    violated = sum(bool(r.violations) for r in results)
    recovered = sum(bool(r.recovered) for r in results if not r.converged)
    print()
    print(f"== faults: {first.rate:g} of our requests, {first.helm_rate:g} of Helm's ==")
    print(
        f"converged within the sequence: {converged}/{n} (without a catch-up run: {first_time}/{n})"
    )
    print(
        f"rule violations (rollback, hold, final failure, pending, lost revision): {violated}/{n}"
    )
    print(f"not converged, then converged by one clean run: {recovered}/{n - converged}")
    faults: Counter[str] = Counter()
    for r in results:
        faults.update(r.faults)
    requests = sum(r.requests for r in results)
    print(
        f"faults injected: {sum(faults.values())} of {requests} requests "
        f"({100 * sum(faults.values()) / max(requests, 1):.1f} %): {dict(faults)}"
    )
    steps = [s for r in results for s in r.steps if s.run != "clean"]
    remediated = [s for s in steps if s.remediation in (Action.ROLLBACK, Action.HOLD)]
    print(
        f"deploys: {len(steps)}, failed (retries ran out): "
        f"{sum(1 for s in steps if not s.succeeded)}, transient failures retried within a "
        f"deploy: {sum(s.retried for s in steps)} (in {sum(1 for s in steps if s.retried)} "
        f"deploys); rollbacks or holds: {len(remediated)}"
    )
    print("seconds per step, summed over its runs (median and max over seeds; anchor: no faults)")
    print(f"{'step':<22}{'median':>10}{'max':>10}{'anchor':>10}")
    by_step: dict[tuple[str, str], list[float]] = defaultdict(list)
    for r in results:
        totals: dict[tuple[str, str], float] = defaultdict(float)
        for s in r.steps:
            if s.run != "clean":
                totals[(s.chart, s.run.split("+")[0])] += s.seconds
        for key, seconds in totals.items():
            by_step[key].append(seconds)
    anchor_steps = {(s.chart, s.run): s.seconds for s in anchor.steps}
    for key, step_seconds in by_step.items():
        print(
            f"{key[0] + ' ' + key[1]:<22}{_median(step_seconds):>10}{max(step_seconds):>10.1f}"
            f"{anchor_steps.get(key, 0.0):>10.1f}"
        )
    per_seed = [r.seconds for r in results]
    print(f"{'whole seed':<22}{_median(per_seed):>10}{max(per_seed):>10.1f}{anchor.seconds:>10.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=20)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument(
        "--config",
        action="append",
        metavar="OURS:HELMS",
        help="the shares of our and of Helm's requests faulted (repeatable; default 0.1:0.1)",
    )
    parser.add_argument(
        "--without-relay",
        action="store_true",
        help="Helm talks to the API server directly (kube/relay.py off)",
    )
    parser.add_argument("--kubeconfig", type=Path)
    parser.add_argument("--port-base", type=int, default=16800)
    args = parser.parse_args()

    config = None
    kubeconfig = args.kubeconfig
    if kubeconfig is None:
        config = ClusterConfig(
            name="floe-bench-faults",
            state_dir=Path(tempfile.mkdtemp(prefix="bench-faults-")),
            port_base=args.port_base,
            crash_backoff_base=1.0,
            crash_backoff_cap=8.0,
        )
        cluster.up(config)
        kubeconfig = config.admin_kubeconfig
    try:
        anchor = run_seed(kubeconfig, 0, rate=0.0)
        print("anchor " + summary(anchor), flush=True)
        reports = []
        for config_text in args.config or ["0.1:0.1"]:
            ours, helms = (float(part) for part in config_text.split(":"))
            results = []
            for seed in range(args.first_seed, args.first_seed + args.seeds):
                results.append(
                    run_seed(
                        kubeconfig, seed, rate=ours, helm_rate=helms, relay=not args.without_relay
                    )
                )
                print(summary(results[-1]), flush=True)
            reports.append(results)
        for results in reports:
            _report(anchor, results)
    finally:
        if config is not None:
            cluster.down(config, wipe=True)


if __name__ == "__main__":
    main()
