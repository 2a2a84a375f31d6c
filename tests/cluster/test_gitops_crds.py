"""The API server is the judge of ``floe-deploy gitops`` (issue 17): with the unmodified Argo CD
and Flux CRDs (../shared/fixtures/gitops-crds) applied to the local control plane, every object
generated for the example configuration is accepted, by a server-side dry run and for real, and
a deliberately wrong field is refused with the field's path."""

from __future__ import annotations

import copy
import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from tests.conftest import KubeCluster
from tests.support.charts import ROOT, pinned_digest, pinned_registry_config, run_gitops

pytestmark = pytest.mark.cluster

CRDS = ROOT.parent / "shared" / "fixtures" / "gitops-crds"
CRD_FILES = (
    "argocd-application.yaml",
    "argocd-applicationset.yaml",
    "argocd-appproject.yaml",
    "flux-helmreleases.yaml",
    "flux-helmrepositories.yaml",
    "flux-ocirepositories.yaml",
)
ESTABLISHED_WITHIN = 60.0  # seconds; the API server establishes a CRD in well under one


@pytest.fixture(scope="module")
def plurals(kube_cluster: KubeCluster) -> dict[tuple[str, str], str]:
    """The CRDs created (or found from an earlier module), each Established; (group, kind) ->
    plural, as the CRDs give them."""
    extensions = client.ApiextensionsV1Api(kube_cluster.api)
    found = {}
    for name in CRD_FILES:
        crd = yaml.safe_load((CRDS / name).read_text())
        try:
            extensions.create_custom_resource_definition(crd)
        except client.ApiException as error:
            if error.status != 409:
                raise
        found[crd["spec"]["group"], crd["spec"]["names"]["kind"]] = crd["spec"]["names"]["plural"]
        _wait_established(extensions, crd["metadata"]["name"])
    return found


def _wait_established(extensions: client.ApiextensionsV1Api, name: str) -> None:
    deadline = time.monotonic() + ESTABLISHED_WITHIN
    while time.monotonic() < deadline:
        crd = extensions.read_custom_resource_definition(name)
        conditions = {c.type: c.status for c in crd.status.conditions or []}
        if conditions.get("Established") == "True":
            return
        time.sleep(0.2)
    raise AssertionError(f"CRD {name} not Established within {ESTABLISHED_WITHIN} s")


def _generated(tmp_path: Path, fmt: str, namespace: str, *extra: str) -> list[dict[str, Any]]:
    out = tmp_path / fmt
    code = run_gitops(out, fmt, f"--{fmt}-namespace", namespace, *extra)
    assert code == 0
    return [yaml.safe_load(p.read_text()) for p in sorted(out.iterdir())]


def _create(
    kube_cluster: KubeCluster,
    plurals: dict[tuple[str, str], str],
    obj: dict[str, Any],
    dry_run: str | None = None,
) -> dict[str, Any]:
    group, version = obj["apiVersion"].split("/")
    return client.CustomObjectsApi(kube_cluster.api).create_namespaced_custom_object(
        group,
        version,
        obj["metadata"]["namespace"],
        plurals[group, obj["kind"]],
        obj,
        dry_run=dry_run,
    )


@pytest.mark.parametrize("fmt", ["argocd", "flux"])
@pytest.mark.parametrize("which", ["every environment", "dev alone", "charts pinned by digest"])
def test_every_generated_object_is_accepted_by_the_api_server(
    kube_cluster: KubeCluster,
    plurals: dict[tuple[str, str], str],
    namespace: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fmt: str,
    which: str,
):
    extra = {"every environment": [], "dev alone": ["--env", "dev"]}.get(which)
    if extra is None:  # the charts named by ref, pinned (Flux's OCIRepository carries it)
        extra = ["--config", str(pinned_registry_config(tmp_path, monkeypatch))]
    objects = _generated(tmp_path, fmt, namespace, *extra)
    releases = 2 if which == "dev alone" else 6
    assert len(objects) == (2 if fmt == "argocd" else 2 + releases)
    if which == "charts pinned by digest" and fmt == "flux":
        assert {
            o["spec"]["ref"].get("digest") for o in objects if o["kind"] == "OCIRepository"
        } == {
            pinned_digest("floe-platform"),
            pinned_digest("floe-jobs"),
        }
    for obj in objects:
        checked = _create(kube_cluster, plurals, obj, dry_run="All")
        # Nothing pruned (every field is in the schema); the CRD's defaults may be added.
        assert _holds(checked["spec"], obj["spec"]), obj["metadata"]["name"]
    for obj in objects:
        created = _create(kube_cluster, plurals, obj)
        assert created["metadata"]["uid"]
        assert _holds(created["spec"], obj["spec"]), obj["metadata"]["name"]


def _holds(stored: Any, sent: Any) -> bool:
    """Whether ``stored`` has every field of ``sent``, with the same value."""
    if isinstance(sent, dict):
        return isinstance(stored, dict) and all(
            key in stored and _holds(stored[key], value) for key, value in sent.items()
        )
    if isinstance(sent, list):
        return (
            isinstance(stored, list) and len(stored) == len(sent) and all(map(_holds, stored, sent))
        )
    return bool(stored == sent)


def test_the_applications_the_application_set_makes_are_accepted(
    kube_cluster: KubeCluster, plurals: dict[tuple[str, str], str], namespace: str, tmp_path: Path
):
    """The Applications the ApplicationSet controller would make from the template and the
    ``templatePatch`` (rendered here as its Go templates would: each ``{{ .key }}`` from the
    element, ``toJson .helmValues`` as JSON) are valid Applications for the API server."""
    (application_set,) = [
        o for o in _generated(tmp_path, "argocd", namespace) if o["kind"] == "ApplicationSet"
    ]
    applications = list(_applications(application_set["spec"], namespace))
    assert len(applications) == 6
    for application in applications:
        checked = _create(kube_cluster, plurals, application, dry_run="All")
        assert _holds(checked["spec"], application["spec"])
        assert (
            checked["spec"]["source"]["helm"]["valuesObject"]["floe"]["environment"]
            == (application["metadata"]["labels"]["floe.dev/environment"])
        )
        _create(kube_cluster, plurals, application)


def _applications(spec: dict[str, Any], namespace: str) -> Any:
    placeholder = re.compile(r"\{\{ \.(\w+) \}\}")
    for element in spec["generators"][0]["list"]["elements"]:

        def fill(node: Any, element: dict[str, Any] = element) -> Any:
            if isinstance(node, dict):
                return {key: fill(value) for key, value in node.items()}
            if isinstance(node, list):
                return [fill(item) for item in node]
            if isinstance(node, str):
                filled = placeholder.sub(lambda m: str(element[m.group(1)]), node)
                assert "{{" not in filled, f"a template this test cannot render: {node}"
                return filled
            return node

        application = fill(copy.deepcopy(spec["template"]))
        patch_text = spec["templatePatch"].replace(
            "{{ toJson .helmValues }}", json.dumps(element["helmValues"])
        )
        _merge(application, yaml.safe_load(patch_text))
        application["metadata"]["namespace"] = namespace
        yield {"apiVersion": "argoproj.io/v1alpha1", "kind": "Application", **application}


def _merge(into: dict[str, Any], patch: dict[str, Any]) -> None:
    for key, value in patch.items():
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = value


@pytest.mark.parametrize(
    ("fmt", "kind", "path", "wrong"),
    [
        ("flux", "HelmRelease", ("install", "remediation", "retries"), "three"),
        ("flux", "OCIRepository", ("layerSelector", "operation"), "move"),
        ("argocd", "ApplicationSet", ("goTemplate",), "yes"),
        ("argocd", "AppProject", ("destinations",), "everywhere"),
    ],
)
def test_a_wrong_field_is_refused_with_its_path(
    kube_cluster: KubeCluster,
    plurals: dict[tuple[str, str], str],
    namespace: str,
    tmp_path: Path,
    fmt: str,
    kind: str,
    path: tuple[str, ...],
    wrong: str,
):
    obj = copy.deepcopy(next(o for o in _generated(tmp_path, fmt, namespace) if o["kind"] == kind))
    node = obj["spec"]
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = wrong
    with pytest.raises(client.ApiException) as refused:
        _create(kube_cluster, plurals, obj, dry_run="All")
    assert refused.value.status == 422
    assert "spec." + ".".join(path) in refused.value.body
