"""A TCP proxy that resets its first connections, then forwards bytes both ways: a registry that
went away for a moment, as its clients see it (TLS passes through untouched: the certificate is
the registry's own, for 127.0.0.1)."""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
from types import TracebackType


class ResettingProxy:
    def __init__(self, target: str, resets: int):
        host, port = target.rsplit(":", 1)
        self._target = (host, int(port))
        self._resets_left = resets
        self.accepted = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self._listener.getsockname()[1]}"
        self._threads: list[threading.Thread] = []
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        self._closing = False

    def reset_next(self, connections: int) -> None:
        with self._lock:
            self._resets_left = connections

    def __enter__(self) -> ResettingProxy:
        self._start(self._accept_loop)
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self._closing = True
        self._listener.close()
        with self._lock:
            for connection in self._open:
                connection.close()
        for thread in self._threads:
            thread.join(timeout=10)

    def _start(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept_loop(self) -> None:
        while not self._closing:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.accepted += 1
                reset = self._resets_left > 0
                self._resets_left -= reset
            if reset:
                # Linger 0: close() sends RST, the client reads "connection reset by peer".
                client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                client.close()
                continue
            upstream = socket.create_connection(self._target, timeout=10)
            upstream.settimeout(None)
            with self._lock:
                self._open += [client, upstream]
            self._start(self._pipe, client, upstream)
            self._start(self._pipe, upstream, client)

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        try:
            while data := source.recv(65536):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for end in (source, sink):
                with contextlib.suppress(OSError):  # the other direction closed it first
                    end.shutdown(socket.SHUT_RDWR)
