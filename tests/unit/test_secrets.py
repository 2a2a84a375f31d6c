"""The secret rules: each rule flags a credential and passes its look-alike; values never leak."""

from __future__ import annotations

import base64
import copy
import functools
import json
import string
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st

from floe_deploy_assets.checks.manifest_secrets import (
    ManifestSecretFinding,
    find_manifest_secrets,
)
from floe_deploy_assets.models.artifacts import ArtifactsError, parse_compiled_artifacts
from floe_deploy_assets.models.config import DeploymentConfig, load_deployment_config
from floe_deploy_assets.models.products import single_product
from floe_deploy_assets.release.diff import manifest_diff, release_change_markdown
from floe_deploy_assets.values.charts import ChartFiles
from floe_deploy_assets.values.generator import HelmValuesGenerator
from floe_deploy_assets.values.mapping import DBT_PROFILES_SECRET
from floe_deploy_assets.values.secrets import AllowEntry, find_plaintext_secrets, is_secret_key
from tests.support.charts import render

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


def test_only_non_empty_strings_and_numbers_under_secret_keys_can_be_findings():
    values = {"token": True, "secret": None, "apiKey": "", "pwd": "false", "port": 5432}
    assert rules(values) == {}
    # A number under a secret key is a (numeric) password, not a switch.
    assert rules({"password": 12345, "tokenTtlSeconds": 60}) == {"/password": "secret-key-literal"}


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


# --- issue 12: credentials inside strings, under any key, from every place ----------------------
# Each planted credential is either referenced from a Secret the operator provides (dbt_profiles:
# the whole profiles go to floe-dbt-profiles) or refused with its JSON pointer (everything else:
# the catalog plugin config, other artifacts fields, overrides, annotations). Either way its
# literal is in no finding, no values that are shown, no rendered object the tool would apply,
# and no diff or release markdown.
CONFIG = load_deployment_config(ROOT / "floe-deploy.yaml")
EXAMPLE = json.loads((ROOT / "examples" / "compiled-artifacts.json").read_text())
REFERENCED = None  # a Plant's `refused_at` when it must become a Secret reference


@dataclass(frozen=True)
class Plant:
    id: str
    chart: str  # "platform" | "jobs"
    literal: str  # what must never come out
    refused_at: str | None  # the pointer of the refusal; None: referenced from a Secret
    artifacts: Callable[[dict], None] | None = None  # plants into the CompiledArtifacts
    overrides: dict | None = None  # plants into floe-deploy.yaml's dev overrides


def dev_output(**fields: Any) -> Callable[[dict], None]:
    def plant(doc: dict) -> None:
        doc["dbt_profiles"]["customer_360"]["outputs"]["dev"].update(fields)

    return plant


def catalog(**fields: Any) -> Callable[[dict], None]:
    def plant(doc: dict) -> None:
        doc["plugins"]["catalog"]["config"].update(fields)

    return plant


def basic(user: str, password: str) -> str:
    return base64.b64encode(f"{user}:{password}".encode()).decode()


PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANPl4ntedPemKey01\n-----END PRIVATE KEY-----"
PLANTS = [
    # dbt_profiles of the artifacts: any credential -> the whole profiles are the operator's Secret
    Plant("profiles-dsn-password", "jobs", "Pl4ntedDsnPw01", REFERENCED, dev_output(
        dsn="host=db port=5432 user=dbt password=Pl4ntedDsnPw01 dbname=floe")),
    Plant("profiles-pgpass-key", "jobs", "Pl4ntedPgpass02", REFERENCED, dev_output(
        pgpass="db.floe.svc:5432:floe:dbt:Pl4ntedPgpass02")),
    Plant("profiles-settings-bearer", "jobs", "Pl4ntedBearer03", REFERENCED, dev_output(
        settings={"Authorization": "Bearer Pl4ntedBearer03"})),
    Plant("profiles-password-key", "jobs", "Pl4ntedPassword04", REFERENCED, dev_output(
        password="Pl4ntedPassword04")),
    Plant("profiles-numeric-password", "jobs", "918273645", REFERENCED, dev_output(
        password=918273645)),
    Plant("profiles-url-userinfo", "jobs", "Pl4ntedUserinfo05", REFERENCED, dev_output(
        uri="postgresql://dbt:Pl4ntedUserinfo05@db:5432/floe")),
    Plant("profiles-url-api-key", "jobs", "Pl4ntedApiKey06", REFERENCED, dev_output(
        host="https://sql.example.com/api?api_key=Pl4ntedApiKey06")),
    Plant("profiles-odbc-pwd", "jobs", "Pl4ntedOdbc07", REFERENCED, dev_output(
        connection_string="Driver={ODBC Driver 18};Server=db;Uid=dbt;Pwd=Pl4ntedOdbc07;")),
    Plant("profiles-basic-header", "jobs", basic("dbt", "Pl4ntedBasic08"), REFERENCED,
          dev_output(settings={"h": "Authorization: Basic " + basic("dbt", "Pl4ntedBasic08")})),
    Plant("profiles-token", "jobs", "dapiPl4ntedToken09", REFERENCED, dev_output(
        token="dapiPl4ntedToken09")),
    Plant("profiles-keyfile-json", "jobs", "Pl4ntedKeyId10", REFERENCED, dev_output(
        keyfile_json={"type": "service_account", "private_key_id": "Pl4ntedKeyId10"})),
    Plant("profiles-pem-key", "jobs", "Pl4ntedPemKey01", REFERENCED, dev_output(
        private_key=PEM)),
    # the catalog plugin config: refused; the catalog's credential is floe-polaris-credentials
    Plant("catalog-header-authorization", "platform", "Pl4ntedCatBearer11",
          "/polaris/config/header.Authorization",
          catalog(**{"header.Authorization": "Bearer Pl4ntedCatBearer11"})),
    Plant("catalog-uri-access-token", "platform", "Pl4ntedAccess12", "/polaris/config/uri",
          catalog(uri="http://polaris:8181/api/catalog?access_token=Pl4ntedAccess12")),
    Plant("catalog-credential", "platform", "Pl4ntedClient13", "/polaris/config/credential",
          catalog(credential="floe-client:Pl4ntedClient13")),
    Plant("catalog-token", "platform", "Pl4ntedCatToken14", "/polaris/config/token",
          catalog(token="Pl4ntedCatToken14")),
    Plant("catalog-uri-userinfo", "platform", "Pl4ntedRootPw15", "/polaris/config/uri",
          catalog(uri="http://root:Pl4ntedRootPw15@polaris:8181/api/catalog")),
    Plant("catalog-presigned-warehouse", "platform", "Pl4ntedSig16", "/polaris/config/warehouse",
          catalog(warehouse="https://b.s3.amazonaws.com/w?X-Amz-Signature=Pl4ntedSig16")),
    Plant("catalog-basic-authorization", "platform", basic("root", "Pl4ntedCatBasic17"),
          "/polaris/config/header.Authorization",
          catalog(**{"header.Authorization": "Basic " + basic("root", "Pl4ntedCatBasic17")})),
    Plant("catalog-header-api-key", "platform", "Pl4ntedXApiKey18",
          "/polaris/config/header.X-Api-Key",
          catalog(**{"header.X-Api-Key": "Pl4ntedXApiKey18"})),
    # other artifacts fields that pass through: refused
    Plant("artifacts-otlp-endpoint-api-key", "platform", "Pl4ntedOtlpKey19",
          "/otel/config/endpoint",
          lambda doc: doc["observability"]["telemetry"].update(
              otlp_endpoint="https://otlp.example.com:4318/v1?api_key=Pl4ntedOtlpKey19")),
    # overrides in floe-deploy.yaml and annotations: refused
    Plant("override-polaris-header-authorization", "platform", "Pl4ntedOvBearer21",
          "/polaris/config/header.Authorization",
          overrides={"polaris": {"config": {"header.Authorization": "Bearer Pl4ntedOvBearer21"}}}),
    Plant("override-ingress-annotation-bearer", "platform", "Pl4ntedIngress22",
          "/ingress/annotations/nginx.ingress.kubernetes.io~1configuration-snippet",
          overrides={"ingress": {"enabled": True, "annotations": {
              "nginx.ingress.kubernetes.io/configuration-snippet":
                  'proxy_set_header Authorization "Bearer Pl4ntedIngress22";'}}}),
    Plant("override-ingress-annotation-url-token", "platform", "Pl4ntedAuthUrl23",
          "/ingress/annotations/nginx.ingress.kubernetes.io~1auth-url",
          overrides={"ingress": {"enabled": True, "annotations": {
              "nginx.ingress.kubernetes.io/auth-url": "https://auth.example.com/?token=Pl4ntedAuthUrl23"}}}),
    Plant("override-otel-exporter-endpoint", "platform", "Pl4ntedExporter24",
          "/otel/exporters/endpoint",
          overrides={"otel": {"exporters": {"backend": "otlp",
              "endpoint": "https://otlp.example.com/?apikey=Pl4ntedExporter24"}}}),
    Plant("override-dbt-inline-password", "jobs", "Pl4ntedInline25", "/dbt/profiles/inline",
          overrides={"dbt": {"profiles": {"source": "inline", "inline":
              "p:\n  target: dev\n  outputs:\n    dev:\n      type: postgres\n"
              "      password: Pl4ntedInline25\n"}}}),
    Plant("override-dbt-inline-flow-json", "jobs", "Pl4ntedInline26", "/dbt/profiles/inline",
          overrides={"dbt": {"profiles": {"source": "inline", "inline":
              '{"p": {"outputs": {"dev": {"type": "databricks", "token": "Pl4ntedInline26"}}}}'}}}),
    Plant("override-dbt-inline-ini", "jobs", "Pl4ntedInline27", "/dbt/profiles/inline",
          overrides={"dbt": {"profiles": {"source": "inline", "inline":
              "[dev]\nhost = db\npassword = Pl4ntedInline27\n"}}}),
    Plant("override-floe-product-version-url", "jobs", "Pl4ntedVersion28",
          "/floe/productVersion",
          overrides={"floe": {"productVersion": "https://u:Pl4ntedVersion28@git.example.com/x"}}),
]  # fmt: skip


def _config(overrides: dict | None) -> DeploymentConfig:
    if not overrides:
        return CONFIG
    document = CONFIG.to_document()
    document["overrides"] = {"dev": {chart: overrides for chart in ("platform", "jobs")}}
    config = DeploymentConfig.model_validate(document)
    config._base_dir = ROOT
    return config


def _generator(plant: Plant | None, chart: str) -> HelmValuesGenerator:
    document = copy.deepcopy(EXAMPLE)
    if plant and plant.artifacts:
        plant.artifacts(document)
    config = _config(plant.overrides if plant else None)
    files = ChartFiles(config.chart_path(chart))  # type: ignore[arg-type]
    return HelmValuesGenerator(
        [single_product(parse_compiled_artifacts(json.dumps(document)))],
        "dev",
        files.defaults(),
        config=config,
        chart=chart,  # type: ignore[arg-type]
        schema=files.schema(),
    )


def _objects(generator: HelmValuesGenerator) -> list[dict]:
    return render(generator.chart, generator.helm_values()).objects


@functools.cache
def _clean_objects(chart: str) -> list[dict]:
    return _objects(_generator(None, chart))


def _secret_literals(plant: Plant) -> list[str]:
    """The planted literal, and the password inside a Basic credential."""
    literals = [plant.literal]
    if "Basic" in plant.id or "basic" in plant.id:
        literals.append(base64.b64decode(plant.literal).decode().split(":", 1)[1])
    return literals


def test_there_are_at_least_25_planted_credentials_and_each_is_unique():
    assert len(PLANTS) >= 25
    assert len({p.id for p in PLANTS}) == len({p.literal for p in PLANTS}) == len(PLANTS)


@pytest.mark.parametrize("plant", PLANTS, ids=lambda p: p.id)
def test_a_planted_credential_is_referenced_or_refused_and_never_comes_out(plant: Plant):
    generator = _generator(plant, plant.chart)
    problems = generator.validate()
    findings_text = "\n".join(f"{p} [{p.rule}]" for p in problems)
    objects = _objects(generator)
    clean_objects = _clean_objects(plant.chart)
    outputs = [
        findings_text,
        release_change_markdown("", objects),  # an install's release metadata
        release_change_markdown(clean_objects, objects),  # an upgrade's
        manifest_diff(clean_objects, objects),  # deploy --dry-run
        "\n".join(f.message for f in find_manifest_secrets(objects)),
    ]
    if plant.refused_at is None:
        # Referenced: valid values that hold only a reference to the operator's Secret.
        assert problems == []
        profiles = generator.generate()["dbt"]["profiles"]
        assert profiles["source"] == "secret" and "inline" not in profiles
        assert profiles["existingSecret"] == DBT_PROFILES_SECRET
        assert DBT_PROFILES_SECRET in {s.name for s in generator.required_secrets}
        outputs += [yaml.safe_dump(generator.generate()), yaml.safe_dump_all(objects)]
        assert find_manifest_secrets(objects) == []
        assert ("ConfigMap", "floe-jobs-dbt-profiles") not in {
            (o["kind"], o["metadata"]["name"]) for o in objects
        }
    else:
        # Refused: the secret rules name the pointer (the schema is fine), so `values`, `render`
        # and `deploy` exit 1 and the Dagster check no_plaintext_secrets fails.
        assert [p for p in problems if p.rule == "schema"] == []
        assert plant.refused_at in {p.pointer for p in problems}
        # Rendered anyway (the tool never does): the manifest-level check flags every object
        # that carries it.
        carrying = {
            f"{o['kind']}/{o['metadata']['name']}"
            for o in objects
            if any(literal in yaml.safe_dump(o) for literal in _secret_literals(plant))
        }
        assert carrying <= {f.object for f in find_manifest_secrets(objects)}
    for literal in _secret_literals(plant):
        assert not [output for output in outputs if literal in output], plant.id


def test_a_refused_catalog_credential_names_the_operators_secret():
    (plant,) = [p for p in PLANTS if p.id == "catalog-header-authorization"]
    (problem,) = _generator(plant, "platform").validate()
    assert problem.rule == "authorization-header"
    assert "floe-polaris-credentials" in problem.message


@pytest.mark.parametrize("chart", ["platform", "jobs"])
@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_the_rendered_example_has_no_manifest_findings(chart: str, environment: str):
    generator = _generator(None, chart)
    assert generator.validate() == []
    assert find_manifest_secrets(_objects(generator)) == []


FALSE_POSITIVE_CATALOG = {
    "warehouse": "floe",
    "uri": "http://polaris:8181/api/catalog",
    "header.X-Iceberg-Access-Delegation": "vended-credentials",
    "oauth2-server-uri": "https://idp.example.com/realms/floe/protocol/openid-connect/token",
    "token_endpoint": "https://idp.example.com/oauth2/token?audience=polaris&grant_type=x",
    "password_secret_ref": "floe-polaris-credentials",
    "scope": "PRINCIPAL_ROLE:ALL",
    "token-refresh-enabled": True,
    "header.Authorization": "${POLARIS_AUTHORIZATION}",
}


def test_plain_catalog_config_passes_and_shows_in_the_diff():
    document = copy.deepcopy(EXAMPLE)
    document["plugins"]["catalog"]["config"] = FALSE_POSITIVE_CATALOG
    files = ChartFiles(CONFIG.chart_path("platform"))
    generator = HelmValuesGenerator(
        [single_product(parse_compiled_artifacts(json.dumps(document)))],
        "dev",
        files.defaults(),
        config=CONFIG,
        chart="platform",
        schema=files.schema(),
    )
    assert generator.validate() == []
    assert generator.generate()["polaris"]["config"] == FALSE_POSITIVE_CATALOG
    objects = _objects(generator)
    assert find_manifest_secrets(objects) == []
    markdown = release_change_markdown("", objects)
    assert "vended-credentials" in markdown and "http://polaris:8181/api/catalog" in markdown


def test_dbt_profiles_without_credentials_stay_inline():
    document = copy.deepcopy(EXAMPLE)
    document["dbt_profiles"]["customer_360"]["outputs"]["dev"] = {
        "type": "postgres",
        "host": "db.floe-dev.svc",
        "port": 5432,
        "user": "dbt",
        "password": "{{ env_var('DBT_PASSWORD') }}",
        "password_secret_ref": "floe-postgresql",
        "dbname": "floe",
        "threads": 4,
        "keepalives_idle": 0,
        "settings": {"X-Request-Source": "floe", "Authorization": "{{ env_var('DBT_AUTH') }}"},
    }
    files = ChartFiles(CONFIG.chart_path("jobs"))
    generator = HelmValuesGenerator(
        [single_product(parse_compiled_artifacts(json.dumps(document)))],
        "dev",
        files.defaults(),
        config=CONFIG,
        chart="jobs",
        schema=files.schema(),
    )
    assert generator.validate() == []
    assert generator.generate()["dbt"]["profiles"]["source"] == "inline"
    assert find_manifest_secrets(_objects(generator)) == []


@pytest.mark.parametrize(
    "values",
    [
        {"uri": "http://polaris:8181/api/catalog"},
        {"header.X-Iceberg-Access-Delegation": "vended-credentials"},
        {"token_endpoint": "https://idp.example.com/oauth2/token"},
        {"tokenUrl": "https://idp.example.com/token?audience=floe&token_type=bearer"},
        {"password_secret_ref": "floe-db/password"},
        {
            "env": [
                {"name": "PGPASSWORD", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}
            ]
        },
        {"credentials": {"name": "floe-polaris-credentials", "key": "client-secret"}},
        {"dsn": "host=db user=dbt password=${PGPASSWORD} dbname=floe"},
        {"dsn": "host=db user=dbt password={{ env_var('PW') }}"},
        {"dsn": "host=db user=dbt sslmode=require passfile=/etc/pgpass"},
        {"args": ["--password-file=/var/run/secrets/db/password", "--token-ttl=3600"]},
        {"note": "clients send a bearer token from the IdP; Basic auth is off"},
        {"authorization": "oauth2", "proxy-authorization": "none"},
        {"otel": "headers:\n  authorization: ${env:OTEL_EXPORTER_AUTHORIZATION}\n"},
        {"mac": "00:11:22:33:44:55", "time": "12:30:45", "scope": "PRINCIPAL_ROLE:ALL"},
        {"selector": "app=web,tier=db", "image": "registry:5000/floe/dbt:1.8"},
        {"link": "https://x.example.com/api?page=2&sort=name#section-token"},
        {"profiles": "p:\n  outputs:\n    dev: {type: duckdb, path: /tmp/p.duckdb}\n"},
        {"ini": "[db]\nhost = db\npassword_file = /run/secrets/pw\n"},
        {"pgpassFile": "/home/dbt/.pgpass", "pgpass_path": "/home/dbt/.pgpass"},
    ],
    ids=lambda v: next(iter(v)),
)
def test_look_alikes_of_credentials_inside_strings_pass(values: dict):
    assert rules(values) == {}


@pytest.mark.parametrize(
    ("value", "rule"),
    [
        ("host=db user=dbt password=Lit3ral-pw dbname=floe", "connection-string-credential"),
        (
            "Server=db;Database=floe;User Id=dbt;Password=Lit3ral-pw;",
            "connection-string-credential",
        ),
        ("PGPASSWORD=Lit3ral-pw dbt run", "connection-string-credential"),
        ("dbt run --token=Lit3ral-pw", "connection-string-credential"),
        ("host=db password=****", "masked-secret"),
        ("db:5432:floe:dbt:Lit3ral-pw", "pgpass-line"),
        ("*:*:*:dbt:Lit3ral-pw\n", "pgpass-line"),
        ("Bearer Lit3ral-token", "authorization-header"),
        ("Authorization: token Lit3ral-token", "authorization-header"),
        ("Basic " + basic("u", "Lit3ral-pw"), "authorization-header"),
        ("https://h/x?access_token=Lit3ral-token", "url-token-parameter"),
        ("https://h/x?apikey=Lit3ral-token", "url-token-parameter"),
        ("https://h/x?key=Lit3ral-token", "url-token-parameter"),
        ("https://h/x?sig=Lit3ral-token", "url-token-parameter"),
        ("https://h/x?client_secret=Lit3ral-token", "url-token-parameter"),
        ("https://h/cb#access_token=Lit3ral-token&token_type=bearer", "url-token-parameter"),
        ("p:\n  outputs:\n    dev: {password: Lit3ral-pw}\n", "inline-credential"),
        ('{"settings": {"Authorization": "Bearer Lit3ral-token"}}', "authorization-header"),
        ('{"settings": {"Authorization": "token-Lit3ral-token"}}', "inline-credential"),
        ("password: Lit3ral-pw\n  bad: [yaml\n", "inline-credential"),
    ],
)
def test_credentials_inside_strings_are_flagged_under_any_key(value: str, rule: str):
    findings = find_plaintext_secrets({"plugin": {"note": value}})
    assert [(f.pointer, f.rule) for f in findings] == [("/plugin/note", rule)]
    assert "Lit3ral" not in findings[0].message


def test_an_embedded_finding_names_its_path_inside_the_document_not_the_value():
    inline = "p:\n  outputs:\n    dev:\n      password: Lit3ral-pw\n"
    (finding,) = find_plaintext_secrets({"dbt": {"profiles": {"inline": inline}}})
    assert "at /p/outputs/dev/password (secret-key-literal)" in finding.message
    assert "floe-dbt-profiles" in finding.message and "Lit3ral" not in finding.message
    # A key that looks like a credential itself is not shown.
    keyed_by_value = {"inline": "Lit3ralQx9Zk27Wm5Rb8Tn4Y:\n  password: Lit3ral-pw\n"}
    (finding,) = find_plaintext_secrets(keyed_by_value)
    assert "Lit3ral" not in finding.message and "at /?/password" in finding.message


SHAPES = [
    "host=db user=dbt password={} dbname=floe",
    "db.floe:5432:floe:dbt:{}",
    "Bearer {}",
    "http://polaris:8181/api/catalog?access_token={}",
    "https://u:{}@h/x",
    "p:\n  outputs:\n    dev:\n      token: {}\n",
    "[db]\npwd = {}\n",
]


@given(
    shape=st.sampled_from(SHAPES),
    secret=st.from_regex(r"[A-Za-z][A-Za-z0-9]{11,30}", fullmatch=True),
    key=st.sampled_from(["uri", "header.Authorization", "dsn", "note", "nginx.io/snippet"]),
)
def test_a_credential_in_any_shape_under_any_key_is_flagged_and_never_echoed(
    shape: str, secret: str, key: str
):
    findings = find_plaintext_secrets({"p": {key: shape.format(secret)}})
    assert len(findings) == 1
    assert secret not in findings[0].message and secret not in findings[0].pointer


def test_the_manifest_check_scans_every_object_but_secret_payloads():
    objects = [
        {
            "kind": "Deployment",
            "metadata": {"name": "web", "annotations": {"a.io/x": "Bearer Lit3ral-token"}},
            "spec": {"template": {"spec": {"containers": [{
                "name": "c",
                "args": ["--dsn=host=db password=Lit3ral-pw"],
                "env": [{"name": "DB_PASSWORD", "value": "Lit3ral-pw"},
                        {"name": "PGPASSWORD",
                         "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}}],
            }]}}},
        },
        {"kind": "ConfigMap", "metadata": {"name": "c"},
         "data": {"catalog.json": '{"uri": "http://p?access_token=Lit3ral-token"}', "ok": "1"}},
        {"kind": "Secret", "metadata": {"name": "s", "labels": {"x": "y"}},
         "stringData": {"password": "Lit3ral-pw"}, "data": {"token": "TGl0M3JhbA=="}},
        {"kind": "ExternalSecret", "metadata": {"name": "e"},
         "spec": {"data": [{"secretKey": "password", "remoteRef": {"key": "floe/db"}}]}},
    ]  # fmt: skip
    findings = find_manifest_secrets(objects)
    assert [str(f) for f in findings] == [
        "ConfigMap/c /data/catalog.json [url-token-parameter]",
        "Deployment/web /metadata/annotations/a.io~1x [authorization-header]",
        "Deployment/web /spec/template/spec/containers/0/args/0 [connection-string-credential]",
        "Deployment/web /spec/template/spec/containers/0/env/0/value [secret-key-literal]",
    ]
    assert all(isinstance(f, ManifestSecretFinding) for f in findings)
    assert not [f for f in findings if "Lit3ral" in f.message]
    secret_metadata = {
        "kind": "Secret",
        "metadata": {"name": "s", "annotations": {"n": "Bearer Lit3ral-token"}},
    }
    assert [f.object for f in find_manifest_secrets([secret_metadata])] == ["Secret/s"]


def test_long_strings_are_scanned_in_linear_time():
    # Scheme and JWT patterns once tried every position of a long word: minutes for 400 kB.
    import time

    values = {"a": "password" * 50_000, "b": "eyJ" * 50_000, "c": "a" * 200_000}
    started = time.monotonic()
    assert find_plaintext_secrets(values) == []
    assert time.monotonic() - started < 5


def test_a_model_tag_that_is_not_a_name_is_refused_when_the_artifacts_load_and_never_echoed():
    """Model tags become Dagster tag keys: Dagster would refuse a credential-bearing tag while
    loading the code location, with the tag in its message. The artifacts refuse it first."""
    document = copy.deepcopy(EXAMPLE)
    document["transforms"]["models"][0]["tags"] = ["host=db user=dbt password=Pl4ntedTagPw20"]
    with pytest.raises(ArtifactsError) as refused:
        parse_compiled_artifacts(json.dumps(document))
    assert "transforms.models[0].tags: tag 0 is not a short name" in str(refused.value)
    assert "Pl4ntedTagPw20" not in str(refused.value)
