"""Benchmark: the cost of rendering one model's Job, against the number of models (issue 14).

``JobTemplate.render`` renders the floe-jobs chart with Helm (helm-python-sdk, in-process) once
per model Job. For products of 4, 200 and 2,000 synthetic models (values generated from an
artifacts document as ``floe-deploy`` generates them, with a per-model resources override on one
model in four), it times ``--jobs`` renders of distinct models (default 50) and prints, per Job,
the wall time and the CPU time of this process (Helm's Go threads included):

- ``after``: ``JobTemplate.render`` as it is: the Job's view of the chart (no values schema),
  given only the rendered model's entry of ``models`` (once the first render of the template,
  of the whole chart, has checked the whole values);
- ``before``: the whole chart rendering from the whole values each time, the old path
  (``--no-before`` skips it);
- the first render of a template (whole values, once a run), on its own;
- the ratio of the 2,000-model figure to the 4-model one (near 1 means no growth), the Helm time
  a whole run's Jobs take (models x per-Job CPU), and the peak RSS of the process so far.

The per-Job figures are medians of single renders; the machine's other load shows in them, so
compare the ratios within one run.

    .venv/bin/python -m benchmarks.bench_job_render [--jobs 50] [--models 4 200 2000] [--no-before]
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from floe_deploy_assets.helm.render import build_dependencies
from floe_deploy_assets.jobs.spec import JobTemplate, ModelJob, data_product_job, job_name
from tests.support.charts import CONFIG, EXAMPLE, generated_values

CHART = CONFIG.chart_path("jobs")
RELEASE = "floe-jobs"
NAMESPACE = "floe-dev"
OVERRIDE = {"requests": {"cpu": "300m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "2Gi"}}


def artifacts_with(count: int, directory: Path) -> Path:
    """The example CompiledArtifacts with ``count`` models: a DAG in which each model reads the
    one before it and one halfway back, with tags."""
    document = json.loads(EXAMPLE.read_text())
    names = [f"model_{i:04d}" for i in range(count)]
    document["transforms"]["models"] = [
        {
            "name": name,
            "compute": "duckdb",
            "tags": ["staging"] if i % 2 else ["marts", "daily"],
            "depends_on": sorted({names[i - 1], names[i // 2]}) if i >= 2 else [],
        }
        for i, name in enumerate(names)
    ]
    path = directory / f"artifacts-{count}.json"
    path.write_text(json.dumps(document))
    return path


def values_for(count: int, directory: Path) -> dict[str, Any]:
    values = generated_values("jobs", "dev", artifacts_with(count, directory))
    for i, entry in enumerate(values["models"]):
        if i % 4 == 1:
            entry["resources"] = OVERRIDE
    return values


def render_whole_values(template: JobTemplate, model: str, run_id: str) -> ModelJob:
    """The old ``JobTemplate.render``: the whole chart, and every model, on each call."""
    run = {"model": model, "jobName": job_name(model, run_id), "runId": run_id}
    manifest = template._render_job(template._chart, {**template.values, "run": run}, model)
    template._add_run_metadata(manifest, model, run_id)
    return ModelJob(model, (), manifest, data_product_job(manifest, template.namespace))


def timed(render: Callable[[str, str], ModelJob], models: list[str]) -> tuple[float, float]:
    """Median wall and CPU seconds of one render, over ``models`` (distinct run ids)."""
    walls, cpus = [], []
    for i, model in enumerate(models):
        wall, cpu = time.perf_counter(), time.process_time()
        render(model, f"r{i}")
        cpus.append(time.process_time() - cpu)
        walls.append(time.perf_counter() - wall)
    return statistics.median(walls), statistics.median(cpus)


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def measure(count: int, jobs: int, before: bool, directory: Path) -> dict[str, Any]:
    values = values_for(count, directory)
    names = [entry["name"] for entry in values["models"]]
    # Models spread over the list (overrides among them), distinct when there are enough.
    spread = jobs <= len(names)
    picked = [names[(i * len(names)) // jobs if spread else i % len(names)] for i in range(jobs)]
    row: dict[str, Any] = {"models": count}
    with JobTemplate(CHART, values, release_name=RELEASE, namespace=NAMESPACE) as template:
        wall, cpu = time.perf_counter(), time.process_time()
        template.render(names[0], "first")
        row["first"] = (time.perf_counter() - wall, time.process_time() - cpu)
        template.render(names[-1], "warm")
        row["after"] = timed(template.render, picked)
        if before:
            render_whole_values(template, names[-1], "warm")
            row["before"] = timed(lambda m, r: render_whole_values(template, m, r), picked)
    row["rss"] = peak_rss_mib()
    return row


def ms(seconds: float) -> str:
    return f"{seconds * 1e3:8.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=50, help="renders timed per product size")
    parser.add_argument("--models", type=int, nargs="+", default=[4, 200, 2000])
    parser.add_argument("--no-before", action="store_true", help="skip the old path")
    args = parser.parse_args()
    before = not args.no_before
    build_dependencies(CHART)
    print(f"per-Job render of the floe-jobs chart, median of {args.jobs} Jobs (ms)")
    header = f"{'models':>7} {'after wall':>10} {'after CPU':>10} {'first CPU':>10}"
    if before:
        header += f" {'before wall':>11} {'before CPU':>10}"
    print(f"{header} {'peak RSS MiB':>13}")
    rows = []
    with tempfile.TemporaryDirectory() as directory:
        for count in args.models:
            row = measure(count, args.jobs, before, Path(directory))
            rows.append(row)
            line = (
                f"{count:>7} {ms(row['after'][0]):>10} {ms(row['after'][1]):>10} "
                f"{ms(row['first'][1]):>10}"
            )
            if before:
                line += f" {ms(row['before'][0]):>11} {ms(row['before'][1]):>10}"
            print(f"{line} {row['rss']:>13.0f}", flush=True)
    smallest, largest = rows[0], rows[-1]
    label = f"{largest['models']}/{smallest['models']}"
    for side in ("after", "before") if before else ("after",):
        wall = largest[side][0] / smallest[side][0]
        cpu = largest[side][1] / smallest[side][1]
        print(f"ratio {label} models, {side}: wall {wall:.2f}x, CPU {cpu:.2f}x")
    for row in rows:
        whole = row["first"][1] + (row["models"] - 1) * row["after"][1]
        text = f"Helm CPU for all {row['models']} Jobs of a run: {whole:.2f} s"
        if before:
            text += f" (before: {row['models'] * row['before'][1]:.2f} s)"
        print(text)


if __name__ == "__main__":
    main()
