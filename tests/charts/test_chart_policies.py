"""Every object both charts render, for every environment: valid for Kubernetes 1.28 and 1.33
in strict mode, and every pod spec passes the static policy (Pod Security restricted, resources,
probes, pinned images, service-account tokens only where needed, read-only root)."""

from __future__ import annotations

import pytest

from floe_deploy_assets.checks.manifests import validate_manifests
from floe_deploy_assets.checks.pod_policy import check_pod_policy, policy_report
from tests.support.charts import generated_values, render


def _all_objects(environment: str) -> list[dict]:
    jobs = generated_values("jobs", environment)
    jobs["models"][-1]["schedule"] = "0 3 * * *"  # a CronJob too
    jobs["run"] = {"model": jobs["models"][0]["name"], "jobName": "policy-check-1"}
    platform = generated_values("platform", environment)
    for feature in ("podDisruptionBudget", "resourceQuota", "networkPolicy", "ingress"):
        platform[feature]["enabled"] = True
    platform["dagster"]["webserver"]["autoscaling"]["enabled"] = True
    platform["marquez"]["enabled"] = True
    platform["minio"]["enabled"] = environment != "prod"  # refused in production
    return [*render("platform", platform).objects, *render("jobs", jobs).objects]


@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_rendered_objects_are_valid_for_kubernetes_1_28_and_1_33(environment: str):
    objects = _all_objects(environment)

    assert {o["kind"] for o in objects} >= {
        "Deployment",
        "StatefulSet",
        "Job",
        "CronJob",
        "Pod",
        "HorizontalPodAutoscaler",
        "NetworkPolicy",
        "Ingress",
        "ResourceQuota",
    }
    assert validate_manifests(objects, kube_versions=("1.28", "1.33"), strict=True) == []


@pytest.mark.parametrize("environment", ["dev", "staging", "prod"])
def test_every_pod_spec_meets_the_policy(environment: str):
    violations = check_pod_policy(_all_objects(environment))
    assert violations == [], policy_report(violations)


def test_the_policy_check_would_catch_a_regression():
    objects = _all_objects("dev")
    webserver = next(
        o
        for o in objects
        if o["metadata"]["name"] == "floe-platform-dagster-webserver" and o["kind"] == "Deployment"
    )
    webserver["spec"]["template"]["spec"]["containers"][0]["securityContext"][
        "allowPrivilegeEscalation"
    ] = True

    rules = {v.rule for v in check_pod_policy(objects)}

    assert rules == {"pss-privilege-escalation"}
