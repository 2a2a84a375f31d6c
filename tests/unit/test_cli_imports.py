"""The offline commands import only what they use (issue 14): ``--help``, ``values`` and
``render`` never import the Kubernetes client or Dagster, and only ``render`` imports Helm's
renderer. Each
command runs in a fresh interpreter, since this test session has imported everything already.
And ``main``, which names the errors it maps to exit codes rather than importing them, still
maps each as before."""

from __future__ import annotations

import argparse
import importlib
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import ProtocolError

from floe_deploy_assets import cli
from floe_deploy_assets.helm.engine import ChartError, HelmEngineError, ReleaseRef
from floe_deploy_assets.helm.registry import RegistryError
from floe_deploy_assets.helm.render import RenderError
from floe_deploy_assets.helm.uninstall import ObjectsLeftBehindError
from floe_deploy_assets.kube.errors import ClusterCallError
from floe_deploy_assets.kube.lease import LockLostError, ReleaseBusyError
from floe_deploy_assets.kube.retry import RetryDeadlineError
from floe_deploy_assets.models.artifacts import ArtifactsError
from floe_deploy_assets.models.config import ConfigError
from floe_deploy_assets.offline_commands import validated_generator
from tests.support.charts import pinned_registry_config

ROOT = Path(__file__).resolve().parents[2]
CONFIG = str(ROOT / "floe-deploy.yaml")
WATCHED = ("kubernetes", "helm_python", "urllib3", "dagster")
# Runs main as the executable does and prints, as its last line of output, the exit code and
# which of the WATCHED packages were imported by then.
PROBE = f"""
import json, sys
from floe_deploy_assets.cli import main
try:
    code = main(sys.argv[1:])
except SystemExit as exit:  # --help
    code = exit.code
imported = sorted({{name.split(".")[0] for name in sys.modules}} & set({WATCHED!r}))
print("\\n" + json.dumps({{"code": code, "imported": imported}}))
"""


def run_fresh(*argv: str) -> tuple[int, list[str], str, str]:
    """The exit code, the WATCHED packages imported, stdout before the probe's line, stderr."""
    done = subprocess.run(
        [sys.executable, "-c", PROBE, *argv],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    output, _, probe = done.stdout.rstrip("\n").rpartition("\n")
    result = json.loads(probe)
    return result["code"], result["imported"], output, done.stderr


@pytest.mark.parametrize(
    "argv",
    [
        ["--help"],
        ["deploy", "--help"],
        ["run-models", "--help"],
        ["values", "--config", CONFIG, "--env", "dev", "--chart", "jobs"],
        ["values", "--config", CONFIG, "--env", "prod", "--chart", "platform", "--provenance"],
    ],
    ids=lambda argv: " ".join(arg for arg in argv if arg != CONFIG),
)
def test_help_and_values_import_neither_kubernetes_nor_helm(argv: list[str]):
    code, imported, output, _ = run_fresh(*argv)
    assert code == 0 and output
    assert imported == []


def test_values_of_charts_from_a_registry_pinned_and_cached_import_none_either(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    config = str(pinned_registry_config(tmp_path, monkeypatch))  # the cache in the environment
    code, imported, output, _ = run_fresh(
        "values", "--config", config, "--env", "dev", "--chart", "jobs"
    )
    assert code == 0 and "name: customer_360" in output
    assert imported == []


def test_render_imports_helm_but_not_kubernetes():
    code, imported, output, _ = run_fresh(
        "render", "--config", CONFIG, "--env", "dev", "--chart", "jobs"
    )
    assert code == 0 and "kind: ConfigMap" in output
    assert imported == ["helm_python"]


def test_bad_input_still_exits_2_with_one_message(tmp_path: Path):
    # main maps the error to its exit code without importing the libraries to compare with.
    broken = tmp_path / "artifacts.json"
    broken.write_text('{"version": "0.5.0", "metadata": {')
    code, imported, output, error = run_fresh(
        "values", "--config", CONFIG, "--artifacts", str(broken), "--env", "dev", "--chart", "jobs"
    )
    assert code == 2 and output == "" and imported == []
    assert error.startswith(f"floe-deploy: {broken}") and "Traceback" not in error


def test_every_error_main_names_is_an_exception_class():
    # A misspelt name would never match, and its error would end in a traceback.
    for name in [*(n for names, _ in cli.ERROR_EXITS for n in names), *cli.API_ERRORS]:
        module, cls = name.split(":")
        assert issubclass(getattr(importlib.import_module(module), cls), Exception), name


RELEASE = ReleaseRef("floe-jobs", "floe-dev", "floe-local")
IN_ENVIRONMENT = "status for environment dev (namespace floe-dev on cluster floe-local) failed"


ERRORS = [  # (error, exit code, what the message says)
    (ConfigError("bad configuration"), 2, "bad configuration"),
    (ArtifactsError("bad artifacts"), 2, "bad artifacts"),
    (RenderError("bad template"), 2, "bad template"),
    (ChartError(RELEASE, "install", "bad chart"), 2, "bad chart"),
    (HelmEngineError(RELEASE, "status", "refused"), 3, "refused"),
    (RegistryError("pushing to registry r failed"), 3, "pushing to registry r failed"),
    (ReleaseBusyError("busy"), 3, "busy"),
    (LockLostError("lost"), 3, "lost"),
    (ObjectsLeftBehindError("left"), 3, "left"),
    (ClusterCallError("reading", "here", ValueError("no")), 3, "reading for here"),
    (ApiException(status=403, reason="Forbidden"), 3, IN_ENVIRONMENT),
    (ProtocolError("Connection aborted."), 3, IN_ENVIRONMENT),
    (RetryDeadlineError("listing", 3, 30.0, ValueError("no")), 3, IN_ENVIRONMENT),
]


@pytest.mark.parametrize(
    ("error", "code", "message"), ERRORS, ids=[type(error).__name__ for error, *_ in ERRORS]
)
def test_main_maps_each_error_to_its_exit_code(
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    error: Exception,
    code: int,
    message: str,
):
    def command(args: object) -> None:
        raise error

    monkeypatch.setattr(cli, "_command", lambda name: command)
    assert cli.main(["status", "--config", CONFIG, "--env", "dev"]) == code
    said = capsys.readouterr().err
    assert said.startswith("floe-deploy: ") and message in said and "Traceback" not in said


def test_output_into_a_closed_pipe_ends_quietly_with_141():
    """`floe-deploy values | head -1`: the reader goes away; the command stops without a
    traceback and exits 141, as a shell reports a writer whose pipe closed. SIGPIPE keeps
    Python's disposition (ignored), so that a connection breaking under a write elsewhere is an
    error to retry, not the end of the process."""
    read_end, write_end = os.pipe()
    os.close(read_end)  # nobody will read: the first write fails
    try:
        done = subprocess.run(
            [
                sys.executable,
                "-c",
                "import signal, sys\n"
                "from floe_deploy_assets.cli import console\n"
                "sys.argv[1:] = ['values', '--config', sys.argv[1], '--env', 'dev', "
                "'--chart', 'platform']\n"
                "console()",
                CONFIG,
            ],
            cwd=ROOT,
            stdout=write_end,
            stderr=subprocess.PIPE,
            text=True,
            timeout=120,
        )
    finally:
        os.close(write_end)
    assert done.returncode == 141, done.stderr
    assert "Traceback" not in done.stderr, done.stderr


@pytest.mark.parametrize("command", ["status", "history", "deploy", "run-models"])
def test_an_unusable_kubeconfig_is_bad_input_naming_it_and_the_context(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    missing = tmp_path / "missing.kubeconfig"
    other = tmp_path / "other.kubeconfig"
    other.write_text(
        "apiVersion: v1\nkind: Config\nclusters: []\nusers: []\n"
        "contexts: [{name: elsewhere, context: {cluster: x, user: y}}]\n"
        "current-context: elsewhere\n"
    )
    for kubeconfig in (missing, other):
        code = cli.main(
            [command, "--config", CONFIG, "--env", "dev", "--kubeconfig", str(kubeconfig)]
        )
        err = capsys.readouterr().err
        assert code == 2, err
        assert f"kubeconfig {kubeconfig} cannot be used for context 'floe-local'" in err
        assert "environment dev" in err and "Traceback" not in err


@pytest.mark.parametrize("chart", ["platform", "jobs"])
def test_printed_values_are_the_generated_values_with_multiline_strings_as_blocks(chart: str):
    # Printed with libyaml's emitter and literal blocks: the same values, and an embedded file
    # (the jobs chart's inline profiles.yml) reads as that file.
    code, _, output, _ = run_fresh("values", "--config", CONFIG, "--env", "dev", "--chart", chart)
    arguments = argparse.Namespace(
        config=Path(CONFIG), artifacts=None, env="dev", chart=chart, product=None
    )
    assert code == 0
    assert yaml.safe_load(output) == validated_generator(arguments).helm_values()
    if chart == "jobs":
        assert re.search(r"\n    inline: \|\n      customer_360:\n", output), output
