"""An API server that is there and says nothing: a TCP listener on 127.0.0.1 that accepts every
connection and never sends a byte (``tls=False``: a client's TLS handshake waits for an answer
that never comes, as with a hung API server or a black-holing load balancer), or that completes
the TLS handshake and then never answers a request (``tls=True``: a server that hangs after
accepting, the case only a read timeout ends).

    with SilentServer() as server:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig", context="floe-silent")

Connections are held open until ``stop``, which closes them and joins the accepting thread.
"""

from __future__ import annotations

import base64
import contextlib
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
from pathlib import Path
from types import TracebackType

import yaml


class SilentServer:
    def __init__(self, tls: bool = False) -> None:
        self.tls = tls
        self._certificate: str | None = None
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._held: list[socket.socket] = []
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread = threading.Thread(target=self._accept, name="silent-server", daemon=True)
        self._context: ssl.SSLContext | None = None
        self.accepted = 0  # connections accepted so far

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    def start(self) -> SilentServer:
        if self.tls:
            self._context = self._server_context()
        self._thread.start()
        return self

    def __enter__(self) -> SilentServer:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.stop()

    def stop(self) -> None:
        self._stopped.set()
        with contextlib.suppress(OSError):
            self._listener.close()
        with self._lock:
            held, self._held = self._held, []
        for connection in held:
            with contextlib.suppress(OSError):
                connection.close()
        self._thread.join(timeout=5)

    def write_kubeconfig(self, path: Path, context: str = "floe-silent") -> Path:
        """A kubeconfig whose ``context`` points at this server: trusting its certificate
        (``tls``), or with certificate checks off (the handshake never gets that far)."""
        cluster: dict[str, object] = {"server": self.url}
        if self._certificate is not None:
            cluster["certificate-authority-data"] = self._certificate
        else:
            cluster["insecure-skip-tls-verify"] = True
        document = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": context, "cluster": cluster}],
            "users": [{"name": context, "user": {"token": "silent"}}],
            "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
            "current-context": context,
        }
        path.write_text(yaml.safe_dump(document))
        return path

    def _accept(self) -> None:
        self._listener.settimeout(0.2)
        while not self._stopped.is_set():
            try:
                connection, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            if self._context is not None:
                threading.Thread(target=self._handshake, args=(connection,), daemon=True).start()
                continue
            with self._lock:
                self._held.append(connection)

    def _handshake(self, connection: socket.socket) -> None:
        """Complete the TLS handshake, then hold the connection without reading or answering."""
        assert self._context is not None
        try:
            connection.settimeout(10)
            wrapped = self._context.wrap_socket(connection, server_side=True)
        except (OSError, ssl.SSLError):
            connection.close()
            return
        with self._lock:
            if self._stopped.is_set():
                wrapped.close()
                return
            self._held.append(wrapped)

    def _server_context(self) -> ssl.SSLContext:
        """A throwaway self-signed certificate for 127.0.0.1 (openssl, as the local cluster's
        own certificates are made); the kubeconfig trusts it."""
        directory = Path(tempfile.mkdtemp(prefix="silent-server-"))
        key, cert = directory / "silent.key", directory / "silent.crt"
        command = (
            "openssl req -x509 -newkey rsa:2048 -nodes -days 1 -subj /CN=127.0.0.1 "
            "-addext subjectAltName=IP:127.0.0.1"
        )
        subprocess.run(
            [*command.split(), "-keyout", str(key), "-out", str(cert)],
            check=True,
            capture_output=True,
        )
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(cert, key)
        self._certificate = base64.b64encode(cert.read_bytes()).decode()
        shutil.rmtree(directory, ignore_errors=True)
        return context
