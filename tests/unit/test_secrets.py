"""The secret rules: each rule flags a credential and passes its look-alike; values never leak."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from floe_deploy_assets.values.secrets import AllowEntry, find_plaintext_secrets, is_secret_key

AWS_KEY = "AKIAIOSFODNN7EXAMPLE"
RANDOM_B64 = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MGFiY2RlZmdoaWprbG1ub3BxcnN0dXZ3eHl6QUJD"


def rules(values: dict) -> dict[str, str]:
    return {finding.pointer: finding.rule for finding in find_plaintext_secrets(values)}


@pytest.mark.parametrize(
    "key",
    [
        "password",
        "dbPassword",
        "api_key",
        "apiKey",
        "accessKey",
        "privateKey",
        "token",
        "clientSecret",
        "bearer_token",
        "credentials",
        "AUTH_KEY",
        "pwd",
    ],
)
def test_secret_like_keys_holding_literals_are_flagged(key: str):
    assert rules({"a": {key: "hunter2-but-longer"}}) == {f"/a/{key}": "secret-key-literal"}


@pytest.mark.parametrize(
    "key",
    [
        "existingSecret",
        "secretName",
        "passwordKey",
        "tokenFile",
        "passwordPath",
        "existingSecretName",
        "tokenAuthEnabled",
        "auth_type",
        "header_name",
        "keyspace",
    ],
)
def test_reference_and_descriptive_keys_are_not_flagged(key: str):
    assert rules({"a": {key: "floe-postgresql"}}) == {}


def test_a_key_name_beside_an_existing_secret_is_a_reference():
    assert rules({"auth": {"existingSecret": "minio", "secretKey": "root-password"}}) == {}
    assert rules({"auth": {"secretKey": "root-password"}}) == {
        "/auth/secretKey": "secret-key-literal"
    }


def test_references_placeholders_and_non_strings_are_not_flagged():
    values = {
        "env": [
            {
                "name": "PGPASSWORD",
                "valueFrom": {"secretKeyRef": {"name": "floe-postgresql", "key": "password"}},
            }
        ],
        "password": "${PGPASSWORD}",
        "token": "{{ .Values.tokenRef }}",
        "secret": "",
        "apiKey": None,
        "passwordEnabled": True,
        "credentials": {"name": "floe-polaris-credentials", "key": "client-secret"},
        "externalSecret": {"remoteRef": {"key": "prod/db", "property": "password"}},
    }
    assert rules(values) == {}


def test_masked_secret_is_flagged_anywhere():
    assert rules({"auth": {"api_key": "**********"}, "note": "***"}) == {
        "/auth/api_key": "masked-secret",
        "/note": "masked-secret",
    }
    assert rules({"note": "a * b"}) == {}


def test_pem_private_keys_are_flagged_but_certificates_are_not():
    key = "-----BEGIN RSA PRIVATE KEY-----\nMIIEow...\n-----END RSA PRIVATE KEY-----"
    certificate = "-----BEGIN CERTIFICATE-----\nMIIB...\n-----END CERTIFICATE-----"
    assert rules({"tls": {"cert": certificate, "material": key}}) == {
        "/tls/material": "pem-private-key"
    }


@pytest.mark.parametrize(
    ("value", "kind"),
    [
        (AWS_KEY, "aws-access-key"),
        ("ghp_" + "a1B2" * 9, "github-token"),
        ("xoxb-1234567890-abcdef", "slack-token"),
        ("sk_live_" + "4eC39HqLyjWDarjt", "stripe-key"),
        ("AIza" + "SyA-" * 8 + "abc", "google-api-key"),
        ("eyJhbGciOiJIUzI1.eyJzdWIiOiIxMjM0.SflKxwRJSMeKKF2Q", "jwt"),
        ("postgresql://dbt:pa55w0rd@db:5432/floe", "url-credentials"),
    ],
)
def test_vendor_key_shapes_are_flagged_under_any_key(value: str, kind: str):
    assert rules({"x": {"note": value}}) == {"/x/note": f"vendor-key:{kind}"}


@pytest.mark.parametrize(
    "value",
    [
        "AKIA-not-a-key",
        "postgresql://db:5432/floe",
        "https://user@host/path",
        "sk_live_short",
    ],
)
def test_vendor_look_alikes_are_not_flagged(value: str):
    assert rules({"x": {"note": value}}) == {}


def test_default_credentials_are_flagged():
    assert rules({"minio": {"rootUser": "minioadmin"}, "db": {"password": "postgres"}}) == {
        "/db/password": "default-credential",
        "/minio/rootUser": "default-credential",
    }
    assert rules({"db": {"user": "postgres"}}) == {}


def test_high_entropy_strings_are_flagged_but_everyday_values_are_not():
    assert rules({"x": {"blob": RANDOM_B64}}) == {"/x/blob": "high-entropy"}
    everyday = {
        "image": "ghcr.io/dagster-io/dagster-celery-k8s:1.13.27",
        "digest": "sha256:" + "ab12" * 16,
        "artifactsDigest": "0f" * 32,
        "annotations": {
            "checksum/config": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
        },
        "endpoint": "http://otel-collector.floe-dev.svc.cluster.local:4317",
        "uid": "123e4567-e89b-12d3-a456-426614174000",
        "host": "polaris.floe-prod.svc.cluster.local",
        "path": "/var/lib/floe/data/warehouse-tables",
        "profiles": "p:\n  target: dev\n  outputs:\n    dev: {type: duckdb}\n",
    }
    assert rules(everyday) == {}


def test_pointers_escape_and_index_lists():
    values = {"a/b": {"c~d": [{"ok": 1}, {"token": "literal-token-value"}]}}
    assert rules(values) == {"/a~1b/c~0d/1/token": "secret-key-literal"}


def test_allow_entries_suppress_exactly_their_pointer_and_need_a_reason():
    values = {"one": {"token": "literal-1"}, "two": {"token": "literal-2"}}
    allowed = find_plaintext_secrets(values, [AllowEntry("/one/token", "a public demo token")])
    assert [f.pointer for f in allowed] == ["/two/token"]
    with pytest.raises(ValueError, match="/one/token needs a reason"):
        AllowEntry("/one/token", " ")


# 16+ characters: shorter values can be words of the fixed text ("exis" in "existingSecret").
@given(
    secret=st.text(
        alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789!#%", min_size=16, max_size=40
    )
)
def test_findings_never_contain_the_value(secret: str):
    for finding in find_plaintext_secrets({"auth": {"password": secret, "x": {"apiKey": secret}}}):
        assert secret not in finding.message and secret not in finding.pointer


@given(name=st.from_regex(r"[a-z][a-z0-9-]{0,30}", fullmatch=True))
def test_secret_key_refs_are_never_flagged(name: str):
    values = {
        "env": {"valueFrom": {"secretKeyRef": {"name": name, "key": "password"}}},
        "existingSecret": name,
        "credentials": {"name": name, "key": "token"},
    }
    assert find_plaintext_secrets(values) == []


def test_key_word_splitting():
    assert is_secret_key("clientSecret") and is_secret_key("DB_PASSWORD")
    assert not is_secret_key("passwordKey") and not is_secret_key("compassDirection")


# --- realistic documents, reference shapes and the finer heuristics ------------------------------
ROOT = Path(__file__).resolve().parents[2]
CLEAN_VALUES = {
    "global": {"environment": "prod", "labels": {"app.kubernetes.io/part-of": "floe"}},
    "floe": {"artifactsDigest": "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"},
    "dagster": {
        "webserver": {
            "image": {"repository": "docker.io/dagster/dagster-k8s", "tag": "1.13.27"},
            "annotations": {
                "checksum/config": "3f2a1b9c4d5e6f70" * 4,
                "checksum/secret": "e3b0c44298fc1c149afbf4c8996fb924" * 2,
                "vault.hashicorp.com/agent-inject-secret-db": "database/creds/floe",
            },
            "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}},
        },
        "userCode": {
            "image": "ghcr.io/acme/customer-360@sha256:" + "0a1b2c3d" * 8,
            "env": [
                {"name": "DAGSTER_HOME", "value": "/opt/dagster/dagster_home"},
                {"name": "OTEL_EXPORTER_OTLP_ENDPOINT", "value": "http://otel:4317"},
                {
                    "name": "DAGSTER_PG_PASSWORD",
                    "valueFrom": {"secretKeyRef": {"name": "floe-postgresql", "key": "password"}},
                },
                {"name": "POLARIS_TOKEN_FILE", "value": "/var/run/secrets/polaris/token"},
                {"name": "POD_UID", "value": "123e4567-e89b-12d3-a456-426614174000"},
            ],
            "envFrom": [{"secretRef": {"name": "floe-dbt-profiles"}}],
            "imagePullSecrets": ["regcred"],
        },
        "postgresql": {"credentials": {"name": "floe-postgresql", "key": "password"}},
    },
    "postgresql": {"auth": {"existingSecret": "floe-postgresql", "passwordKey": "password"}},
    "minio": {
        "image": {"repository": "quay.io/minio/minio", "tag": "RELEASE.2024-10-13T13-34-11Z"},
        "auth": {"existingSecret": "floe-minio", "rootUserKey": "user", "secretKey": "root"},
    },
    "polaris": {
        "auth": {"clientSecretName": "floe-polaris", "tokenUrl": "https://idp.example.com/t"},
        "realm": "floe-customer-360-prod",
        "tokenAuthEnabled": "true",
    },
    "ingress": {"hosts": ["dagster.floe-prod.example.com"], "tls": [{"secretName": "floe-tls"}]},
    "otel": {"headersSecret": {"name": "floe-otel-exporter-auth", "key": "api-key"}},
    "podName": "floe-dagster-webserver-7d9f8b6c5d-x2k4p",
    "models": [{"name": "stg_orders_2024", "dependsOn": ["raw_orders"], "tags": ["daily"]}],
    "ttlSecondsAfterFinished": 3600,
    "dbt": {"profiles": {"inline": "p:\n  outputs:\n    dev: {password: \"{{ env_var('PW') }}\"}"}},
}


def test_a_realistic_clean_values_document_has_no_findings():
    assert find_plaintext_secrets(CLEAN_VALUES) == []


@pytest.mark.parametrize("chart", ["floe-platform", "floe-jobs"])
def test_the_chart_defaults_have_no_findings(chart: str):
    values = yaml.safe_load((ROOT / "charts" / chart / "values.yaml").read_text())
    assert find_plaintext_secrets(values) == []


def test_the_message_names_the_pointer_and_the_fix():
    [finding] = find_plaintext_secrets({"polaris": {"auth": {"clientSecret": "p0laris-s3cret"}}})
    assert finding.message == (
        "/polaris/auth/clientSecret holds a literal credential; store it in a Secret and "
        "reference it (existingSecret + key, secretKeyRef or an ExternalSecret)"
    )


def test_an_env_entry_is_keyed_by_its_name():
    env = [
        {"name": "DB_PASSWORD", "value": "hunter2hunter2"},
        {"name": "API_KEY", "value": "literal-api-key"},
        {"name": "DB_USER", "value": "dbt"},
    ]
    assert rules({"env": env}) == {
        "/env/0/value": "secret-key-literal",
        "/env/1/value": "secret-key-literal",
    }


def test_external_and_sealed_secret_manifests_are_references():
    values = {
        "extraObjects": [
            {
                "kind": "ExternalSecret",
                "spec": {
                    "secretStoreRef": {"name": "vault", "kind": "ClusterSecretStore"},
                    "data": [{"secretKey": "password", "remoteRef": {"key": "floe/db"}}],
                },
            },
            {"kind": "SealedSecret", "spec": {"encryptedData": {"password": "AgB" + "x9Z" * 30}}},
        ]
    }
    assert rules(values) == {}


def test_a_literal_in_a_reference_mapping_is_still_caught_by_its_shape():
    values = {"env": {"valueFrom": {"secretKeyRef": {"name": AWS_KEY, "key": "password"}}}}
    assert rules(values) == {"/env/valueFrom/secretKeyRef/name": "vendor-key:aws-access-key"}


def test_the_most_specific_rule_wins_one_finding_per_pointer():
    values = {"password": "ghp_" + "a1B2" * 9, "token": "changeme", "apiKey": "*****"}
    assert rules(values) == {
        "/apiKey": "masked-secret",
        "/password": "vendor-key:github-token",
        "/token": "default-credential",
    }


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("postgresql://dbt:${PGPASSWORD}@db:5432/floe", None),
        ("postgresql://dbt:{{ .Values.pw }}@db:5432/floe", None),
        ("postgresql://dbt:****@db:5432/floe", "masked-secret"),
        ("s3://bucket/path/with:colon@sign", None),
    ],
)
def test_url_passwords_that_are_placeholders_or_masked(value: str, rule: str | None):
    assert rules({"dsn": value}) == ({"/dsn": rule} if rule else {})


def test_hex_strings_use_the_lower_limit_except_under_checksum_keys():
    sha1 = "3f2a1b9c4d5e6f708192a3b4c5d6e7f809a1b2c3"
    assert rules({"webhook": {"signature": sha1}}) == {"/webhook/signature": "high-entropy"}
    assert rules({"image": {"tag": sha1}, "git": {"commit": sha1}, "floe": {"sha": sha1}}) == {}
    assert rules({"webhook": {"id": "12345678901234567890123"}}) == {}  # digits only


def test_public_material_is_not_high_entropy():
    blob = RANDOM_B64
    assert rules({"webhook": {"caBundle": blob}}) == {}
    assert rules({"webhook": {"blob": blob}}) == {"/webhook/blob": "high-entropy"}


def test_allow_entries_match_pointers_exactly_not_prefixes():
    values = {"a": {"token": "literal-token"}}
    assert rules(values) == {"/a/token": "secret-key-literal"}
    assert find_plaintext_secrets(values, [AllowEntry("/a", "not a prefix")]) != []
    assert find_plaintext_secrets(values, [AllowEntry("/a/token", "demo token")]) == []
    with pytest.raises(ValueError, match="needs a reason"):
        AllowEntry("/a/token", "")


def test_only_non_empty_strings_can_be_findings():
    values = {"password": 12345, "token": True, "secret": None, "apiKey": "", "pwd": "false"}
    assert rules(values) == {}


def test_findings_are_sorted_by_pointer():
    values = {"z": {"password": "literal-z"}, "a": [{"token": "t1-literal"}, {"pwd": "literal"}]}
    assert [f.pointer for f in find_plaintext_secrets(values)] == [
        "/a/0/token",
        "/a/1/pwd",
        "/z/password",
    ]


secret_keys = st.sampled_from(["password", "dbPassword", "api_key", "clientSecret", "TOKEN", "pwd"])
credential_values = st.one_of(
    # 16+ characters: no run that long of these characters is part of any message's fixed text.
    st.text(alphabet=string.ascii_letters + string.digits + "+/_-", min_size=16, max_size=60),
    st.builds(
        lambda s: "postgresql://u:" + s + "@db/x",
        st.from_regex(r"[a-zA-Z0-9]{12,30}", fullmatch=True),
    ),
    st.builds(lambda s: "AKIA" + s, st.from_regex(r"[A-Z0-9]{16}", fullmatch=True)),
)


@given(key=secret_keys, value=credential_values, other=st.sampled_from(["blob", "note", "data"]))
def test_no_rule_ever_echoes_any_part_of_a_value(key: str, value: str, other: str):
    findings = find_plaintext_secrets({"s": {key: value}, "x": [{other: value}]})
    assert [f.pointer for f in findings][:1] == ["/s/" + key]  # a secret key always flags
    for finding in findings:
        assert value not in finding.message
        windows = {value[i : i + 16] for i in range(len(value) - 15)}
        assert not any(window in finding.message for window in windows)


@given(
    key=secret_keys,
    inner=st.from_regex(r"[A-Za-z_][A-Za-z0-9_.' ]{0,30}", fullmatch=True),
    shape=st.sampled_from(["${%s}", "{{ %s }}", "prefix-{{ %s }}-suffix"]),
)
def test_placeholders_under_secret_keys_are_never_flagged(key: str, inner: str, shape: str):
    assert find_plaintext_secrets({"auth": {key: shape % inner}}) == []


@given(key=st.text(alphabet="ab~/.-_ 0é", min_size=1, max_size=12))  # no reference words
def test_pointers_round_trip_any_key(key: str):
    [finding] = find_plaintext_secrets({key: [{"password": "literal-pw"}]})
    token = finding.pointer.removesuffix("/0/password").removeprefix("/")
    assert "/" not in token
    assert token.replace("~1", "/").replace("~0", "~") == key
