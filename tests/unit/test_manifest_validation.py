"""Schema validation of rendered objects against the Kubernetes versions we target."""

from __future__ import annotations

import copy
from typing import Any

import kubernetes_validate
import pytest
from kubernetes_validate.utils import VersionNotSupportedError

from floe_deploy_assets.checks.manifests import (
    ManifestProblem,
    supported_versions,
    validate_manifests,
)

VERSIONS = ("1.28", "1.33")


def deployment() -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "annotations": {"helm.sh/hook-weight": "1"}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {
                    "containers": [
                        {
                            "name": "web",
                            "image": "ghcr.io/floe/web:1.0",
                            "ports": [{"containerPort": 8080}],
                            "resources": {"limits": {"cpu": "1", "memory": "1Gi"}},
                        }
                    ]
                },
            },
        },
    }


def cronjob(api_version: str) -> dict[str, Any]:
    pod = deployment()["spec"]["template"]
    pod["spec"]["restartPolicy"] = "Never"
    return {
        "apiVersion": api_version,
        "kind": "CronJob",
        "metadata": {"name": "nightly"},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": {"template": pod}}},
    }


def test_a_valid_deployment_passes_every_target_version():
    assert validate_manifests([deployment()], VERSIONS) == []
    for version in VERSIONS:  # and the library's own validate agrees
        kubernetes_validate.validate(deployment(), version, strict=True)


def test_an_unknown_field_is_reported_with_its_path_in_strict_mode_only():
    obj = deployment()
    obj["spec"]["template"]["spec"]["containers"][0]["imagePullPolice"] = "Always"
    problems = validate_manifests([obj], VERSIONS)
    assert problems == [
        ManifestProblem(
            "Deployment/web",
            version,
            "spec.template.spec.containers[0].imagePullPolice",
            "unknown field 'imagePullPolice'",
        )
        for version in VERSIONS
    ]
    assert validate_manifests([obj], VERSIONS, strict=False) == []
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(obj, "1.33", strict=True)


def test_a_wrong_type_is_reported():
    obj = deployment()
    obj["spec"]["replicas"] = "2"  # a quoted number, a common templating slip
    obj["spec"]["template"]["spec"]["containers"][0]["ports"][0]["containerPort"] = "http"
    problems = validate_manifests([obj], ["1.33"], strict=False)
    assert [(p.path, p.message) for p in problems] == [
        ("spec.replicas", "expected integer, got string '2'"),
        (
            "spec.template.spec.containers[0].ports[0].containerPort",
            "expected integer, got string 'http'",
        ),
    ]


def test_every_error_is_reported_not_just_the_first():
    obj = deployment()
    del obj["spec"]["selector"]
    obj["metadata"]["annotations"]["checksum/config"] = 5
    obj["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"] = {"a": 1}
    problems = {(p.path, p.message) for p in validate_manifests([obj], ["1.28"])}
    assert problems == {
        ("spec.selector", "required field is missing"),
        ('metadata.annotations["checksum/config"]', "expected string, got integer 5"),
        (
            "spec.template.spec.containers[0].resources.limits.cpu",
            "expected string or number, got object",
        ),
    }


def test_messages_never_dump_the_object():
    obj = deployment()
    big = {f"key{i}": "x" * 50 for i in range(100)}
    obj["spec"]["template"]["spec"]["containers"] = big
    obj["metadata"]["name"] = big
    problems = validate_manifests([obj], ["1.33"])
    assert problems
    assert all(len(p.message) < 200 and "key1" not in p.message for p in problems)


@pytest.mark.parametrize(
    ("obj", "served"),
    [
        (cronjob("batch/v1beta1"), "batch/v1"),
        (
            {
                "apiVersion": "policy/v1beta1",
                "kind": "PodDisruptionBudget",
                "metadata": {"name": "p"},
            },
            "policy/v1",
        ),
        (
            {"apiVersion": "extensions/v1beta1", "kind": "Ingress", "metadata": {"name": "i"}},
            "networking.k8s.io/v1",
        ),
    ],
)
def test_removed_apis_are_reported_as_not_served(obj, served):
    problems = validate_manifests([obj], VERSIONS)
    assert [(p.kube_version, p.path) for p in problems] == [(v, "apiVersion") for v in VERSIONS]
    for problem in problems:
        assert "is not served by Kubernetes " + problem.kube_version in problem.message
        assert problem.message.endswith(f"use {served}")


def test_batch_v1_cronjob_passes():
    assert validate_manifests([cronjob("batch/v1")], VERSIONS) == []


def test_custom_resources_are_reported_unless_their_group_is_known():
    secret = {
        "apiVersion": "external-secrets.io/v1beta1",
        "kind": "ExternalSecret",
        "metadata": {"name": "s"},
    }
    crd = {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {"name": "externalsecrets.external-secrets.io"},
        "spec": {"group": "external-secrets.io"},
    }
    [problem] = validate_manifests([secret], ["1.33"])
    assert "unknown API group 'external-secrets.io'" in problem.message
    assert (
        validate_manifests([secret], ["1.33"], custom_resource_groups=["external-secrets.io"]) == []
    )
    # A CRD in the same set declares the group (the CRD itself is checked: it lacks fields).
    assert {p.object for p in validate_manifests([secret, crd], ["1.33"])} == {
        "CustomResourceDefinition/externalsecrets.external-secrets.io"
    }


def test_documents_that_are_not_objects():
    problems = validate_manifests([None, "text", {"kind": "Pod"}], ["1.28"])
    assert [(p.object, p.path, p.message) for p in problems] == [
        ("<document 1>", "", "expected a Kubernetes object (a mapping), got string"),
        ("Pod/<document 2>", "", "apiVersion and kind must be set"),
    ]


@pytest.mark.parametrize("version", ["1.28", "v1.28", "1.28.7", "v1.28.7-gke.1200"])
def test_version_spellings(version):
    obj = copy.deepcopy(deployment())
    obj["spec"]["bogus"] = 1
    [problem] = validate_manifests([obj], [version])
    assert problem.kube_version == "1.28"


@pytest.mark.parametrize("version", ["1.20", "1.99", "latest"])
def test_versions_without_schemas_raise(version):
    with pytest.raises(VersionNotSupportedError):
        validate_manifests([deployment()], [version])


def test_supported_versions_cover_our_targets():
    assert {"1.25", "1.28", "1.33", "1.37"} <= set(supported_versions())
