"""Kubernetes schema validation of rendered objects, per target Kubernetes version.

The schemas are the ones kubernetes-validate ships (1.25-1.37, plain and strict). We do not call
``kubernetes_validate.validate`` per object: it re-reads and re-parses the schema files on every
call and stops at the first error. Instead each version's ``_definitions.json`` is loaded once,
objects are looked up by their exact (group, version, kind) from the schemas'
``x-kubernetes-group-version-kind`` (the library's file-name lookup drops the group's domain, so
``policy.example.com/v1`` would find ``policy/v1``), and every error is reported.

An object whose API is not in a version's schemas is a problem: "not served" when the group is a
built-in one (``batch/v1beta1`` CronJob on 1.28), "unknown API group" otherwise, unless the group
is listed in ``custom_resource_groups`` or defined by a CustomResourceDefinition in the same set.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Collection, Iterable, Iterator, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

import jsonschema
from kubernetes_validate.utils import VersionNotSupportedError, all_versions
from referencing import Registry, Resource

_SCHEMAS = resources.files("kubernetes_validate") / "kubernetes-json-schema"
_DEFINITIONS_URI = "https://kubernetes.io/api/_definitions.json"  # the file's $id
_MAX_MESSAGE = 160


@dataclass(frozen=True)
class ManifestProblem:
    object: str  # "Deployment/floe-dagster-webserver"
    kube_version: str  # "1.28"
    path: str  # dotted, e.g. spec.template.spec.containers[0].image; "" for the whole object
    message: str


@dataclass(frozen=True)
class _Catalog:
    kinds: Mapping[tuple[str, str, str], str]  # (group, version, kind) -> definition name
    registry: Registry[Any]


def supported_versions() -> list[str]:
    """The Kubernetes minor versions with bundled schemas, oldest first ("1.25", ...)."""
    return [_minor(version) for version in all_versions()]


def _minor(version: str) -> str:
    return ".".join(version.split(".")[:2])


def _normalise_version(version: str) -> str:
    """Accept "1.28", "v1.28", "1.28.3", "v1.28.3-gke.1"; schemas exist per minor version."""
    match = re.fullmatch(r"v?(\d+)\.(\d+)(\.\d+)?([-+].*)?", version.strip())
    minor = f"{int(match[1])}.{int(match[2])}" if match else version
    if minor not in supported_versions():
        raise VersionNotSupportedError(version)
    return minor


def _load_definitions(minor: str, strict: bool) -> dict[str, Any]:
    directory = f"v{minor}.0-local" + ("-strict" if strict else "")
    loaded: dict[str, Any] = json.loads((_SCHEMAS / directory / "_definitions.json").read_text())
    return loaded


@functools.cache
def _catalog(minor: str, strict: bool) -> _Catalog:
    definitions = _load_definitions(minor, strict)
    kinds = {
        (gvk["group"], gvk["version"], gvk["kind"]): name
        for name, schema in definitions["$defs"].items()
        for gvk in schema.get("x-kubernetes-group-version-kind", [])
    }
    return _Catalog(kinds, Resource.from_contents(definitions) @ Registry())


@functools.cache
def _validator(minor: str, strict: bool, group: str, version: str, kind: str) -> Any | None:
    catalog = _catalog(minor, strict)
    name = catalog.kinds.get((group, version, kind))
    if name is None:
        return None
    schema = {"$ref": f"{_DEFINITIONS_URI}#/$defs/{name}"}
    return jsonschema.Draft202012Validator(schema, registry=catalog.registry)


@functools.cache
def _builtin_groups() -> frozenset[str]:
    """API groups served by any bundled version (a group can come or go between versions)."""
    # Read, not cached via _catalog: only the group names are worth keeping for every version.
    return frozenset(
        gvk["group"]
        for minor in supported_versions()
        for schema in _load_definitions(minor, False)["$defs"].values()
        for gvk in schema.get("x-kubernetes-group-version-kind", [])
    )


def validate_manifests(
    manifests: Iterable[Mapping[str, Any] | None],
    kube_versions: Iterable[str] = ("1.28", "1.33"),
    strict: bool = True,
    *,
    custom_resource_groups: Collection[str] = (),
) -> list[ManifestProblem]:
    """Schema problems of every object for every version; strict also rejects unknown fields.

    Raises ``VersionNotSupportedError`` for a version without bundled schemas.
    """
    docs = list(manifests)
    minors = [_normalise_version(version) for version in kube_versions]
    skip = set(custom_resource_groups) | _crd_groups(docs)
    problems: list[ManifestProblem] = []
    for minor in minors:
        for index, doc in enumerate(docs):
            if doc is None:
                continue  # an empty YAML document
            label = _label(doc, index)
            for path, message in _check(doc, minor, strict, skip):
                problems.append(ManifestProblem(label, minor, path, message))
    return problems


def _label(doc: Any, index: int) -> str:
    if not isinstance(doc, Mapping):
        return f"<document {index}>"
    meta = doc.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return f"{doc.get('kind') or '<no kind>'}/{name or f'<document {index}>'}"


def _crd_groups(docs: list[Any]) -> set[str]:
    specs = [
        doc.get("spec")
        for doc in docs
        if isinstance(doc, Mapping) and doc.get("kind") == "CustomResourceDefinition"
    ]
    return {spec["group"] for spec in specs if isinstance(spec, Mapping) and spec.get("group")}


def _check(doc: Any, minor: str, strict: bool, skip: set[str]) -> list[tuple[str, str]]:
    if not isinstance(doc, Mapping):
        return [("", f"expected a Kubernetes object (a mapping), got {_type(doc)}")]
    api_version, kind = doc.get("apiVersion"), doc.get("kind")
    if not isinstance(api_version, str) or not isinstance(kind, str) or not api_version or not kind:
        return [("", "apiVersion and kind must be set")]
    group, _, version = api_version.rpartition("/")
    validator = _validator(minor, strict, group, version, kind)
    if validator is None:
        if group in skip:
            return []
        return [("apiVersion", _not_served(api_version, group, kind, minor, strict))]
    return [problem for error in validator.iter_errors(doc) for problem in _describe(error)]


def _not_served(api_version: str, group: str, kind: str, minor: str, strict: bool) -> str:
    if group not in _builtin_groups():
        return (
            f"{api_version} {kind}: unknown API group {group!r} in Kubernetes {minor} "
            "(a custom resource? list its group in custom_resource_groups)"
        )
    served = sorted(
        f"{g}/{v}" if g else v for g, v, k in _catalog(minor, strict).kinds if k == kind
    )
    same_group = [api for api in served if api.rpartition("/")[0] == group]
    hint = f"; use {' or '.join(same_group or served)}" if served else f"; it has no {kind} API"
    return f"{api_version} {kind} is not served by Kubernetes {minor}{hint}"


def _describe(error: Any) -> Iterator[tuple[str, str]]:
    """Short messages: jsonschema's own embed the offending value, which can be a whole object."""
    path = list(error.absolute_path)
    rule, expected, instance = error.validator, error.validator_value, error.instance
    if rule == "additionalProperties" and isinstance(instance, Mapping):
        known = error.schema.get("properties", {})
        for key in instance:
            if key not in known:
                yield _format_path([*path, key]), f"unknown field {key!r}"
    elif rule == "required":
        missing = [p for p in expected if p not in instance and error.message.startswith(repr(p))]
        yield _format_path([*path, *missing[:1]]), "required field is missing"
    elif rule == "type":
        yield _format_path(path), f"expected {_types(expected)}, got {_value(instance)}"
    elif rule in ("oneOf", "anyOf"):
        types = [s.get("type") for s in expected if isinstance(s, Mapping) and "type" in s]
        if len(types) == len(expected):
            yield _format_path(path), f"expected {_types(types)}, got {_value(instance)}"
        else:
            yield _format_path(path), f"matches none of the allowed forms: {_value(instance)}"
    elif rule == "enum":
        allowed = ", ".join(map(repr, expected[:8])) + (", ..." if len(expected) > 8 else "")
        yield _format_path(path), f"must be one of {allowed}; got {_value(instance)}"
    else:
        yield _format_path(path), _shorten(error.message)


def _types(expected: Any) -> str:
    flat: list[str] = []
    for item in expected if isinstance(expected, list) else [expected]:
        flat += item if isinstance(item, list) else [item]
    # Every field also accepts null (an unset value), which is not worth saying each time.
    return " or ".join(dict.fromkeys(t for t in flat if t != "null"))


_JSON_TYPES: tuple[tuple[type, str], ...] = (
    (Mapping, "object"),
    (list, "array"),
    (str, "string"),
    (bool, "boolean"),  # before int: True is an int to Python
    (int, "integer"),
    (float, "number"),
    (type(None), "null"),
)


def _type(value: Any) -> str:
    return next((name for t, name in _JSON_TYPES if isinstance(value, t)), type(value).__name__)


def _value(value: Any) -> str:
    """The JSON type, and the value itself only when it is a short scalar."""
    if isinstance(value, Mapping | list) or value is None:
        return _type(value)
    return f"{_type(value)} {_shorten(repr(value), 40)}"


def _shorten(text: str, limit: int = _MAX_MESSAGE) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _format_path(path: list[Any]) -> str:
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        elif re.fullmatch(r"[A-Za-z0-9_-]+", str(part)):
            out += f".{part}" if out else str(part)
        else:  # annotation and label keys contain dots and slashes
            out += f"[{json.dumps(str(part))}]"
    return out
