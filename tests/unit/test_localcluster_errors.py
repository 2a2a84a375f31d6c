"""Failures of the test bed's own set-up name what failed and show why."""

from __future__ import annotations

from pathlib import Path

import pytest

from localcluster.build import run_command
from localcluster.cli import main
from localcluster.errors import LocalClusterError


def test_failed_command_is_named_with_its_exit_code_and_output_tail(tmp_path: Path):
    with pytest.raises(LocalClusterError) as failed:
        run_command(
            ["sh", "-c", "echo compiling; echo 'undefined: foo' >&2; exit 3"],
            what="building the Kubernetes control plane",
            log=tmp_path / "build.log",
        )

    message = str(failed.value)
    assert message.startswith("building the Kubernetes control plane failed")
    assert "exited 3" in message and "undefined: foo" in message
    assert f"full log: {tmp_path / 'build.log'}" in message


def test_missing_program_is_named():
    with pytest.raises(
        LocalClusterError, match="installing package x: command not found: no-such-program-floe"
    ):
        run_command(["no-such-program-floe"], what="installing package x")


def test_down_with_nothing_running_is_not_an_error(tmp_path: Path, capsys: pytest.CaptureFixture):
    assert main(["--state-dir", str(tmp_path / "never-started"), "down"]) == 0
    assert capsys.readouterr().out.strip() == "nothing was running"


def test_status_of_a_cluster_never_started_says_stopped(
    tmp_path: Path, capsys: pytest.CaptureFixture
):
    assert main(["--state-dir", str(tmp_path / "never-started"), "status"]) == 1
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 5 and all(" stopped " in line for line in lines)
