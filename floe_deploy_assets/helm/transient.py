"""Whether a message from Helm (or the Go clients inside it: client-go, the OCI registry
client) names a failure of the server it talked to, worth repeating, rather than a verdict on
the chart, the values or the workloads. Plain text matching, so that the registry code and the
release engine share it without importing each other's clients."""

from __future__ import annotations

import re

CLUSTER_FAILURE_SIGNS = (
    "unable to handle the request",  # 503
    "Too Many Requests",
    "Internal error occurred",  # 500
    "EOF",
    "connection reset",
    "connection refused",
)

# What client-go says (inside Helm's message) when the cluster, not the request, failed: worth
# repeating. Found with tests/support/faultproxy.py; the API server's own texts for each status.
TRANSIENT_SIGNS = (
    *CLUSTER_FAILURE_SIGNS,
    "ServiceUnavailable",
    "the server is currently unable",
    "InternalError",
    "an error on the server",  # a 5xx without a Status of its own (a proxy's page)
    "the server was unable to return a response",  # 504
    "unexpected EOF",
    "http2: client connection lost",
    "use of closed network connection",
    "net/http: request canceled",
    "server closed idle connection",
    "etcdserver: request timed out",
    "etcdserver: leader changed",
    "too old resource version",  # a watch ended with 410 Gone
    # 409 on Helm's release record (our proxy's and the API server's wording): the record
    # changed between read and write, not the chart.
    "the object has been modified",
    "Operation cannot be fulfilled on secrets",
)
# The same, in any case: client-go passes the Status message of a 5xx or 429 on as it came,
# and a server (or a proxy in front of it) words it as it likes.
TRANSIENT_WORDS = (
    "internal error",  # 500: "Internal error occurred: ..."
    "too many requests",  # 429: "the server has received too many requests ..."
    "service unavailable",
    "gateway timeout",
    "bad gateway",
    "connection reset",
    "connection refused",
    "broken pipe",
    "tls handshake timeout",
    "i/o timeout",
)

# A verdict on the chart, the values or the workloads, whatever else the message says: the
# values do not fit, admission refused them, a workload did not become healthy in time.
FINAL_SIGNS = (
    "don't meet the specifications of the schema",
    "admission webhook",
    "denied the request",
    "is invalid",
    "is forbidden",
    "forbidden:",
    "field is immutable",
    "unknown field",
    "no matches for kind",
    "failed to create typed patch",
    "Apply failed with",  # server-side apply: a field manager conflict
    "not ready",  # the readiness wait: a workload did not become healthy
    "passed while",  # a deadline of ours (helm/bounded.py's wording of Helm's)
    "InProgress",
    "status: Failed",
)


_READINESS = re.compile(r"not ready\. status: (\w+)")
_DEADLINE_TAILS = (
    "passed while",  # helm/bounded.py's wording
    "context deadline exceeded",
    "would exceed context deadline",
    "context canceled",  # bounded.py cancels an install or upgrade past its deadline
)


def is_transient(detail: str) -> bool:
    """Whether Helm's message ``detail`` names a failure of the cluster (connection refused,
    reset or cut short, TLS handshake timeout, 429, 5xx, a 409 conflict on the release record,
    a watch ended with 410) rather than a verdict on the release (validation, admission,
    schema, a workload that did not become healthy, the deploy's own deadline). A client-side
    rate limiter or context deadline error counts as transient only when the message also
    names one of those causes. A readiness wait that ended before its deadline (its watch
    failed), or at it without ever observing any object (all Unknown), is transient."""
    # Helm's readiness wait (kstatus) reports the objects not ready when it ends. Ended by the
    # deadline, that is a verdict, unless it never saw any of them (all Unknown: its lists and
    # watches failed); ended before (no deadline in the message), its watch failed under it:
    # no verdict on the workloads either way.
    readiness = set(_READINESS.findall(detail))
    if (
        readiness
        and "Failed" not in readiness
        and (readiness == {"Unknown"} or not any(tail in detail for tail in _DEADLINE_TAILS))
    ):
        return True
    if any(sign in detail for sign in FINAL_SIGNS):
        return False
    lowered = detail.lower()
    return any(sign in detail for sign in TRANSIENT_SIGNS) or any(
        word in lowered for word in TRANSIENT_WORDS
    )
