"""Dagster's own processes for tests: dagster-webserver and dagster-daemon on workspace.yaml, as
users run them, with a DAGSTER_HOME of the test's, and the webserver's GraphQL API."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

from tests.support.charts import ROOT
from tests.support.waits import wait_for

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def graphql(url: str, query: str, variables: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """The ``data`` of a GraphQL answer; a GraphQL error fails with its messages."""
    body = json.dumps({"query": query, "variables": dict(variables or {})}).encode()
    request = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=30) as response:
        answer = json.loads(response.read())
    if answer.get("errors"):
        raise AssertionError(f"GraphQL errors: {[e.get('message') for e in answer['errors']]}")
    return answer["data"]


@contextmanager
def dagster_process(
    command: list[str], home: Path, env: Mapping[str, str], log_name: str
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a Dagster command from the repository root (where workspace.yaml is), in its own
    process group, logging to ``home/log_name``; stop the group at the end (SIGTERM, then
    SIGKILL after 20 s), so no code server or run worker outlives the test."""
    log = (home / log_name).open("wb")
    process = subprocess.Popen(
        command,
        cwd=ROOT,
        env={**os.environ, "DAGSTER_HOME": str(home), **env},
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        yield process
    finally:
        _stop_group(process)
        log.close()


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    with suppress(subprocess.TimeoutExpired):
        process.wait(timeout=20)
    with suppress(ProcessLookupError):  # children the parent left behind, or a stuck parent
        os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=10)


def wait_until_serving(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    """Until the webserver at ``url`` answers /server_info; fails at once, with the end of its
    log, when the process exited."""

    def up() -> bool:
        if process.poll() is not None:
            tail = log.read_text(errors="replace")[-4000:]
            raise AssertionError(f"{process.args} exited ({process.returncode}): {tail}")
        try:
            with urllib.request.urlopen(f"{url}/server_info", timeout=5):
                return True
        except OSError:
            return False

    wait_for(up, timeout=120, reason=f"the webserver at {url} to answer /server_info")


@contextmanager
def webserver(home: Path, env: Mapping[str, str] | None = None) -> Iterator[str]:
    """dagster-webserver on workspace.yaml; yields its GraphQL URL once /server_info answers."""
    port = free_port()
    command = [str(BIN / "dagster-webserver"), "-w", "workspace.yaml", "-h", "127.0.0.1"]
    with dagster_process([*command, "-p", str(port)], home, env or {}, "webserver.log") as process:
        url = f"http://127.0.0.1:{port}"
        wait_until_serving(process, url, home / "webserver.log")
        yield f"{url}/graphql"


@contextmanager
def daemon(home: Path, env: Mapping[str, str] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """dagster-daemon on workspace.yaml: sensors, schedules and the run queue, with the
    instance storage that DAGSTER_HOME/dagster.yaml names."""
    command = [str(BIN / "dagster-daemon"), "run", "-w", "workspace.yaml"]
    with dagster_process(command, home, env or {}, "daemon.log") as process:
        yield process
