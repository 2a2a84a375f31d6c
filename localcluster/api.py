"""One call to a local cluster's API server as its admin, without the Kubernetes client (the
control plane's own helpers and processes stay free of it)."""

from __future__ import annotations

import functools
import json
import ssl
import urllib.request

from localcluster.config import ClusterConfig
from localcluster.pki import admin_token

MERGE_PATCH = "application/merge-patch+json"


@functools.cache
def _verifying(ca_file: str) -> ssl.SSLContext:
    # Once per CA: the DNS feeder calls the API several times a second.
    return ssl.create_default_context(cafile=ca_file)


def request(
    config: ClusterConfig,
    method: str,
    path: str,
    body: dict | None = None,
    content_type: str = "application/json",
    timeout: float = 5,
) -> dict:
    """The decoded answer; ``urllib.error.HTTPError`` for an error status, ``URLError`` or
    ``OSError`` when the server cannot be reached. ``body`` is sent as ``content_type``."""
    sent = urllib.request.Request(
        config.server_url + path,
        method=method,
        data=json.dumps(body).encode() if body is not None else None,
    )
    sent.add_header("Authorization", f"Bearer {admin_token(config)}")
    if body is not None:
        sent.add_header("Content-Type", content_type)
    context = _verifying(str(config.pki_dir / "ca.crt"))
    with urllib.request.urlopen(sent, context=context, timeout=timeout) as answer:
        return json.loads(answer.read() or b"{}")
