"""Deadlines for Helm's own calls to the Kubernetes API.

helm-python-sdk cannot give Helm's client a request timeout: ``helm_python.Config`` (0.2.2)
takes the kubeconfig, context, credentials, TLS settings, ``qps`` and ``burst_limit``, and
helm-c-sdk builds client-go's rest config from Helm's ``cli.EnvSettings``, which has no
timeout either (no option, no environment variable; a kubeconfig has no field for it). Left
alone, client-go gives up on a TLS handshake after 10 s, but a server that completes the
handshake and never answers holds a ``status`` or the apply of an ``upgrade`` forever.

So the whole Helm call is bounded instead: ``BoundedHelmConfig`` runs each action on a worker
thread (the native call releases the GIL) and stops waiting at its deadline, raising
``HelmKubeError`` with "deadline of N s passed while ...". Reads get ``READ_SECONDS``; an
install, upgrade, rollback, uninstall or test gets its own ``timeout`` plus
``WRITE_MARGIN_SECONDS`` (Helm's timeout ends its readiness wait; the margin covers applying
and recording), and an install or upgrade given up on is cancelled through its
``HelmContext``. The wait is interruptible: a signal (SIGTERM, Ctrl-C) stops the caller at
once, and the abandoned call ends with the process, uncancelled (its revision stays pending
for the next deploy to unlock, rather than recorded failed).

Helm's own deadline errors are translated: client-go's "rate: Wait(n=1) would exceed context
deadline" and "context deadline exceeded" become "deadline of N s passed while ...".
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Any, TypeVar

import helm_python

T = TypeVar("T")

READ_SECONDS = 20.0  # status, history: a few requests each
WRITE_MARGIN_SECONDS = 60.0  # beyond the action's own timeout

DOING = {
    "install": "installing and waiting for the release's workloads",
    "upgrade": "upgrading and waiting for the release's workloads",
    "rollback": "rolling back and waiting for the release's workloads",
    "uninstall": "uninstalling and waiting for the release's objects to go",
    "test": "running the release's tests",
}
_RATE_LIMITER = re.compile(
    r"(client rate limiter Wait returned an error: )?"
    r"(rate: Wait\(n=\d+\) would exceed context deadline|context deadline exceeded)"
)


class HelmDeadlineError(helm_python.HelmKubeError):
    """A Helm call did not return within its deadline; it was given up on."""


def translate_deadline(detail: str, operation: str, seconds: float | None) -> str:
    """``detail`` with client-go's deadline wording said as a deadline of ``seconds``."""
    within = f"deadline of {seconds:g} s" if seconds else "the deadline"
    doing = DOING.get(operation, f"running Helm's {operation}")

    def said(match: re.Match[str]) -> str:
        if "rate: Wait" in match.group(0):
            return f"{within} passed while {doing} (no time was left to send a request)"
        return f"{within} passed while {doing}"

    return _RATE_LIMITER.sub(said, detail)


def call_within(seconds: float, call: Callable[[], T], what: str) -> T:
    """``call()`` on a worker thread; its result or its error, or ``HelmDeadlineError`` when
    it has not returned after ``seconds`` (it is then left to end on its own: a daemon
    thread, which does not keep the process alive)."""
    outcome: list[tuple[bool, Any]] = []
    done = threading.Event()

    def run() -> None:
        try:
            outcome.append((True, call()))
        except BaseException as error:  # handed to the caller as it came
            outcome.append((False, error))
        finally:
            done.set()

    threading.Thread(target=run, name=f"helm {what}", daemon=True).start()
    if not done.wait(seconds):
        raise HelmDeadlineError(f"deadline of {seconds:g} s passed while {what} (given up)")
    returned, value = outcome[0]
    if returned:
        return value  # type: ignore[no-any-return]
    raise value


def _context_kept_at_exit() -> helm_python.HelmContext:
    """A cancellation token that is not freed, hence not cancelled, when the interpreter exits.
    Freeing a context cancels it, and a cancelled upgrade is recorded failed ("context
    canceled"): a verdict on the values that a deploy stopped by SIGTERM or Ctrl-C must not
    leave. Left alone, the operation ends with the process, its revision stays pending, and the
    next deploy, finding no Lease holder, unlocks it and acts again."""
    context = helm_python.HelmContext()
    finalizer = getattr(context, "_finalizer", None)  # helm_python's weakref.finalize
    if finalizer is not None:
        finalizer.atexit = False
    return context


class BoundedHelmConfig(helm_python.Config):
    """``helm_python.Config`` whose release actions each end within a deadline (see the
    module). Same constructor."""

    read_seconds: float = READ_SECONDS
    write_margin_seconds: float = WRITE_MARGIN_SECONDS

    def _within(
        self, operation: str, seconds: float, timeout: float | None, call: Callable[[], T]
    ) -> T:
        try:
            return call_within(seconds, call, f"Helm's {operation} waited for the API server")
        except HelmDeadlineError:
            raise
        except helm_python.HelmError as error:
            detail = str(error)
            translated = translate_deadline(detail, operation, timeout)
            if translated == detail:
                raise
            raise type(error)(translated, code=error.code) from None

    def _read(self, operation: str, call: Callable[[], T]) -> T:
        return self._within(operation, self.read_seconds, self.read_seconds, call)

    def _write(self, operation: str, options: dict[str, Any], call: Callable[[], T]) -> T:
        """An action with a ``timeout`` of its own; one that takes a ``context`` (install,
        upgrade) is cancelled when its deadline passes."""
        timeout = options.get("timeout")
        seconds = float(timeout or 0) + self.write_margin_seconds
        if operation not in ("install", "upgrade"):
            return self._within(operation, seconds, timeout, call)
        if options.get("context") is not None:
            return self._within(operation, seconds, timeout, call)
        context = options["context"] = _context_kept_at_exit()
        try:
            result = self._within(operation, seconds, timeout, call)
        except HelmDeadlineError:
            context.cancel()  # it stops where it stands (Helm records the revision failed)
            raise
        except helm_python.HelmError:
            context.close()
            raise
        context.close()
        return result

    def install(self, *args: Any, **options: Any) -> Any:  # type: ignore[override]
        base = super().install
        return self._write("install", options, lambda: base(*args, **options))

    def upgrade(self, *args: Any, **options: Any) -> Any:  # type: ignore[override]
        base = super().upgrade
        return self._write("upgrade", options, lambda: base(*args, **options))

    def rollback(self, *args: Any, **options: Any) -> Any:  # type: ignore[override]
        base = super().rollback
        return self._write("rollback", options, lambda: base(*args, **options))

    def uninstall(self, *args: Any, **options: Any) -> Any:  # type: ignore[override]
        base = super().uninstall
        return self._write("uninstall", options, lambda: base(*args, **options))

    def test(self, *args: Any, **options: Any) -> Any:  # type: ignore[override]
        base = super().test
        return self._write("test", options, lambda: base(*args, **options))

    def status(self, *args: Any, **options: Any) -> Any:  # type: ignore[override]
        base = super().status
        return self._read("status", lambda: base(*args, **options))

    def history(self, *args: Any, **options: Any) -> Any:  # type: ignore[override]
        base = super().history
        return self._read("history", lambda: base(*args, **options))
