"""Pod policy: PSS restricted (with PSA's pod-level fallback) plus the linter rules."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from floe_deploy_assets.checks.pod_policy import (
    ImageRef,
    PolicyViolation,
    check_pod_policy,
    parse_image,
    pod_specs,
    policy_report,
)


def container(name: str = "app") -> dict[str, Any]:
    return {
        "name": name,
        "image": "ghcr.io/floe/app:1.2.3",
        "resources": {
            "requests": {"cpu": "100m", "memory": "128Mi"},
            "limits": {"cpu": "1", "memory": "512Mi"},
        },
        "readinessProbe": {"httpGet": {"path": "/ready", "port": 8080}},
        "livenessProbe": {"httpGet": {"path": "/live", "port": 8080}},
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]},
        },
    }


def template(*containers: dict[str, Any]) -> dict[str, Any]:
    # runAsNonRoot and seccomp only at pod level: containers inherit them, as under PSA.
    return {
        "metadata": {"labels": {"app": "x"}},
        "spec": {
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": 1000,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": list(containers) or [container()],
        },
    }


def deployment(name: str = "web", pod: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": name},
        "spec": {"selector": {"matchLabels": {"app": "x"}}, "template": pod or template()},
    }


def job(name: str = "migrate") -> dict[str, Any]:
    pod = template()
    pod["spec"]["restartPolicy"] = "Never"
    for c in pod["spec"]["containers"]:
        del c["readinessProbe"], c["livenessProbe"]  # a Job needs no probes
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name},
        "spec": {"template": pod},
    }


def cronjob(name: str = "nightly", api_version: str = "batch/v1") -> dict[str, Any]:
    return {
        "apiVersion": api_version,
        "kind": "CronJob",
        "metadata": {"name": name},
        "spec": {"schedule": "0 3 * * *", "jobTemplate": {"spec": job()["spec"]}},
    }


def bare_pod(annotations: dict[str, str] | None = None, restart: str | None = None) -> dict:
    pod = template()
    pod["metadata"]["name"] = "probe"
    pod["metadata"]["annotations"] = annotations or {}
    if restart:
        pod["spec"]["restartPolicy"] = restart
    for c in pod["spec"]["containers"]:
        del c["readinessProbe"], c["livenessProbe"]
    return {"apiVersion": "v1", "kind": "Pod", **pod}


def with_changes(changes: dict[str, Any], obj: dict[str, Any] | None = None) -> dict[str, Any]:
    """A Deployment with changes at JSON pointers relative to its pod template (None deletes)."""
    obj = copy.deepcopy(obj or deployment())
    for pointer, value in changes.items():
        node = obj["spec"]["template"]
        *parents, last = [p.replace("~1", "/") for p in pointer.strip("/").split("/")]
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node.setdefault(part, {})
        if value is None:
            del node[last]
        else:
            node[last] = value
    return obj


def rules(*manifests: dict[str, Any]) -> set[str]:
    return {violation.rule for violation in check_pod_policy(manifests)}


C0 = "spec/containers/0"
SC = f"{C0}/securityContext"


def test_compliant_workloads_have_no_violations():
    assert check_pod_policy([deployment(), job(), cronjob(), None]) == []


VIOLATIONS = [
    ("pss-host-namespaces", {"spec/hostNetwork": True}),
    ("pss-host-namespaces", {"spec/hostPID": True}),
    ("pss-privileged", {f"{SC}/privileged": True}),
    ("pss-volume-types", {"spec/volumes": [{"name": "h", "hostPath": {"path": "/"}}]}),
    ("pss-volume-types", {"spec/volumes": [{"name": "n", "nfs": {"server": "s", "path": "/"}}]}),
    ("pss-host-ports", {f"{C0}/ports": [{"containerPort": 80, "hostPort": 80}]}),
    ("pss-capabilities", {f"{SC}/capabilities/add": ["NET_ADMIN"]}),
    ("pss-capabilities", {f"{SC}/capabilities/drop": ["NET_RAW"]}),
    ("pss-privilege-escalation", {f"{SC}/allowPrivilegeEscalation": None}),
    ("pss-privilege-escalation", {f"{SC}/allowPrivilegeEscalation": True}),
    ("pss-run-as-non-root", {f"{SC}/runAsNonRoot": False}),
    ("pss-run-as-non-root", {"spec/securityContext/runAsNonRoot": None}),
    ("pss-run-as-user", {f"{SC}/runAsUser": 0}),
    ("pss-run-as-user", {"spec/securityContext/runAsUser": 0}),
    ("pss-seccomp", {"spec/securityContext/seccompProfile": None}),
    ("pss-seccomp", {f"{SC}/seccompProfile": {"type": "Unconfined"}}),
    ("pss-seccomp", {"spec/securityContext/seccompProfile/type": "Unconfined"}),
    ("pss-sysctls", {"spec/securityContext/sysctls": [{"name": "kernel.msgmax", "value": "1"}]}),
    ("pss-proc-mount", {f"{SC}/procMount": "Unmasked"}),
    ("pss-host-process", {f"{SC}/windowsOptions": {"hostProcess": True}}),
    ("pss-selinux", {f"{SC}/seLinuxOptions": {"type": "spc_t"}}),
    ("pss-selinux", {"spec/securityContext/seLinuxOptions": {"user": "system_u"}}),
    ("pss-apparmor", {f"{SC}/appArmorProfile": {"type": "Unconfined"}}),
    (
        "pss-apparmor",
        {
            "metadata/annotations": {
                "container.apparmor.security.beta.kubernetes.io/app": "unconfined"
            }
        },
    ),
    ("pss-host-probes", {f"{C0}/readinessProbe/httpGet/host": "10.0.0.1"}),
    ("resources", {f"{C0}/resources/limits/memory": None}),
    ("resources", {f"{C0}/resources/requests": None}),
    ("probes", {f"{C0}/livenessProbe": None}),
    ("probes", {f"{C0}/readinessProbe": None}),
    ("image-tag", {f"{C0}/image": "ghcr.io/floe/app"}),
    ("image-tag", {f"{C0}/image": "ghcr.io/floe/app:latest"}),
    ("service-account-token", {"spec/automountServiceAccountToken": None}),
    ("service-account-token", {"spec/automountServiceAccountToken": True}),
    ("read-only-root-filesystem", {f"{SC}/readOnlyRootFilesystem": None}),
    ("read-only-root-filesystem", {f"{SC}/readOnlyRootFilesystem": False}),
]


@pytest.mark.parametrize(
    ("rule", "changes"), VIOLATIONS, ids=[f"{r}-{i}" for i, (r, _) in enumerate(VIOLATIONS)]
)
def test_each_rule_is_reported_alone(rule, changes):
    violations = check_pod_policy([with_changes(changes)])
    assert {v.rule for v in violations} == {rule}
    assert all(v.object == "Deployment/web" and v.message for v in violations)


def test_container_settings_are_reported_against_the_container_and_pod_settings_against_none():
    [by_container] = check_pod_policy([with_changes({f"{SC}/privileged": True})])
    [by_pod] = check_pod_policy([with_changes({"spec/hostIPC": True})])
    assert (by_container.container, by_pod.container) == ("app", None)


def test_pod_level_security_context_satisfies_every_container():
    pod = template(container("a"), container("b"))
    assert check_pod_policy([deployment(pod=pod)]) == []
    del pod["spec"]["securityContext"]
    violations = check_pod_policy([deployment(pod=pod)])
    assert {(v.container, v.rule) for v in violations} == {
        (name, rule) for name in "ab" for rule in ("pss-run-as-non-root", "pss-seccomp")
    }


def test_container_settings_override_the_pod():
    pod = template()
    pod["spec"]["securityContext"] = {
        "runAsNonRoot": False,
        "seccompProfile": {"type": "Unconfined"},
    }
    pod["spec"]["containers"][0]["securityContext"] |= {
        "runAsNonRoot": True,
        "seccompProfile": {"type": "RuntimeDefault"},
    }
    # The pod-level values are still violations of their own, as PSA reports them.
    assert {(v.container, v.rule) for v in check_pod_policy([deployment(pod=pod)])} == {
        (None, "pss-run-as-non-root"),
        (None, "pss-seccomp"),
    }


def test_init_containers_are_checked_but_need_no_probes():
    pod = template()
    pod["spec"]["initContainers"] = [{"name": "wait", "image": "busybox:1.36"}]
    violations = check_pod_policy([deployment(pod=pod)])
    assert {v.container for v in violations} == {"wait"}
    assert {v.rule for v in violations} == {
        "pss-privilege-escalation",
        "pss-capabilities",
        "resources",
        "read-only-root-filesystem",
    }


def test_ephemeral_containers_are_checked_for_pss_but_not_resources():
    pod = template()
    pod["spec"]["ephemeralContainers"] = [
        {"name": "debug", "image": "busybox:1.36", "securityContext": {"privileged": True}}
    ]
    violations = check_pod_policy([deployment(pod=pod)])
    assert "pss-privileged" in {v.rule for v in violations}
    assert "resources" not in {v.rule for v in violations}


def test_windows_pods_are_exempt_from_the_linux_only_checks_like_psa():
    changes = {f"{SC}/allowPrivilegeEscalation": None, f"{SC}/capabilities": None}
    linux = with_changes(changes)
    windows = with_changes({**changes, "spec/os": {"name": "windows"}})
    assert rules(linux) == {"pss-privilege-escalation", "pss-capabilities"}
    assert rules(windows) == set()


def test_helm_test_hook_pods_and_run_once_pods_need_no_probes():
    assert check_pod_policy([bare_pod({"helm.sh/hook": "test"})]) == []
    assert check_pod_policy([bare_pod({"helm.sh/hook": "pre-install,test-success"})]) == []
    assert check_pod_policy([bare_pod(restart="Never")]) == []
    assert rules(bare_pod()) == {"probes"}  # restartPolicy defaults to Always
    assert rules(bare_pod({"helm.sh/hook": "pre-install"}, restart="Always")) == {"probes"}


def test_jobs_and_cronjobs_need_no_probes_in_any_api_version():
    assert check_pod_policy([job(), cronjob(api_version="batch/v1beta1")]) == []


def test_needs_kubernetes_api_annotation_allows_the_token():
    pod = template()
    del pod["spec"]["automountServiceAccountToken"]
    assert rules(deployment(pod=pod)) == {"service-account-token"}
    pod["metadata"]["annotations"] = {"floe.dev/needs-kubernetes-api": "true"}
    assert check_pod_policy([deployment(pod=pod)]) == []
    pod["spec"]["automountServiceAccountToken"] = True
    assert check_pod_policy([deployment(pod=pod)]) == []


def test_a_service_account_in_the_set_can_disable_the_token():
    pod = template()
    del pod["spec"]["automountServiceAccountToken"]
    pod["spec"]["serviceAccountName"] = "floe-runner"

    def account(name: str, automount: bool) -> dict[str, Any]:
        return {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": name},
            "automountServiceAccountToken": automount,
        }

    assert rules(deployment(pod=pod), account("floe-runner", False)) == set()
    assert rules(deployment(pod=pod), account("floe-runner", True)) == {"service-account-token"}
    assert rules(deployment(pod=pod), account("other", False)) == {"service-account-token"}
    pod["spec"]["automountServiceAccountToken"] = True  # the pod spec overrides its account
    assert rules(deployment(pod=pod), account("floe-runner", False)) == {"service-account-token"}


@pytest.mark.parametrize(
    ("image", "expected"),
    [
        ("repo", ImageRef("repo", None, None)),
        ("repo:latest", ImageRef("repo", "latest", None)),
        ("repo@sha256:" + "a" * 64, ImageRef("repo", None, "sha256:" + "a" * 64)),
        ("repo:1.2@sha256:abc", ImageRef("repo", "1.2", "sha256:abc")),
        ("localhost:5000/repo", ImageRef("localhost:5000/repo", None, None)),
        ("localhost:5000/repo:1.2", ImageRef("localhost:5000/repo", "1.2", None)),
        ("localhost:5000/team/repo:latest", ImageRef("localhost:5000/team/repo", "latest", None)),
    ],
)
def test_parse_image(image, expected):
    assert parse_image(image) == expected


@pytest.mark.parametrize(
    ("image", "allowed"),
    [
        ("repo", False),
        ("repo:latest", False),
        ("repo@sha256:" + "a" * 64, True),
        ("repo:latest@sha256:" + "a" * 64, True),  # the digest pins it
        ("localhost:5000/repo", False),
        ("localhost:5000/repo:1.2", True),
        ("", False),
    ],
)
def test_image_tag_rule(image, allowed):
    assert ("image-tag" not in rules(with_changes({f"{C0}/image": image}))) is allowed


def test_pod_specs_finds_every_workload_kind():
    pod = bare_pod()
    other = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    found = list(pod_specs([deployment(), job(), cronjob(api_version="batch/v1beta1"), pod, other]))
    assert [name for name, _, _ in found] == [
        "Deployment/web",
        "Job/migrate",
        "CronJob/nightly",
        "Pod/probe",
    ]
    assert all(spec["containers"] for _, _, spec in found)
    assert found[0][1] == {"labels": {"app": "x"}}


def test_violations_are_sorted_and_deduplicated():
    broken = with_changes({f"{SC}/privileged": True, "spec/hostPID": True})
    violations = check_pod_policy(
        [broken, copy.deepcopy(broken), with_changes({}, deployment("a"))]
    )
    assert violations == [
        PolicyViolation("Deployment/web", None, "pss-host-namespaces", violations[0].message),
        PolicyViolation("Deployment/web", "app", "pss-privileged", violations[1].message),
    ]


def test_policy_report_is_a_table():
    violations = check_pod_policy(
        [with_changes({f"{C0}/image": "repo:latest", "spec/hostPID": True})]
    )
    lines = policy_report(violations).splitlines()
    assert lines[0].split() == ["OBJECT", "CONTAINER", "RULE", "FIX"]
    assert lines[1].split()[:3] == ["Deployment/web", "-", "pss-host-namespaces"]
    assert lines[2].split()[:3] == ["Deployment/web", "app", "image-tag"]
    assert lines[-1] == "2 violation(s) in 1 object(s)"
    assert policy_report([]) == "No pod policy violations."
