"""A relay on the loopback interface that repeats Helm's requests when the API server blips.

Helm's Kubernetes client (client-go, inside helm-python-sdk) repeats a request only when the
server answers 429 or 5xx *with* a Retry-After header, or when a GET's connection is reset, and
helm-python-sdk gives no way to wrap its transport. One install or upgrade of the platform
chart makes about 70 requests, so at a few per cent of transient failures (a 500 from an etcd
timeout, a 503 while the API server restarts, a dropped connection) most actions would fail
however often the whole action is repeated. So Helm talks to this relay instead: it forwards
each request to the real API server with the real credentials (from the same kubeconfig and
context, through the Python client's TLS and proxy settings) and repeats it, with backoff
(honouring Retry-After), while the answer is a connection failure, a timeout, 429, 500, 502,
503 or 504 and the request's deadline allows. What it finally gets, it passes on as it came.

Repeating is safe for what Helm sends: reads and watches; server-side apply and merge patches
(the same patch gives the same object); updates of its release record carry a
resourceVersion (a repeat after one that did land gets 409, which Helm and ``helm.deploy``
treat as a conflict); deletes (a repeat gets 404, which Helm ignores). A create whose answer
was lost may come back 409 AlreadyExists; ``helm.deploy`` then settles the record and repeats
the action as an upgrade. A watch is repeated only until it is established: once its stream
has begun, its end is client-go's to handle, as without the relay.

Every write carries one field manager, ``floe-deploy``: Helm names its manager after the
process (``filepath.Base(os.Args[0])``, and helm-python-sdk cannot set it), so a release
applied from a laptop (``python``) and from a run in the cluster (``python3``) would have two
owners, and server-side apply refuses the second's change to any field the first set (found
with the graph hosted in the platform's own Dagster: its first upgrade conflicted on every
resource limit). The relay rewrites the ``fieldManager`` parameter of each request that has one.

The relay listens on 127.0.0.1 only, over TLS with a certificate made for it at start (client-go
sends a bearer token only over TLS), and refuses any request without the random bearer token
written to its kubeconfig (mode 0600, in a private directory), so other local users cannot
borrow its credentials. Neither the token nor any body is logged.
"""

from __future__ import annotations

import base64
import contextlib
import copy
import json
import os
import secrets
import signal
import socket
import ssl
import tempfile
import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from ipaddress import IPv4Address
from pathlib import Path
from typing import Any

import urllib3
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client import rest

from floe_deploy_assets.kube.retry import (
    REQUEST_TIMEOUT,
    RETRYABLE_STATUSES,
    WATCH_READ_MARGIN,
    RetryPolicy,
)

REQUEST_RETRY = RetryPolicy(initial_backoff=0.2, max_backoff=2.0)
# Headers that belong to one hop (RFC 9110 7.6.1), and the ones the relay sets itself.
HOP_HEADERS = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "authorization",
        "content-length",
    }
)
STREAM_CHUNK = 64 * 1024
HANDSHAKE_SECONDS = 10.0
CONNECTIONS = 64  # kept open upstream, and waiting to be accepted here
FIELD_MANAGER = "floe-deploy"  # the owner of what Helm applies, wherever it runs


@dataclass(frozen=True)
class RelayPolicy:
    """How long one request of Helm's may be repeated, and how often."""

    deadline: float = 30.0  # from the first attempt; a repeat starts only before it
    retry: RetryPolicy = REQUEST_RETRY
    timeout: tuple[float, float] = REQUEST_TIMEOUT  # (connect, read) of each attempt


def api_client(kubeconfig: Path | None, context: str | None) -> client.ApiClient:
    """A client for the cluster Helm would reach with the same arguments: the kubeconfig
    (None: $KUBECONFIG or ~/.kube/config) and context, or, with neither file, the in-cluster
    service account."""
    try:
        return kube_config.new_client_from_config(
            str(kubeconfig) if kubeconfig else None, context=context
        )
    except kube_config.ConfigException:
        if kubeconfig is not None:
            raise
        configuration = client.Configuration()
        kube_config.load_incluster_config(client_configuration=configuration)
        return client.ApiClient(configuration)


def with_field_manager(target: str, manager: str = FIELD_MANAGER) -> str:
    """``target`` (a path and query) with its ``fieldManager`` parameter, if any, set to
    ``manager``."""
    path, mark, query = target.partition("?")
    if "fieldManager=" not in query:
        return target
    parts = [
        f"fieldManager={manager}" if part.startswith("fieldManager=") else part
        for part in query.split("&")
    ]
    return path + mark + "&".join(parts)


def is_watch(query: str) -> bool:
    # client-go says "watch=true", the Python client "watch=True".
    return any(part.lower() in ("watch=true", "watch=1") for part in query.split("&"))


class HelmRelay:
    """The relay for one cluster: ``start()`` it, hand Helm ``kubeconfig``, ``close()`` it.

    ``attempts_repeated`` counts the repeats made (for tests and benchmarks)."""

    def __init__(self, api: client.ApiClient, policy: RelayPolicy | None = None):
        configuration = api.configuration
        self.policy = policy or RelayPolicy()
        self.upstream = configuration.host.rstrip("/")
        configuration = _upstream_configuration(configuration)
        self._pool = rest.RESTClientObject(configuration).pool_manager
        self._api = client.ApiClient(configuration)
        self._token = secrets.token_urlsafe(32)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._scratch: tempfile.TemporaryDirectory[str] | None = None
        self.kubeconfig = Path()
        self.attempts_repeated = 0
        self._count = threading.Lock()

    def start(self) -> HelmRelay:
        self._scratch = tempfile.TemporaryDirectory(prefix="floe-helm-relay-")
        scratch = Path(self._scratch.name)
        certificate = _serve_tls_with_certificate_in(scratch)
        self._server = _Server(("127.0.0.1", 0), _Handler, self, certificate.context)
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="floe-helm-relay", daemon=True
        )
        self._thread.start()
        self.kubeconfig = scratch / "kubeconfig"
        port = self._server.server_address[1]
        cluster = {
            "server": f"https://127.0.0.1:{port}",
            "certificate-authority-data": base64.b64encode(certificate.pem).decode(),
        }
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "relay", "cluster": cluster}],
            "users": [{"name": "relay", "user": {"token": self._token}}],
            "contexts": [{"name": "relay", "context": {"cluster": "relay", "user": "relay"}}],
            "current-context": "relay",
        }
        descriptor = os.open(self.kubeconfig, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(descriptor, "w") as file:
            yaml.safe_dump(document, file)
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.close_open_connections()
            self._server.server_close()
            self._server = None
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None
        self._api.close()

    def __enter__(self) -> HelmRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def authorized(self, header: str | None) -> bool:
        return secrets.compare_digest((header or "").encode(), f"Bearer {self._token}".encode())

    def upstream_headers(self, headers: dict[str, str]) -> dict[str, str]:
        """``headers`` with the relay's own hop removed and the cluster's credentials added
        (refreshed by the client when they expire, as for our own requests)."""
        forwarded = {k: v for k, v in headers.items() if k.lower() not in HOP_HEADERS}
        self._api.update_params_for_auth(forwarded, [], ["BearerToken"])
        return forwarded

    def send(
        self, method: str, target: str, headers: dict[str, str], body: bytes | None, watch: bool
    ) -> urllib3.BaseHTTPResponse:
        """The upstream response (body not yet read) to the first attempt that is not a
        transient failure, or to the last one the deadline allowed; raises the connection
        error of the last attempt when none got an answer."""
        policy = self.policy
        clock = policy.retry.clock
        start, attempt = clock(), 0
        read = policy.timeout[1]
        if watch:
            read = _watch_seconds(target) + WATCH_READ_MARGIN
        while True:
            attempt += 1
            response: urllib3.BaseHTTPResponse | None = None
            try:
                response = self._pool.request(
                    method,
                    self.upstream + target,
                    body=body,
                    headers=self.upstream_headers(headers),
                    preload_content=False,
                    decode_content=False,
                    redirect=False,
                    retries=False,
                    timeout=urllib3.Timeout(connect=policy.timeout[0], read=read),
                )
            except urllib3.exceptions.HTTPError:
                if not self._waited_to_repeat(start, attempt, None):
                    raise
            else:
                if response.status not in RETRYABLE_STATUSES or not self._waited_to_repeat(
                    start, attempt, response.headers.get("Retry-After")
                ):
                    return response
                response.drain_conn()
                response.release_conn()

    def _waited_to_repeat(self, start: float, attempt: int, retry_after: str | None) -> bool:
        """Whether another attempt fits in the deadline, having waited for it if so."""
        retry = self.policy.retry
        wait = retry.backoff(attempt)
        with contextlib.suppress(TypeError, ValueError):
            wait = max(wait, min(float(retry_after or ""), retry.max_retry_after))
        if retry.clock() + wait - start >= self.policy.deadline:
            return False
        retry.sleep(wait)
        with self._count:
            self.attempts_repeated += 1
        return True


def _upstream_configuration(configuration: client.Configuration) -> client.Configuration:
    # A copy with urllib3's own retries off: the relay is the one layer that repeats.
    # Helm's discovery sends some 30 requests at once: keep that many connections open
    # rather than making (and handshaking) a new one for each.
    configuration = copy.deepcopy(configuration)
    configuration.retries = False
    configuration.connection_pool_maxsize = CONNECTIONS
    return configuration


@dataclass(frozen=True)
class _Certificate:
    pem: bytes
    context: ssl.SSLContext


def _serve_tls_with_certificate_in(directory: Path) -> _Certificate:
    """A TLS server context with a new self-signed certificate for 127.0.0.1 (its key is
    written to ``directory``, private, only because ``ssl`` loads keys from files)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "floe-helm-relay")])
    now = datetime.now(UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=365))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.IPAddress(IPv4Address("127.0.0.1")), x509.DNSName("localhost")]
            ),
            critical=False,
        )
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    cert_file, key_file = directory / "relay.crt", directory / "relay.key"
    cert_file.write_bytes(pem)
    descriptor = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as file:
        file.write(key_pem)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert_file), str(key_file))
    context.set_alpn_protocols(["http/1.1"])
    return _Certificate(pem, context)


def _watch_seconds(target: str) -> float:
    for part in target.partition("?")[2].split("&"):
        name, _, value = part.partition("=")
        if name == "timeoutSeconds" and value.isdigit():
            return float(value)
    return 1800.0  # client-go's longest watch (a random 30-60 min unless it asks)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = CONNECTIONS  # the listen backlog (5 by default)

    def __init__(
        self, address: tuple[str, int], handler: type, relay: HelmRelay, tls: ssl.SSLContext
    ):
        super().__init__(address, handler)
        self.relay, self.tls = relay, tls
        self._open: set[socket.socket] = set()
        self._open_lock = threading.Lock()

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        # Writing to a connection Helm has closed raises SIGPIPE. Python ignores it, but the Go
        # runtime loaded with Helm handles it and, for a thread not its own, ends the process.
        # Blocked in this thread, the write fails with EPIPE instead (and the pending signal
        # goes with the thread).
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGPIPE})
        with self._open_lock:
            self._open.add(request)
        try:
            super().process_request_thread(request, client_address)
        finally:
            with self._open_lock:
                self._open.discard(request)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake happens here, in the connection's own thread, not in accept(),
        # so a client that never completes it holds up nobody else.
        request.settimeout(HANDSHAKE_SECONDS)
        try:
            secured = self.tls.wrap_socket(request, server_side=True)
        except (OSError, ssl.SSLError):
            return
        secured.settimeout(None)
        try:
            super().finish_request(secured, client_address)
        finally:
            secured.close()

    def close_open_connections(self) -> None:
        # Open watches would otherwise keep their threads until the server ends them.
        with self._open_lock:
            for sock in self._open:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that went away mid-answer (Helm gave up on a watch) is no news


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        pass  # never log: paths name Secrets, headers carry credentials

    def _relay(self) -> None:
        relay = self.server.relay
        if not relay.authorized(self.headers.get("Authorization")):
            self._answer(401, "Unauthorized", "the relay's token is missing or wrong")
            return
        body = self._read_body()
        target = with_field_manager(self.path)
        watch = is_watch(target.partition("?")[2])
        try:
            response = relay.send(self.command, target, dict(self.headers.items()), body, watch)
        except urllib3.exceptions.HTTPError as error:
            # Worded as client-go words a dropped connection, so Helm's message says so.
            self._answer(
                503,
                "ServiceUnavailable",
                f"connection to the API server {relay.upstream} failed "
                f"({type(error).__name__}) for {relay.policy.deadline:g} s: unexpected EOF",
            )
            return
        try:
            self._pass_on(response, stream=watch)
        finally:
            if watch:
                # A watch ends with its stream unread: never hand that connection to the
                # next request (it would read the rest of the stream as its answer).
                response.close()
            response.release_conn()

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _relay  # noqa: N815

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if length is not None:
            return self.rfile.read(int(length))
        if self.headers.get("Transfer-Encoding", "").lower() != "chunked":
            return None
        parts = []
        while size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16):
            parts.append(self.rfile.read(size))
            self.rfile.readline()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        return b"".join(parts)

    def _pass_on(self, response: urllib3.BaseHTTPResponse, stream: bool) -> None:
        self.send_response_only(response.status, response.reason)
        for name, value in response.headers.items():
            if name.lower() not in HOP_HEADERS:
                self.send_header(name, value)
        if not stream or response.status >= 300:
            data = response.read(decode_content=False)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)
            return
        # A watch: its events as they come, until the server or Helm ends it.
        self.send_header("Transfer-Encoding", "chunked")
        self.close_connection = True
        self.end_headers()
        try:
            while chunk := response.read1(STREAM_CHUNK, decode_content=False):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                self.wfile.flush()
            self.wfile.write(b"0\r\n\r\n")
        except (OSError, urllib3.exceptions.HTTPError):
            pass  # either side went away: the watch is over, as it would be without us

    def _answer(self, code: int, reason: str, message: str) -> None:
        status = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code,
        }
        data = json.dumps(status).encode()
        self.send_response_only(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)
