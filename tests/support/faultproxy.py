"""A fault-injecting HTTP proxy in front of the Kubernetes API server, for tests.

The proxy listens on ``127.0.0.1`` (plain HTTP, a free port) and forwards every request to the
API server named by an admin kubeconfig, over TLS verified with that kubeconfig's CA. The
client's ``Authorization`` header is passed through (a client certificate in the kubeconfig, if
any, is presented upstream by the proxy). :attr:`FaultProxy.kubeconfig` is a copy of the admin
kubeconfig whose server is the proxy, so the Python client and Helm (client-go) both go through it.

Rules choose requests by HTTP method and a path regex (optionally: watch requests only or
never, a query regex, only the first N matches) and say what happens to them::

    with FaultProxy(admin_kubeconfig) as proxy:
        proxy.add_rule("GET", r"/namespaces/[^/]+/configmaps$", Fault.unavailable(), times=2)
        ...  # a client using proxy.kubeconfig lists ConfigMaps, retrying
        assert [r.status for r in proxy.requests_matching("GET", "/configmaps$")] == [503, 503, 200]

Every request is recorded (method, path, query, status answered, the fault applied), so tests
can count calls and retries. Stopping the proxy closes every connection and joins every thread.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import re
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlsplit

import yaml

HOP_BY_HOP = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "host",
        "content-length",
    }
)
HANDSHAKE_TIMEOUT = 10.0
STOP_TIMEOUT = 15.0
STATUS_REASONS = {
    409: "Conflict",
    410: "Expired",
    429: "TooManyRequests",
    500: "InternalError",
    502: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
}


def status_body(code: int, message: str, reason: str | None = None) -> dict[str, Any]:
    """A Kubernetes ``Status`` object, as the API server sends with a failure."""
    return {
        "kind": "Status",
        "apiVersion": "v1",
        "metadata": {},
        "status": "Failure",
        "message": message,
        "reason": reason or STATUS_REASONS.get(code, "Unknown"),
        "code": code,
    }


@dataclass(frozen=True)
class Fault:
    """What the proxy does to a matched request: answer with a status, drop the connection,
    end a watch with 410 Gone, delay it (then forward it), or forward it at once and delay
    the answer (the server has acted; the client does not know yet)."""

    kind: str  # "status", "drop", "watch-gone", "delay", "delay-answer"
    code: int = 0
    retry_after: int | None = None
    seconds: float = 0.0
    message: str = ""

    @classmethod
    def status(cls, code: int, message: str = "", retry_after: int | None = None) -> Fault:
        return cls("status", code=code, retry_after=retry_after, message=message)

    @classmethod
    def conflict(cls, message: str = "injected conflict: the object has been modified") -> Fault:
        return cls.status(409, message)

    @classmethod
    def too_many_requests(cls, retry_after: int = 1) -> Fault:
        return cls.status(429, "injected: too many requests, please try again later", retry_after)

    @classmethod
    def server_error(cls) -> Fault:
        return cls.status(500, "injected: internal error")

    @classmethod
    def unavailable(cls, retry_after: int | None = None) -> Fault:
        return cls.status(
            503, "injected: the server is currently unable to handle the request", retry_after
        )

    @classmethod
    def drop(cls) -> Fault:
        """Close the client's connection after reading the request, without answering."""
        return cls("drop")

    @classmethod
    def watch_gone(cls) -> Fault:
        """Answer a watch with one ``ERROR`` event (Status 410 Expired), then end it."""
        return cls("watch-gone", code=410, message="injected: too old resource version")

    @classmethod
    def delay(cls, seconds: float) -> Fault:
        return cls("delay", seconds=seconds)

    @classmethod
    def delay_answer(cls, seconds: float) -> Fault:
        return cls("delay-answer", seconds=seconds)

    def __str__(self) -> str:
        if self.kind == "status":
            return f"status {self.code}" + (
                f" (Retry-After {self.retry_after})" if self.retry_after is not None else ""
            )
        if self.kind in ("delay", "delay-answer"):
            return f"{self.kind} {self.seconds:g} s"
        return self.kind


@dataclass
class Rule:
    """Requests matching ``method`` (None: any) and ``path`` (a regex searched in the path, no
    query), and ``query`` (a regex searched in the query string) if given; ``watch`` True matches
    only watch requests, False never, None both. ``times``: only the first N matches."""

    method: str | None
    path: str
    fault: Fault
    times: int | None = None
    watch: bool | None = None
    query: str | None = None
    hits: int = 0
    _path: re.Pattern[str] = field(init=False, repr=False)
    _query: re.Pattern[str] | None = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._path = re.compile(self.path)
        self._query = re.compile(self.query) if self.query is not None else None

    def matches(self, method: str, path: str, query: str, watch: bool) -> bool:
        return (
            (self.method is None or self.method.upper() == method)
            and self._path.search(path) is not None
            and (self._query is None or self._query.search(query) is not None)
            and (self.watch is None or self.watch == watch)
            and (self.times is None or self.hits < self.times)
        )

    @property
    def exhausted(self) -> bool:
        return self.times is not None and self.hits >= self.times


@dataclass(frozen=True)
class RecordedRequest:
    method: str
    path: str
    query: str
    watch: bool
    status: int | None  # None: the connection was dropped without an answer
    fault: str | None  # the fault applied, if any
    at: float  # time.monotonic() when answered


def is_watch(query: str) -> bool:
    values = parse_qs(query).get("watch", [])
    return any(v.lower() in ("true", "1") for v in values)


@dataclass(frozen=True)
class _Upstream:
    host: str
    port: int
    context: ssl.SSLContext | None  # None: plain HTTP upstream


class _Server(ThreadingHTTPServer):
    daemon_threads = False  # server_close() joins every handler thread
    block_on_close = True
    proxy: FaultProxy
    tls: ssl.SSLContext | None = None

    def finish_request(self, request: Any, client_address: Any) -> None:
        # The TLS handshake happens here, in the connection's own thread, not in accept().
        if self.tls is not None:
            raw = request
            if not self.proxy._track(raw):
                return
            try:
                raw.settimeout(HANDSHAKE_TIMEOUT)
                request = self.tls.wrap_socket(raw, server_side=True)
                request.settimeout(None)
            finally:
                self.proxy._untrack(raw)
        try:
            super().finish_request(request, client_address)
        finally:
            if self.tls is not None:
                request.close()

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client or the proxy closing a connection mid-request is expected in these tests.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    _upstream_conn: http.client.HTTPConnection | None = None

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def setup(self) -> None:
        super().setup()
        if not self.server.proxy._track(self.connection):
            self.close_connection = True

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self._close_upstream()
            self.server.proxy._untrack(self.connection)

    # -- one request --------------------------------------------------------------------------

    def _handle(self) -> None:
        proxy = self.server.proxy
        split = urlsplit(self.path)
        path, query = split.path, split.query
        watch = is_watch(query)
        body = self._read_body()
        fault = proxy._match(self.command, path, query, watch)
        label = str(fault) if fault else None
        if fault is not None and fault.kind == "delay":
            if proxy._stopping.wait(fault.seconds):
                self._drop()
                return
            fault = None
        if fault is None or fault.kind == "delay-answer":
            self._forward(body, path, query, watch, label, fault)
        elif fault.kind == "drop":
            proxy._record(self.command, path, query, watch, None, label)
            self._drop()
        elif fault.kind == "watch-gone":
            self._watch_gone(fault, path, query, label)
        else:
            self._answer_status(fault, path, query, watch, label)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = do_HEAD = do_OPTIONS = _handle  # noqa: N815

    def _read_body(self) -> bytes | None:
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            parts: list[bytes] = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(parts)
                parts.append(self.rfile.read(size))
                self.rfile.readline()
        length = self.headers.get("Content-Length")
        return self.rfile.read(int(length)) if length is not None else None

    def _drop(self) -> None:
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    def _answer_status(
        self, fault: Fault, path: str, query: str, watch: bool, label: str | None
    ) -> None:
        body = json.dumps(status_body(fault.code, fault.message or f"injected {fault.code}"))
        data = body.encode()
        self.send_response(fault.code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if fault.retry_after is not None:
            self.send_header("Retry-After", str(fault.retry_after))
        self.end_headers()
        self.server.proxy._record(self.command, path, query, watch, fault.code, label)
        if self.command != "HEAD":
            self.wfile.write(data)

    def _watch_gone(self, fault: Fault, path: str, query: str, label: str | None) -> None:
        event = {"type": "ERROR", "object": status_body(410, fault.message, "Expired")}
        line = (json.dumps(event) + "\n").encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.server.proxy._record(self.command, path, query, True, 200, label)
        self.wfile.write(b"%x\r\n%s\r\n0\r\n\r\n" % (len(line), line))
        self.close_connection = True

    # -- forwarding ---------------------------------------------------------------------------

    def _close_upstream(self) -> None:
        conn, self._upstream_conn = self._upstream_conn, None
        if conn is not None:
            if conn.sock is not None:
                self.server.proxy._untrack(conn.sock)
            conn.close()

    def _connect_upstream(self) -> http.client.HTTPConnection:
        upstream = self.server.proxy._upstream
        conn: http.client.HTTPConnection
        if upstream.context is None:
            conn = http.client.HTTPConnection(upstream.host, upstream.port, timeout=None)
        else:
            conn = http.client.HTTPSConnection(
                upstream.host, upstream.port, timeout=None, context=upstream.context
            )
        conn.connect()
        self._upstream_conn = conn
        assert conn.sock is not None
        if not self.server.proxy._track(conn.sock):
            raise ConnectionAbortedError("the fault proxy is stopping")
        return conn

    def _send_upstream(self, body: bytes | None) -> http.client.HTTPResponse:
        upstream = self.server.proxy._upstream
        reused = self._upstream_conn is not None
        for attempt in (1, 2):
            conn = self._upstream_conn or self._connect_upstream()
            try:
                conn.putrequest(self.command, self.path, skip_host=True, skip_accept_encoding=True)
                conn.putheader("Host", f"{upstream.host}:{upstream.port}")
                for name, value in self.headers.items():
                    if name.lower() not in HOP_BY_HOP:
                        conn.putheader(name, value)
                if body is not None or self.command in ("POST", "PUT", "PATCH"):
                    conn.putheader("Content-Length", str(len(body or b"")))
                conn.endheaders(body)
                return conn.getresponse()
            except (ConnectionError, http.client.HTTPException, ssl.SSLError):
                # An idle upstream connection the API server closed: reconnect once.
                self._close_upstream()
                if attempt == 2 or not reused:
                    raise
        raise AssertionError("unreachable")

    def _forward(
        self,
        body: bytes | None,
        path: str,
        query: str,
        watch: bool,
        label: str | None,
        delay_answer: Fault | None = None,
    ) -> None:
        proxy = self.server.proxy
        try:
            response = self._send_upstream(body)
        except OSError as error:
            if proxy._stopping.is_set():
                self._drop()
                return
            fault = Fault.status(502, f"fault proxy: upstream unreachable: {error}")
            self._answer_status(fault, path, query, watch, "upstream-error")
            return
        if delay_answer is not None and proxy._stopping.wait(delay_answer.seconds):
            self._close_upstream()
            self._drop()
            return
        self.send_response_only(response.status, response.reason)
        for name, value in response.getheaders():
            if name.lower() not in HOP_BY_HOP:
                self.send_header(name, value)
        no_body = self.command == "HEAD" or response.status in (204, 304) or response.status < 200
        length = response.length
        if no_body:
            self.send_header("Content-Length", "0")
            self.end_headers()
            proxy._record(self.command, path, query, watch, response.status, label)
            response.read()
        elif response.chunked or length is None:
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            proxy._record(self.command, path, query, watch, response.status, label)
            while data := response.read1(65536):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.write(b"0\r\n\r\n")
        else:
            self.send_header("Content-Length", str(length))
            self.end_headers()
            proxy._record(self.command, path, query, watch, response.status, label)
            while data := response.read(65536):
                self.wfile.write(data)
        if response.will_close:
            self._close_upstream()


def _self_signed(scratch: Path) -> tuple[Path, Path]:
    """A throwaway certificate for 127.0.0.1, made with the openssl command (as localcluster
    makes the cluster's own)."""
    cert, key = scratch / "proxy.crt", scratch / "proxy.key"
    command = [
        "openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "1",
        "-subj", "/CN=faultproxy", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"openssl could not make the proxy's certificate: {result.stderr}")
    return cert, key


def _tls_context(
    cluster: dict[str, Any], user: dict[str, Any], base: Path, scratch: Path
) -> ssl.SSLContext:
    def material(key: str) -> Path | None:
        if f"{key}-data" in source(key):
            path = scratch / key
            path.write_bytes(base64.b64decode(source(key)[f"{key}-data"]))
            return path
        if key in source(key):
            return base / source(key)[key]
        return None

    def source(key: str) -> dict[str, Any]:
        return cluster if key == "certificate-authority" else user

    context = ssl.create_default_context()
    if cluster.get("insecure-skip-tls-verify"):
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    else:
        ca = material("certificate-authority")
        if ca is not None:
            context.load_verify_locations(cafile=str(ca))
    cert, key = material("client-certificate"), material("client-key")
    if cert is not None:
        context.load_cert_chain(str(cert), str(key) if key else None)
    context.set_alpn_protocols(["http/1.1"])
    return context


class FaultProxy:
    """The proxy; a context manager (``start``/``stop``). See the module's documentation."""

    def __init__(self, kubeconfig: Path, context: str | None = None, *, tls: bool = True):
        self.source_kubeconfig = Path(kubeconfig)
        self.tls = tls
        self._context_name = context
        self._rules: list[Rule] = []
        self._requests: list[RecordedRequest] = []
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._stopping = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self._scratch: Path | None = None
        self._upstream = _Upstream("127.0.0.1", 0, None)  # set by start()
        self.kubeconfig: Path = Path()  # set by start()
        self.url = ""

    # -- life cycle ---------------------------------------------------------------------------

    def start(self) -> FaultProxy:
        document = yaml.safe_load(self.source_kubeconfig.read_text())
        context_name = self._context_name or document["current-context"]
        context = next(c for c in document["contexts"] if c["name"] == context_name)["context"]
        cluster_entry = next(c for c in document["clusters"] if c["name"] == context["cluster"])
        user_entry: dict[str, Any] = next(
            (u for u in document.get("users", []) if u["name"] == context.get("user")),
            {"user": {}},
        )
        cluster, user = cluster_entry["cluster"], user_entry["user"] or {}
        server = urlsplit(cluster["server"])
        self._scratch = Path(tempfile.mkdtemp(prefix="faultproxy-"))
        tls = server.scheme == "https"
        self._upstream = _Upstream(
            server.hostname or "127.0.0.1",
            server.port or (443 if tls else 80),
            _tls_context(cluster, user, self.source_kubeconfig.parent, self._scratch)
            if tls
            else None,
        )

        self._stopping.clear()
        self._server = _Server(("127.0.0.1", 0), _Handler)
        self._server.proxy = self
        port = self._server.server_address[1]
        served: dict[str, Any] = {}
        if self.tls:
            # client-go sends a bearer token only over TLS, so the proxy speaks TLS, with a
            # throwaway certificate that its kubeconfig trusts.
            cert, key = _self_signed(self._scratch)
            self._server.tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            self._server.tls.load_cert_chain(str(cert), str(key))
            self._server.tls.set_alpn_protocols(["http/1.1"])
            served["certificate-authority-data"] = base64.b64encode(cert.read_bytes()).decode()
        self.url = f"{'https' if self.tls else 'http'}://127.0.0.1:{port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"faultproxy-{port}",
        )
        self._thread.start()

        # The kubeconfig through the proxy: its server and the CA that verifies it.
        cluster_entry["cluster"] = {"server": self.url, **served}
        for entry in ("client-certificate", "client-key"):  # presented upstream by the proxy
            user.pop(entry, None)
            user.pop(f"{entry}-data", None)
        document["current-context"] = context_name
        self.kubeconfig = self._scratch / "proxy.kubeconfig"
        self.kubeconfig.write_text(yaml.safe_dump(document))
        self.kubeconfig.chmod(0o600)
        return self

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        self._stopping.set()
        server.shutdown()
        # server_close() joins every handler thread; each is unblocked by closing its sockets
        # (again while the join runs, for any opened meanwhile), within a deadline.
        closer = threading.Thread(target=server.server_close, name="faultproxy-close")
        closer.start()
        deadline = time.monotonic() + STOP_TIMEOUT
        while True:
            with self._lock:
                sockets = list(self._sockets)
            for sock in sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
            closer.join(timeout=0.2)
            if not closer.is_alive() or time.monotonic() > deadline:
                break
        if self._thread is not None:
            self._thread.join(timeout=STOP_TIMEOUT)
            self._thread = None
        if self._scratch is not None:
            shutil.rmtree(self._scratch, ignore_errors=True)
            self._scratch = None
        if closer.is_alive():
            raise RuntimeError(f"the fault proxy's connections did not close in {STOP_TIMEOUT} s")

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- rules --------------------------------------------------------------------------------

    def add_rule(
        self,
        method: str | None,
        path: str,
        fault: Fault,
        *,
        times: int | None = None,
        watch: bool | None = None,
        query: str | None = None,
    ) -> Rule:
        """Apply ``fault`` to matching requests (first rule added wins); returns the rule, whose
        ``hits`` counts the requests it took."""
        if fault.kind == "watch-gone":
            watch = True
        rule = Rule(method, path, fault, times=times, watch=watch, query=query)
        with self._lock:
            self._rules.append(rule)
        return rule

    def clear_rules(self) -> None:
        with self._lock:
            self._rules.clear()

    def _match(self, method: str, path: str, query: str, watch: bool) -> Fault | None:
        with self._lock:
            for rule in self._rules:
                if rule.matches(method, path, query, watch):
                    rule.hits += 1
                    return rule.fault
        return None

    # -- the record ---------------------------------------------------------------------------

    def _record(
        self,
        method: str,
        path: str,
        query: str,
        watch: bool,
        status: int | None,
        fault: str | None,
    ) -> None:
        with self._lock:
            self._requests.append(
                RecordedRequest(method, path, query, watch, status, fault, time.monotonic())
            )

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._lock:
            return list(self._requests)

    def requests_matching(
        self, method: str | None = None, path: str = "", *, watch: bool | None = None
    ) -> list[RecordedRequest]:
        pattern = re.compile(path)
        return [
            r
            for r in self.requests
            if (method is None or r.method == method.upper())
            and pattern.search(r.path)
            and (watch is None or r.watch == watch)
        ]

    def clear_record(self) -> None:
        with self._lock:
            self._requests.clear()

    # -- connection bookkeeping (for a clean stop) --------------------------------------------

    def _track(self, sock: socket.socket) -> bool:
        """Remember a connection, to close it on stop; False (and closed) if stopping already."""
        with self._lock:
            self._sockets.add(sock)
        # stop() sets _stopping before it takes its snapshot of _sockets, so a socket is either
        # in that snapshot or sees _stopping here.
        if self._stopping.is_set():
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            return False
        return True

    def _untrack(self, sock: socket.socket) -> None:
        with self._lock:
            self._sockets.discard(sock)


__all__ = ["Fault", "FaultProxy", "RecordedRequest", "Rule", "status_body"]
