"""Charts packaged, signed and published to a real OCI registry (Debian's docker-registry on
loopback, TLS from a CA made for the run, basic auth), then deployed from ``oci://``
references: the same releases and digests as from the chart folders, and a chart changed after
signing refused before anything is applied."""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from floe_deploy_assets.cli import main
from floe_deploy_assets.defs.build import build_definitions
from floe_deploy_assets.helm import registry as registry_module
from floe_deploy_assets.helm import sources
from floe_deploy_assets.helm.packaging import archive_digest
from tests.conftest import KubeCluster
from tests.support.charts import ROOT
from tests.support.dagster_processes import free_port
from tests.support.deployment import create_operator_secrets, write_config
from tests.support.registry import (
    PASSWORD,
    LocalRegistry,
    SigningKeys,
    running_registry,
    signing_keys,
)
from tests.support.tcp_faults import ResettingProxy

pytestmark = pytest.mark.cluster


@dataclass(frozen=True)
class Published:
    registry: LocalRegistry
    keys: SigningKeys
    archives: dict[str, Path]  # chart name -> signed archive
    charts: dict[str, tuple[str, str, str]]  # chart name -> (ref, version, digest)


@pytest.fixture(scope="module")
def published(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Published]:
    work = tmp_path_factory.mktemp("registry")
    keys = signing_keys(work / "keys")
    with running_registry(work / "registry") as registry, pytest.MonkeyPatch.context() as env:
        for name, value in registry.credentials_env().items():
            env.setenv(name, value)
        out = work / "dist"
        assert (
            main(
                [
                    *("package", "--config", str(ROOT / "floe-deploy.yaml"), "--out", str(out)),
                    *("--sign-key", keys.name),
                    *("--secret-keyring", str(keys.secret_keyring)),
                ]
            )
            == 0
        )
        archives = {p.name.rsplit("-", 1)[0]: p for p in sorted(out.glob("*.tgz"))}
        assert set(archives) == {"floe-platform", "floe-jobs"}
        assert all(Path(f"{p}.prov").is_file() for p in archives.values())
        yield Published(registry, keys, archives, {})


def _publish(
    published: Published, capsys: pytest.CaptureFixture[str], remote: str, *archives: Path
) -> dict[str, tuple[str, str, str]]:
    registry = published.registry
    assert main(["publish", remote, *map(str, archives), "--ca-file", str(registry.ca_file)]) == 0
    lines = capsys.readouterr().out.split("\n")
    charts = {}
    for line in filter(None, lines):
        ref, version, digest = line.split()
        charts[ref.rsplit("/", 1)[1]] = (ref, version, digest)
    return charts


@pytest.fixture
def chart_cache(published: Published, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The registry's credentials in the environment, a cache of pulled charts for this test
    alone, and no chart resolved in this process yet."""
    for name, value in published.registry.credentials_env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv(sources.CACHE_VARIABLE, str(tmp_path / "chart-cache"))
    monkeypatch.setattr(sources, "_pulled", {})
    return tmp_path / "chart-cache"


def _registry_config(
    path_config: Path, published: Published, charts: dict[str, tuple[str, str, str]], **registry
) -> Path:
    """The configuration at ``path_config`` with its charts from the registry."""
    document: dict[str, Any] = yaml.safe_load(path_config.read_text())
    for kind, name in (("platform", "floe-platform"), ("jobs", "floe-jobs")):
        ref, version, digest = charts[name]
        source = {"ref": ref, "version": version, "digest": digest}
        document["charts"][kind] = {**source, "releaseName": name}
    document["registry"] = {"caFile": str(published.registry.ca_file), **registry}
    target = path_config.with_name("from-registry.yaml")
    target.write_text(yaml.safe_dump(document))
    return target


def test_deploy_from_the_registry_is_the_release_deployed_from_the_folders(
    published: Published,
    kube_cluster: KubeCluster,
    namespace: str,
    tmp_path: Path,
    chart_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    charts = _publish(published, capsys, published.registry.remote, *published.archives.values())
    assert {ref for ref, _, _ in charts.values()} == {
        f"{published.registry.remote}/floe-platform",
        f"{published.registry.remote}/floe-jobs",
    }
    from_folders = write_config(tmp_path, kube_cluster.kubeconfig, namespace)
    from_registry = _registry_config(
        from_folders, published, charts, keyring=str(published.keys.public_keyring)
    )
    create_operator_secrets(kube_cluster.core, namespace)
    kube = ["--env", "dev", "--kubeconfig", str(kube_cluster.kubeconfig)]

    assert main(["deploy", "--config", str(from_folders), *kube, "--timeout", "120"]) == 0
    assert "platform: absent -> install" in capsys.readouterr().out
    assert main(["history", "--config", str(from_folders), *kube]) == 0
    history = capsys.readouterr().out

    # Pulled (verified against the keyring), the same charts: every release is in sync.
    assert main(["deploy", "--config", str(from_registry), *kube]) == 0
    again = capsys.readouterr().out
    assert "platform: in-sync -> nothing" in again and "jobs: in-sync -> nothing" in again
    assert main(["history", "--config", str(from_registry), *kube]) == 0
    assert capsys.readouterr().out == history
    assert sorted(p.name for p in chart_cache.iterdir()) == sorted(
        digest.replace(":", "-") for _, _, digest in charts.values()
    )
    for chart in ("platform", "jobs"):
        renders = []
        for config in (from_folders, from_registry):
            assert main(["render", "--config", str(config), "--env", "dev", "--chart", chart]) == 0
            renders.append(capsys.readouterr().out)
        assert renders[0] == renders[1]

    # The Dagster graph from the registry: the same code versions (the charts' digests), and
    # the manifests asset renders the pulled chart with every check passing.
    graphs = [
        build_definitions(str(config)).resolve_asset_graph()
        for config in (from_folders, from_registry)
    ]
    versions = [{k: g.get(k).code_version for k in g.get_all_asset_keys()} for g in graphs]
    assert versions[0] == versions[1]
    jobs_archive = published.archives["floe-jobs"]
    assert versions[1][dg.AssetKey("jobs_release")] == archive_digest(jobs_archive)
    manifests = build_definitions(str(from_registry)).resolve_assets_def(
        dg.AssetKey("jobs_manifests")
    )
    result = dg.materialize([manifests], partition_key="dev", raise_on_error=False)
    checks = result.get_asset_check_evaluations()
    assert result.success and len(checks) == 3 and all(c.passed for c in checks)

    # Pinned by digest and cached, a chart is not asked of the registry at all (none there).
    offline = _registry_config(
        from_folders,
        published,
        {
            n: (ref.replace(published.registry.host, "127.0.0.1:9"), v, d)
            for n, (ref, v, d) in charts.items()
        },
        keyring=str(published.keys.public_keyring),
    )
    monkeypatch.setattr(sources, "_pulled", {})
    assert main(["render", "--config", str(offline), "--env", "dev", "--chart", "jobs"]) == 0
    assert capsys.readouterr().out == renders[1]


# What the tampered chart renders besides the signed chart's objects.
PLANTED = b"\n---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: planted-after-signing\n"


def _tampered(archive: Path, out: Path) -> Path:
    """The archive with one template changed and everything else (its name, its .prov) kept."""
    out.mkdir(parents=True, exist_ok=True)
    changed = out / archive.name
    with tarfile.open(archive) as source, tarfile.open(changed, "w:gz") as target:
        for member in source:
            data = source.extractfile(member).read() if member.isfile() else None  # type: ignore[union-attr]
            if member.name.endswith("templates/serviceaccount.yaml"):
                data = data + PLANTED  # type: ignore[operator]
                member.size = len(data)
            target.addfile(member, io.BytesIO(data) if data is not None else None)
    Path(f"{changed}.prov").write_bytes(Path(f"{archive}.prov").read_bytes())
    return changed


def test_a_chart_changed_after_signing_is_refused_and_nothing_is_applied(
    published: Published,
    kube_cluster: KubeCluster,
    namespace: str,
    tmp_path: Path,
    chart_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    remote = f"oci://{published.registry.host}/floe/tampered"
    tampered = _tampered(published.archives["floe-jobs"], tmp_path / "tampered")
    charts = _publish(published, capsys, remote, tampered, published.archives["floe-platform"])
    from_folders = write_config(tmp_path, kube_cluster.kubeconfig, namespace)
    verified = _registry_config(
        from_folders, published, charts, keyring=str(published.keys.public_keyring)
    )
    create_operator_secrets(kube_cluster.core, namespace)
    kube = ["--env", "dev", "--kubeconfig", str(kube_cluster.kubeconfig)]

    assert main(["deploy", "--config", str(verified), *kube]) == 2
    refused = capsys.readouterr().err
    assert "charts.jobs: floe-jobs-0.1.0.tgz failed verification against" in refused
    assert "changed after it was signed" in refused
    assert PASSWORD not in refused
    helm_records = kube_cluster.core.list_namespaced_secret(namespace, label_selector="owner=helm")
    assert helm_records.items == []  # not even the platform, which verifies

    # Verification is what refuses it: without a keyring the same chart renders.
    unverified = _registry_config(from_folders, published, charts)
    monkeypatch.setattr(sources, "_pulled", {})
    assert main(["render", "--config", str(unverified), "--env", "dev", "--chart", "jobs"]) == 0
    assert "name: planted-after-signing" in capsys.readouterr().out


def test_unsigned_or_stranger_signed_charts_are_refused_with_a_keyring(
    published: Published,
    kube_cluster: KubeCluster,
    namespace: str,
    tmp_path: Path,
    chart_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    keys = published.keys
    from_folders = write_config(tmp_path, kube_cluster.kubeconfig, namespace)
    render = ["render", "--env", "dev", "--chart", "jobs"]
    for label, signing in (
        ("unsigned", []),
        (
            "stranger",
            [
                "--sign-key",
                keys.stranger_name,
                "--secret-keyring",
                str(keys.stranger_secret_keyring),
            ],
        ),
    ):
        out = tmp_path / label
        assert (
            main(
                [
                    "package",
                    "--config",
                    str(from_folders),
                    "--chart",
                    "jobs",
                    "--out",
                    str(out),
                    *signing,
                ]
            )
            == 0
        )
        capsys.readouterr()
        remote = f"oci://{published.registry.host}/floe/{label}"
        signed_platform = published.archives["floe-platform"]
        charts = _publish(published, capsys, remote, *out.glob("*.tgz"), signed_platform)
        config = _registry_config(from_folders, published, charts, keyring=str(keys.public_keyring))
        monkeypatch.setattr(sources, "_pulled", {})
        assert main([*render, "--config", str(config)]) == 2
        error = capsys.readouterr().err
        expected = "has no provenance file" if label == "unsigned" else "failed verification"
        assert expected in error, error


def test_a_cached_chart_changed_on_disk_is_refused_with_a_keyring_and_pulled_again(
    published: Published,
    kube_cluster: KubeCluster,
    namespace: str,
    tmp_path: Path,
    chart_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    remote = f"oci://{published.registry.host}/floe/cache-check"
    charts = _publish(published, capsys, remote, *published.archives.values())
    config = _registry_config(
        write_config(tmp_path, kube_cluster.kubeconfig, namespace),
        published,
        charts,
        keyring=str(published.keys.public_keyring),
    )
    render = ["render", "--config", str(config), "--env", "dev", "--chart", "jobs"]
    assert main(render) == 0
    first = capsys.readouterr().out
    entry = chart_cache / charts["floe-jobs"][2].replace(":", "-")
    template = entry / "floe-jobs" / "templates" / "serviceaccount.yaml"
    template.write_bytes(template.read_bytes() + PLANTED)

    monkeypatch.setattr(sources, "_pulled", {})  # a new process, as it were
    assert main(render) == 2
    assert "differs from its verified archive" in capsys.readouterr().err
    assert not entry.exists()  # refused, so not kept
    monkeypatch.setattr(sources, "_pulled", {})
    assert main(render) == 0  # pulled again, as published
    assert capsys.readouterr().out == first


def test_wrong_credentials_fail_naming_the_registry_not_the_password(
    published: Published,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    monkeypatch.setenv("FLOE_REGISTRY_USERNAME", "floe-publisher")
    monkeypatch.setenv("FLOE_REGISTRY_PASSWORD", "not-the-password-7c1d")
    archive = published.archives["floe-jobs"]
    registry = published.registry
    code = main(["publish", registry.remote, str(archive), "--ca-file", str(registry.ca_file)])
    error = capsys.readouterr().err
    assert code == 3
    assert f"logging in to registry {registry.host} failed" in error
    assert "not-the-password-7c1d" not in error

    monkeypatch.setenv("FLOE_REGISTRY_PASSWORD", PASSWORD)
    assert main(["publish", registry.remote, str(archive)]) == 3  # our CA not given
    assert "certificate signed by unknown authority" in capsys.readouterr().err


def test_a_registry_away_for_a_moment_is_retried_not_a_verdict(
    published: Published,
    kube_cluster: KubeCluster,
    namespace: str,
    tmp_path: Path,
    chart_cache: Path,
    capsys: pytest.CaptureFixture[str],
):
    """Connections reset by the registry (a restart, a load balancer) are retried: the push, the
    login, the resolve and the pull each get through once it is back."""
    archives = (published.archives["floe-jobs"], published.archives["floe-platform"])
    with ResettingProxy(published.registry.host, resets=3) as proxy:
        charts = _publish(published, capsys, f"oci://{proxy.address}/floe/blips", *archives)
        assert proxy.accepted > 3
        config = _registry_config(
            write_config(tmp_path, kube_cluster.kubeconfig, namespace),
            published,
            charts,
            keyring=str(published.keys.public_keyring),
        )
        proxy.reset_next(3)
        before = proxy.accepted
        assert main(["render", "--config", str(config), "--env", "dev", "--chart", "jobs"]) == 0
        assert "kind: ServiceAccount" in capsys.readouterr().out
        assert proxy.accepted - before > 3


def test_a_registry_that_stays_away_fails_at_the_deadline_naming_it(
    published: Published,
    chart_cache: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
):
    monkeypatch.setattr(registry_module, "REGISTRY_DEADLINE_SECONDS", 4.0)
    nowhere = f"127.0.0.1:{free_port()}"
    started = time.monotonic()
    code = main(
        [
            *("publish", f"oci://{nowhere}/floe", str(published.archives["floe-jobs"])),
            *("--ca-file", str(published.registry.ca_file)),
        ]
    )
    error = capsys.readouterr().err
    assert code == 3
    assert f"logging in to registry {nowhere} failed (after " in error, error
    assert "connection refused" in error
    assert time.monotonic() - started < 15
