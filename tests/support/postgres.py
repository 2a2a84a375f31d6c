"""A throwaway PostgreSQL server for tests, from Debian's own server binaries.

``postgres_server()`` installs the ``postgresql`` package with apt if no server binaries are
present (so a new machine needs no manual step), creates a cluster with ``initdb`` in a temp dir,
starts it on a free port of 127.0.0.1 only, creates one database and yields its URL. The server is
stopped and the dir removed at the end, even when something failed.
"""

from __future__ import annotations

import fcntl
import glob
import os
import pwd
import shlex
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

USER = "floe"
PASSWORD = "floe-test"
DATABASE = "dagster"

# Stops apt from creating (and starting) the system "main" cluster on 5432 when it installs the
# server: nothing here uses it, and it would keep running after the tests. Read by Debian's
# postgresql-common through the include_dir of its createcluster.conf; left in place, so a later
# upgrade to a new major version does not create one either.
NO_MAIN_CLUSTER_CONF = Path("/etc/postgresql-common/createcluster.d/floe-tests.conf")
INSTALL_LOCK = Path(tempfile.gettempdir()) / "floe-tests-postgresql-install.lock"


def _tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def _run(
    cmd: list[str],
    *,
    what: str,
    timeout: float,
    log: Path | None = None,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> None:
    """Run ``cmd``; on a non-zero exit or after ``timeout`` s raise an error that names ``what``
    and shows the end of its output (and of the server log, when there is one)."""
    try:
        done = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, cwd=cwd, env=env, check=False
        )
        if done.returncode == 0:
            return
        failure, output = f"failed (exit {done.returncode})", done.stdout + done.stderr
    except subprocess.TimeoutExpired as timed_out:
        # What was read before the timeout comes as bytes, even with text=True.
        caught = [o.decode(errors="replace") for o in (timed_out.stdout, timed_out.stderr) if o]
        failure, output = f"timed out after {timeout:.0f} s", "".join(caught)
    message = f"{what} {failure}: {shlex.join(cmd)}\n{output[-3000:].strip()}"
    if log is not None and log.exists():
        message += f"\n--- end of the server log {log} ---\n{_tail(log)}"
    raise RuntimeError(message)


def _bin_dir() -> Path | None:
    """The newest installed Debian server version's bin dir, e.g. /usr/lib/postgresql/15/bin."""
    found = glob.glob("/usr/lib/postgresql/*/bin/initdb")
    return Path(max(found, key=lambda p: int(Path(p).parts[-3]))).parent if found else None


def ensure_postgres_installed(timeout: float = 120) -> Path:
    """Return the server's bin dir, installing Debian's ``postgresql`` package first if needed.

    ``timeout`` bounds each apt-get run: both fit in pytest-timeout's 300 s for the first test."""
    bin_dir = _bin_dir()
    if bin_dir is not None:
        return bin_dir
    if os.geteuid() != 0:
        raise RuntimeError(
            "no PostgreSQL server in /usr/lib/postgresql, and only root can install it"
        )
    # One installer at a time: concurrent test sessions on a new machine would all run apt.
    with INSTALL_LOCK.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        bin_dir = _bin_dir()
        if bin_dir is not None:  # another session installed it while we waited
            return bin_dir
        NO_MAIN_CLUSTER_CONF.parent.mkdir(parents=True, exist_ok=True)
        NO_MAIN_CLUSTER_CONF.write_text("create_main_cluster = false\n")
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        # Wait a while for, rather than fail at once on, somebody else's apt or dpkg run.
        apt = ["apt-get", "-q", "-o", "DPkg::Lock::Timeout=60"]
        # A new machine (or image) may have no package lists at all.
        _run([*apt, "update"], what="apt-get update", timeout=timeout, env=env)
        _run(
            [*apt, "install", "-y", "--no-install-recommends", "postgresql"],
            what="apt-get install postgresql",
            timeout=timeout,
            env=env,
        )
        bin_dir = _bin_dir()
        if bin_dir is None:
            raise RuntimeError(
                "apt-get installed postgresql but no /usr/lib/postgresql/*/bin/initdb"
            )
        return bin_dir


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def postgres_server(timeout: float = 60) -> Iterator[str]:
    """Yield ``postgresql://floe:floe-test@127.0.0.1:PORT/dagster`` for a new, empty server.

    ``timeout`` bounds each step (initdb, start, createdb, stop) on its own."""
    bin_dir = ensure_postgres_installed()
    # PostgreSQL refuses to run as root: as root, run it as the "postgres" user the package made.
    as_owner = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    owner = pwd.getpwnam("postgres") if as_owner else pwd.getpwuid(os.geteuid())
    tmp = Path(tempfile.mkdtemp(prefix="floe-pg-"))  # short: a socket path must be < 108 bytes
    data, log, pwfile = tmp / "data", tmp / "server.log", tmp / "pwfile"

    # -w: pg_ctl returns once the server accepts connections (or has stopped), or fails after -t s.
    pg_ctl = ["pg_ctl", "-D", str(data), "-w", "-t", str(int(timeout))]

    def pg(what: str, tool: str, *args: str) -> None:
        # As the server's owner, from a dir it can enter (it may not be able to enter our cwd);
        # given longer than pg_ctl's own -t, so that pg_ctl's message is the one seen.
        _run(
            [*as_owner, str(bin_dir / tool), *args],
            what=what,
            timeout=timeout + 10,
            log=log,
            cwd=tmp,
        )

    try:
        pwfile.write_text(PASSWORD + "\n")
        for path in (tmp, pwfile):
            os.chown(path, owner.pw_uid, owner.pw_gid)
        # Trust on the socket (only its owner can reach it), a password over TCP as for a real DB.
        auth = ["-U", USER, f"--pwfile={pwfile}", "--auth-local=trust", "--auth-host=scram-sha-256"]
        pg("initdb", "initdb", "-D", str(data), *auth, "--no-locale", "--encoding=UTF8")
        # Loopback TCP only; the socket in our dir (/var/run/postgresql may not exist, and is the
        # system cluster's); no durability, as the data is thrown away.
        with (data / "postgresql.conf").open("a") as conf:
            conf.write(
                f"listen_addresses = '127.0.0.1'\nunix_socket_directories = '{tmp}'\n"
                "fsync = off\nsynchronous_commit = off\nfull_page_writes = off\n"
            )
        start = [*pg_ctl, "start", "-l", str(log)]
        for attempt in range(3):
            # Between _free_port() and the server's bind, a client's connect() on this busy
            # loopback may take the port as its own: then try another one.
            port = _free_port()
            log.unlink(missing_ok=True)
            try:
                pg(f"starting PostgreSQL on 127.0.0.1:{port}", *start, "-o", f"-p {port}")
                break
            except RuntimeError:
                if attempt == 2 or "Address already in use" not in _tail(log):
                    raise
        pg("createdb", "createdb", "-h", str(tmp), "-p", str(port), "-U", USER, DATABASE)
        yield f"postgresql://{USER}:{PASSWORD}@127.0.0.1:{port}/{DATABASE}"
    finally:
        try:
            if (data / "postmaster.pid").exists():  # the server was started (or is starting)
                stop, stopping = [*pg_ctl, "stop", "-m"], f"stopping PostgreSQL in {data}"
                try:
                    pg(stopping, *stop, "fast")
                except RuntimeError:
                    # A fast stop still writes a checkpoint and can hang; an immediate one cannot.
                    pg(stopping, *stop, "immediate")
        finally:
            shutil.rmtree(tmp, ignore_errors=True)


def create_database(url: str, name: str) -> str:
    """A new, empty database on the server of ``url`` (a test's own Dagster storage); its URL."""
    import psycopg2  # dagster-postgres's driver

    connection = psycopg2.connect(url)
    try:
        connection.autocommit = True  # CREATE DATABASE cannot run in a transaction
        with connection.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        connection.close()
    return url.rsplit("/", 1)[0] + f"/{name}"
