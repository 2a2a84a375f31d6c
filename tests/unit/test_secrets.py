"""The secret rules: each rule flags a credential and passes its look-alike; values never leak."""

from __future__ import annotations

import pytest
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


@given(
    secret=st.text(
        alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789!#%", min_size=4, max_size=40
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
