"""Benchmark: several data products on one platform (issue 14), for 1, 3 and 20 products.

Each product is the example CompiledArtifacts under another ``metadata.product_name``
(``product-00``...), listed by ``artifacts.paths`` in a generated floe-deploy.yaml. Each
figure comes from a fresh process, as a user pays it (wall time, and the child's peak RSS from
``os.wait4``):

- ``load``: the code location (``build_definitions``, resolving the repository, its snapshot),
  with the time after imports;
- ``values``: ``floe-deploy values --chart platform`` (the platform merged from every product);
- ``render``: ``floe-deploy render --chart jobs --product product-00``.

With ``--kubeconfig`` (a local control plane you started), for each count, in a fresh
namespace with the operator's Secrets: ``floe-deploy deploy`` of the environment (the platform
and every product's jobs release), the same deploy again (every release a no-op by digest),
and a deploy after one more product was added (only that one installed). The namespace is
deleted at the end.

    .venv/bin/python -m benchmarks.bench_products                       # offline part, ~1 min
    .venv/bin/python -m localcluster --name bench --port-base 16600 up
    .venv/bin/python -m benchmarks.bench_products --kubeconfig \\
        ~/.local/state/floe-deploy/localcluster/bench/admin.kubeconfig  # ~8 min on 2 cores
    .venv/bin/python -m localcluster --name bench --port-base 16600 down --wipe
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import yaml

from benchmarks.bench_code_location import measure_load

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "compiled-artifacts.json"
COUNTS = (1, 3, 20)
CLI = [str(Path(sys.executable).with_name("floe-deploy"))]  # the installed entry point


def write_products(directory: Path, count: int, namespace: str, context: str) -> Path:
    """``count`` products and a floe-deploy.yaml listing them (dev in ``namespace``)."""
    products = directory / "products"
    products.mkdir(parents=True, exist_ok=True)
    for index in range(count):
        add_product(directory, index)
    document = yaml.safe_load((ROOT / "floe-deploy.yaml").read_text())
    document["artifacts"] = {"paths": ["products/*.json"]}
    document["charts"] = {
        chart: {"path": str(ROOT / "charts" / f"floe-{chart}"), "releaseName": f"floe-{chart}"}
        for chart in ("platform", "jobs")
    }
    document["clusterMappings"] = [
        {
            "name": "bench",
            "cluster": context,
            "environments": ["dev"],
            "namespaceTemplate": namespace,
            "resources": "small",
        }
    ]
    document.pop("overrides", None)
    document["redeploySchedules"] = {}
    path = directory / "floe-deploy.yaml"
    path.write_text(yaml.safe_dump(document))
    return path


def add_product(directory: Path, index: int) -> None:
    document = json.loads(EXAMPLE.read_text())
    document["metadata"]["product_name"] = f"product-{index:02d}"
    (directory / "products" / f"product-{index:02d}.json").write_text(json.dumps(document))


def run_child(command: list[str]) -> tuple[float, float, str]:
    """Wall seconds and peak RSS (MiB) of a fresh process running ``command``, and its output;
    a failure ends the benchmark with the child's output."""
    started = time.perf_counter()
    child = subprocess.Popen(
        command, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    assert child.stdout is not None
    output = child.stdout.read()
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(command[1:])} failed:\n{output[-3000:]}")
    return wall, usage.ru_maxrss / 1024, output


def offline(tmp: Path) -> None:
    print(
        f"{'products':>8} {'load s':>7} {'after imports s':>15} {'load MiB':>8} "
        f"{'values s':>8} {'values MiB':>10} {'render s':>8} {'render MiB':>10}"
    )
    for count in COUNTS:
        config = write_products(tmp / f"offline-{count}", count, "floe-dev", "floe-local")
        load = measure_load(config)
        base = ["--config", str(config), "--env", "dev"]
        values = run_child([*CLI, "values", *base, "--chart", "platform"])
        render = run_child([*CLI, "render", *base, "--chart", "jobs", "--product", "product-00"])
        print(
            f"{count:>8} {load['wall']:>7.2f} {load['after_imports']:>15.2f} "
            f"{load['rss']:>8.0f} {values[0]:>8.2f} {values[1]:>10.0f} {render[0]:>8.2f} "
            f"{render[1]:>10.0f}"
        )


def on_cluster(tmp: Path, kubeconfig: Path) -> None:
    from kubernetes import client, config

    from floe_deploy_assets.helm.inputs import release_generators
    from floe_deploy_assets.models.config import load_deployment_config
    from floe_deploy_assets.models.products import load_products
    from tests.support.waits import create_namespace_ready_for_pods

    context = yaml.safe_load(kubeconfig.read_text())["current-context"]
    core = client.CoreV1Api(config.new_client_from_config(str(kubeconfig)))
    print(
        f"\n{'products':>8} {'deploy s':>8} {'deploy MiB':>10} {'again s':>8} {'again MiB':>9} "
        f"{'+1 product s':>12} {'releases':>8}"
    )

    def create_required_secrets(namespace: str, path: Path) -> None:
        """What the configuration's releases require and the namespace lacks, as an operator
        provides it (throwaway values)."""
        deployment = load_deployment_config(path)
        existing = {s.metadata.name for s in core.list_namespaced_secret(namespace).items}
        for generator in release_generators(deployment, load_products(deployment), "dev"):
            for secret in generator.required_secrets:
                if secret.name not in existing:
                    body = {"metadata": {"name": secret.name}}
                    body["stringData"] = dict.fromkeys(secret.keys, "bench")
                    core.create_namespaced_secret(namespace, body)
                    existing.add(secret.name)

    for count in COUNTS:
        namespace = f"bench-products-{uuid.uuid4().hex[:6]}"
        directory = tmp / f"cluster-{count}"
        path = write_products(directory, count, namespace, context)
        create_namespace_ready_for_pods(core, namespace)
        try:
            create_required_secrets(namespace, path)
            args = ["--config", str(path), "--env", "dev", "--kubeconfig", str(kubeconfig)]
            first = run_child([*CLI, "deploy", *args, "--timeout", "600"])
            again = run_child([*CLI, "deploy", *args])
            assert again[2].count("-> nothing") == count + 1, again[2]
            add_product(directory, count)
            create_required_secrets(namespace, path)  # the added product's dbt profiles Secret
            added = run_child([*CLI, "deploy", *args, "--timeout", "600"])
            assert added[2].count("-> nothing") == count + 1, added[2]
            print(
                f"{count:>8} {first[0]:>8.1f} {first[1]:>10.0f} {again[0]:>8.1f} "
                f"{again[1]:>9.0f} {added[0]:>12.1f} {count + 2:>8}"
            )
        finally:
            core.delete_namespace(namespace, propagation_policy="Background")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kubeconfig", type=Path, help="also deploy into this cluster")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-products-") as tmp:
        offline(Path(tmp))
        if args.kubeconfig:
            on_cluster(Path(tmp), args.kubeconfig)


if __name__ == "__main__":
    main()
