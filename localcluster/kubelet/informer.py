"""List, then watch, one kind of object; relist when the watch expires (410 Gone) or breaks.

Objects are handed over as plain dicts (``deserialize=False``): the simulated kubelet reads a few
fields of many pods, and building client model objects for each event would cost more than the
status writes themselves.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from urllib3.exceptions import HTTPError

log = logging.getLogger(__name__)
WATCH_TIMEOUT_SECONDS = 120
RETRY_BACKOFF_SECONDS = (0.2, 0.5, 1.0, 2.0, 5.0)

Handler = Callable[[str, dict[str, Any]], None]


def run_informer(
    list_func: Callable[..., Any], handler: Handler, stop: threading.Event, what: str
) -> None:
    failures = 0
    while not stop.is_set():
        try:
            response = list_func(_preload_content=False)
            listing = json.loads(response.data)
            version = listing["metadata"]["resourceVersion"]
            for item in listing["items"]:
                handler("ADDED", item)
            failures = 0
            while not stop.is_set():
                version = _watch_from(list_func, version, handler)
        except _RelistNeededError:
            continue
        except (ApiException, HTTPError, OSError, ValueError) as exc:
            delay = RETRY_BACKOFF_SECONDS[min(failures, len(RETRY_BACKOFF_SECONDS) - 1)]
            failures += 1
            log.warning("%s informer: %s; relisting in %.1f s", what, exc, delay)
            time.sleep(delay)


class _RelistNeededError(Exception):
    """The watch can no longer continue from its resource version."""


def _watch_from(list_func: Callable[..., Any], version: str, handler: Handler) -> str:
    # The client's Watch helper cannot report an ERROR event when deserialize=False, so the
    # stream of JSON lines is read here directly.
    response = list_func(
        watch=True,
        resource_version=version,
        allow_watch_bookmarks=True,
        timeout_seconds=WATCH_TIMEOUT_SECONDS,
        _preload_content=False,
    )
    try:
        for line in iter_resp_lines(response):
            if not line:
                continue
            event = json.loads(line)
            kind, obj = event["type"], event["object"]
            if kind == "ERROR":
                raise _RelistNeededError(obj.get("message", "watch error"))
            version = obj["metadata"]["resourceVersion"]
            if kind != "BOOKMARK":
                handler(kind, obj)
    finally:
        response.release_conn()
    return version
