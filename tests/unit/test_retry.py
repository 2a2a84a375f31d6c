"""The retry layer for Kubernetes API calls, with fake callables and a fake clock."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from types import SimpleNamespace
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException
from urllib3.exceptions import MaxRetryError, ProtocolError, SSLError

from floe_deploy_assets.kube.retry import (
    RetryDeadlineError,
    RetryPolicy,
    call_with_retry,
    is_retryable,
    retry_after,
    watch_with_relist,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


def policy(clock: FakeClock, jitter: float = 1.0, **overrides: Any) -> RetryPolicy:
    return RetryPolicy(sleep=clock.sleep, clock=clock.clock, random=lambda: jitter, **overrides)


def api_error(status: int, retry_after_header: str | None = None) -> ApiException:
    error = ApiException(status=status, reason={409: "Conflict", 503: "Unavailable"}.get(status))
    error.headers = {"Retry-After": retry_after_header} if retry_after_header else {}
    error.body = json.dumps({"kind": "Status", "message": f"injected {status}", "code": status})
    return error


def failing(*failures: BaseException, result: str = "ok") -> Any:
    """A callable raising ``failures`` in turn, then returning ``result``; ``.calls`` counts."""
    queue = list(failures)

    def call(*args: Any, **kwargs: Any) -> str:
        call.calls.append((args, kwargs))  # type: ignore[attr-defined]
        if queue:
            raise queue.pop(0)
        return result

    call.calls = []  # type: ignore[attr-defined]
    return call


def test_retryable_failures_are_retried_with_growing_backoff(clock: FakeClock):
    fn = failing(api_error(503), api_error(500), api_error(502), api_error(504))

    result = call_with_retry(fn, "ns", what="list pods", deadline=30, policy=policy(clock), x=1)

    assert result == "ok"
    # The read timeout is cut to the 30 s deadline: no attempt may outlast it.
    assert len(fn.calls) == 5 and fn.calls[0] == (("ns",), {"x": 1, "_request_timeout": (5, 30)})
    assert clock.sleeps == [0.2, 0.4, 0.8, 1.6]  # jitter at its top: the full backoff


def test_jitter_draws_each_wait_between_half_and_all_of_the_backoff(clock: FakeClock):
    fn = failing(api_error(503), api_error(503))

    call_with_retry(fn, what="x", deadline=30, policy=policy(clock, jitter=0.0))

    assert clock.sleeps == [0.1, 0.2]


def test_backoff_is_capped(clock: FakeClock):
    fn = failing(*[api_error(503)] * 6)

    call_with_retry(fn, what="x", deadline=60, policy=policy(clock, max_backoff=1.0))

    assert clock.sleeps == [0.2, 0.4, 0.8, 1.0, 1.0, 1.0]


def test_retry_after_is_honoured_and_capped(clock: FakeClock):
    fn = failing(api_error(429, "3"), api_error(429, "120"), api_error(503, "2"))

    call_with_retry(fn, what="x", deadline=60, policy=policy(clock, max_retry_after=10))

    assert clock.sleeps == [3.0, 10.0, 2.0]


def test_retry_after_as_an_http_date():
    when = datetime.now(UTC) + timedelta(seconds=30)
    seconds = retry_after(api_error(429, format_datetime(when, usegmt=True)))
    assert seconds is not None and 25 <= seconds <= 30
    assert retry_after(api_error(429, "not a date")) is None
    assert retry_after(api_error(429)) is None


def test_the_deadline_ends_the_retries_with_a_clear_error(clock: FakeClock):
    fn = failing(*[api_error(503)] * 100)

    with pytest.raises(RetryDeadlineError) as raised:
        call_with_retry(fn, what="listing pods in floe-dev", deadline=5, policy=policy(clock))

    error = raised.value
    assert sum(clock.sleeps) < 5  # never slept past the deadline
    assert error.attempts == len(fn.calls) == 5  # 0.2 + 0.4 + 0.8 + 1.6 = 3.0; + 3.2 > 5
    assert isinstance(error.__cause__, ApiException) and error.last_error is error.__cause__
    assert str(error) == (
        "listing pods in floe-dev did not succeed within its 5 s deadline (5 attempts); "
        "last failure: HTTP 503 Unavailable: injected 503"
    )


def test_a_retry_after_beyond_the_deadline_gives_up_without_waiting(clock: FakeClock):
    fn = failing(api_error(429, "8"))

    with pytest.raises(RetryDeadlineError, match="HTTP 429"):
        call_with_retry(fn, what="x", deadline=5, policy=policy(clock))

    assert clock.sleeps == [] and len(fn.calls) == 1


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 422])
def test_other_client_errors_are_raised_at_once(clock: FakeClock, status: int):
    error = api_error(status)
    fn = failing(error)

    with pytest.raises(ApiException) as raised:
        call_with_retry(fn, what="x", deadline=30, policy=policy(clock))

    assert raised.value is error  # as it came: a 409 is the caller's to decide
    assert len(fn.calls) == 1 and clock.sleeps == []


def test_errors_that_are_not_from_the_api_are_raised_at_once(clock: FakeClock):
    fn = failing(ValueError("bad input"))
    with pytest.raises(ValueError, match="bad input"):
        call_with_retry(fn, what="x", deadline=30, policy=policy(clock))
    assert len(fn.calls) == 1


def test_connection_failures_are_retried(clock: FakeClock):
    dropped = ProtocolError("Connection aborted.", ConnectionResetError(104, "reset"))
    exhausted = MaxRetryError(None, "/api/v1/pods", reason=dropped)  # type: ignore[arg-type]
    fn = failing(ConnectionResetError(), dropped, exhausted, ConnectionRefusedError())

    assert call_with_retry(fn, what="x", deadline=30, policy=policy(clock)) == "ok"
    assert len(fn.calls) == 5


def test_what_is_retryable():
    assert is_retryable(api_error(429)) and is_retryable(api_error(503))
    assert not is_retryable(api_error(409)) and not is_retryable(api_error(404))
    assert is_retryable(TimeoutError())
    refused_cert = MaxRetryError(None, "/", reason=SSLError("certificate verify failed"))  # type: ignore[arg-type]
    assert not is_retryable(refused_cert)
    assert not is_retryable(KeyError("x"))


# -- watch_with_relist ---------------------------------------------------------------------------


class FakeStream:
    """What a watch request with ``_preload_content=False`` returns: lines of JSON events
    (lists are read raw too: an object with ``data``)."""

    def __init__(self, events: list[dict[str, Any]]):
        self.lines = [json.dumps(e).encode() + b"\n" for e in events]
        self.closed = False

    def stream(self, amt: Any = None, decode_content: bool = False) -> Iterator[bytes]:
        yield from self.lines

    def close(self) -> None:
        self.closed = True

    def release_conn(self) -> None:
        pass


def config_map(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": version}}


class FakeLister:
    """A list function: lists at ``versions`` in turn; watches answer with ``watches`` in turn
    (a list of events, or an exception to raise)."""

    def __init__(self, versions: list[str], watches: list[Any]):
        self.versions, self.watches = versions, watches
        self.lists: list[str] = []
        self.watched_from: list[str | None] = []
        self.streams: list[FakeStream] = []

    def __call__(self, namespace: str, **kwargs: Any) -> Any:
        if not kwargs.get("watch"):
            version = self.versions[len(self.lists)]
            self.lists.append(version)
            body = {"metadata": {"resourceVersion": version}, "items": []}
            return SimpleNamespace(data=json.dumps(body).encode(), release_conn=lambda: None)
        self.watched_from.append(kwargs.get("resource_version"))
        answer = self.watches.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        stream = FakeStream(answer)
        self.streams.append(stream)
        return stream


GONE_EVENT = {
    "type": "ERROR",
    "object": {"kind": "Status", "code": 410, "reason": "Expired", "message": "too old"},
}


def test_a_watch_ended_with_410_gone_is_relisted_and_watched_again(clock: FakeClock):
    lister = FakeLister(
        versions=["10", "20"],
        watches=[
            [{"type": "ADDED", "object": config_map("a", "11")}, GONE_EVENT],
            [{"type": "ADDED", "object": config_map("b", "21")}],
        ],
    )
    seen = []
    for event in watch_with_relist(
        lister, "ns", what="watching config maps", duration=60, policy=policy(clock)
    ):
        seen.append((event.type, event.resource_version, event.relists))
        if event.type == "ADDED" and event.object["metadata"]["name"] == "b":
            break

    assert seen == [("SYNC", "10", 0), ("ADDED", "11", 0), ("SYNC", "20", 1), ("ADDED", "21", 1)]
    assert lister.lists == ["10", "20"] and lister.watched_from == ["10", "20"]
    assert all(stream.closed for stream in lister.streams)


def test_a_watch_refused_with_410_is_relisted(clock: FakeClock):
    lister = FakeLister(
        versions=["10", "30"],
        watches=[api_error(410), [{"type": "DELETED", "object": config_map("a", "31")}]],
    )
    events = watch_with_relist(lister, "ns", what="w", duration=60, policy=policy(clock))
    seen = [next(events).type, next(events).type, next(events).type]
    events.close()

    assert seen == ["SYNC", "SYNC", "DELETED"] and lister.lists == ["10", "30"]


def test_a_retryable_watch_failure_watches_again_from_where_it_was(clock: FakeClock):
    lister = FakeLister(
        versions=["10"],
        watches=[
            [{"type": "ADDED", "object": config_map("a", "12")}],  # ends (server timeout)
            api_error(503),
            ConnectionResetError(),
            [{"type": "MODIFIED", "object": config_map("a", "13")}],
        ],
    )
    events = watch_with_relist(lister, "ns", what="w", duration=60, policy=policy(clock))
    seen = [next(events).type for _ in range(3)]
    events.close()

    assert seen == ["SYNC", "ADDED", "MODIFIED"]
    assert lister.lists == ["10"]  # no relist: the resourceVersion was still good
    assert lister.watched_from == ["10", "12", "12", "12"]
    assert clock.sleeps == [0.2, 0.4]


def test_watch_failures_past_the_deadline_are_reported(clock: FakeClock):
    lister = FakeLister(versions=["10"], watches=[api_error(503)] * 50)
    events = watch_with_relist(
        lister, "ns", what="watching pods", duration=600, deadline=3, policy=policy(clock)
    )
    assert next(events).type == "SYNC"
    with pytest.raises(RetryDeadlineError, match=r"watching pods \(watch\) did not succeed"):
        next(events)


def test_a_watch_refused_for_good_is_raised(clock: FakeClock):
    lister = FakeLister(versions=["10"], watches=[api_error(403)])
    events = watch_with_relist(lister, "ns", what="w", duration=60, policy=policy(clock))
    assert next(events).type == "SYNC"
    with pytest.raises(ApiException) as raised:
        next(events)
    assert raised.value.status == 403


def test_the_watch_ends_after_its_duration(clock: FakeClock):
    lister = FakeLister(versions=["10"], watches=[[], [], []])

    def quiet_watch(namespace: str, **kwargs: Any) -> Any:
        if kwargs.get("watch"):
            clock.now += 25  # each (empty) watch lasts until its server-side timeout
        return lister(namespace, **kwargs)

    types = [
        e.type
        for e in watch_with_relist(quiet_watch, "ns", what="w", duration=60, policy=policy(clock))
    ]

    assert types == ["SYNC"] and len(lister.watched_from) == 3
