"""Drift (live objects against the release manifest) and the manifest diff, on plain objects."""

from __future__ import annotations

import yaml

from floe_deploy_assets.release.diff import manifest_diff
from floe_deploy_assets.release.drift import differences, drifted

DEPLOYMENT = {
    "apiVersion": "apps/v1",
    "kind": "Deployment",
    "metadata": {"name": "web", "labels": {"app": "web"}},
    "spec": {
        "replicas": 2,
        "template": {
            "spec": {
                "containers": [
                    {
                        "name": "web",
                        "image": "web:1.0",
                        "resources": {"limits": {"cpu": "1000m", "memory": "1Gi"}},
                    }
                ]
            }
        },
    },
}


def live(**changes: object) -> dict:
    obj = yaml.safe_load(yaml.safe_dump(DEPLOYMENT))
    obj["metadata"]["uid"] = "abc"  # set by the API server: not drift
    obj["metadata"]["labels"]["extra"] = "added-by-someone"  # a field the manifest does not set
    obj["status"] = {"replicas": 2}
    container = obj["spec"]["template"]["spec"]["containers"][0]
    container["resources"]["limits"]["cpu"] = "1"  # canonical form of 1000m
    container["imagePullPolicy"] = "IfNotPresent"  # a default
    for pointer, value in changes.items():
        target = obj
        *path, last = pointer.split("__")
        for key in path:
            target = target[int(key)] if key.isdigit() else target[key]
        target[last] = value
    return obj


def test_defaults_extra_fields_and_canonical_quantities_are_not_drift():
    assert differences(DEPLOYMENT, live()) == []


def test_a_changed_managed_field_is_named_by_its_pointer():
    changed = live(spec__replicas=5, spec__template__spec__containers__0__image="web:evil")
    assert drifted([DEPLOYMENT], [changed])[0].pointers == (
        "/spec/replicas",
        "/spec/template/spec/containers/0/image",
    )


def test_a_deleted_object_is_missing():
    (found,) = drifted([DEPLOYMENT], [None])
    assert found.missing and str(found) == "Deployment/web is missing"


def test_replicas_an_autoscaler_owns_are_not_drift():
    hpa = {
        "apiVersion": "autoscaling/v2beta2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web"},
        "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}},
    }
    assert drifted([DEPLOYMENT, hpa], [live(spec__replicas=7), hpa]) == []


def test_a_drifted_secret_is_reported_without_its_value():
    secret = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"k": "YQ=="},
    }
    (found,) = drifted([secret], [{**secret, "data": {"k": "c2VjcmV0"}}])
    assert str(found) == "Secret/s differs at /data/k"
    assert "c2VjcmV0" not in str(found)


def test_manifest_diff_shows_added_removed_and_changed_objects():
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}
    newer = yaml.safe_load(yaml.safe_dump(DEPLOYMENT))
    newer["spec"]["replicas"] = 3
    config = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    diff = manifest_diff([DEPLOYMENT, service], [newer, config])
    assert (
        "Deployment/web changed" in diff and "-  replicas: 2" in diff and "+  replicas: 3" in diff
    )
    assert "Service/web removed" in diff and "ConfigMap/c added" in diff
    assert manifest_diff(yaml.safe_dump_all([DEPLOYMENT]), [DEPLOYMENT]) == ""


def test_manifest_diff_masks_secret_payloads():
    before = {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {"name": "s"},
        "data": {"k": "b2xk"},
    }
    after = {**before, "data": {"k": "bmV3LXNlY3JldA=="}}
    diff = manifest_diff([before], [after])
    assert "Secret/s changed" in diff
    assert "b2xk" not in diff and "bmV3LXNlY3JldA==" not in diff and "masked" in diff
