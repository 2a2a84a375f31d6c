"""``floe-deploy gitops`` (issue 17): the Argo CD and Flux objects for the example configuration
carry exactly the values ``floe-deploy values`` prints, are the same bytes every time, name the
Secrets they need without filling them in, and nothing is written when an input is wrong. That
the API server accepts them, with the controllers' own CRDs, is tests/cluster/test_gitops_crds.py.
"""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from floe_deploy_assets.cli import main
from floe_deploy_assets.gitops import kubeconfig_secret
from floe_deploy_assets.values.secrets import find_plaintext_secrets
from tests.support.charts import (
    CONFIG,
    GITOPS_REGISTRY,
    ROOT,
    example_config,
    pinned_digest,
    pinned_registry_config,
    run_gitops,
    values_generator,
)

REGISTRY = GITOPS_REGISTRY
ENVIRONMENTS = CONFIG.environments


def objects(directory: Path) -> dict[str, dict[str, Any]]:
    return {p.name: yaml.safe_load(p.read_text()) for p in sorted(directory.iterdir())}


def printed_values(environment: str, chart: str) -> dict[str, Any]:
    """What ``floe-deploy values`` prints for the environment and chart."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(io.StringIO()):
        code = main(
            [
                "values",
                "--config",
                str(ROOT / "floe-deploy.yaml"),
                "--env",
                environment,
                "--chart",
                chart,
            ]
        )
    assert code == 0
    return yaml.safe_load(out.getvalue())


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    directories = {}
    for fmt in ("argocd", "flux"):
        directory = tmp_path_factory.mktemp(fmt)
        assert run_gitops(directory, fmt) == 0
        directories[fmt] = directory
    return directories


def test_argocd_one_application_per_environment_and_release_with_the_values_printed(
    written: dict[str, Path],
):
    found = objects(written["argocd"])
    assert sorted(found) == ["applicationset-floe.yaml", "appproject-floe.yaml"]
    elements = found["applicationset-floe.yaml"]["spec"]["generators"][0]["list"]["elements"]
    assert [(e["environment"], e["chartKind"]) for e in elements] == [
        (environment, chart) for environment in ENVIRONMENTS for chart in ("platform", "jobs")
    ]
    for element in elements:
        environment, chart = element["environment"], element["chartKind"]
        assert element["helmValues"] == printed_values(environment, chart)
        assert element["helmValues"] == values_generator(chart, environment).helm_values()
        mapping = CONFIG.mapping_for(element["environment"])
        assert element["namespace"] == mapping.namespace_for(element["environment"])
        assert element["cluster"] == mapping.cluster  # not the controller's own: named
        assert element["version"] == "0.1.0"
    project = found["appproject-floe.yaml"]["spec"]
    assert project["sourceRepos"] == ["registry.example.com/floe/charts"]
    assert {(d["name"], d["namespace"]) for d in project["destinations"]} == {
        (e["cluster"], e["namespace"]) for e in elements
    }
    template = found["applicationset-floe.yaml"]["spec"]["template"]["spec"]
    assert template["syncPolicy"]["syncOptions"] == ["CreateNamespace=true", "ServerSideApply=true"]
    assert template["source"]["repoURL"] == "registry.example.com/floe/charts"


def test_flux_releases_depend_on_their_platform_and_carry_the_values_printed(
    written: dict[str, Path],
):
    found = objects(written["flux"])
    sources = {n: o for n, o in found.items() if o["kind"] == "OCIRepository"}
    assert {o["spec"]["url"] for o in sources.values()} == {
        f"{REGISTRY}/floe-platform",
        f"{REGISTRY}/floe-jobs",
    }
    releases = [o for o in found.values() if o["kind"] == "HelmRelease"]
    assert len(releases) == 2 * len(ENVIRONMENTS)
    for release in releases:
        environment = release["metadata"]["labels"]["floe.dev/environment"]
        chart = release["metadata"]["labels"]["floe.dev/chart"]
        spec = release["spec"]
        assert spec["values"] == printed_values(environment, chart)
        # What deploy hands Helm (a default a layer deleted as an explicit null).
        assert spec["values"] == values_generator(chart, environment).helm_values()
        assert spec["targetNamespace"] == CONFIG.mapping_for(environment).namespace_for(environment)
        assert spec["releaseName"] == CONFIG.release_name(chart, environment)  # type: ignore[arg-type]
        assert spec["upgrade"]["remediation"]["strategy"] == "rollback"
        assert spec["install"]["createNamespace"] is True
        # The example's clusters are not the controller's: each is reached by a kubeconfig
        # Secret, referenced only.
        assert spec["kubeConfig"] == {
            "secretRef": {"name": "floe-local-kubeconfig", "key": "value"}
        }
        if chart == "jobs":
            assert spec["dependsOn"] == [{"name": f"{environment}-floe-platform"}]
        else:
            assert "dependsOn" not in spec


def test_the_controllers_own_cluster_needs_no_kubeconfig(tmp_path: Path):
    assert run_gitops(tmp_path / "flux", "flux", "--controller-cluster", "floe-local") == 0
    assert run_gitops(tmp_path / "argo", "argocd", "--controller-cluster", "floe-local") == 0
    for release in objects(tmp_path / "flux").values():
        assert "kubeConfig" not in release["spec"]
    elements = objects(tmp_path / "argo")["applicationset-floe.yaml"]["spec"]["generators"][0]
    assert {e["cluster"] for e in elements["list"]["elements"]} == {"in-cluster"}


def test_output_is_byte_identical_for_the_same_inputs(written: dict[str, Path], tmp_path: Path):
    for fmt, first in written.items():
        again = tmp_path / fmt
        assert run_gitops(again, fmt) == 0
        assert {p.name: p.read_bytes() for p in first.iterdir()} == {
            p.name: p.read_bytes() for p in again.iterdir()
        }


def test_no_credential_in_the_output_and_the_needed_secrets_named(written: dict[str, Path]):
    for directory in written.values():
        for name, obj in objects(directory).items():
            assert find_plaintext_secrets(obj) == [], name
    release = objects(written["flux"])["helmrelease-dev-floe-platform.yaml"]
    assert release["metadata"]["annotations"]["floe.dev/required-secrets"] == (
        "floe-postgresql,floe-polaris-credentials"
    )


def test_one_environment_only(tmp_path: Path):
    assert run_gitops(tmp_path, "flux", "--env", "prod", "--env", "prod") == 0
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("helmrelease")) == [
        "helmrelease-prod-floe-jobs.yaml",
        "helmrelease-prod-floe-platform.yaml",
    ]


def test_files_of_releases_no_longer_generated_are_removed_and_others_kept(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    assert run_gitops(tmp_path, "flux") == 0
    (tmp_path / "kustomization.yaml").write_text("resources: []\n")  # the team's own file
    (tmp_path / "notes.yaml").write_text("metadata: {labels: {app: other}}\n")
    capsys.readouterr()
    assert run_gitops(tmp_path, "flux", "--env", "prod") == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "helmrelease-prod-floe-jobs.yaml",
        "helmrelease-prod-floe-platform.yaml",
        "kustomization.yaml",
        "notes.yaml",
        "ocirepository-floe-jobs.yaml",
        "ocirepository-floe-platform.yaml",
    ]
    assert capsys.readouterr().out.count("removed ") == 4  # dev's and staging's releases


def test_argocd_for_one_environment_owns_its_applications_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    """An ApplicationSet deletes the Applications its generator no longer lists: one
    environment's files have a project and a set of their own, never the shared ``floe``."""
    assert run_gitops(tmp_path / "dev", "argocd", "--env", "dev") == 0
    dev = objects(tmp_path / "dev")
    assert sorted(dev) == ["applicationset-floe-dev.yaml", "appproject-floe-dev.yaml"]
    spec = dev["applicationset-floe-dev.yaml"]["spec"]
    elements = spec["generators"][0]["list"]["elements"]
    assert {e["environment"] for e in elements} == {"dev"} and len(elements) == 2
    assert spec["template"]["spec"]["project"] == "floe-dev"
    assert dev["appproject-floe-dev.yaml"]["spec"]["destinations"] == [
        {"name": "floe-local", "namespace": "floe-dev"}
    ]
    capsys.readouterr()
    for selection in (["--env", "dev", "--env", "staging"], ["--product", "customer-360"]):
        assert run_gitops(tmp_path / "out", "argocd", *selection) == 2
        assert "give --env once at most" in capsys.readouterr().err
        assert not (tmp_path / "out").exists()


def test_charts_named_by_ref_give_the_registry_and_flux_the_pinned_digest(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    """With both charts named by ref (pinned, and already in the chart cache: no registry is
    asked), the files need no --registry, and Flux pulls the digest pinned."""
    path = pinned_registry_config(tmp_path, monkeypatch)
    for fmt in ("flux", "argocd"):
        out = tmp_path / fmt
        command = ["gitops", "--config", str(path), "--format", fmt, "--out", str(out)]
        assert main(command) == 0
        written = objects(out)
        if fmt == "flux":
            source = written["ocirepository-floe-jobs.yaml"]["spec"]
            assert source["url"] == f"{REGISTRY}/floe-jobs"
            assert source["ref"] == {
                "tag": "0.1.0",
                "digest": pinned_digest("floe-jobs"),
            }
        else:
            spec = written["applicationset-floe.yaml"]["spec"]["template"]["spec"]
            assert spec["source"]["repoURL"] == REGISTRY.removeprefix("oci://")


@pytest.mark.parametrize(
    "context",
    ["floe-local", "kubernetes-admin@kubernetes", "arn:aws:eks:eu-west-1:1:cluster/prod", "GKE_p"],
)
def test_kubeconfig_secret_names_are_object_names_and_distinct(context: str):
    name = kubeconfig_secret(context)
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", name) and len(name) <= 253
    assert kubeconfig_secret(context.upper() + "x") != name
    if context == "floe-local":
        assert name == "floe-local-kubeconfig"  # a valid name is kept as it is


@pytest.mark.parametrize("registry", ["registry.example.com/charts", "oci://Registry/x", "oci://"])
def test_a_registry_that_is_not_an_oci_location_is_refused(
    tmp_path: Path, registry: str, capsys: pytest.CaptureFixture[str]
):
    code = main(
        [
            "gitops",
            "--config",
            str(ROOT / "floe-deploy.yaml"),
            "--format",
            "flux",
            "--out",
            str(tmp_path / "out"),
            "--registry",
            registry,
        ]
    )
    assert code == 2
    assert "--registry" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_values_that_fail_their_check_write_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
):
    config = example_config()
    config["overrides"]["staging"] = {"platform": {"dagster": {"webserver": {"replicas": "two"}}}}
    path = tmp_path / "floe-deploy.yaml"
    path.write_text(yaml.safe_dump(config))
    out = tmp_path / "out"
    code = main(
        [
            "gitops",
            "--config",
            str(path),
            "--format",
            "argocd",
            "--out",
            str(out),
            "--registry",
            REGISTRY,
        ]
    )
    assert code == 1
    assert "/dagster/webserver/replicas: must be of type integer" in capsys.readouterr().err
    assert not out.exists()
