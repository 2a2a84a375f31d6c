"""The secret rules: a values tree holds references to credentials, never credentials.

``find_plaintext_secrets`` walks dicts and lists; only non-empty ``str`` leaves can be findings.
Each leaf gets at most one finding, the most specific rule that matches, in this order:

- ``pem-private-key``, ``vendor-key:<name>`` (AWS, GitHub, Slack, Stripe, Google, JWT, and
  ``url-credentials``: ``user:password@`` in URLs) and ``masked-secret`` (``***``: a credential
  was masked and lost) are value shapes, flagged under any key;
- ``default-credential``: ``minioadmin`` anywhere, ``admin``/``changeme``/... under a secret key;
- ``secret-key-literal``: a secret-like key (detect-secrets' keyword list) holding a literal;
- ``high-entropy``: a token-shaped string above detect-secrets' Shannon limits.

Not flagged, on purpose (false positives make people stop reading findings):

- ``${...}``, ``$(VAR)``, ``{{ ... }}`` and ``ref+...`` placeholders, and "true"/"false"/"null";
- anything under a reference mapping (``existingSecret``, ``secretKeyRef``, ``secretRef``,
  ``valueFrom``, ``envFrom``, ``remoteRef``, ``secretStoreRef``, ``externalSecret(s)``) or in a
  manifest of kind ExternalSecret, SecretStore, ClusterSecretStore or SealedSecret;
- keys that name something other than the credential: ``existing*``, or a last word such as
  ``name``, ``ref``, ``file``, ``path``, ``enabled``, ``url`` (``secretName``, ``tokenUrl``);
- keys naming a key inside a Secret: ``passwordKey``/``tokenKey`` (a password is not a key, so
  ``<password>Key`` must be a key name), and any other ``*Key`` (``secretKey``, ``apiKey``) when
  an ``existingSecret``/``existingSecretName``/``secretName``/``name`` sibling says which Secret;
- annotation and label style keys (``vault.hashicorp.com/agent-inject-secret-db``,
  ``checksum/secret``) for the key rule: tools own their meaning. Value shapes still apply;
- for high entropy: strings shorter than 20, with characters outside base64(url) (so URLs, image
  references, digests with ``sha256:``, DNS names, versions and quantities), without both a
  letter and a digit, UUIDs, absolute paths, and values of checksum-like keys (``tag``,
  ``digest``, ``checksum``, ``hash``, ``sha``, ``commit``, ``revision``, ``version``) or of
  public material (``ca``, ``cert``, ``caBundle``, ``publicKey``).
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from floe_deploy_assets.values.layers import pointer_token


@dataclass(frozen=True)
class SecretFinding:
    pointer: str  # RFC 6901
    rule: str
    message: str  # what is wrong and how to fix it; never the value


@dataclass(frozen=True)
class AllowEntry:
    """Suppresses the finding at exactly ``pointer``; the reason is what a reviewer reads."""

    pointer: str
    reason: str

    def __post_init__(self) -> None:
        if not self.reason.strip():
            raise ValueError(f"allow entry {self.pointer} needs a reason")


SECRET_WORDS = {"password", "passwd", "pwd", "pass", "passphrase", "secret", "token"}
SECRET_WORDS |= {"credential", "credentials", "bearer", "apikey", "accesskey", "privatekey"}
SECRET_WORDS |= {"secretkey", "authkey", "clientsecret"}
SECRET_ENDINGS = ("password", "passwd", "secret", "token")  # dbpassword, accesstoken
# <word>Key where the word is the credential: the key names where the credential is stored.
KEY_NAME_QUALIFIERS = {"password", "passwd", "pwd", "pass", "token", "credential", "credentials"}
KEY_QUALIFIERS = {"api", "access", "private", "auth", "client", "encryption", "signing"}
# A last word that says the value is about the credential, not the credential itself.
NOT_THE_VALUE = {"name", "names", "ref", "file", "path", "dir", "mount", "enabled", "disabled"}
NOT_THE_VALUE |= {"type", "mode", "length", "ttl", "expiry", "expiration", "seconds", "url"}
NOT_THE_VALUE |= {"uri", "endpoint", "header", "policy", "store", "provider", "format", "keys"}
NOT_THE_VALUE |= {"version"}
REFERENCE_KEYS = {"existingsecret", "existingsecretname", "secretkeyref", "secretref"}
REFERENCE_KEYS |= {"valuefrom", "envfrom", "remoteref", "secretstoreref", "externalsecret"}
REFERENCE_KEYS |= {"externalsecrets"}
REFERENCE_KINDS = {"ExternalSecret", "SecretStore", "ClusterSecretStore", "SealedSecret"}
KEY_NAME_SIBLINGS = {"existingsecret", "existingsecretname", "secretname", "name"}
CHECKSUM_WORDS = {"tag", "digest", "checksum", "sha", "sha256", "hash", "commit", "revision"}
CHECKSUM_WORDS |= {"version", "etag", "fingerprint"}
PUBLIC_WORDS = {"ca", "cert", "certificate", "crt", "cabundle", "public", "pub"}
DEFAULT_CREDENTIALS = {"admin", "changeme", "change-me", "password", "postgres", "root", "secret"}
NOT_SECRETS = {"true", "false", "null", "none", "~"}

PLACEHOLDER = re.compile(r"\$\{[^}]*\}|\$\([A-Za-z_][A-Za-z0-9_]*\)|\{\{.*\}\}|^ref\+", re.S)
MASKED = re.compile(r"\*{3,}")
PEM_PRIVATE_KEY = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----")
URL_PASSWORD = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s:@]*:([^/\s]+)@")
VENDOR_KEYS = {
    "aws-access-key": re.compile(r"(?<![A-Z0-9])(AKIA|ASIA)[0-9A-Z]{16}(?![A-Z0-9])"),
    "github-token": re.compile(r"gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}"),
    "slack-token": re.compile(r"xox[baprs]-[A-Za-z0-9-]{10,}"),
    "stripe-key": re.compile(r"(sk|rk)_live_[A-Za-z0-9]{16,}"),
    "google-api-key": re.compile(r"AIza[0-9A-Za-z_-]{35}"),
    "jwt": re.compile(r"eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"),
}
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9+/=_-]{20,}")
HEX = re.compile(r"[0-9a-fA-F]+")
UUID = re.compile(r"[0-9a-fA-F]{8}(-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}")
HEX_LIMIT, BASE64_LIMIT = 3.0, 4.5  # detect-secrets' default Shannon limits

FIX = "store it in a Secret and reference it "
FIX += "(existingSecret + key, secretKeyRef or an ExternalSecret)"
MESSAGES = {
    "pem-private-key": "holds a PEM private key; ",
    "masked-secret": "holds asterisks: a credential was masked away, not referenced; ",
    "default-credential": "holds a well-known default credential; generate a new one, ",
    "secret-key-literal": "holds a literal credential; ",
    "vendor-key:url-credentials": "holds a URL with a user:password part; drop the password, ",
    "high-entropy": "holds a high-entropy string that looks like a credential; if it is one, ",
}
IF_NOT = "; if it is not, add an allow entry with a reason"


@dataclass(frozen=True)
class _Leaf:
    pointer: str
    key: str  # the key that says what the value is (an env entry's name for its value)
    value: str
    in_reference: bool  # under a reference mapping: names, not credentials
    names_a_key: bool  # a *Key next to a Secret name: the name of a key inside that Secret


def _words(key: str) -> list[str]:
    return [w.lower() for w in re.findall(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+", key)]


def _norm(key: str) -> str:
    return re.sub(r"[-_.]", "", key).lower()


def is_secret_key(key: str) -> bool:
    """Whether a key, by its words (camelCase, snake_case, kebab-case), names a credential."""
    words = _words(key)
    if not words or words[0] == "existing" or words[-1] in NOT_THE_VALUE or "/" in key:
        return False
    if len(words) > 1 and words[-1] == "key" and words[-2] in KEY_NAME_QUALIFIERS:
        return False
    pairs = itertools.pairwise(words)
    return any(w in SECRET_WORDS or w.endswith(SECRET_ENDINGS) for w in words) or any(
        a in KEY_QUALIFIERS and b == "key" for a, b in pairs
    )


def _leaves(node: Any, pointer: str, key: str, in_ref: bool, names_a_key: bool) -> Iterator[_Leaf]:
    if isinstance(node, Mapping):
        kind, name = node.get("kind"), node.get("name")
        in_ref = in_ref or (isinstance(kind, str) and kind in REFERENCE_KINDS)
        # {name, key} is the shape of a secretKeyRef, whatever key holds it (credentials:, ...).
        in_ref = in_ref or set(node) == {"name", "key"}
        siblings = {_norm(str(k)) for k in node}
        for raw, child in node.items():
            k = str(raw)
            # Kubernetes env entries: {name: DB_PASSWORD, value: ...} is keyed by its name.
            child_key = name if k == "value" and isinstance(name, str) else k
            child_names_a_key = k.endswith(("Key", "_key", "-key")) and bool(
                siblings & KEY_NAME_SIBLINGS
            )
            child_ref = in_ref or _norm(k) in REFERENCE_KEYS
            child_pointer = f"{pointer}/{pointer_token(k)}"
            yield from _leaves(child, child_pointer, child_key, child_ref, child_names_a_key)
    elif isinstance(node, list | tuple):
        for i, item in enumerate(node):
            yield from _leaves(item, f"{pointer}/{i}", key, in_ref, names_a_key)
    elif isinstance(node, str) and node:
        yield _Leaf(pointer, key, node, in_ref, names_a_key)


def shannon_entropy(text: str) -> float:
    counts = Counter(text)
    return -sum(n / len(text) * math.log2(n / len(text)) for n in counts.values())


def _high_entropy(key: str, value: str) -> bool:
    words = set(_words(key))
    if key.startswith("checksum/") or words & PUBLIC_WORDS or (words & CHECKSUM_WORDS):
        return False
    # Only base64(url)-shaped strings: a ':', '.' or '@' means a URL, image, DNS name or version.
    if not TOKEN_SHAPE.fullmatch(value) or value.startswith("/") or UUID.fullmatch(value):
        return False
    # Random tokens of 20+ characters nearly always mix letters and digits; words and numbers don't.
    if not (re.search(r"[A-Za-z]", value) and re.search(r"[0-9]", value)):
        return False
    limit = HEX_LIMIT if HEX.fullmatch(value) else BASE64_LIMIT
    return shannon_entropy(value) > limit


def _rule(leaf: _Leaf) -> str | None:
    value = leaf.value
    if PEM_PRIVATE_KEY.search(value):
        return "pem-private-key"
    for name, pattern in VENDOR_KEYS.items():
        if pattern.search(value):
            return f"vendor-key:{name}"
    url_password = URL_PASSWORD.search(value)
    # A masked SecretStr dump (or URL password): the credential was lost on the way here.
    if MASKED.fullmatch(value) or (url_password and MASKED.fullmatch(url_password[1])):
        return "masked-secret"
    if url_password and not PLACEHOLDER.search(url_password[1]):
        return "vendor-key:url-credentials"
    # References and switches: a placeholder, "true"/"null", anything under a reference mapping.
    if PLACEHOLDER.search(value) or value.strip().lower() in NOT_SECRETS or leaf.in_reference:
        return None
    secret_key = is_secret_key(leaf.key) and not leaf.names_a_key
    lowered = value.strip().lower()
    if lowered == "minioadmin" or (secret_key and lowered in DEFAULT_CREDENTIALS):
        return "default-credential"
    if secret_key:
        return "secret-key-literal"
    return "high-entropy" if _high_entropy(leaf.key, value) else None


def _message(pointer: str, rule: str) -> str:
    vendor = rule.removeprefix("vendor-key:")
    what = MESSAGES.get(rule, f"holds what looks like a {vendor} credential; ")
    return f"{pointer} {what}{FIX}{IF_NOT if rule == 'high-entropy' else ''}"


def find_plaintext_secrets(
    values: Mapping[str, Any], allow: Iterable[AllowEntry] = ()
) -> list[SecretFinding]:
    """Every credential literal in ``values``, sorted by pointer; messages never hold values."""
    allowed = {entry.pointer for entry in allow}
    findings = [
        SecretFinding(leaf.pointer, rule, _message(leaf.pointer, rule))
        for leaf in _leaves(values, "", "", False, False)
        if leaf.pointer not in allowed and (rule := _rule(leaf)) is not None
    ]
    return sorted(findings, key=lambda f: (f.pointer, f.rule))
