"""A manifest diff between two releases' rendered objects, object by object, as helm-diff shows
it: added, removed and changed objects, with a unified diff of each change. Secret payloads are
masked before comparing (helm-diff's ``--suppress-secrets``): a changed Secret shows that it
changed, never what it holds."""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

Key = tuple[str, str]  # (kind, name)


def _masked(obj: Mapping[str, Any]) -> dict[str, Any]:
    if obj.get("kind") != "Secret":
        return dict(obj)
    masked = dict(obj)
    for field in ("data", "stringData"):
        if isinstance(obj.get(field), Mapping):
            masked[field] = {
                key: f"(masked, sha256 {hashlib.sha256(str(value).encode()).hexdigest()[:8]})"
                for key, value in obj[field].items()
            }
    return masked


def _objects(manifest: str | Iterable[Mapping[str, Any]]) -> dict[Key, dict[str, Any]]:
    docs = yaml.safe_load_all(manifest) if isinstance(manifest, str) else manifest
    return {
        (doc["kind"], doc["metadata"]["name"]): _masked(doc)
        for doc in docs
        if doc and "kind" in doc and "metadata" in doc
    }


def manifest_diff(
    before: str | Iterable[Mapping[str, Any]], after: str | Iterable[Mapping[str, Any]]
) -> str:
    """The changes from ``before`` to ``after`` (manifest text or parsed objects); empty when
    they render the same objects."""
    old, new = _objects(before), _objects(after)
    sections = []
    for key in sorted(old.keys() | new.keys()):
        kind, name = key
        old_text = yaml.safe_dump(old[key], sort_keys=True).splitlines() if key in old else []
        new_text = yaml.safe_dump(new[key], sort_keys=True).splitlines() if key in new else []
        if old_text == new_text:
            continue
        label = "added" if not old_text else "removed" if not new_text else "changed"
        lines = difflib.unified_diff(old_text, new_text, "deployed", "desired", lineterm="", n=2)
        sections.append(f"{kind}/{name} {label}\n" + "\n".join(list(lines)[2:]))
    return "\n".join(sections)
