"""The secret rules: a values tree holds references to credentials, never credentials.

``find_plaintext_secrets`` walks dicts and lists; only non-empty ``str`` leaves can be findings,
and numbers under a secret key.
Each leaf gets at most one finding, the most specific rule that matches, in this order:

- ``pem-private-key``, ``vendor-key:<name>`` (AWS, GitHub, Slack, Stripe, Google, JWT, and
  ``url-credentials``: ``user:password@`` in URLs) and ``masked-secret`` (``***``: a credential
  was masked and lost) are value shapes, flagged under any key;
- credentials *inside* strings, flagged under any key (plugin configs, dbt profiles, overrides,
  annotations: a key need not look like a secret), unless the credential part is a placeholder:

  - ``url-token-parameter``: a URL whose query or fragment carries a token-like parameter
    (``access_token``, ``token``, ``api_key``/``apikey``, ``key``, ``secret``, ``password``,
    ``sig``/``signature``, ``X-Amz-Signature``, ``X-Amz-Security-Token``, any secret-like name);
  - ``authorization-header``: ``Bearer <token>``, ``Basic <base64 of user:password>``, an
    ``Authorization: ...`` header line, or any literal under an ``Authorization`` key
    (``header.Authorization``, ``settings.Authorization``) other than a one-word mode;
  - ``connection-string-credential``: ``key=value`` pairs with a secret-like key, as in DSNs,
    ODBC/JDBC connection strings, INI lines and command-line flags (``password=``, ``pwd=``,
    ``PGPASSWORD=``, ``--token=``);
  - ``pgpass-line``: a line ``host:port:database:user:password`` (port digits or ``*``);
  - ``inline-credential``: an embedded YAML/JSON document (a multi-line string, or one that
    starts with ``{``/``[``: inline dbt profiles, ``catalog.json``) holding a finding of any
    rule, or, when it does not parse, a ``password:``/``token:``/``secret:`` line; the message
    names the rule and the path inside the document, never the value;
- ``default-credential``: ``minioadmin`` anywhere, ``admin``/``changeme``/... under a secret key;
- ``secret-key-literal``: a secret-like key (detect-secrets' keyword list) holding a literal,
  a number included (``password: 123456``; booleans are switches);
- ``high-entropy``: a token-shaped string above detect-secrets' Shannon limits.

Not flagged, on purpose (false positives make people stop reading findings):

- ``${...}``, ``$(VAR)``, ``{{ ... }}`` and ``ref+...`` placeholders, and "true"/"false"/"null";
  inside strings also ``$VAR`` and ``%(name)s`` as the credential part (``password=$PGPASSWORD``);
- inside strings: parameters and keys that name something else (``token_type=bearer``,
  ``passfile=``, ``password_file =``), "Bearer" followed by a prose word ("a bearer token"),
  ``Basic`` followed by anything that is not base64 of ``user:password``, a pgpass-like line
  whose host has no letter or dot (``00:11:22:33:44:55``);
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

import base64
import binascii
import itertools
import math
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import yaml

from floe_deploy_assets.values.charts import SAFE_LOADER
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
SECRET_WORDS |= {"secretkey", "authkey", "clientsecret", "pgpass"}
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
# A scheme starts where a word does: without the look-behind, every position of a long word is
# tried as a scheme start (quadratic: minutes for a 400 kB string).
SCHEME = r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]*://"
URL_PASSWORD = re.compile(SCHEME + r"[^/\s:@]*:([^/\s]+)@")
VENDOR_KEYS = {
    "aws-access-key": re.compile(r"(?<![A-Z0-9])(AKIA|ASIA)[0-9A-Z]{16}(?![A-Z0-9])"),
    "github-token": re.compile(r"gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,}"),
    "slack-token": re.compile(r"xox[baprs]-[A-Za-z0-9-]{10,}"),
    "stripe-key": re.compile(r"(sk|rk)_live_[A-Za-z0-9]{16,}"),
    "google-api-key": re.compile(r"AIza[0-9A-Za-z_-]{35}"),
    "jwt": re.compile(r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]+\.eyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+"),
}
TOKEN_SHAPE = re.compile(r"[A-Za-z0-9+/=_-]{20,}")
# --- credentials inside strings --------------------------------------------------------------
URL = re.compile(SCHEME + r"[^\s\"'<>`]+")
# Query parameters that carry a credential whatever they are called next to (normalized: no
# "-", "_" or "."); any other parameter name that names a credential counts too.
TOKEN_PARAMETERS = {"accesstoken", "token", "apikey", "key", "secret", "password", "passwd"}
TOKEN_PARAMETERS |= {"pwd", "sig", "signature", "xamzsignature", "xamzsecuritytoken"}
TOKEN_PARAMETERS |= {"xgoogsignature", "clientsecret", "authtoken", "sessiontoken", "sastoken"}
TOKEN_PARAMETERS |= {"idtoken", "refreshtoken", "codeverifier"}
BEARER = re.compile(r"(?<![A-Za-z0-9_-])bearer\s+([A-Za-z0-9._~+/-]+=*)", re.I)
BASIC = re.compile(r"(?<![A-Za-z0-9_-])basic\s+([A-Za-z0-9+/]{4,}={0,2})(?![A-Za-z0-9+/=])", re.I)
# Words that follow "Bearer" in prose ("a bearer token"), not credentials.
BEARER_PROSE = {"token", "tokens", "credential", "credentials", "authentication", "auth"}
BEARER_PROSE |= {"authorization", "scheme", "header", "headers", "realm", "string", "value"}
AUTHORIZATION_LINE = re.compile(
    r"(?:^|(?<=[\s\"'{,;]))(?:proxy-)?authorization\s*[:=]\s*[\"']?([^\"'\r\n]+)", re.I
)
# key=value in DSNs, connection strings, INI lines and flags; the key is judged by its words.
KEY_VALUE = re.compile(
    r"(?:^|(?<=[\s;&,?\"'{(]))-{0,2}([A-Za-z_][A-Za-z0-9_.-]*)\s*=\s*"
    r"('[^']*'|\"[^\"]*\"|\{[^}]*\}|[^\s;&,'\")]+)"
)
# A line "key: value" of a YAML document that does not parse (or of a log/INI-like string).
KEY_COLON_LINE = re.compile(
    r"^\s*(?:-\s+)?[\"']?([A-Za-z_][A-Za-z0-9_.-]*)[\"']?\s*:\s+(\S.*?)\s*$"
)
_PGPASS_FIELD = r"(?:[^:\s\\#]|\\.)+"
PGPASS_LINE = re.compile(
    rf"^\s*{_PGPASS_FIELD}:(?:\d+|\*):{_PGPASS_FIELD}:{_PGPASS_FIELD}:(\S.*?)\s*$"
)
EMBEDDED_MAX_CHARS = 262_144  # larger strings are not parsed as documents (shapes still apply)
EMBEDDED_MAX_DEPTH = 2  # a document inside a document inside a value
# A lone word under an Authorization key is a mode ("none", "oauth2"), not a credential.
MODE_WORD = re.compile(r"(?=.{1,20}$)[A-Za-z]+(-[A-Za-z]+)*[0-9]?")
SAFE_TOKEN = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,40}|[0-9]{1,6}")
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
    "url-token-parameter": "holds a URL with a credential in its query (access_token, key, sig, "
    "...); drop it from the URL, ",
    "authorization-header": "holds an Authorization header credential (Bearer, Basic, ...); ",
    "connection-string-credential": "holds a connection string or key=value setting with a "
    "credential (password=, pwd=, token=); ",
    "pgpass-line": "holds a pgpass line (host:port:database:user:password); ",
    "high-entropy": "holds a high-entropy string that looks like a credential; if it is one, ",
}
IF_NOT = "; if it is not, add an allow entry with a reason"
# Where a finding is, and what belongs there instead (README: "Secrets an operator must provide").
PLACE_HINTS = (
    (
        "/polaris/config/",
        "the catalog plugin config is refused with a credential: the catalog's credential is "
        "the Secret floe-polaris-credentials, key client-secret",
    ),
    (
        "/dbt/profiles/",
        "dbt profiles with credentials belong in the Secret floe-dbt-profiles, key "
        "profiles.yml (dbt.profiles.source: secret)",
    ),
    ("*/annotations/", "annotations are readable by anyone who may read the object"),
    ("*/labels/", "labels are readable by anyone who may list the object"),
)


@dataclass(frozen=True)
class _Leaf:
    pointer: str
    key: str  # the key that says what the value is (an env entry's name for its value)
    value: str
    in_reference: bool  # under a reference mapping: names, not credentials
    names_a_key: bool  # a *Key next to a Secret name: the name of a key inside that Secret
    numeric: bool = False  # a number (only the key rule applies: ``password: 123456``)


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
    elif isinstance(node, int | float) and not isinstance(node, bool):
        yield _Leaf(pointer, key, str(node), in_ref, names_a_key, numeric=True)


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


def _literal(text: str) -> str | None:
    """The credential part of a match, unquoted; None when it is none: empty, "true"/"null", or
    a placeholder (``${X}``, ``{{ x }}``, ``$(X)``, ``$X``, ``%(x)s``, ``ref+...``)."""
    text = text.strip()
    if len(text) >= 2 and text[0] in "'\"" and text[-1] == text[0]:
        text = text[1:-1].strip()
    if not text or text.lower() in NOT_SECRETS or PLACEHOLDER.search(text):
        return None
    if text.startswith(("${", "{{", "$(", "%(", "ref+")) or re.fullmatch(r"\$\w+", text):
        return None
    return text


def _credential_rule(literal: str | None, rule: str) -> str | None:
    if literal is None:
        return None
    return "masked-secret" if MASKED.fullmatch(literal) else rule


def _url_token_rule(value: str) -> str | None:
    for match in URL.finditer(value):
        try:
            parts = urlsplit(match[0])
        except ValueError:  # an invalid IPv6 host
            continue
        for name, item in parse_qsl(f"{parts.query}&{parts.fragment}"):
            named = _norm(name) in TOKEN_PARAMETERS or is_secret_key(name)
            if named and (rule := _credential_rule(_literal(item), "url-token-parameter")):
                return rule
    return None


def _basic_credentials(token: str) -> bool:
    """Whether ``token`` is base64 of ``user:password`` (what a Basic Authorization holds)."""
    try:
        decoded = base64.b64decode(token + "=" * (-len(token) % 4), validate=True)
    except (binascii.Error, ValueError):
        return False
    text = decoded.decode("utf-8", errors="replace")
    return ":" in text and text.isprintable()


def _authorization_rule(value: str) -> str | None:
    for match in BEARER.finditer(value):
        token = match[1]
        if token.lower() not in BEARER_PROSE and (len(token) >= 6 or not token.isalpha()):
            return "authorization-header"
    if any(_basic_credentials(match[1]) for match in BASIC.finditer(value)):
        return "authorization-header"
    for match in AUTHORIZATION_LINE.finditer(value):
        literal = _literal(match[1])
        if literal is not None and not MODE_WORD.fullmatch(literal):
            return _credential_rule(literal, "authorization-header")
    return None


def _key_value_rule(value: str) -> str | None:
    for match in KEY_VALUE.finditer(value):
        if is_secret_key(match[1]):
            item = match[2]
            if item.startswith("{") and not item.startswith("{{"):  # ODBC: PWD={...}
                item = item[1:-1]
            if rule := _credential_rule(_literal(item), "connection-string-credential"):
                return rule
    return None


def _pgpass_rule(value: str) -> str | None:
    for line in value.splitlines():
        match = PGPASS_LINE.match(line)
        host = line.strip().split(":", 1)[0]
        # A host is "*", a name or an address ("00:11:22:33:44:55" is a MAC address).
        if not match or not (host == "*" or re.search(r"[A-Za-z.]", host)):
            continue
        if rule := _credential_rule(_literal(match[1]), "pgpass-line"):
            return rule
    return None


def _safe_pointer(pointer: str) -> str:
    """A pointer inside an embedded document, with any token that might be a value hidden."""
    tokens = pointer.split("/")[1:]
    shown = [
        token
        if SAFE_TOKEN.fullmatch(token) and _rule(_Leaf("", "", token, False, False), 9) is None
        else "?"
        for token in tokens
    ]
    return "".join(f"/{token}" for token in shown) or "/"


def _embedded_rule(leaf: _Leaf, depth: int) -> tuple[str, str] | None:
    """A finding inside a YAML/JSON document held in a string (inline dbt profiles, a JSON
    ConfigMap entry); for text that is not such a document, a ``password: ...`` line."""
    value = leaf.value
    if depth >= EMBEDDED_MAX_DEPTH or len(value) > EMBEDDED_MAX_CHARS:
        return None
    if "\n" not in value.strip() and value.lstrip()[:1] not in ("{", "["):
        return None
    try:
        parsed = yaml.load_all(value, Loader=SAFE_LOADER)  # libyaml's, when there
        documents = [d for d in parsed if isinstance(d, Mapping | list)]
    except (yaml.YAMLError, RecursionError):  # deep nesting: without libyaml, PyYAML recurses
        documents = []
    for index, document in enumerate(documents):
        # At most 10k leaves: aliases can make a short document enormous.
        inner = _leaves(document, "" if len(documents) == 1 else f"/{index}", "", False, False)
        for found in itertools.islice(inner, 10_000):
            found = _Leaf(
                found.pointer,
                found.key,
                found.value,
                leaf.in_reference or found.in_reference,
                found.names_a_key,
                found.numeric,
            )
            if (result := _rule(found, depth + 1)) is not None:
                return "inline-credential", f"{_safe_pointer(found.pointer)} ({result[0]})"
    if documents:
        return None
    for number, line in enumerate(value.splitlines(), 1):
        match = KEY_COLON_LINE.match(line)
        # Block scalars (|, >) and anchors/aliases (&, *) are not the value itself.
        if not match or not is_secret_key(match[1]) or match[2][:1] in ("|", ">", "&", "*"):
            continue
        if (literal := _literal(match[2].split(" #", 1)[0])) is not None:
            rule = "masked-secret" if MASKED.fullmatch(literal) else "secret-key-literal"
            return "inline-credential", f"line {number} ({rule})"
    return None


def _string_rule(leaf: _Leaf, depth: int) -> tuple[str, str] | None:
    """A credential inside a string, whatever its key: URL parameters, Authorization values,
    key=value settings, pgpass lines, embedded documents."""
    value = leaf.value
    for check in (_url_token_rule, _authorization_rule, _key_value_rule, _pgpass_rule):
        if rule := check(value):
            return rule, ""
    return _embedded_rule(leaf, depth)


def _rule(leaf: _Leaf, depth: int = 0) -> tuple[str, str] | None:
    """The finding of one leaf, (rule, detail), or None; the detail never holds the value."""
    value = leaf.value
    secret_key = is_secret_key(leaf.key) and not leaf.names_a_key
    if leaf.numeric:
        return ("secret-key-literal", "") if secret_key and not leaf.in_reference else None
    if PEM_PRIVATE_KEY.search(value):
        return "pem-private-key", ""
    for name, pattern in VENDOR_KEYS.items():
        if pattern.search(value):
            return f"vendor-key:{name}", ""
    url_password = URL_PASSWORD.search(value)
    # A masked SecretStr dump (or URL password): the credential was lost on the way here.
    if MASKED.fullmatch(value) or (url_password and MASKED.fullmatch(url_password[1])):
        return "masked-secret", ""
    if url_password and not PLACEHOLDER.search(url_password[1]):
        return "vendor-key:url-credentials", ""
    if (inside := _string_rule(leaf, depth)) is not None:
        return inside
    # References and switches: a placeholder, "true"/"null", anything under a reference mapping.
    if PLACEHOLDER.search(value) or value.strip().lower() in NOT_SECRETS or leaf.in_reference:
        return None
    lowered = value.strip().lower()
    if lowered == "minioadmin" or (secret_key and lowered in DEFAULT_CREDENTIALS):
        return "default-credential", ""
    if secret_key:
        return "secret-key-literal", ""
    # header.Authorization, settings.Authorization: anything but a one-word mode ("none").
    authorization = _norm(leaf.key).endswith("authorization") and not leaf.names_a_key
    if authorization and not MODE_WORD.fullmatch(value.strip()):
        return "authorization-header", ""
    return ("high-entropy", "") if _high_entropy(leaf.key, value) else None


def _hint(pointer: str) -> str:
    for prefix, hint in PLACE_HINTS:
        if pointer.startswith(prefix) or (prefix.startswith("*") and prefix[1:] in pointer):
            return f" ({hint})"
    return ""


def _message(pointer: str, rule: str, detail: str = "") -> str:
    vendor = rule.removeprefix("vendor-key:")
    what = MESSAGES.get(rule, f"holds what looks like a {vendor} credential; ")
    if rule == "inline-credential":
        what = f"holds an embedded document with a credential at {detail}; "
    return f"{pointer} {what}{FIX}{IF_NOT if rule == 'high-entropy' else ''}{_hint(pointer)}"


def find_plaintext_secrets(
    values: Mapping[str, Any], allow: Iterable[AllowEntry] = ()
) -> list[SecretFinding]:
    """Every credential literal in ``values``, sorted by pointer; messages never hold values."""
    allowed = {entry.pointer for entry in allow}
    findings = [
        SecretFinding(leaf.pointer, found[0], _message(leaf.pointer, *found))
        for leaf in _leaves(values, "", "", False, False)
        if leaf.pointer not in allowed and (found := _rule(leaf)) is not None
    ]
    return sorted(findings, key=lambda f: (f.pointer, f.rule))
