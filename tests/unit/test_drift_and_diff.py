"""Drift (live objects against the release manifest) and the manifest diff, on plain objects."""

from __future__ import annotations

import yaml

from floe_deploy_assets.release.diff import (
    diff_summary,
    manifest_diff,
    manifest_summary,
    release_change_markdown,
)
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


SERVICE = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"}}
WORKER = {**DEPLOYMENT, "metadata": {"name": "worker"}}
SECRET = {
    "apiVersion": "v1",
    "kind": "Secret",
    "metadata": {"name": "creds"},
    "data": {"password": "aHVudGVyMg=="},
    "stringData": {"token": "plain-token-value"},
}
SECRET_VALUES = ("aHVudGVyMg==", "plain-token-value", "bmV3LXBhc3N3b3Jk")


def test_manifest_summary_counts_and_names_each_kind():
    summary = manifest_summary(yaml.safe_dump_all([WORKER, SERVICE, DEPLOYMENT, SECRET]))
    assert summary.splitlines() == [
        "| Kind | Count | Names |",
        "| --- | --- | --- |",
        "| Deployment | 2 | web, worker |",
        "| Secret | 1 | creds |",
        "| Service | 1 | web |",
    ]


def test_diff_summary_lists_exactly_the_changed_objects():
    newer = yaml.safe_load(yaml.safe_dump(DEPLOYMENT))
    newer["spec"]["replicas"] = 3
    summary = diff_summary([DEPLOYMENT, WORKER, SERVICE], [newer, WORKER, SERVICE])
    assert summary.splitlines() == [
        "| Kind | Name | Change |",
        "| --- | --- | --- |",
        "| Deployment | web | changed |",
    ]
    added_and_removed = diff_summary([SERVICE], [DEPLOYMENT]).splitlines()[2:]
    assert added_and_removed == ["| Deployment | web | added |", "| Service | web | removed |"]
    assert diff_summary([DEPLOYMENT], yaml.safe_dump_all([DEPLOYMENT])) == "(no change)"


def test_install_markdown_is_the_summary_then_the_whole_manifest():
    markdown = release_change_markdown("", [WORKER, SERVICE, DEPLOYMENT])
    assert markdown.startswith(
        "**Install**: 3 objects\n\n" + manifest_summary([DEPLOYMENT, WORKER, SERVICE])
    )
    manifest = markdown.split("```yaml\n", 1)[1]
    assert markdown.endswith("\n```") and "```diff" not in markdown
    assert [
        doc["metadata"]["name"] for doc in yaml.safe_load_all(manifest.removesuffix("```"))
    ] == [
        "web",
        "worker",
        "web",
    ]


def test_upgrade_markdown_is_the_summary_then_each_changed_objects_diff():
    newer = yaml.safe_load(yaml.safe_dump(DEPLOYMENT))
    newer["spec"]["replicas"] = 3
    markdown = release_change_markdown([DEPLOYMENT, WORKER], [newer, WORKER, SERVICE])
    summary, diffs = markdown.split("\n\n**Deployment/web** changed\n\n", 1)
    assert summary.startswith("**Upgrade**: 2 of 3 objects differ\n\n")
    assert summary.endswith(diff_summary([DEPLOYMENT, WORKER], [newer, WORKER, SERVICE]))
    assert diffs.startswith("```diff\n@@") and "-  replicas: 2\n+  replicas: 3" in diffs
    assert "**Service/web** added" in diffs and "worker" not in diffs
    assert release_change_markdown([DEPLOYMENT], [DEPLOYMENT]) == "(no change)"
    assert release_change_markdown("", "") == "(no change)"


def test_a_fence_inside_a_manifest_does_not_end_its_block():
    config = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "readme"},
        "data": {"README.md": "```\ncode\n```\n"},
    }
    markdown = release_change_markdown([], [config])
    assert "\n````yaml\n" in markdown and markdown.endswith("\n````")


def test_no_output_shows_a_secret_value():
    rotated = {**SECRET, "data": {"password": "bmV3LXBhc3N3b3Jk"}}
    outputs = [
        manifest_summary([SECRET]),
        diff_summary([SECRET], [rotated]),
        release_change_markdown("", yaml.safe_dump_all([SECRET])),
        release_change_markdown([SECRET], [rotated]),
        release_change_markdown([SECRET], []),
    ]
    assert "Secret | creds | changed" in outputs[1] and "masked" in outputs[2] + outputs[3]
    assert not [value for value in SECRET_VALUES for output in outputs if value in output]


def test_the_markdown_does_not_depend_on_object_order():
    newer = yaml.safe_load(yaml.safe_dump(DEPLOYMENT))
    newer["spec"]["replicas"] = 3
    objects = [DEPLOYMENT, WORKER, SERVICE, SECRET]
    for before, after in (([], objects), (objects, [SECRET, SERVICE, newer])):
        once = release_change_markdown(before, after)
        assert once == release_change_markdown(before[::-1], after[::-1])
        assert once == release_change_markdown(
            yaml.safe_dump_all(before), yaml.safe_dump_all(after)
        )


# --- issue 12: strings the secret rules flag are masked in any object, not only in Secrets -------
LEAKY_CONFIG = {
    "apiVersion": "v1",
    "kind": "ConfigMap",
    "metadata": {
        "name": "floe-platform-polaris-catalog",
        "annotations": {"example.com/auth": "Bearer Pl4ntedDiffToken1"},
    },
    "data": {
        "catalog.json": '{"type": "polaris", "config": {"header.Authorization": '
        '"Bearer Pl4ntedDiffToken2", "uri": "http://polaris:8181/api/catalog"}}',
        "profiles.yml": "p:\n  outputs:\n    dev:\n      password: Pl4ntedDiffToken3\n",
        "readme": "plain text, http://polaris:8181/api/catalog",
    },
}
LEAKY_VALUES = ("Pl4ntedDiffToken1", "Pl4ntedDiffToken2", "Pl4ntedDiffToken3")


def test_flagged_strings_of_any_object_are_masked_in_every_output():
    rotated = yaml.safe_load(yaml.safe_dump(LEAKY_CONFIG))
    rotated["data"]["profiles.yml"] = rotated["data"]["profiles.yml"].replace("3", "4")
    rotated["data"]["readme"] = "changed text"
    outputs = [
        manifest_diff([], [LEAKY_CONFIG]),
        manifest_diff([LEAKY_CONFIG], [rotated]),  # deploy --dry-run
        release_change_markdown("", yaml.safe_dump_all([LEAKY_CONFIG])),  # an install
        release_change_markdown([LEAKY_CONFIG], [rotated]),  # an upgrade
        release_change_markdown([rotated], []),
    ]
    assert not [value for value in LEAKY_VALUES for output in outputs if value in output]
    assert "Pl4ntedDiffToken4" not in "".join(outputs)
    # What is not a credential still shows, and a rotated credential shows that it changed.
    upgrade = outputs[3]
    assert "+  readme: changed text" in upgrade and "-  readme: plain text" in upgrade
    assert "-  profiles.yml: (masked, sha256 " in upgrade
    assert "+  profiles.yml: (masked, sha256 " in upgrade
    assert "catalog.json: (masked, sha256 " in outputs[2]
    assert "example.com/auth: (masked, sha256 " in outputs[2]


def test_masking_does_not_modify_the_objects_and_leaves_clean_ones_alone():
    before = yaml.safe_dump(LEAKY_CONFIG)
    release_change_markdown("", [LEAKY_CONFIG])
    assert yaml.safe_dump(LEAKY_CONFIG) == before
    clean = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "c"},
        "data": {"catalog.json": '{"config": {"uri": "http://polaris:8181/api/catalog"}}'},
    }
    assert "masked" not in release_change_markdown("", [clean, DEPLOYMENT])


def test_a_secret_with_a_flagged_annotation_masks_both():
    secret = {**SECRET, "metadata": {"name": "creds", "annotations": {"a": "Bearer Pl4ntedAnn5"}}}
    markdown = release_change_markdown("", [secret])
    assert "Pl4ntedAnn5" not in markdown
    assert not [value for value in SECRET_VALUES if value in markdown]
