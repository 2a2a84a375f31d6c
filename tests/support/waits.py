"""Bounded waits for tests: every wait has a deadline and says what it was waiting for."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from kubernetes import client

T = TypeVar("T")


def wait_for(
    check: Callable[[], T | None], *, timeout: float, reason: str, interval: float = 0.2
) -> T:
    """Call ``check`` until it returns something truthy; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(
        f"timed out after {timeout:.0f} s waiting for {reason}; last seen: {last!r}"
    )


def create_namespace_ready_for_pods(core: client.CoreV1Api, name: str) -> str:
    """Create namespace ``name`` and wait until its default ServiceAccount has its token (the
    token controller adds it; until then no pod of the namespace can be created)."""
    core.create_namespace({"metadata": {"name": name}})

    def default_account_has_token() -> bool:
        accounts = core.list_namespaced_service_account(
            name, field_selector="metadata.name=default"
        )
        return bool(accounts.items and accounts.items[0].secrets)

    wait_for(
        default_account_has_token,
        timeout=30,
        reason=f"the default ServiceAccount token in namespace {name}",
    )
    return name
