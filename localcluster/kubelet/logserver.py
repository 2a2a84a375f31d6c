"""The kubelet's HTTPS endpoint: container logs (proxied by the API server) and /healthz.

The API server turns ``GET /api/v1/namespaces/N/pods/P/log?container=C`` into
``GET https://<node InternalIP>:<kubeletEndpoint port>/containerLogs/N/P/C`` with the same query.
"""

from __future__ import annotations

import ssl
import threading
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from localcluster.kubelet.pods import PodAgent


def shape_logs(text: str, query: dict[str, list[str]]) -> str:
    """Apply the query options a kubelet honours: timestamps, tailLines, limitBytes."""
    lines = text.splitlines(keepends=True)
    if "tailLines" in query:
        count = int(query["tailLines"][0])
        lines = lines[-count:] if count > 0 else []
    if query.get("timestamps", ["false"])[0] == "true":
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f000Z")
        lines = [f"{stamp} {line}" for line in lines]
    body = "".join(lines)
    if "limitBytes" in query:
        body = body.encode()[: int(query["limitBytes"][0])].decode(errors="ignore")
    return body


def serve(agent: PodAgent, port: int, cert: Path, key: str | Path) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            url = urlparse(self.path)
            parts = url.path.strip("/").split("/")
            if url.path == "/healthz":
                self._reply(200, "ok")
            elif len(parts) == 4 and parts[0] == "containerLogs":
                code, body = agent.container_logs(parts[1], parts[2], parts[3])
                self._reply(code, shape_logs(body, parse_qs(url.query)) if code == 200 else body)
            else:
                self._reply(404, f"no handler for {url.path}")

        def _reply(self, code: int, body: str) -> None:
            data = body.encode()
            self.send_response(code)
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, format: str, *args: object) -> None:
            pass  # one line per log read would drown the kubelet's own log

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(str(cert), str(key))
    server.socket = context.wrap_socket(server.socket, server_side=True)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="kubelet-endpoint", daemon=True).start()
    return server
