"""Where registry credentials come from, and the mistakes that are the user's to fix (exit 2,
naming the file or variable, never the password). The registry itself is in
tests/cluster/test_chart_registry.py."""

from __future__ import annotations

import base64
import dataclasses
import json
from pathlib import Path

import pytest
import yaml

from floe_deploy_assets.cli import main
from floe_deploy_assets.helm import registry
from floe_deploy_assets.helm.registry import (
    HOST_VARIABLE,
    PASSWORD_VARIABLE,
    USERNAME_VARIABLE,
    RegistryError,
    RegistrySettings,
    credentials_for,
    registry_client,
)
from floe_deploy_assets.models.config import ConfigError
from tests.support.charts import example_config
from tests.support.dagster_processes import free_port

HOST = "registry.example.com:5000"
SECRET = "pw-3c9d1e"  # made up


@pytest.fixture(autouse=True)
def no_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(USERNAME_VARIABLE, raising=False)
    monkeypatch.delenv(PASSWORD_VARIABLE, raising=False)
    monkeypatch.delenv(HOST_VARIABLE, raising=False)


def _file(tmp_path: Path, auths: dict[str, object]) -> RegistrySettings:
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"auths": auths}))
    return RegistrySettings(credentials_file=path)


def test_the_variables_come_first_then_the_files_entry_for_the_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    auth = base64.b64encode(f"robot:{SECRET}".encode()).decode()
    settings = _file(tmp_path, {HOST: {"auth": auth}, "other:5000": {"auth": "eDp5"}})
    assert credentials_for(HOST, settings) == ("robot", SECRET)
    assert credentials_for("elsewhere:5000", settings) is None  # anonymous
    assert credentials_for(HOST, RegistrySettings(credentials_file=tmp_path / "none")) is None
    monkeypatch.setenv(USERNAME_VARIABLE, "ci")
    monkeypatch.setenv(PASSWORD_VARIABLE, SECRET)
    assert credentials_for(HOST, settings) == ("ci", SECRET)


def test_the_variables_go_to_one_registry_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    other = "mirror.example.com"
    auth = base64.b64encode(b"reader:mirror-pw").decode()
    settings = _file(tmp_path, {other: {"auth": auth}})
    monkeypatch.setenv(USERNAME_VARIABLE, "ci")
    monkeypatch.setenv(PASSWORD_VARIABLE, SECRET)
    one = dataclasses.replace(settings, registries=(HOST,))
    assert credentials_for(HOST, one) == ("ci", SECRET)  # the configuration's only registry
    # A configuration naming two registries: the variables are not sent to either unasked.
    two = dataclasses.replace(settings, registries=(HOST, other))
    for host in (HOST, other):
        with pytest.raises(ConfigError, match=f"set {HOST_VARIABLE} to the one") as raised:
            credentials_for(host, two)
        assert f"({other}, {HOST})" in str(raised.value) and SECRET not in str(raised.value)
    # Scoped: that registry gets them; the other its own entry in the credentials file. The
    # variable may be a reference, in any case.
    for scope in (HOST, f"oci://{HOST.upper()}/floe/charts"):
        monkeypatch.setenv(HOST_VARIABLE, scope)
        assert credentials_for(HOST, two) == ("ci", SECRET)
        assert credentials_for(other, two) == ("reader", "mirror-pw")
    # Naming no registry in use (a typo, another port, a leftover): refused, not ignored.
    for scope in ("registry.example.com", "registry.example.com:443", "third.example.com"):
        monkeypatch.setenv(HOST_VARIABLE, scope)
        with pytest.raises(ConfigError, match=f"{HOST_VARIABLE}={scope} names none") as raised:
            credentials_for(HOST, two)
        assert f"({other}, {HOST})" in str(raised.value) and SECRET not in str(raised.value)


def test_a_configuration_with_two_registries_refuses_the_variables_before_any_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    config = example_config()
    for chart, host in (("platform", "platform.registry.invalid"), ("jobs", HOST)):
        config["charts"][chart].pop("path")
        config["charts"][chart] |= {"ref": f"oci://{host}/floe/floe-{chart}", "version": "0.1.0"}
    path = tmp_path / "two-registries.yaml"
    path.write_text(yaml.safe_dump(config))
    monkeypatch.setenv(USERNAME_VARIABLE, "ci")
    monkeypatch.setenv(PASSWORD_VARIABLE, SECRET)
    code = main(["values", "--config", str(path), "--env", "dev", "--chart", "jobs"])
    error = capsys.readouterr().err
    assert code == 2, error
    assert f"(platform.registry.invalid, {HOST})" in error and HOST_VARIABLE in error
    assert SECRET not in error


def test_publish_refuses_variables_scoped_to_another_registry(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
):
    archive = tmp_path / "floe-jobs-0.1.0.tgz"
    archive.write_bytes(b"not read: refused before any call")
    monkeypatch.setenv(USERNAME_VARIABLE, "ci")
    monkeypatch.setenv(PASSWORD_VARIABLE, SECRET)
    monkeypatch.setenv(HOST_VARIABLE, "ci-deploys.example.com")  # left from another job
    assert main(["publish", f"oci://{HOST}/floe", str(archive)]) == 2
    error = capsys.readouterr().err
    assert f"{HOST_VARIABLE}=ci-deploys.example.com names none" in error and HOST in error
    assert SECRET not in error


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        ({"identitytoken": "abc"}, "holds no user:password"),
        ({"auth": "%%%not base64"}, "is not base64 of user:password"),
    ],
)
def test_an_entry_that_cannot_be_used_is_the_users_to_fix(
    tmp_path: Path, entry: dict[str, str], says: str
):
    with pytest.raises(ConfigError, match=says) as raised:
        credentials_for(HOST, _file(tmp_path, {HOST: entry}))
    assert str(tmp_path / "config.json") in str(raised.value)


def test_one_variable_without_the_other_is_refused(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv(USERNAME_VARIABLE, "ci")
    with pytest.raises(ConfigError, match=f"set both {USERNAME_VARIABLE} and {PASSWORD_VARIABLE}"):
        credentials_for(HOST, RegistrySettings())


@pytest.mark.parametrize(
    ("host", "refused"), [(HOST, True), ("127.0.0.1:5000", False), ("localhost:5000", False)]
)
def test_credentials_never_cross_the_network_in_plain_http(
    monkeypatch: pytest.MonkeyPatch, host: str, refused: bool
):
    host = host.replace("5000", str(free_port()))
    monkeypatch.setenv(USERNAME_VARIABLE, "ci")
    monkeypatch.setenv(PASSWORD_VARIABLE, SECRET)
    settings = RegistrySettings(plain_http=True)
    if refused:
        with (
            pytest.raises(ConfigError, match="in plain HTTP") as raised,
            registry_client(host, settings),
        ):
            pass
        assert SECRET not in str(raised.value)
    else:  # loopback: allowed; the login itself fails (nothing listens), naming the registry
        monkeypatch.setattr(registry, "REGISTRY_DEADLINE_SECONDS", 1.0)  # refused: retried
        with (
            pytest.raises(RegistryError, match=f"logging in to registry {host}") as raised,
            registry_client(host, settings),
        ):
            pass
        assert SECRET not in str(raised.value)


def test_a_ca_file_without_credentials_says_how_to_give_them(tmp_path: Path):
    settings = RegistrySettings(ca_file=tmp_path / "ca.crt", credentials_file=tmp_path / "none")
    with pytest.raises(ConfigError, match="helm registry login"), registry_client(HOST, settings):
        pass
