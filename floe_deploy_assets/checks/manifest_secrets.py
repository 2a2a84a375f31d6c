"""No credential in the rendered objects: the secret rules of ``values/secrets.py`` over every
string field of every rendered object, so what a template builds from values (a ConfigMap's
``catalog.json``, annotations, env values, command arguments) is checked too, not only the
values. A Secret's ``data`` and ``stringData`` are where credentials belong and are skipped (its
metadata is not); ExternalSecret, SecretStore and SealedSecret objects hold references and are
skipped as the values rules skip them. Findings name the object and the JSON pointer inside it,
never the value.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from floe_deploy_assets.values.secrets import find_plaintext_secrets

SECRET_PAYLOAD_FIELDS = ("data", "stringData")


@dataclass(frozen=True, order=True)
class ManifestSecretFinding:
    object: str  # "ConfigMap/floe-jobs-dbt-profiles"
    pointer: str  # RFC 6901, inside the object: "/data/profiles.yml"
    rule: str
    message: str  # the values rule's message for the pointer: never the value

    def __str__(self) -> str:
        return f"{self.object} {self.pointer} [{self.rule}]"


def scannable(obj: Mapping[str, Any]) -> dict[str, Any]:
    """The part of ``obj`` that must hold no credential: all of it but a Secret's payload."""
    if obj.get("kind") != "Secret":
        return dict(obj)
    return {key: value for key, value in obj.items() if key not in SECRET_PAYLOAD_FIELDS}


def find_manifest_secrets(objects: Iterable[Mapping[str, Any]]) -> list[ManifestSecretFinding]:
    """Every credential literal in the rendered ``objects``, sorted by object then pointer."""
    findings = []
    for obj in objects:
        if not isinstance(obj, Mapping):
            continue
        name = (obj.get("metadata") or {}).get("name", "?")
        where = f"{obj.get('kind', '?')}/{name}"
        findings += [
            ManifestSecretFinding(where, found.pointer, found.rule, f"{where}{found.message}")
            for found in find_plaintext_secrets(scannable(obj))
        ]
    return sorted(findings)
