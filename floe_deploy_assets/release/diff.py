"""A manifest diff between two releases' rendered objects, object by object, as helm-diff shows
it: added, removed and changed objects, with a unified diff of each change. Secret payloads are
masked before comparing (helm-diff's ``--suppress-secrets``): a changed Secret shows that it
changed, never what it holds; so is any string of any object that the secret rules flag (a
ConfigMap entry, an annotation). ``release_change_markdown`` gives what a release shows: a table of
the objects an install creates, then its manifest; or a table of the objects an upgrade
changes, then their diffs."""

from __future__ import annotations

import copy
import difflib
import hashlib
import re
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from floe_deploy_assets.checks.manifest_secrets import SECRET_PAYLOAD_FIELDS, scannable
from floe_deploy_assets.values.secrets import find_plaintext_secrets

Key = tuple[str, str]  # (kind, name)

NO_CHANGE = "(no change)"


def _mask(value: Any) -> str:
    return f"(masked, sha256 {hashlib.sha256(str(value).encode()).hexdigest()[:8]})"


def _index(parent: Any, token: str) -> Any:
    """The list index or mapping key a pointer token names (a YAML key may be a number)."""
    if isinstance(parent, list):
        return int(token)
    return token if token in parent else next(key for key in parent if str(key) == token)


def _masked(obj: Mapping[str, Any]) -> dict[str, Any]:
    """``obj`` with its Secret payload masked, and every string the secret rules flag (a
    ConfigMap entry, an annotation, an env value: any object) replaced by its mask."""
    flagged = find_plaintext_secrets(scannable(obj))
    masked = copy.deepcopy(dict(obj)) if flagged else dict(obj)
    for finding in flagged:
        *path, last = [
            token.replace("~1", "/").replace("~0", "~") for token in finding.pointer.split("/")[1:]
        ]
        parent: Any = masked
        for token in path:
            parent = parent[_index(parent, token)]
        parent[_index(parent, last)] = _mask(parent[_index(parent, last)])
    if obj.get("kind") == "Secret":
        for field in SECRET_PAYLOAD_FIELDS:
            if isinstance(obj.get(field), Mapping):
                masked[field] = {key: _mask(value) for key, value in obj[field].items()}
    return masked


def _objects(manifest: str | Iterable[Mapping[str, Any]]) -> dict[Key, dict[str, Any]]:
    docs = yaml.safe_load_all(manifest) if isinstance(manifest, str) else manifest
    return {
        (doc["kind"], doc["metadata"]["name"]): _masked(doc)
        for doc in docs
        if doc and "kind" in doc and "metadata" in doc
    }


def _changes(old: Mapping[Key, Any], new: Mapping[Key, Any]) -> list[tuple[Key, str, list[str]]]:
    """Each object that differs between two ``_objects`` maps, sorted by (kind, name): its key,
    ``added``/``removed``/``changed``, and its unified diff without the file header lines."""
    changes = []
    for key in sorted(old.keys() | new.keys()):
        old_text = yaml.safe_dump(old[key], sort_keys=True).splitlines() if key in old else []
        new_text = yaml.safe_dump(new[key], sort_keys=True).splitlines() if key in new else []
        if old_text == new_text:
            continue
        label = "added" if not old_text else "removed" if not new_text else "changed"
        lines = difflib.unified_diff(old_text, new_text, "deployed", "desired", lineterm="", n=2)
        changes.append((key, label, list(lines)[2:]))
    return changes


def manifest_diff(
    before: str | Iterable[Mapping[str, Any]], after: str | Iterable[Mapping[str, Any]]
) -> str:
    """The changes from ``before`` to ``after`` (manifest text or parsed objects); empty when
    they render the same objects."""
    return "\n".join(
        f"{kind}/{name} {label}\n" + "\n".join(lines)
        for (kind, name), label, lines in _changes(_objects(before), _objects(after))
    )


def _table(header: tuple[str, ...], rows: Iterable[tuple[str, ...]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(cell.replace("|", "\\|") for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def _fenced(text: str, language: str) -> str:
    """``text`` in a code fence longer than any backtick run inside it."""
    longest = max((len(run) for run in re.findall(r"`+", text)), default=0)
    fence = "`" * max(3, longest + 1)
    return f"{fence}{language}\n{text}\n{fence}"


def _kinds_table(keys: Iterable[Key]) -> str:
    names: dict[str, list[str]] = {}
    for kind, name in sorted(keys):
        names.setdefault(kind, []).append(name)
    return _table(
        ("Kind", "Count", "Names"),
        ((kind, str(len(found)), ", ".join(found)) for kind, found in names.items()),
    )


def _changes_table(changes: list[tuple[Key, str, list[str]]]) -> str:
    rows = [(kind, name, label) for (kind, name), label, _ in changes]
    return _table(("Kind", "Name", "Change"), rows) if rows else NO_CHANGE


def manifest_summary(manifest: str | Iterable[Mapping[str, Any]]) -> str:
    """A markdown table of the objects ``manifest`` creates: one row per kind, with how many
    and their names, both sorted."""
    return _kinds_table(_objects(manifest))


def diff_summary(
    before: str | Iterable[Mapping[str, Any]], after: str | Iterable[Mapping[str, Any]]
) -> str:
    """A markdown table of the objects that differ from ``before`` to ``after``, one row each
    (kind, name, change), sorted; ``(no change)`` when they render the same objects."""
    return _changes_table(_changes(_objects(before), _objects(after)))


def release_change_markdown(
    before: str | Iterable[Mapping[str, Any]], after: str | Iterable[Mapping[str, Any]]
) -> str:
    """The markdown a release shows for going from ``before`` to ``after`` (manifest text or
    parsed objects). An install (nothing before) gives the object summary, then the whole
    manifest in a fenced block at the end; an upgrade gives the per-object summary, then each
    changed object's unified diff; ``(no change)`` when nothing changed. Secret payloads are
    masked throughout."""
    old, new = _objects(before), _objects(after)
    if not old and new:
        manifest = yaml.safe_dump_all([new[key] for key in sorted(new)], sort_keys=True)
        count = f"{len(new)} object" + ("" if len(new) == 1 else "s")
        return (
            f"**Install**: {count}\n\n{_kinds_table(new)}\n\n"
            f"**Manifest**\n\n{_fenced(manifest.rstrip(), 'yaml')}"
        )
    changes = _changes(old, new)
    if not changes:
        return NO_CHANGE
    diffs = [
        f"**{kind}/{name}** {label}\n\n" + _fenced("\n".join(lines), "diff")
        for (kind, name), label, lines in changes
    ]
    return "\n\n".join(
        [
            f"**Upgrade**: {len(changes)} of {len(old.keys() | new.keys())} objects differ",
            _changes_table(changes),
            *diffs,
        ]
    )
