"""Retrying Kubernetes API calls: what is retryable, with backoff, jitter and a deadline.

Retryable: 429 Too Many Requests (its ``Retry-After`` honoured, capped), 500, 502, 503 and 504,
and connection failures (refused, reset, dropped without an answer, timed out). Nothing else:
any other 4xx is the caller's to handle, and a 409 Conflict in particular is returned to the
caller as it came (re-reading and re-applying is a decision, not a retry).

Note that a kubernetes client left at its defaults has its urllib3 pool retry, silently, a
dropped connection or a 429/503 carrying ``Retry-After`` up to three times for idempotent
requests (GET, PUT, DELETE...), raising ``MaxRetryError`` (retryable here) when they run out:
each attempt here could then last four request timeouts. The clients of ``kube.access`` turn
urllib3's retries off, so this module is the one layer that retries and a deadline holds.

Every attempt is bounded: it is given a request timeout (connect, which covers the TCP connect
and the TLS handshake, and read), cut to what is left of the deadline, so an API server that
accepts connections and never answers costs at most the deadline, not forever.

A retried request that never got an answer may have been applied: a create retried after a
dropped connection can come back 409 AlreadyExists, which is, again, the caller's to judge.

``watch_with_relist`` lists, then watches from the list's resourceVersion, and lists again only
when the API server says that version is gone (410), as an informer does; it reads raw JSON,
which costs a hundredth of the client's deserialization of a pod.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import math
import random
import re
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TypeVar

from kubernetes.client.exceptions import ApiException
from kubernetes.watch.watch import iter_resp_lines
from urllib3 import exceptions as urllib3_errors

T = TypeVar("T")

RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
GONE = 410
DEFAULT_DEADLINE = 30.0
REQUEST_TIMEOUT = (5.0, 60.0)  # connect, read: a list of 1,000 pods reads in well under a second
MIN_REQUEST_TIMEOUT = 1.0  # an attempt's timeouts, however little of the deadline is left
WATCH_READ_MARGIN = 30.0  # a watch's read timeout beyond its own timeoutSeconds


@dataclass(frozen=True)
class RetryPolicy:
    """Backoff: ``initial_backoff`` doubling up to ``max_backoff``, each wait drawn between half
    and all of it (jitter); a ``Retry-After`` is waited as given, up to ``max_retry_after``.
    ``sleep``, ``clock`` and ``random`` are there for tests."""

    initial_backoff: float = 0.2
    max_backoff: float = 5.0
    max_retry_after: float = 10.0
    sleep: Callable[[float], None] = field(default=time.sleep, repr=False)
    clock: Callable[[], float] = field(default=time.monotonic, repr=False)
    random: Callable[[], float] = field(default=random.random, repr=False)

    def backoff(self, attempt: int) -> float:
        """The wait after the ``attempt``-th failure (1-based), with jitter."""
        ceiling = min(self.max_backoff, self.initial_backoff * 2 ** (attempt - 1))
        return ceiling * (0.5 + self.random() / 2)


DEFAULT_POLICY = RetryPolicy()


class RetryDeadlineError(RuntimeError):
    """A retryable failure went on past the deadline; ``last_error`` is the last one seen."""

    def __init__(self, what: str, attempts: int, deadline: float, last_error: BaseException):
        super().__init__(
            f"{what} did not succeed within its {deadline:g} s deadline "
            f"({attempts} attempt{'s' if attempts != 1 else ''}); "
            f"last failure: {describe(last_error)}"
        )
        self.what, self.attempts, self.deadline = what, attempts, deadline
        self.last_error = last_error


_CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    ConnectionError,  # refused, reset, aborted, broken pipe; http.client.RemoteDisconnected
    TimeoutError,
    http.client.IncompleteRead,
    urllib3_errors.ProtocolError,
    urllib3_errors.NewConnectionError,
    urllib3_errors.ConnectTimeoutError,
    urllib3_errors.ReadTimeoutError,
)


def is_retryable(error: BaseException) -> bool:
    """True for 429, 500, 502, 503, 504 and connection failures; False for anything else."""
    if isinstance(error, ApiException):
        return error.status in RETRYABLE_STATUSES
    if isinstance(error, urllib3_errors.MaxRetryError):
        # urllib3 gave up on its own retries: of a connection failure, or of 429/503 answers
        # (ResponseError). A certificate the client refuses (SSLError) is not worth retrying.
        reason = error.reason
        return reason is None or not isinstance(reason, urllib3_errors.SSLError)
    return isinstance(error, _CONNECTION_ERRORS)


def retry_after(error: BaseException) -> float | None:
    """Seconds the server asked to wait (``Retry-After``: seconds or an HTTP date), if any."""
    headers = getattr(error, "headers", None) if isinstance(error, ApiException) else None
    value = headers.get("Retry-After") if headers else None
    if value is None:
        return None
    value = str(value).strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


def describe(error: BaseException) -> str:
    """One line: the HTTP status and the API server's message, the connection failure in
    words (where to, and what happened: refused, no answer within N s, dropped, TLS), the
    message of one of our own errors (it names its class's meaning already), or any other
    error's class and message."""
    if isinstance(error, ApiException):
        message = ""
        try:
            body = json.loads(error.body) if error.body else {}
            message = body.get("message", "") if isinstance(body, dict) else ""
        except (TypeError, ValueError):
            message = str(error.body or "")[:200]
        return f"HTTP {error.status} {error.reason or ''}".rstrip() + (
            f": {message}" if message else ""
        )
    if isinstance(error, urllib3_errors.HTTPError):
        return _connection_failure(error)
    if type(error).__module__.startswith("floe_deploy_assets."):
        return _one_line(str(error))  # ours say what they are; a class name would double it
    return _one_line(f"{type(error).__name__}: {error}")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _endpoint(error: BaseException) -> str:
    """scheme://host:port of the connection or pool an urllib3 error carries, if any."""
    holder = vars(error).get("conn") or vars(error).get("pool")  # not the deprecated property
    host, port = getattr(holder, "host", None), getattr(holder, "port", None)
    if not host:
        return "the API server"
    scheme = getattr(holder, "scheme", None) or (
        "https" if "HTTPS" in type(holder).__name__ else "http"
    )
    return f"{scheme}://{host}:{port}" if port else f"{scheme}://{host}"


_TIMEOUT_SECONDS = re.compile(r"timeout=([0-9.]+)")


def _connection_failure(error: urllib3_errors.HTTPError) -> str:
    where = _endpoint(error)
    if isinstance(error, urllib3_errors.MaxRetryError):  # urllib3 gave up retrying: why
        reason = error.reason
        if isinstance(reason, urllib3_errors.HTTPError):
            return _connection_failure(reason).replace("the API server", where, 1)
        return _one_line(f"{where}: gave up after retries: {reason or error}")
    text = _one_line(str(getattr(error, "_message", None) or error))
    if isinstance(error, urllib3_errors.NewConnectionError):  # a ConnectTimeoutError too
        cause = text.split("Failed to establish a new connection: ")[-1]
        cause = re.sub(r"^\[Errno -?\d+\] ", "", cause)
        return f"cannot connect to {where}: {cause[:1].lower()}{cause[1:]}"
    if isinstance(error, urllib3_errors.TimeoutError):
        seconds = _TIMEOUT_SECONDS.search(text)
        within = f" within {float(seconds.group(1)):g} s" if seconds else ""
        phase = (
            "connecting"
            if isinstance(error, urllib3_errors.ConnectTimeoutError)
            else "in the TLS handshake or for the response"
        )
        return f"no answer from {where}{within} (timed out {phase})"
    if isinstance(error, urllib3_errors.SSLError):
        return f"TLS with {where} failed: {text}"
    if isinstance(error, urllib3_errors.ProtocolError):
        return f"the connection to {where} was dropped: {text}"
    return f"{where}: {type(error).__name__}: {text}"


def call_with_retry(
    fn: Callable[..., T],
    /,
    *args: Any,
    what: str,
    deadline: float = DEFAULT_DEADLINE,
    policy: RetryPolicy = DEFAULT_POLICY,
    request_timeout: tuple[float, float] | None = REQUEST_TIMEOUT,
    **kwargs: Any,
) -> T:
    """``fn(*args, **kwargs)``, retried while it fails retryably and ``deadline`` seconds (from
    now) allow another attempt. A non-retryable error is raised at once, as it came; when the
    deadline leaves no room for the next attempt, ``RetryDeadlineError`` names ``what``,
    the attempts made and the last failure (chained as its cause). Each attempt is a
    kubernetes-client call given ``request_timeout`` (connect, read seconds) as its
    ``_request_timeout``, each part cut to what is left of the deadline (at least
    ``MIN_REQUEST_TIMEOUT``), so no attempt runs much past the deadline: an answer that never
    comes is a timeout, which is retried like a dropped connection. A ``_request_timeout``
    the caller gives is used as given."""
    explicit = "_request_timeout" in kwargs
    start = policy.clock()
    attempt = 0
    while True:
        attempt += 1
        if request_timeout is not None and not explicit:
            left = deadline - (policy.clock() - start)
            kwargs["_request_timeout"] = _within(request_timeout, left)
        try:
            return fn(*args, **kwargs)
        except Exception as error:
            if not is_retryable(error):
                raise
            asked = retry_after(error)
            wait = (
                min(asked, policy.max_retry_after) if asked is not None else policy.backoff(attempt)
            )
            if policy.clock() + wait - start >= deadline:
                raise RetryDeadlineError(what, attempt, deadline, error) from error
            policy.sleep(wait)


def _within(timeout: tuple[float, float], left: float) -> tuple[float, float]:
    """``timeout`` (connect, read) cut to ``left`` seconds, each at least the minimum."""
    bound = max(MIN_REQUEST_TIMEOUT, left)
    return (min(timeout[0], bound), min(timeout[1], bound))


def read_json(response: Any) -> Any:
    """The JSON body of a ``_preload_content=False`` answer; its connection goes back to the
    pool."""
    try:
        return json.loads(response.data)
    finally:
        response.release_conn()


def discard(response: Any) -> None:
    """Reads and drops the body of a ``_preload_content=False`` answer, so that its connection
    goes back to the pool clean."""
    try:
        response.drain_conn()
    finally:
        response.release_conn()


def _as_is(raw: dict[str, Any]) -> Any:
    return raw


@dataclass(frozen=True)
class WatchEvent:
    """``type`` is ``SYNC`` after each list (``object`` is the list of the listed objects: the
    whole state, to replace what the consumer knew), else the watch event's (ADDED, MODIFIED,
    DELETED); ``resource_version`` is where the watch stands after it; ``relists`` counts the
    lists made after the first."""

    type: str
    object: Any
    resource_version: str
    relists: int


def watch_with_relist(
    list_fn: Callable[..., Any],
    /,
    *args: Any,
    what: str,
    duration: float | None = None,
    stopped: Callable[[], bool] = lambda: False,
    watch_seconds: float = 300.0,
    resource_version: str | None = None,
    convert: Callable[[dict[str, Any]], Any] = _as_is,
    deadline: float = DEFAULT_DEADLINE,
    policy: RetryPolicy = DEFAULT_POLICY,
    **kwargs: Any,
) -> Generator[WatchEvent, None, None]:
    """List with ``list_fn(*args, **kwargs)``, then watch from there, for ``duration`` seconds
    (None: until ``stopped()``, which is asked whenever a watch ends: at the latest every
    ``watch_seconds``, when the server ends it). Given a ``resource_version``, it watches from
    there without listing first. Objects are read as raw JSON, each given to ``convert``.

    A 410 Gone (the watched resourceVersion is too old; as an HTTP answer or an ERROR event)
    lists again: the only time it lists after the first. A retryable failure of the watch
    re-watches from the last resourceVersion seen (bookmarks included), after a backoff; a
    streak of them lasting past ``deadline`` raises ``RetryDeadlineError`` naming ``what``, as
    ``call_with_retry`` does for each list. Anything else is raised. Stop early by breaking out
    of the loop; the watch's connection is closed then."""
    end = policy.clock() + duration if duration is not None else math.inf
    relists = -1 if resource_version is None else 0
    failures: list[BaseException] = []
    failing_since: float | None = None

    while policy.clock() < end and not stopped():
        if resource_version is None:
            listed = read_json(
                call_with_retry(
                    list_fn,
                    *args,
                    what=f"{what} (list)",
                    deadline=max(0.1, min(deadline, end - policy.clock())),
                    policy=policy,
                    _preload_content=False,
                    **kwargs,
                )
            )
            relists += 1
            resource_version = listed["metadata"].get("resourceVersion") or ""
            items = [convert(item) for item in listed.get("items") or []]
            del listed
            yield WatchEvent("SYNC", items, resource_version, relists)
        seconds = int(min(watch_seconds, end - policy.clock()))
        if seconds < 1:
            return
        response = None
        ended = False  # the server ended the watch: its connection may serve the next one
        try:
            # The server ends the watch after timeoutSeconds; a read timeout beyond that ends
            # a watch whose server went silent (events can be minutes apart: not shorter).
            response = list_fn(
                *args,
                watch=True,
                resource_version=resource_version,
                allow_watch_bookmarks=True,
                timeout_seconds=seconds,
                _preload_content=False,
                _request_timeout=(REQUEST_TIMEOUT[0], seconds + WATCH_READ_MARGIN),
                **kwargs,
            )
            for line in iter_resp_lines(response):
                if not line:
                    continue
                event = json.loads(line)
                kind, body = event.get("type"), event.get("object") or {}
                if kind == "ERROR":  # a Status: 410 when the version is gone
                    raise ApiException(status=body.get("code"), reason=body.get("message"))
                failures.clear()
                failing_since = None
                version = (body.get("metadata") or {}).get("resourceVersion")
                resource_version = version or resource_version
                if kind != "BOOKMARK":
                    yield WatchEvent(kind, convert(body), resource_version, relists)
            ended = True
        except Exception as error:
            if isinstance(error, ApiException) and error.status == GONE:
                resource_version = None  # too old: list again
                continue
            if not is_retryable(error):
                raise
            failures.append(error)
            now = policy.clock()
            failing_since = failing_since if failing_since is not None else now
            wait = policy.backoff(len(failures))
            if now + wait - failing_since >= deadline:
                raise RetryDeadlineError(
                    f"{what} (watch)", len(failures), deadline, error
                ) from error
            policy.sleep(min(wait, max(0.0, end - now)))
        finally:
            if response is not None:
                if not ended:
                    response.close()
                response.release_conn()
