"""Benchmark: how fast the offline `floe-deploy` commands start and end (issue 14).

Each command runs as its own process, the way a user runs it, from the repository root (so it
reads ./floe-deploy.yaml and the example CompiledArtifacts): `python -c pass` (the anchor, the
interpreter's own start), `floe-deploy --help`, `floe-deploy values --env dev` for each chart
and `floe-deploy render --env dev --chart jobs`. Each first runs once untimed (it warms the disk
cache and checks the command succeeds), then `--runs` times (default 10). Printed per command:
the median and the fastest wall time, the peak RSS (the largest over the runs, from the
process's own rusage by ``os.wait4``), and the ratio of its median to the anchor's.

The machine's other load moves these figures: compare the ratios within one run.

    .venv/bin/python -m benchmarks.bench_cli_startup [--runs 10]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# The executable's own entry, as the installed `floe-deploy` script calls it.
FLOE_DEPLOY = [sys.executable, "-c", "from floe_deploy_assets.cli import console; console()"]
COMMANDS = {
    "python -c pass": [sys.executable, "-c", "pass"],
    "floe-deploy --help": [*FLOE_DEPLOY, "--help"],
    "values --chart jobs": [*FLOE_DEPLOY, "values", "--env", "dev", "--chart", "jobs"],
    "values --chart platform": [*FLOE_DEPLOY, "values", "--env", "dev", "--chart", "platform"],
    "render --chart jobs": [*FLOE_DEPLOY, "render", "--env", "dev", "--chart", "jobs"],
}

# As a user runs the commands: Python keeps its bytecode caches. With PYTHONDONTWRITEBYTECODE set
# (it is, on the machines of this workplace), a module changed since its cache was written is
# compiled again on every start: tens of milliseconds that no installed copy pays.
USER_ENVIRONMENT = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


@dataclass(frozen=True)
class Timing:
    median: float  # seconds
    fastest: float
    peak_rss_mib: float


def _run_once(command: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MiB) of one run; raises if the command fails."""
    with tempfile.TemporaryFile() as stderr:  # a file, not a pipe: no pipe to fill and block
        began = time.perf_counter()
        process = subprocess.Popen(
            command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=stderr, env=USER_ENVIRONMENT
        )
        # wait4, not wait: its rusage is this child's alone (RUSAGE_CHILDREN keeps the largest
        # over every child so far, so a small command after a big one would show the big one's).
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - began
        process.returncode = os.waitstatus_to_exitcode(status)
        if process.returncode != 0:
            stderr.seek(0)
            message = stderr.read().decode(errors="replace")
            raise SystemExit(f"{' '.join(command)} exited {process.returncode}:\n{message}")
    return elapsed, usage.ru_maxrss / 1024  # ru_maxrss is in KiB on Linux


def measure(command: list[str], runs: int) -> Timing:
    _run_once(command)  # warm-up and check
    results = [_run_once(command) for _ in range(runs)]
    walls = [wall for wall, _ in results]
    return Timing(statistics.median(walls), min(walls), max(rss for _, rss in results))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10, help="timed runs per command")
    args = parser.parse_args(argv)
    timings = {name: measure(command, args.runs) for name, command in COMMANDS.items()}
    anchor = timings["python -c pass"].median
    print(
        f"{args.runs} runs each, on {os.cpu_count()} cores; load average {os.getloadavg()[0]:.2f}"
    )
    print(f"{'command':<26}{'median':>10}{'fastest':>10}{'peak RSS':>12}{'x anchor':>10}")
    for name, timing in timings.items():
        print(
            f"{name:<26}{timing.median * 1000:>8.0f}ms{timing.fastest * 1000:>8.0f}ms"
            f"{timing.peak_rss_mib:>8.0f} MiB{timing.median / anchor:>9.1f}x"
        )


if __name__ == "__main__":
    main()
