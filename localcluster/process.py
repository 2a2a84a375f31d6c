"""Start background programs and stop exactly those, by PID, never by name.

A PID file records the PID and the process's start time (field 22 of /proc/PID/stat), so a PID
that the kernel has since given to another program is never signalled.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from localcluster.errors import LocalClusterError


@dataclass(frozen=True)
class ProcessRecord:
    name: str
    pid: int
    start_ticks: int
    log: str


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks, or None if it is gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return None
    # The command name (field 2) may hold spaces; everything after its closing parenthesis is
    # space-separated, starting with field 3 (state).
    fields = stat[stat.rindex(")") + 2 :].split()
    if fields[0] in ("Z", "X"):
        return None
    return int(fields[19])


def _reap(pid: int) -> None:
    """Collect the exit status of a child of ours so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


def pid_file(run_dir: Path, name: str) -> Path:
    return run_dir / f"{name}.pid"


def read_record(run_dir: Path, name: str) -> ProcessRecord | None:
    path = pid_file(run_dir, name)
    if not path.exists():
        return None
    return ProcessRecord(**json.loads(path.read_text()))


def is_alive(record: ProcessRecord) -> bool:
    _reap(record.pid)
    return _start_ticks(record.pid) == record.start_ticks


def running(run_dir: Path, name: str) -> bool:
    """Whether the process recorded under ``name`` is alive."""
    record = read_record(run_dir, name)
    return record is not None and is_alive(record)


def start(
    run_dir: Path, name: str, argv: list[str], log: Path, env: dict[str, str] | None = None
) -> ProcessRecord:
    run_dir.mkdir(parents=True, exist_ok=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as handle:
        try:
            # A session of its own: the program outlives the command that started it and is not
            # hit by a Ctrl-C meant for that command.
            child = subprocess.Popen(
                argv,
                stdout=handle,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
                env=env,
            )
        except OSError as exc:
            raise LocalClusterError(f"cannot start {name} ({argv[0]}): {exc}") from exc
    ticks = _start_ticks(child.pid)
    if ticks is None:
        raise LocalClusterError(f"{name} exited at once; see its log {log}")
    record = ProcessRecord(name=name, pid=child.pid, start_ticks=ticks, log=str(log))
    pid_file(run_dir, name).write_text(json.dumps(record.__dict__))
    return record


def stop(run_dir: Path, name: str, grace_seconds: float = 10.0) -> bool:
    """Stop the recorded process: SIGTERM, then SIGKILL after the grace period.

    Returns whether a live process was stopped; a missing or stale PID file is not an error.
    """
    record = read_record(run_dir, name)
    if record is None:
        return False
    stopped = False
    if is_alive(record):
        os.kill(record.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace_seconds
        while is_alive(record) and time.monotonic() < deadline:
            time.sleep(0.05)
        if is_alive(record):
            os.kill(record.pid, signal.SIGKILL)
            while is_alive(record):
                time.sleep(0.05)
        stopped = True
    pid_file(run_dir, name).unlink(missing_ok=True)
    return stopped


def port_in_use(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def log_tail(log: Path | str, lines: int = 15) -> str:
    try:
        text = Path(log).read_text(errors="replace")
    except FileNotFoundError:
        return "(no log)"
    return "\n".join(text.splitlines()[-lines:])


def ensure_started(run_dir: Path, name: str, argv: list[str], log: Path) -> None:
    """Start ``name`` unless its recorded process is alive (``up`` is idempotent)."""
    if not running(run_dir, name):
        start(run_dir, name, argv, log)


def wait_until(
    ready: Callable[[], bool],
    deadline_seconds: float,
    what: str,
    run_dir: Path,
    names: tuple[str, ...],
) -> None:
    """Until ``ready()``; a LocalClusterError with the end of their logs when one of the
    processes ``names`` exits first, or at the deadline."""
    deadline = time.monotonic() + deadline_seconds
    while not ready():
        records = [record for name in names if (record := read_record(run_dir, name))]
        for record in records:
            if not is_alive(record):
                raise LocalClusterError(
                    f"{record.name} exited; last lines of {record.log}:\n{log_tail(record.log)}"
                )
        if time.monotonic() > deadline:
            tails = "\n".join(f"{record.log}:\n{log_tail(record.log)}" for record in records)
            raise LocalClusterError(f"{what}: not ready within {deadline_seconds:.0f} s\n{tails}")
        time.sleep(0.2)


def processes_naming(*needles: str) -> dict[int, bytes]:
    """Processes whose command line names any of ``needles``: PID -> command line."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes()
        except OSError:
            continue  # gone meanwhile
        if any(needle.encode() in command for needle in needles):
            found[int(entry.name)] = command
    return found


def process_line(pid: int, command: bytes) -> str:
    """A process as a ``leftovers`` list shows it: its PID and command line."""
    shown = command.replace(b"\0", b" ").decode(errors="replace")
    return f"process {pid}: {shown}"
