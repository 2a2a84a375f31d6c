"""Read and patch arbitrary manifest objects by apiVersion and kind, through the REST paths
directly (no discovery round trip: the kinds a chart renders are known)."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote

from kubernetes import client
from kubernetes.client.exceptions import ApiException

CLUSTER_SCOPED = frozenset(
    {"Namespace", "ClusterRole", "ClusterRoleBinding", "StorageClass", "PersistentVolume"}
)
MERGE_PATCH = "application/merge-patch+json"
RELEASE_LABEL = "app.kubernetes.io/instance"


def _plural(kind: str) -> str:
    lower = kind.lower()
    if lower.endswith("y"):
        return lower[:-1] + "ies"  # NetworkPolicy -> networkpolicies
    if lower.endswith("s"):
        return lower + "es"  # Ingress -> ingresses
    return lower + "s"


def object_path(obj: Mapping[str, Any], namespace: str, *, collection: bool = False) -> str:
    """The REST path of ``obj`` (or of its collection, to create it)."""
    api_version, kind = obj["apiVersion"], obj["kind"]
    base = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    scope = "" if kind in CLUSTER_SCOPED else f"/namespaces/{namespace}"
    path = f"{base}{scope}/{_plural(kind)}"
    return path if collection else f"{path}/{obj['metadata']['name']}"


def _call(api: client.ApiClient, path: str, method: str, body: object = None) -> Any:
    headers = {"Accept": "application/json"}
    if method == "PATCH":
        headers["Content-Type"] = MERGE_PATCH
    elif body is not None:
        headers["Content-Type"] = "application/json"
    response = api.call_api(
        path,
        method,
        header_params=headers,
        body=body,
        auth_settings=["BearerToken"],
        _preload_content=False,
    )
    return json.loads(response[0].data if isinstance(response, tuple) else response.data)


def read_live(
    api: client.ApiClient, objects: list[Mapping[str, Any]], namespace: str, release: str
) -> list[dict[str, Any] | None]:
    """Each object as the API server has it now; None where it does not exist. One list call
    per kind (by the release's label), then a GET only for an object that list did not show
    (deleted, or stripped of its labels)."""
    by_kind: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for obj in objects:
        kind = (obj["apiVersion"], obj["kind"])
        if kind not in by_kind:
            listed = _call(
                api,
                object_path(obj, namespace, collection=True)
                + f"?labelSelector={quote(RELEASE_LABEL)}%3D{quote(release)}",
                "GET",
            )
            # Items of a list carry no apiVersion and kind of their own: the list has them.
            by_kind[kind] = {
                item["metadata"]["name"]: {"apiVersion": kind[0], "kind": kind[1], **item}
                for item in listed["items"]
            }
    live: list[dict[str, Any] | None] = []
    for obj in objects:
        found = by_kind[(obj["apiVersion"], obj["kind"])].get(obj["metadata"]["name"])
        if found is None:
            try:
                found = _call(api, object_path(obj, namespace), "GET")
            except ApiException as error:
                if error.status != 404:
                    raise
        live.append(found)
    return live


def restore(api: client.ApiClient, obj: Mapping[str, Any], namespace: str, exists: bool) -> None:
    """Put the manifest's fields back: a merge patch of the whole manifest object (lists in it
    replace the live ones, which is what the manifest means), or a create when it was deleted."""
    if exists:
        _call(api, object_path(obj, namespace), "PATCH", dict(obj))
    else:
        _call(api, object_path(obj, namespace, collection=True), "POST", dict(obj))
