"""Benchmark: loading the code location, and planning a run, for big dbt projects (issue 14).

For generated DAGs of 20, 200 and 2,000 models (depth 11, each model below the first level
depending on 1 to 6 models above it, one of them on the level just above; the same DAG on every
run), a CompiledArtifacts document and a floe-deploy.yaml naming it are written to a temporary
directory. Each size is loaded in a fresh Python process, as ``dagster dev`` or a code server
would load ``floe_deploy_assets.definitions``, so that imports are paid as a user pays them.
The child reports, each timed on its own:

- ``imports``: importing Dagster and this package;
- ``build``: ``build_definitions`` (the configuration, the document, the assets, the sensors);
- ``resolve``: the repository Dagster resolves from those definitions (asset graph, jobs);
- ``snapshot``: the repository snapshot a code server sends to the webserver and the daemon.

The parent prints the child's wall time (interpreter start to exit), the time after imports
(build + resolve + snapshot) and the child's peak RSS (its ``ru_maxrss``, from ``os.wait4``),
then the ratios 2,000/200 and 200/20 of the time after imports and of the wall time. The
targets: 2,000 models built in under 3 s, and a 2,000/200 ratio under 12 (linear, with room).

Then, in this process, best of 3: ``RunPlan`` driving each DAG to completion (models taken
as soon as they are ready, at most 50 running, ending in the order they started; once with
every model succeeding, once with the first model of each tenth of the document failing), and
the reruns sensor's lookup of the downstream models of one model of the first level (building
the lookup included), and how many models are below it.

    .venv/bin/python -m benchmarks.bench_code_location            # under 10 s on 2 cores
    .venv/bin/python -m benchmarks.bench_code_location --sizes 20 200 2000 20000
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "compiled-artifacts.json"
DEPTH = 11
MAX_FAN_IN = 6
SIZES = (20, 200, 2000)
TARGET_SECONDS = 3.0  # 2,000 models built
TARGET_RATIO = 12.0  # 2,000 models against 200
CONCURRENCY = 50


def generated_dag(models: int, depth: int = DEPTH, seed: int = 14) -> dict[str, list[str]]:
    """Model name -> its upstream models: ``depth`` levels of nearly equal size; a model below
    the first level depends on one model of the level just above (so the DAG is ``depth`` deep)
    and on up to ``MAX_FAN_IN - 1`` others from any level above. Names are drawn at random, so
    the document's order (by name) is not the dependency order."""
    rng = random.Random(f"{seed}/{models}/{depth}")
    names = [f"model_{number:05d}" for number in rng.sample(range(models * 10), models)]
    levels = [
        names[level * models // depth : (level + 1) * models // depth] for level in range(depth)
    ]
    dag: dict[str, list[str]] = {}
    for level, members in enumerate(levels):
        above = [name for upper in levels[:level] for name in upper]
        for name in members:
            if level == 0:
                dag[name] = []
                continue
            fan_in = rng.randint(1, min(MAX_FAN_IN, len(above)))
            first = rng.choice(levels[level - 1])
            others = rng.sample([m for m in above if m != first], fan_in - 1)
            dag[name] = [first, *others]
    return dict(sorted(dag.items()))


def write_inputs(directory: Path, dag: dict[str, list[str]]) -> Path:
    """The example CompiledArtifacts with ``dag`` as its models, and floe-deploy.yaml naming it
    and the repository's charts; returns the configuration's path."""
    document = json.loads(EXAMPLE.read_text())
    document["transforms"]["models"] = [
        {"name": name, "compute": "duckdb", "tags": ["generated"], "depends_on": upstream}
        for name, upstream in dag.items()
    ]
    (directory / "compiled-artifacts.json").write_text(json.dumps(document))
    config = yaml.safe_load((ROOT / "floe-deploy.yaml").read_text())
    # The generated models are in no dbt project: the example's dbt tests name other models.
    config["artifacts"] = {"path": "compiled-artifacts.json"}
    for chart in config["charts"].values():
        chart["path"] = str(ROOT / chart["path"])
    path = directory / "floe-deploy.yaml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    return path


# --- the child: one load of the code location ----------------------------------------------
def load_once(config: str) -> None:
    """Runs in the child: loads the code location from ``config`` and prints its timings."""
    started = time.perf_counter()
    from dagster._core.remote_representation.external_data import RepositorySnap

    from floe_deploy_assets.defs.build import build_definitions

    imported = time.perf_counter()
    defs = build_definitions(config)
    built = time.perf_counter()
    repository = defs.get_repository_def()
    repository.get_all_jobs()
    resolved = time.perf_counter()
    RepositorySnap.from_def(repository)
    done = time.perf_counter()
    print(
        json.dumps(
            {
                "imports": imported - started,
                "build": built - imported,
                "resolve": resolved - built,
                "snapshot": done - resolved,
            }
        )
    )


def measure_load(config: Path) -> dict[str, float]:
    """One load in a fresh interpreter: the child's timings, its wall time and peak RSS (MiB)."""
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, "-m", "benchmarks.bench_code_location", "--load", str(config)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)  # this child's own rusage, not all children's
    child.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if child.returncode != 0:
        raise SystemExit(f"loading {config} failed (exit {child.returncode})")
    timings: dict[str, float] = json.loads(output.splitlines()[-1])
    after_imports = timings["build"] + timings["resolve"] + timings["snapshot"]
    return {**timings, "after_imports": after_imports, "wall": wall, "rss": usage.ru_maxrss / 1024}


def report_loads(sizes: list[int]) -> None:
    print(
        f"code location load, fresh process each ({DEPTH} levels, fan-in up to {MAX_FAN_IN}):\n"
        f"{'models':>7} {'edges':>7} {'imports s':>9} {'build s':>8} {'resolve s':>9} "
        f"{'snapshot s':>10} {'after imports s':>15} {'wall s':>7} {'peak RSS MiB':>12}"
    )
    loads: dict[int, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench-code-location-") as tmp:
        for size in sizes:
            dag = generated_dag(size)
            directory = Path(tmp) / str(size)
            directory.mkdir()
            load = loads[size] = measure_load(write_inputs(directory, dag))
            edges = sum(len(upstream) for upstream in dag.values())
            print(
                f"{size:>7} {edges:>7} {load['imports']:>9.2f} {load['build']:>8.2f} "
                f"{load['resolve']:>9.2f} {load['snapshot']:>10.2f} {load['after_imports']:>15.2f} "
                f"{load['wall']:>7.2f} {load['rss']:>12.0f}"
            )
    for big, small in zip(sizes[1:], sizes, strict=False):
        print(
            f"ratio {big}/{small}: after imports "
            f"{loads[big]['after_imports'] / loads[small]['after_imports']:.1f}, build "
            f"{loads[big]['build'] / loads[small]['build']:.1f}, wall "
            f"{loads[big]['wall'] / loads[small]['wall']:.1f}"
        )
    if 2000 in loads and 200 in loads:
        built = loads[2000]["build"]
        ratio = loads[2000]["after_imports"] / loads[200]["after_imports"]
        print(
            f"targets: 2,000 models built in {built:.2f} s (< {TARGET_SECONDS:.0f} s: "
            f"{'met' if built < TARGET_SECONDS else 'MISSED'}), ratio 2,000/200 after imports "
            f"{ratio:.1f} (< {TARGET_RATIO:.0f}: {'met' if ratio < TARGET_RATIO else 'MISSED'})"
        )


# --- in-process: run planning and the sensor's downstream lookup ----------------------------
def drive_plan(dag: dict[str, list[str]], fails: Callable[[str], bool]) -> int:
    """A run of ``dag`` as the runner drives it, with no cluster: models start up to the
    concurrency limit and end in the order they started. Returns the models skipped."""
    from floe_deploy_assets.jobs.plan import Outcome, RunPlan

    plan = RunPlan(dag)
    running: deque[str] = deque()
    while not plan.finished:
        running.extend(plan.take_ready(CONCURRENCY - len(running)))
        model = running.popleft()
        plan.record(model, succeeded=not fails(model))
    return sum(outcome is Outcome.SKIPPED for outcome in plan.outcomes.values())


def best_of(repeats: int, work: Callable[[], Any]) -> tuple[float, Any]:
    timings = []
    for _ in range(repeats):
        started = time.perf_counter()
        result = work()
        timings.append(time.perf_counter() - started)
    return min(timings), result


def time_planning(dag: dict[str, list[str]]) -> tuple[float, float, int, float, int]:
    """Seconds to drive ``dag`` with every model succeeding, and with the first of each tenth
    of the models failing (and the models that skipped); seconds to find the downstream models
    of a model of the first level the way the reruns sensor does (and how many it has)."""
    from floe_deploy_assets.defs.data_products import Downstream

    failing = set(list(dag)[:: max(1, len(dag) // 10)])
    succeed, _ = best_of(3, lambda: drive_plan(dag, lambda _: False))
    fail, skipped = best_of(3, lambda: drive_plan(dag, failing.__contains__))
    top = next(name for name, upstream in dag.items() if not upstream)
    lookup, below = best_of(3, lambda: Downstream(dag)[top])
    return succeed, fail, skipped, lookup, len(below)


def report_planning(sizes: list[int]) -> None:
    print(
        f"\nin-process, best of 3 (plans at concurrency {CONCURRENCY}):\n"
        f"{'models':>7} {'plan, all succeed ms':>20} {'plan, 10 % fail ms':>18} {'skipped':>7} "
        f"{'downstream lookup ms':>20} {'below it':>8}"
    )
    for size in sizes:
        succeed, fail, skipped, lookup, below = time_planning(generated_dag(size))
        print(
            f"{size:>7} {succeed * 1e3:>20.1f} {fail * 1e3:>18.1f} {skipped:>7} "
            f"{lookup * 1e3:>20.2f} {below:>8}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=list(SIZES))
    parser.add_argument("--load", metavar="CONFIG", help=argparse.SUPPRESS)  # the child's part
    args = parser.parse_args()
    if args.load:
        load_once(args.load)
        return
    report_loads(args.sizes)
    report_planning(args.sizes)


if __name__ == "__main__":
    main()
