"""Failures of the test bed's own set-up name what failed and show why."""

from __future__ import annotations

import fcntl
import threading
import time
from pathlib import Path

import pytest

from localcluster import build
from localcluster.build import CONTROL_PLANE_BINARIES, ensure_binaries, run_command
from localcluster.cli import main
from localcluster.config import ClusterConfig
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


def _hold_build_lock(cache: Path):
    holder = (cache / "build.lock").open("w")
    fcntl.flock(holder, fcntl.LOCK_EX)
    return holder


def test_a_second_build_waits_for_the_first_and_uses_what_it_built(tmp_path: Path):
    config = ClusterConfig(cache_dir=tmp_path)
    holder = _hold_build_lock(tmp_path)

    def first_build_finishes() -> None:
        time.sleep(0.5)
        config.binaries_dir.mkdir(parents=True)
        for name in CONTROL_PLANE_BINARIES:
            (config.binaries_dir / name).write_text("#!/bin/sh\n")
            (config.binaries_dir / name).chmod(0o755)
        holder.close()

    thread = threading.Thread(target=first_build_finishes)
    thread.start()
    found = ensure_binaries(config)  # would build (apt, make) if it did not wait
    thread.join()
    assert sorted(found) == sorted(CONTROL_PLANE_BINARIES)


def test_waiting_for_another_build_has_a_deadline(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(build, "BUILD_LOCK_WAIT_SECONDS", 0.3)
    holder = _hold_build_lock(tmp_path)
    try:
        with pytest.raises(
            LocalClusterError, match="another build of the Kubernetes binaries held"
        ):
            ensure_binaries(ClusterConfig(cache_dir=tmp_path))
    finally:
        holder.close()
