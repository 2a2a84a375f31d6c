"""Kubernetes API access for one cluster, as the environment's cluster mapping names it.

Every request of a ``ClusterAccess`` client has a deadline: a call that names no
``_request_timeout`` gets ``REQUEST_TIMEOUT`` (connect, which covers the TCP connect and the TLS
handshake, and read), a watch its own ``timeoutSeconds`` plus a margin. urllib3's own silent
retries are off: ``kube.retry.call_with_retry`` is the one layer that retries, within its
deadline, so an API server that accepts connections and never answers costs a bounded time
instead of hanging the caller (urllib3 would repeat every timeout up to four times).
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from kubernetes import client
from kubernetes import config as kube_config
from kubernetes.client import rest

from floe_deploy_assets.kube.retry import REQUEST_TIMEOUT, WATCH_READ_MARGIN

A = TypeVar("A", bound=client.ApiClient)
BOUNDED = "_floe_bounded"  # marks a REST client whose requests get a default timeout


def bounded(api: A) -> A:
    """``api``, its requests given a timeout when they name none and urllib3's retries off
    (unless its configuration sets some). Idempotent; returns the same client."""
    configuration = api.configuration
    if configuration.retries is None:
        configuration.retries = False  # call_with_retry retries, within a deadline
        api.rest_client = rest.RESTClientObject(configuration)
    rest_client = api.rest_client
    if getattr(rest_client, BOUNDED, False):
        return api
    send = rest_client.request

    def request(method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        if kwargs.get("_request_timeout") is None:
            kwargs["_request_timeout"] = default_timeout(kwargs.get("query_params"))
        return send(method, url, *args, **kwargs)

    rest_client.request = request
    setattr(rest_client, BOUNDED, True)
    return api


def bounded_copy(
    api: client.ApiClient, factory: Callable[[client.Configuration], A] = client.ApiClient
) -> A:
    """A new client (made by ``factory``) on a copy of ``api``'s configuration, bounded as
    ``bounded`` does; ``api`` and its configuration are left as they were."""
    return bounded(factory(copy.deepcopy(api.configuration)))


def default_timeout(query: list[tuple[str, Any]] | None) -> tuple[float, float]:
    """A watch may be quiet for as long as it asked the server to keep it open; anything else
    gets ``REQUEST_TIMEOUT``."""
    params = dict(query or [])
    if params.get("watch") in (True, "true", "True", 1):
        seconds = params.get("timeoutSeconds")
        if seconds is not None:
            return (REQUEST_TIMEOUT[0], float(seconds) + WATCH_READ_MARGIN)
        return (REQUEST_TIMEOUT[0], 300.0 + WATCH_READ_MARGIN)
    return REQUEST_TIMEOUT


@dataclass(frozen=True)
class ClusterAccess:
    api: client.ApiClient

    def __post_init__(self) -> None:
        # A client of its own (the one given may be shared, and is left as it was).
        if not getattr(self.api.rest_client, BOUNDED, False):
            object.__setattr__(self, "api", bounded_copy(self.api))

    @classmethod
    def from_kubeconfig(cls, kubeconfig: Path | None, context: str | None = None) -> ClusterAccess:
        """``kubeconfig`` None: $KUBECONFIG or ~/.kube/config; ``context`` None: its current one."""
        return cls(
            bounded(
                kube_config.new_client_from_config(
                    str(kubeconfig) if kubeconfig else None, context=context
                )
            )
        )

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    @property
    def batch(self) -> client.BatchV1Api:
        return client.BatchV1Api(self.api)

    @property
    def coordination(self) -> client.CoordinationV1Api:
        return client.CoordinationV1Api(self.api)
