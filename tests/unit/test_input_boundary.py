"""Hostile input files (issue 12): each fails fast, with the module's own error type and one
message naming the file and the problem; never a stack trace, a RecursionError or a hang."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import yaml

from floe_deploy_assets.helm.charts import (
    ChartPathError,
    check_chart_paths,
    load_floe_chart,
    read_chart_metadata,
)
from floe_deploy_assets.helm.render import local_dependencies
from floe_deploy_assets.models.artifacts import (
    ArtifactsError,
    load_compiled_artifacts,
    parse_compiled_artifacts,
)
from floe_deploy_assets.models.config import (
    ConfigError,
    load_deployment_config,
    parse_deployment_config,
)
from floe_deploy_assets.models.inputs import (
    ARTIFACTS_MAX_BYTES,
    CONFIG_MAX_BYTES,
    MAX_NESTING,
    json_nesting_exceeds,
    load_yaml,
)

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "examples" / "compiled-artifacts.json"
# Seconds any one hostile input may take: a guard against quadratic or exponential handling
# (minutes for these inputs), not a speed measurement; 10 s holds on a loaded 2-core machine
# (a 10 MB input took over 2 s while a CI run shared the cores).
FAST = 10.0
BIN = Path(sys.executable).parent


def config_text(platform: Path | str = ROOT / "charts/floe-platform", extra: str = "") -> str:
    return f"""\
apiVersion: floe.dev/v1alpha1
kind: DeploymentConfig
artifacts: {{path: {ARTIFACTS}}}
charts:
  platform: {{path: {platform}, releaseName: floe-platform}}
  jobs: {{path: {ROOT / "charts/floe-jobs"}, releaseName: floe-jobs}}
clusterMappings:
  - name: non-prod
    cluster: floe-local
    environments: [dev, staging]
    resources: small
{extra}"""


def fails_fast(call: Callable[[], object], error: type[Exception], *fragments: str) -> str:
    """Runs ``call``, which must raise ``error`` within FAST seconds with a one-line message
    holding every fragment; returns the message."""
    start = time.perf_counter()
    with pytest.raises(error) as raised:
        call()
    elapsed = time.perf_counter() - start
    message = str(raised.value)
    assert elapsed < FAST, f"{elapsed:.2f}s: {message}"
    assert "\n" not in message, message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    return message


# --- sizes -----------------------------------------------------------------------------------
def test_an_oversized_configuration_is_refused_from_its_size(tmp_path: Path):
    path = tmp_path / "floe-deploy.yaml"
    with path.open("wb") as file:  # sparse: 10 GiB that are never read
        file.truncate(10 * 1024**3)
    fails_fast(lambda: load_deployment_config(path), ConfigError, str(path), "10240 MiB", "1 MiB")


def test_a_configuration_just_over_the_limit_is_refused(tmp_path: Path):
    path = tmp_path / "floe-deploy.yaml"
    path.write_bytes(b"#" * (CONFIG_MAX_BYTES + 1))
    fails_fast(lambda: load_deployment_config(path), ConfigError, str(path), "larger than")


def test_oversized_artifacts_are_refused_from_their_size(tmp_path: Path):
    path = tmp_path / "compiled-artifacts.json"
    with path.open("wb") as file:
        file.truncate(ARTIFACTS_MAX_BYTES + 1)
    fails_fast(lambda: load_compiled_artifacts(path), ArtifactsError, str(path), "32 MiB")


def test_an_endless_device_is_read_only_up_to_the_limit():
    fails_fast(
        lambda: load_compiled_artifacts("/dev/zero"), ArtifactsError, "/dev/zero", "larger than"
    )


def test_a_fifo_nobody_writes_to_does_not_hang(tmp_path: Path):
    fifo = tmp_path / "floe-deploy.yaml"
    os.mkfifo(fifo)
    outcome: list[BaseException] = []

    def load() -> None:
        try:
            load_deployment_config(fifo)
        except BaseException as error:
            outcome.append(error)

    reader = threading.Thread(target=load, daemon=True)
    reader.start()
    reader.join(FAST)
    assert not reader.is_alive(), "loading a FIFO with no writer hung"
    assert isinstance(outcome[0], ConfigError) and str(fifo) in str(outcome[0])


@pytest.mark.parametrize("what", ["missing", "folder", "symlink loop"])
def test_unreadable_paths_are_named(tmp_path: Path, what: str):
    path = tmp_path / "floe-deploy.yaml"
    if what == "folder":
        path.mkdir()
    elif what == "symlink loop":
        path.symlink_to(tmp_path / "other")
        (tmp_path / "other").symlink_to(path)
    problem = {
        "missing": "No such file",
        "folder": "a folder, not a file",
        "symlink loop": "Too many levels of symbolic links",
    }[what]
    fails_fast(lambda: load_deployment_config(path), ConfigError, str(path), problem)
    fails_fast(lambda: load_compiled_artifacts(path), ArtifactsError, str(path), problem)


# --- encodings -------------------------------------------------------------------------------
ENCODINGS = {
    "latin-1": ("apiVersion: floe.dev/v1alpha1\n# café\n".encode("latin-1"), 35, "line 2"),
    "binary": (bytes(range(256)) * 4, 128, "line 2"),
    "utf-16": ("apiVersion: floe.dev/v1alpha1\n".encode("utf-16"), 0, "UTF-16 byte-order mark"),
}


@pytest.mark.parametrize("name", list(ENCODINGS))
def test_non_utf8_files_name_the_first_bad_byte(tmp_path: Path, name: str):
    data, offset, hint = ENCODINGS[name]
    path = tmp_path / "input"
    path.write_bytes(data)
    for load, error in (
        (load_deployment_config, ConfigError),
        (load_compiled_artifacts, ArtifactsError),
    ):
        fails_fast(
            lambda load=load: load(path),  # type: ignore[misc]
            error,
            str(path),
            "not UTF-8",
            f"offset {offset} ",
            hint,
        )


def test_a_utf8_byte_order_mark_is_accepted(tmp_path: Path):
    path = tmp_path / "floe-deploy.yaml"
    path.write_bytes(b"\xef\xbb\xbf" + config_text().encode())
    assert load_deployment_config(path).environments == ["dev", "staging"]
    artifacts = tmp_path / "a.json"
    artifacts.write_bytes(b"\xef\xbb\xbf" + ARTIFACTS.read_bytes())
    assert load_compiled_artifacts(artifacts).version


# --- YAML ------------------------------------------------------------------------------------
def billion_laughs_under_merge() -> str:
    """9 levels of 10 aliases, each level merging the one below (``<<``): 10^9 keys once
    PyYAML's merge flattening has copied them."""
    lines = ["l0: &l0 {" + ", ".join(f"k{i}: lol" for i in range(10)) + "}"]
    for level in range(1, 10):
        merged = ", ".join([f"*l{level - 1}"] * 10)
        lines.append(f"l{level}: &l{level}\n  <<: [{merged}]\n  level{level}: x")
    return "\n".join(lines) + "\n"


def billion_laughs_lists() -> str:
    lines = ["a: &a [" + ", ".join(["lol"] * 10) + "]"]
    for level in range(1, 9):
        name, below = chr(ord("a") + level), chr(ord("a") + level - 1)
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{below}"] * 10) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("bomb", [billion_laughs_under_merge, billion_laughs_lists])
def test_alias_bombs_fail_fast(tmp_path: Path, bomb: Callable[[], str]):
    path = tmp_path / "floe-deploy.yaml"
    path.write_text(config_text() + bomb())
    start = time.perf_counter()
    fails_fast(lambda: load_deployment_config(path), ConfigError, str(path), "alias bomb")
    assert time.perf_counter() - start < 1.0


def test_aliases_that_stay_small_are_allowed():
    text = config_text(
        extra="overrides:\n"
        "  dev: &same {platform: {dagster: {webserver: {replicas: 2}}}}\n"
        "  staging: *same\n"
    )
    config = parse_deployment_config(text, "f.yaml")
    assert config.overrides_for("platform", "staging") == {
        "dagster": {"webserver": {"replicas": 2}}
    }


def test_a_recursive_alias_is_refused():
    text = config_text(extra="overrides:\n  dev: &loop {platform: {x: *loop}}\n")
    fails_fast(lambda: parse_deployment_config(text, "f.yaml"), ConfigError, "f.yaml", "recursive")


@pytest.mark.parametrize(
    ("text", "line", "key"),
    [
        ("a: 1\nb: 2\na: 3\n", 3, "'a'"),
        ("top:\n  x: 1\n  y: 2\n  x: 3\n", 4, "'x'"),
        ("yes: 1\ntrue: 2\n", 2, "'true'"),  # one boolean key, spelled twice
    ],
)
def test_duplicate_keys_name_the_line_and_key(text: str, line: int, key: str):
    fails_fast(
        lambda: load_yaml(text, "f.yaml", ConfigError),
        ConfigError,
        f"f.yaml: line {line}: key {key} appears twice",
    )


def test_a_duplicated_top_level_key_of_the_configuration_is_refused():
    text = config_text() + "clusterMappings: []\n"
    fails_fast(
        lambda: parse_deployment_config(text, "f.yaml"),
        ConfigError,
        "f.yaml: line 12: key 'clusterMappings' appears twice in the same mapping (first at "
        "line 7)",
    )


def test_merge_keys_may_be_overridden():
    assert load_yaml("b: &b {x: 1, y: 1}\nc: {<<: *b, x: 2}\n", "f.yaml", ConfigError) == {
        "b": {"x": 1, "y": 1},
        "c": {"x": 2, "y": 1},
    }


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 500, 5000, 200_000])
def test_deep_yaml_nesting_is_refused(depth: int):
    flow = "[" * depth + "]" * depth
    block = "".join(" " * i + "k:\n" for i in range(min(depth, 3000))) + " " * 3000 + "v\n"
    for text in (flow, block):
        fails_fast(
            lambda text=text: load_yaml(text, "f.yaml", ConfigError),  # type: ignore[misc]
            ConfigError,
            "f.yaml: line ",
            f"nested more than {MAX_NESTING} levels deep",
        )


def test_nesting_up_to_the_limit_is_read():
    depth = MAX_NESTING
    assert load_yaml("[" * depth + "]" * depth, "f.yaml", ConfigError)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("a: 2020-02-30\n", "day is out of range"),
        ("a: " + "9" * 5000 + "\n", "digits"),
        ("a: !!python/object:os.system x\n", "could not determine a constructor"),
        ("a: *nowhere\n", "undefined alias"),
        ("a: \x00\n", "character #x0000"),
        ("a: 1\n---\nb: 2\n", "expected a single document"),
        ("a: [", "line 1, column 5"),
    ],
)
def test_unreadable_yaml_values_are_one_line_errors(text: str, problem: str):
    fails_fast(lambda: load_yaml(text, "f.yaml", ConfigError), ConfigError, "f.yaml: ", problem)


# --- JSON ------------------------------------------------------------------------------------
def deepest(document: object) -> int:
    if isinstance(document, dict):
        return 1 + max((deepest(v) for v in document.values()), default=0)
    if isinstance(document, list):
        return 1 + max((deepest(v) for v in document), default=0)
    return 0


@pytest.mark.parametrize(
    "text",
    [
        "[]",
        '{"a": [1, {"b": []}], "c": "]]]]"}',
        '["\\\\", "[[[", "\\"[[", {"k\\\\": [[]]}]',
        '{"x": "' + "{" * 200 + '"}',
        "[" * 64 + "]" * 64,
        "[" * 65 + "]" * 65,
        "[" + "[]," * 70 + "[]]",
        "[[]" * 63 + "]" * 63,
        "[" + ", ".join("[" * n + "]" * n for n in range(60, 70)) + "]",
        '{"a": ' * 64 + "1" + "}" * 64,
        '{"a": ' * 65 + "1" + "}" * 65,
        '["' + "\\" * 7 + '"[[[[", [[' + "]" * 3,
    ],
)
def test_the_nesting_scan_agrees_with_the_parser(text: str):
    try:
        depth = deepest(json.loads(text))
    except json.JSONDecodeError:
        depth = None
    if depth is not None:
        assert json_nesting_exceeds(text) == (depth > MAX_NESTING), depth


@pytest.mark.parametrize(
    "text",
    [
        "[" * 10_000_000,  # unclosed
        "[" * 100_000 + "]" * 100_000,
        '{"version": "0.6.0", "data_contracts": [' + '{"a": [' * 40 + "]}" * 40 + "]}",
        '"\\' * 5_000_000,  # quadratic for a regex that scans strings
        '"[",[' * 2_000_000,
    ],
)
def test_hostile_json_is_refused_fast(text: str):
    fails_fast(
        lambda: parse_compiled_artifacts(text, "a.json"),
        ArtifactsError,
        "a.json: ",
    )


def test_deep_json_is_a_nesting_error_not_a_recursion_error(tmp_path: Path):
    path = tmp_path / "a.json"
    path.write_text("[" * 100_000 + "]" * 100_000)
    fails_fast(
        lambda: load_compiled_artifacts(path),
        ArtifactsError,
        str(path),
        f"nested more than {MAX_NESTING} levels deep",
    )


def test_deep_json_inside_a_valid_document_is_refused():
    document = json.loads(ARTIFACTS.read_text())
    nested: object = "x"
    for _ in range(MAX_NESTING):
        nested = [nested]
    document["data_contracts"] = [{"deep": nested}]
    fails_fast(
        lambda: parse_compiled_artifacts(json.dumps(document), "a.json"),
        ArtifactsError,
        "a.json: objects and arrays nested more than 64 levels deep",
    )


def test_a_json_key_twice_is_refused():
    text = ARTIFACTS.read_text().replace(
        '"mode": "centralized"', '"mode": "simple", "mode": "mesh"'
    )
    fails_fast(
        lambda: parse_compiled_artifacts(text, "a.json"),
        ArtifactsError,
        "a.json: not valid JSON: key 'mode' appears twice in the same object",
    )


# --- charts ----------------------------------------------------------------------------------
CHART_YAML = """\
apiVersion: v2
name: floe-platform
version: 0.1.0
appVersion: "0.1.0"
annotations:
  floe.dev/compatibility: '{"0.1.0": ">=0.1.0, <0.11.0"}'
"""


def make_chart(tmp_path: Path, chart_yaml: str | bytes | None = CHART_YAML) -> Path:
    chart = tmp_path / "chart"
    chart.mkdir()
    if isinstance(chart_yaml, bytes):
        (chart / "Chart.yaml").write_bytes(chart_yaml)
    elif chart_yaml is not None:
        (chart / "Chart.yaml").write_text(chart_yaml)
    return chart


def test_a_minimal_chart_loads(tmp_path: Path):
    assert load_floe_chart(make_chart(tmp_path)).name == "floe-platform"


def _annotation(value: str) -> str:
    return CHART_YAML.replace("""'{"0.1.0": ">=0.1.0, <0.11.0"}'""", value)


BROKEN_CHARTS: dict[str, tuple[str | bytes | None, str]] = {
    "no Chart.yaml": (None, "has no Chart.yaml"),
    "garbage": ("name: [floe\nversion: {", "Chart.yaml: not valid YAML at line"),
    "binary": (bytes(range(256)), "Chart.yaml: not UTF-8 text"),
    "a list": ("- name: floe\n", "Chart.yaml: the top level must be a mapping"),
    "empty": (
        "",
        "Chart.yaml: the top level must be a mapping (apiVersion, name, version, ...), not empty",
    ),
    "no name": (CHART_YAML.replace("name: floe-platform\n", ""), "Chart.yaml: no name"),
    "name is a list": (
        CHART_YAML.replace("name: floe-platform", "name: [floe]"),
        "Chart.yaml: name must be a string, not a list",
    ),
    "bad name": (
        CHART_YAML.replace("name: floe-platform", "name: Floe_Platform"),
        "Chart.yaml: name:",
    ),
    "no version": (CHART_YAML.replace("version: 0.1.0\n", ""), "Chart.yaml: no version"),
    "no apiVersion": (CHART_YAML.replace("apiVersion: v2\n", ""), "Chart.yaml: no apiVersion"),
    "a key twice": (CHART_YAML + "name: other\n", "Chart.yaml: line 7: key 'name' appears twice"),
    "dependencies not a list": (
        CHART_YAML + "dependencies: {a: 1}\n",
        "dependencies must be a list",
    ),
    "dependency not a mapping": (
        CHART_YAML + "dependencies: [floe-common]\n",
        "dependencies[0] must be a mapping",
    ),
    "annotations not strings": (
        CHART_YAML.replace("annotations:\n", "annotations:\n  n: 1\n"),
        "annotations must be a mapping of strings",
    ),
    "no compatibility annotation": (
        CHART_YAML.split("annotations:")[0],
        "Chart.yaml: no annotations.floe.dev/compatibility",
    ),
    "annotation not JSON": (
        _annotation("""'{"0.1.0": '"""),
        "annotations.floe.dev/compatibility: not valid JSON at line 1, column 11",
    ),
    "annotation not an object": (
        _annotation("""'[">=0.1.0"]'"""),
        "annotations.floe.dev/compatibility: must be a JSON object",
    ),
    "annotation with a key twice": (
        _annotation("""'{"0.1.0": ">=0.1.0", "0.1.0": "<1.0.0"}'"""),
        "key '0.1.0' appears twice",
    ),
    "annotation with an unsupported range": (
        _annotation("""'{"0.1.0": "^0.1.0"}'"""),
        "unsupported version constraint '^0.1.0'",
    ),
    "annotation nested deeply": (
        _annotation("'" + "[" * 1000 + "]" * 1000 + "'"),
        "nested more than 64 levels deep",
    ),
}


@pytest.mark.parametrize("case", list(BROKEN_CHARTS))
def test_a_broken_chart_is_named_with_its_problem(tmp_path: Path, case: str):
    chart_yaml, problem = BROKEN_CHARTS[case]
    chart = make_chart(tmp_path, chart_yaml)
    if case == "no Chart.yaml":
        (chart / "README.md").write_text("not a chart")
    fails_fast(lambda: load_floe_chart(chart), ChartPathError, str(chart), problem)


@pytest.mark.parametrize("what", ["missing", "a file", "an empty folder", "a symlink loop"])
def test_a_chart_path_that_is_no_folder_is_named(tmp_path: Path, what: str):
    chart = tmp_path / "chart"
    if what == "a file":
        chart.write_text(CHART_YAML)
    elif what == "an empty folder":
        chart.mkdir()
    elif what == "a symlink loop":
        chart.symlink_to(tmp_path / "other")
        (tmp_path / "other").symlink_to(chart)
    problem = {
        "missing": "does not exist",
        "a file": "is a file, not a chart folder",
        "an empty folder": "is an empty folder",
        "a symlink loop": "is a symbolic link loop",
    }[what]
    fails_fast(lambda: load_floe_chart(chart), ChartPathError, str(chart), problem)
    fails_fast(lambda: local_dependencies(chart), ChartPathError, str(chart), problem)


def test_a_broken_values_schema_is_named(tmp_path: Path):
    chart = make_chart(tmp_path)
    (chart / "values.schema.json").write_text('{"type": "object",')
    fails_fast(
        lambda: load_floe_chart(chart),
        ChartPathError,
        str(chart / "values.schema.json"),
        "not valid JSON",
    )


def test_the_configuration_s_chart_paths_are_checked_with_their_dependencies(tmp_path: Path):
    chart = make_chart(
        tmp_path,
        CHART_YAML
        + "dependencies:\n  - {name: floe-common, version: 0.1.0, repository: file://../nowhere}\n",
    )
    config = parse_deployment_config(config_text(platform=chart), "f.yaml")
    fails_fast(
        lambda: check_chart_paths(config),
        ChartPathError,
        f"{chart}: a file:// dependency: {tmp_path / 'nowhere'}: does not exist",
    )


def test_a_dependency_cycle_is_refused(tmp_path: Path):
    dependency = (
        "dependencies:\n  - {name: floe-common, version: 0.1.0, repository: file://../chart}\n"
    )
    chart = make_chart(tmp_path, CHART_YAML + dependency)
    config = parse_deployment_config(config_text(platform=chart), "f.yaml")
    fails_fast(lambda: check_chart_paths(config), ChartPathError, str(chart), "form a cycle")


def test_the_repository_s_charts_pass_the_check():
    check_chart_paths(load_deployment_config(ROOT / "floe-deploy.yaml"))
    assert read_chart_metadata(ROOT / "charts/floe-common")["name"] == "floe-common"


# --- the command line and the code location --------------------------------------------------
def _broken_inputs(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text(config_text() + billion_laughs_under_merge())
    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(config_text().encode() + "# café\n".encode("latin-1"))
    empty_chart = tmp_path / "empty-chart"
    empty_chart.mkdir()
    bad_chart = tmp_path / "bad-chart.yaml"
    bad_chart.write_text(config_text(platform=empty_chart))
    deep = tmp_path / "deep.json"
    deep.write_text("[" * 100_000 + "]" * 100_000)
    bad_artifacts = tmp_path / "bad-artifacts.yaml"
    bad_artifacts.write_text(config_text().replace(str(ARTIFACTS), str(deep)))
    return {
        "alias bomb": (bomb, "alias bomb"),
        "latin-1": (latin1, "not UTF-8 text"),
        "empty chart folder": (bad_chart, f"{empty_chart}: is an empty folder"),
        "deep artifacts": (bad_artifacts, f"{deep}: objects and arrays nested more than 64"),
    }


@pytest.mark.parametrize("case", ["alias bomb", "latin-1", "empty chart folder", "deep artifacts"])
def test_the_cli_exits_2_with_one_line(tmp_path: Path, case: str):
    config, problem = _broken_inputs(tmp_path)[case]
    result = subprocess.run(
        [
            str(BIN / "floe-deploy"),
            "values",
            "--config",
            str(config),
            "--env",
            "dev",
            "--chart",
            "platform",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert result.stderr.count("\n") == 1, result.stderr
    assert result.stderr.startswith("floe-deploy: ") and problem in result.stderr, result.stderr
    assert result.stdout == ""


def test_values_of_one_chart_check_that_chart_only(tmp_path: Path):
    # Printing the jobs values reads no platform chart, so a broken one does not stop it;
    # the platform's values (and every cluster command: the hostile corpus) still refuse it.
    config, problem = _broken_inputs(tmp_path)["empty chart folder"]
    command = [str(BIN / "floe-deploy"), "values", "--config", str(config), "--env", "dev"]
    jobs = subprocess.run([*command, "--chart", "jobs"], capture_output=True, text=True, timeout=60)
    assert jobs.returncode == 0, jobs.stderr
    assert yaml.safe_load(jobs.stdout)["models"], jobs.stdout[:500]
    platform = subprocess.run(
        [*command, "--chart", "platform"], capture_output=True, text=True, timeout=60
    )
    assert platform.returncode == 2 and problem in platform.stderr, platform.stderr


@pytest.mark.parametrize("case", ["latin-1", "empty chart folder"])
def test_the_code_location_fails_loading_with_the_message_only(tmp_path: Path, case: str):
    config, problem = _broken_inputs(tmp_path)[case]
    result = subprocess.run(
        [str(BIN / "dagster"), "definitions", "validate", "-w", "workspace.yaml"],
        cwd=ROOT,
        env={**os.environ, "FLOE_DEPLOY_CONFIG": str(config)},
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 1, output[-2000:]
    assert problem in output, output[-2000:]
    assert "Traceback" not in output and "Stack Trace" not in output, output[-3000:]
    # The message is the error, on its own line after Dagster's heading.
    failure = output.split("Validation failed for code location")[1]
    assert re.search(rf"\n\n{re.escape(str(config))}: [^\n]*{re.escape(problem)}", failure), failure


def test_parsing_is_unchanged_for_good_files(tmp_path: Path):
    shutil.copy(ROOT / "floe-deploy.yaml", tmp_path / "floe-deploy.yaml")
    text = (ROOT / "floe-deploy.yaml").read_text()
    assert load_deployment_config(ROOT / "floe-deploy.yaml") == parse_deployment_config(
        text, str(ROOT / "floe-deploy.yaml"), ROOT
    )
    assert (
        load_compiled_artifacts(ARTIFACTS).digest
        == parse_compiled_artifacts(ARTIFACTS.read_text()).digest
    )


def test_chart_metadata_read_again_sees_an_edit_of_the_same_size_at_once(tmp_path: Path):
    # Parsed Chart.yaml is kept by its text, not its timestamp: an edit within the same clock
    # tick, to the same size, is still seen; and a caller's change to its copy is its own.
    chart = tmp_path / "chart"
    chart.mkdir()
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    first = read_chart_metadata(chart)
    first["version"] = "changed by a caller"
    assert read_chart_metadata(chart)["version"] == "0.1.0"
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.2.0\n")
    assert read_chart_metadata(chart)["version"] == "0.2.0"
