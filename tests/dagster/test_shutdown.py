"""`dagster dev` on workspace.yaml stops promptly, with its webserver, daemon and code servers:
on SIGTERM to its own process (``kill``, a supervisor) and on SIGINT to its process group (a
terminal's Ctrl-C).

A launcher that starts it with SIGINT ignored makes it ignore SIGTERM too. Non-interactive shells
do that for ``cmd &`` (scripts, Makefile recipes, CI steps). Dagster 1.13 then copies SIGINT's
disposition to SIGTERM in every process that calls ``setup_interrupt_handlers``
(dagster/_utils/interrupts.py), so ``dagster dev`` and its code servers never see the signal.
Nothing exits, and each process has to be killed. ``env --default-signal=INT dagster dev ...``
restores SIGINT before Dagster starts; then SIGTERM stops everything as usual.

The code location loads without a cluster: FLOE_KUBECONFIG names a file that does not exist,
and the sensors record the cluster as unreachable.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path

from tests.support.charts import ROOT
from tests.support.dagster_processes import free_port, wait_until_serving
from tests.support.waits import wait_for

STOP_SECONDS = 20  # from the signal until no process of the group is left
DAGSTER = Path(sys.executable).with_name("dagster")
# What a non-interactive shell does to the command of `cmd &`.
IGNORE_SIGINT = [signal.SIGINT, signal.SIGQUIT]


def _members(group: int) -> list[str]:
    """The live processes (zombies aside) of process group ``group``, as "pid command"."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # it exited meanwhile
            continue
        # pid (comm) state ppid pgrp ...: comm may hold spaces and parentheses.
        state, _ppid, pgrp = stat.rsplit(")", 1)[1].split()[:3]
        if int(pgrp) == group and state != "Z":
            found.append(f"{entry.name} {command[:120]}")
    return found


def _ignored(pid: int) -> set[signal.Signals]:
    """The signals process ``pid`` ignores (SIG_IGN), from /proc/PID/status."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("SigIgn:"):
            mask = int(line.split()[1], 16)
            return {s for s in signal.Signals if mask & (1 << (s.value - 1))}
    raise AssertionError(f"no SigIgn line for process {pid}")


@contextmanager
def dagster_dev(
    home: Path, *, prefix: Sequence[str] = (), ignore: Sequence[signal.Signals] = ()
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """`dagster dev -w workspace.yaml` in its own process group (its id is the process's), run
    with ``prefix`` and with the ``ignore``d signals set to SIG_IGN, as a launcher might leave
    them. Yields the process and the webserver's URL; kills whatever is left of the group at
    the end."""
    port = free_port()
    log_path = home / "dagster-dev.log"
    log = log_path.open("wb")

    def launched_with_ignored_signals() -> None:
        for sig in ignore:
            signal.signal(sig, signal.SIG_IGN)

    process = subprocess.Popen(
        [*prefix, str(DAGSTER), "dev", "-w", "workspace.yaml", "-h", "127.0.0.1", "-p", str(port)],
        cwd=ROOT,
        env={
            **os.environ,
            "DAGSTER_HOME": str(home),
            "FLOE_KUBECONFIG": str(home / "no-such-kubeconfig"),
        },
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=launched_with_ignored_signals if ignore else None,
    )
    try:
        yield process, f"http://127.0.0.1:{port}"
    finally:
        with suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=10)
        log.close()


def _wait_until_serving(process: subprocess.Popen[bytes], url: str, home: Path) -> None:
    wait_until_serving(process, url, home / "dagster-dev.log")
    # The daemon and the code server are up as well: a group with all four stops, not one that
    # is still starting.
    wait_for(
        lambda: len(_members(process.pid)) >= 4,
        timeout=60,
        reason="dagster dev, its webserver, daemon and code server",
    )


def _stop_time(process: subprocess.Popen[bytes], send: Callable[[], None], home: Path) -> float:
    """Send the signal; return how long until no process of the group is left (fails with
    those left after STOP_SECONDS)."""
    group = process.pid
    started = time.monotonic()
    send()

    def gone() -> bool:
        process.poll()  # reap dagster dev itself, so it is not left as a zombie
        return not _members(group)

    try:
        wait_for(gone, timeout=STOP_SECONDS, reason="every process of dagster dev's group to exit")
    except AssertionError:
        left = "\n  ".join(_members(group))
        log = (home / "dagster-dev.log").read_text(errors="replace")[-3000:]
        raise AssertionError(
            f"still running {STOP_SECONDS} s after the signal:\n  {left}\nlog tail:\n{log}"
        ) from None
    return time.monotonic() - started


def test_sigterm_to_dagster_dev_stops_it_and_its_children(tmp_path: Path):
    with dagster_dev(tmp_path) as (process, url):
        _wait_until_serving(process, url, tmp_path)
        took = _stop_time(process, lambda: os.kill(process.pid, signal.SIGTERM), tmp_path)
    assert process.returncode == 0, f"dagster dev exited with {process.returncode}"
    assert took < STOP_SECONDS


def test_ctrl_c_to_the_group_stops_dagster_dev_and_its_children(tmp_path: Path):
    with dagster_dev(tmp_path) as (process, url):
        _wait_until_serving(process, url, tmp_path)
        took = _stop_time(process, lambda: os.killpg(process.pid, signal.SIGINT), tmp_path)
    assert process.returncode == 0, f"dagster dev exited with {process.returncode}"
    assert took < STOP_SECONDS


def test_started_with_sigint_ignored_dagster_ignores_sigterm_too(tmp_path: Path):
    """Dagster 1.13's own behaviour, the cause of the reported hang: started with SIGINT
    ignored, dagster dev ignores SIGTERM. When this fails, Dagster has stopped copying SIGINT's
    disposition to SIGTERM, and the launch needs ``env --default-signal=INT`` no more."""
    with dagster_dev(tmp_path, ignore=IGNORE_SIGINT) as (process, _url):
        log = tmp_path / "dagster-dev.log"

        # Logged after setup_interrupt_handlers() has set SIGTERM's disposition.
        def launching() -> bool:
            if process.poll() is not None:
                raise AssertionError(f"dagster dev exited: {log.read_text(errors='replace')}")
            return "Launching Dagster services" in log.read_text(errors="replace")

        wait_for(launching, timeout=60, reason="dagster dev to launch its services")
        assert {signal.SIGINT, signal.SIGTERM} <= _ignored(process.pid)


def test_started_with_sigint_ignored_env_default_signal_restores_the_stop(tmp_path: Path):
    """A launcher that ignores SIGINT (``cmd &`` in a script) starts dagster dev through
    ``env --default-signal=INT``: then SIGTERM stops it as when started from a terminal."""
    prefix = ["env", "--default-signal=INT"]
    with dagster_dev(tmp_path, prefix=prefix, ignore=IGNORE_SIGINT) as (process, url):
        _wait_until_serving(process, url, tmp_path)
        assert signal.SIGTERM not in _ignored(process.pid)
        took = _stop_time(process, lambda: os.kill(process.pid, signal.SIGTERM), tmp_path)
    assert process.returncode == 0, f"dagster dev exited with {process.returncode}"
    assert took < STOP_SECONDS
