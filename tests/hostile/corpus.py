"""The hostile-input corpus of issue 12: configurations, CompiledArtifacts documents and chart
folders that ``floe-deploy`` must refuse with a clear message (or, for the random mutations of
the valid examples, may accept), never with a traceback or a hang.

Each ``Case`` is (name, files to write, argv, expected exit code, expected message fragment),
plus what the message must name (the file or the field) and which commands must refuse it. The
files are written into a fresh folder per run (``materialize``); ``{dir}`` in argv and in the
expected names stands for that folder. Everything here is deterministic: the generated
families use fixed seeds, the Hypothesis family too (``@seed``, no example database).

Families (``FAMILIES``, counted by ``family_counts``):

- ``chart_paths``: unusable chart folders and chart files, for both charts;
- ``encoding``: configurations and documents that are not UTF-8, or UTF-8 cut short;
- ``structure``: deep nesting (YAML and JSON, 65 to 10,000 levels), alias bombs, duplicate
  keys, files just over their size limits (sparse where the content does not matter);
- ``regex_traps``: a trailing newline, non-ASCII digits, full-width letters, zero-width
  spaces... in every patterned field;
- ``cron``: invalid ``redeploySchedules``;
- ``presets``: custom resource presets with impossible quantities, limits below requests;
- ``label_isolation``: release names longer than Helm (and the chart) allow;
- ``overrides``: overrides whose values break the chart's schema or the secret rules (exit 1);
- ``system_namespaces``: default, kube-system, kube-public, kube-node-lease as targets;
- ``mappings``: duplicate mapping names, a 5,000-model dependency cycle, long lists;
- ``mutations``: Hypothesis-drawn mutations of the valid example configuration and artifacts.
"""

from __future__ import annotations

import copy
import functools
import json
import os
import random
import shutil
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from hypothesis import HealthCheck, Phase, given, seed, settings
from hypothesis import strategies as st

from floe_deploy_assets.models.inputs import (
    ARTIFACTS_MAX_BYTES,
    CHART_FILE_MAX_BYTES,
    CONFIG_MAX_BYTES,
    MAX_YAML_VALUES,
)

ROOT = Path(__file__).resolve().parents[2]
CHARTS = ROOT / "charts"
EXAMPLE_CONFIG = ROOT / "floe-deploy.yaml"
EXAMPLE_ARTIFACTS = ROOT / "examples" / "compiled-artifacts.json"

DIR = "{dir}"  # the case's folder, filled in when the case runs
CONFIG_FILE = "floe-deploy.yaml"
ARTIFACTS_FILE = "compiled-artifacts.json"
CONFIG_PATH = f"{DIR}/{CONFIG_FILE}"
ARTIFACTS_PATH = f"{DIR}/{ARTIFACTS_FILE}"

EXIT_OK = 0
EXIT_INVALID_VALUES = 1
EXIT_BAD_INPUT = 2

# Which commands must refuse a case (the others may get further, e.g. to the cluster):
INPUT = "input"  # every command: the configuration, the document or a chart path is unusable
PLATFORM = "platform"  # the platform chart's values or compatibility: values/render of it, deploy
JOBS = "jobs"  # the jobs chart's: values/render of it, deploy, run-models
RENDER = "render"  # only rendering fails (values are fine): values exits 0, render refuses

FAMILIES = (
    "chart_paths",
    "encoding",
    "structure",
    "regex_traps",
    "cron",
    "presets",
    "label_isolation",
    "overrides",
    "system_namespaces",
    "mappings",
    "mutations",
)


# --- what a case writes ----------------------------------------------------------------------
@dataclass(frozen=True)
class Sparse:
    """A file of ``size`` bytes that takes no disk space (a hole): refused from its size."""

    size: int


@dataclass(frozen=True)
class Filled:
    """A real file of exactly ``size`` bytes: ``head``, then ``fill`` repeated."""

    head: bytes
    size: int
    fill: bytes = b" "


@dataclass(frozen=True)
class Symlink:
    target: str  # relative to the link's folder, or absolute


@dataclass(frozen=True)
class Folder:
    pass


@dataclass(frozen=True)
class Fifo:
    """A named pipe nobody writes to."""


@dataclass(frozen=True)
class ChartCopy:
    """A copy of one of this repository's chart folders (without its packaged ``charts/``),
    with some files replaced (``None``: deleted)."""

    source: str
    changes: tuple[tuple[str, bytes | None], ...] = ()


FileSpec = bytes | Sparse | Filled | Symlink | Folder | Fifo | ChartCopy


@dataclass(frozen=True)
class Case:
    family: str
    name: str
    files: tuple[tuple[str, FileSpec], ...]
    argv: tuple[str, ...]  # the ``values`` command; ``argv_for`` derives the others
    exit_code: int | None  # None: a mutation, which may be accepted (0) or refused (1 or 2)
    fragment: str  # in the message
    names: tuple[str, ...] = ()  # the file or field the message names (all of them)
    scope: str = INPUT
    max_message: int = 2000  # characters of output on a refusal
    forbidden: tuple[str, ...] = ()  # never in the output (credentials)
    detail: str = ""  # what a generated case is, for the report

    @property
    def id(self) -> str:
        return f"{self.family}/{self.name}"

    @property
    def chart(self) -> str:
        return self.argv[self.argv.index("--chart") + 1]

    def expected_exit(self, command: str) -> int | None:
        if self.scope == RENDER and command != "render":
            return EXIT_OK
        return self.exit_code

    def refused_by(self, command: str) -> bool:
        """Whether ``command`` must refuse the case before it does anything (``deploy`` and
        ``run-models``: before contacting a cluster)."""
        if self.exit_code is None:
            return False
        if command in ("values", "render"):
            return self.scope != RENDER or command == "render"
        if command == "deploy":  # both charts, platform first
            return self.scope in (INPUT, PLATFORM, JOBS)
        if command == "run-models":  # the jobs chart only
            return self.scope in (INPUT, JOBS)
        raise ValueError(command)

    def argv_for(self, command: str, directory: Path, kubeconfig: Path | None = None) -> list[str]:
        argv = [part.replace(DIR, str(directory)) for part in self.argv]
        if command in ("values", "render"):
            return [command, *argv[1:]]
        # deploy and run-models work on the environment (deploy: both charts, as users run it).
        chart_at = argv.index("--chart")
        rest = argv[1:chart_at] + argv[chart_at + 2 :]
        extra = ["--dry-run"] if command == "deploy" else []
        return [command, *rest, *extra, "--kubeconfig", str(kubeconfig)]

    def expected_names(self, directory: Path) -> list[str]:
        return [name.replace(DIR, str(directory)) for name in self.names]


def materialize(case: Case, directory: Path) -> None:
    """Write the case's files under ``directory``."""
    for relative, spec in case.files:
        path = directory / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(spec, bytes):
            path.write_bytes(spec)
        elif isinstance(spec, Sparse):
            with path.open("wb") as file:
                file.truncate(spec.size)
        elif isinstance(spec, Filled):
            body = spec.head + spec.fill * ((spec.size - len(spec.head)) // len(spec.fill) + 1)
            path.write_bytes(body[: spec.size])
        elif isinstance(spec, Symlink):
            path.symlink_to(spec.target)
        elif isinstance(spec, Folder):
            path.mkdir(exist_ok=True)
        elif isinstance(spec, Fifo):
            os.mkfifo(path)
        elif isinstance(spec, ChartCopy):
            shutil.copytree(ROOT / spec.source, path, ignore=shutil.ignore_patterns("charts"))
            for name, content in spec.changes:
                if content is None:
                    (path / name).unlink()
                else:
                    (path / name).parent.mkdir(parents=True, exist_ok=True)
                    (path / name).write_bytes(content)
        else:  # pragma: no cover
            raise TypeError(spec)


# --- the valid inputs that the cases break ---------------------------------------------------
@functools.cache
def _example_config() -> dict[str, Any]:
    document = yaml.safe_load(EXAMPLE_CONFIG.read_text())
    document["artifacts"]["path"] = str(EXAMPLE_ARTIFACTS)
    for chart in ("platform", "jobs"):
        document["charts"][chart]["path"] = str(ROOT / document["charts"][chart]["path"])
    projects = document["artifacts"].get("dbtProjects", {})
    for product, project in projects.items():
        projects[product] = str(ROOT / project)
    return document


@functools.cache
def _example_artifacts() -> dict[str, Any]:
    return json.loads(EXAMPLE_ARTIFACTS.read_text())


def example_config() -> dict[str, Any]:
    """floe-deploy.yaml with its paths made absolute (the case's file lives elsewhere)."""
    return copy.deepcopy(_example_config())


def example_artifacts() -> dict[str, Any]:
    return copy.deepcopy(_example_artifacts())


_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def dump_yaml(document: Any) -> bytes:
    options: dict[str, Any] = {"Dumper": _DUMPER, "sort_keys": False, "width": 1_000_000}
    text = yaml.dump(document, allow_unicode=True, **options)
    if (
        yaml.load(text, Loader=_LOADER) != document
    ):  # PyYAML writes a NEL (U+0085) unescaped, then reads
        # it as a line break: every scalar double-quoted, with escapes, is read back as written.
        text = yaml.dump(document, default_style='"', **options)
    assert yaml.load(text, Loader=_LOADER) == document, "the corpus must write what it means"
    return text.encode("utf-8")


def dump_json(document: Any) -> bytes:
    return json.dumps(document, indent=1, ensure_ascii=False).encode("utf-8")


CONFIG_TEXT = dump_yaml(example_config())
ARTIFACTS_TEXT = dump_json(example_artifacts())


def argv(env: str = "dev", chart: str = "platform", artifacts: str | None = None) -> tuple:
    extra = ("--artifacts", artifacts) if artifacts else ()
    return ("values", "--config", CONFIG_PATH, "--env", env, "--chart", chart, *extra)


def config_case(
    family: str,
    name: str,
    config: bytes | FileSpec | dict[str, Any],
    *,
    fragment: str,
    names: Iterable[str] = (CONFIG_PATH,),
    exit_code: int | None = EXIT_BAD_INPUT,
    env: str = "dev",
    chart: str = "platform",
    files: Mapping[str, FileSpec] | None = None,
    **extra: Any,
) -> Case:
    """A case whose hostile part is the configuration (or what it points to)."""
    content = dump_yaml(config) if isinstance(config, dict) else config
    return Case(
        family,
        name,
        ((CONFIG_FILE, content), *(files or {}).items()),
        argv(env, chart),
        exit_code,
        fragment,
        tuple(names),
        **extra,
    )


def artifacts_case(
    family: str,
    name: str,
    artifacts: bytes | FileSpec | dict[str, Any],
    *,
    fragment: str,
    names: Iterable[str] = (ARTIFACTS_PATH,),
    exit_code: int | None = EXIT_BAD_INPUT,
    chart: str = "platform",
    **extra: Any,
) -> Case:
    """A case whose hostile part is the CompiledArtifacts document, named by the config."""
    config = example_config()
    config["artifacts"]["path"] = ARTIFACTS_FILE
    content = dump_json(artifacts) if isinstance(artifacts, dict) else artifacts
    return Case(
        family,
        name,
        ((CONFIG_FILE, dump_yaml(config)), (ARTIFACTS_FILE, content)),
        argv("dev", chart),
        exit_code,
        fragment,
        tuple(names),
        **extra,
    )


# --- chart paths -----------------------------------------------------------------------------
COMPATIBILITY = "floe.dev/compatibility"
GOOD_MATRIX = '{"0.1.0": ">=0.1.0, <0.11.0"}'


def chart_yaml(**changes: Any) -> dict[str, Any]:
    """A minimal valid Chart.yaml, changed (a value of ``...`` deletes the key)."""
    document: dict[str, Any] = {
        "apiVersion": "v2",
        "name": "floe-hostile",
        "version": "0.1.0",
        "appVersion": "0.1.0",
        "annotations": {COMPATIBILITY: GOOD_MATRIX},
    }
    for key, value in changes.items():
        if value is ...:
            document.pop(key, None)
        else:
            document[key] = value
    return document


def chart_with_matrix(matrix: str) -> bytes:
    return dump_yaml(chart_yaml(annotations={COMPATIBILITY: matrix}))


def chart_with_dependency(repository: Any, **dependency: Any) -> bytes:
    entry = {"name": "dep", "version": "0.1.0", "repository": repository, **dependency}
    return dump_yaml(chart_yaml(dependencies=[entry]))


GOOD_CHART = dump_yaml(chart_yaml())
ARTIFACTS_OR_EXAMPLE = str(EXAMPLE_ARTIFACTS)  # the chart cases read the example document
NOT_YAML = {
    "unclosed-flow": b"apiVersion: v2\nname: [floe\n",
    "unclosed-quote": b"apiVersion: 'v2\nname: floe\n",
    "mapping-in-scalar": b"apiVersion: v2: v3\n",
    "tab-indent": b"apiVersion: v2\n\tname: floe\n",
    "bad-indent": b"apiVersion: v2\n  name: floe\n version: 1\n",
    "two-documents": b"apiVersion: v2\n---\nname: floe\n",
    "undefined-alias": b"apiVersion: *nowhere\n",
    "python-tag": b"apiVersion: !!python/object/apply:os.system ['true']\n",
    "unknown-tag": b"apiVersion: !floe v2\n",
    "directive": b"%YAML 9.9\n---\napiVersion: v2\n",
    "nul-byte": b"apiVersion: v2\x00\n",
    "control-char": b"apiVersion: v2\x07\n",
    "bad-date": b"apiVersion: v2\nname: floe\nversion: 0.1.0\nwhen: 2020-02-30\n",
}
NOT_A_MAPPING = {
    "empty": (b"", "not empty"),
    "comment-only": (b"# nothing here\n", "not empty"),
    "a-list": (b"- apiVersion: v2\n", "not a list"),
    "a-string": (b"floe\n", "not a string"),
    "a-number": (b"42\n", "not a number"),
    "null": (b"null\n", "not empty"),
}


def _chart_file_cases(chart: str) -> Iterator[tuple[str, dict[str, FileSpec], str, str, str]]:
    """(name, files under the case folder, fragment, named path, scope) of unusable charts;
    the configuration's ``charts.<chart>.path`` is ``chart`` (``chart-parent/chart`` for the
    case named ``under-a-file``)."""
    c = "chart"
    cy = f"{c}/Chart.yaml"
    named = f"{DIR}/{c}"
    source = f"{DIR}/{cy}"
    yield "missing", {}, "does not exist", named, INPUT
    yield (
        "under-a-file",
        {"chart-parent": b"x"},
        "a part of it is a file",
        f"{DIR}/chart-parent/chart",
        INPUT,
    )
    yield "a-file", {c: b"apiVersion: v2\n"}, "is a file, not a chart folder", named, INPUT
    yield "empty-folder", {c: Folder()}, "is an empty folder", named, INPUT
    yield (
        "symlink-loop",
        {c: Symlink("loop"), "loop": Symlink(c)},
        "symbolic link loop",
        named,
        INPUT,
    )
    yield "self-symlink", {c: Symlink(c)}, "symbolic link loop", named, INPUT
    yield "dangling-symlink", {c: Symlink("nowhere")}, "does not exist", named, INPUT
    yield "symlink-to-dev-null", {c: Symlink("/dev/null")}, "is a file", named, INPUT
    yield "no-chart-yaml", {f"{c}/values.yaml": b"a: 1\n"}, "has no Chart.yaml", named, INPUT
    yield "lowercase-chart-yaml", {f"{c}/chart.yaml": GOOD_CHART}, "has no Chart.yaml", named, INPUT
    yield "chart-yaml-folder", {cy: Folder()}, "it is a folder, not a file", source, INPUT
    yield "chart-yaml-loop", {cy: Symlink("Chart.yaml")}, "cannot read a Chart.yaml", source, INPUT
    yield "chart-yaml-dangling", {cy: Symlink("gone")}, "cannot read a Chart.yaml", source, INPUT
    yield "chart-yaml-dev-zero", {cy: Symlink("/dev/zero")}, "larger than the 4 MiB", source, INPUT
    yield "chart-yaml-fifo", {cy: Fifo()}, "top level must be a mapping", source, INPUT
    yield (
        "chart-yaml-oversize",
        {cy: Sparse(CHART_FILE_MAX_BYTES + 1)},
        "larger than the 4 MiB a Chart.yaml may have",
        source,
        INPUT,
    )
    yield "chart-yaml-latin1", {cy: b"apiVersion: v2\nname: caf\xe9\n"}, "not UTF-8", source, INPUT
    yield (
        "chart-yaml-utf16",
        {cy: "apiVersion: v2\n".encode("utf-16")},
        "UTF-16 byte-order mark",
        source,
        INPUT,
    )
    for name, text in NOT_YAML.items():
        yield f"chart-yaml-{name}", {cy: text}, "not valid YAML", source, INPUT
    for name, (text, what) in NOT_A_MAPPING.items():
        yield (
            f"chart-yaml-{name}",
            {cy: text},
            f"must be a mapping (apiVersion, name, version, ...), {what}",
            source,
            INPUT,
        )
    for key in ("apiVersion", "name", "version"):
        yield f"no-{key}", {cy: dump_yaml(chart_yaml(**{key: ...}))}, f"no {key}", source, INPUT
        yield (
            f"{key}-a-list",
            {cy: dump_yaml(chart_yaml(**{key: ["v2"]}))},
            f"{key} must be a string, not a list",
            source,
            INPUT,
        )
        yield (
            f"{key}-a-mapping",
            {cy: dump_yaml(chart_yaml(**{key: {"a": 1}}))},
            f"{key} must be a string, not a mapping",
            source,
            INPUT,
        )
        yield (
            f"{key}-a-number",
            {cy: dump_yaml(chart_yaml(**{key: 2}))},
            f"{key} must be a string, not a number",
            source,
            INPUT,
        )
        yield (
            f"{key}-blank",
            {cy: dump_yaml(chart_yaml(**{key: "  "}))},
            f"{key} must be a string",
            source,
            INPUT,
        )
    # A bytes value (!!binary): refused as not a string.
    yield (
        "api-version-binary",
        {cy: b"apiVersion: !!binary '@@@'\nname: x\nversion: 0.1.0\n"},
        "apiVersion must be a string",
        source,
        INPUT,
    )
    yield (
        "api-version-v3",
        {cy: dump_yaml(chart_yaml(apiVersion="v3"))},
        "is not a Helm chart API version",
        source,
        INPUT,
    )
    yield (
        "name-uppercase",
        {cy: dump_yaml(chart_yaml(name="Floe"))},
        "name: String should match pattern",
        source,
        INPUT,
    )
    yield (
        "version-not-semver",
        {cy: dump_yaml(chart_yaml(version="one"))},
        "version: String should match pattern",
        source,
        INPUT,
    )
    yield (
        "version-newline",
        {cy: dump_yaml(chart_yaml(version="0.1.0\n"))},
        "version: String should match pattern",
        source,
        INPUT,
    )
    yield "no-app-version", {cy: dump_yaml(chart_yaml(appVersion=...))}, "appVersion", source, INPUT
    yield (
        "dependencies-a-string",
        {cy: dump_yaml(chart_yaml(dependencies="floe-common"))},
        "dependencies must be a list, not a string",
        source,
        INPUT,
    )
    yield (
        "dependencies-a-mapping",
        {cy: dump_yaml(chart_yaml(dependencies={"name": "x"}))},
        "dependencies must be a list, not a mapping",
        source,
        INPUT,
    )
    yield (
        "dependency-a-string",
        {cy: dump_yaml(chart_yaml(dependencies=["floe-common"]))},
        "dependencies[0] must be a mapping",
        source,
        INPUT,
    )
    yield (
        "dependency-repository-a-number",
        {cy: chart_with_dependency(7)},
        "dependencies[0].repository must be a string",
        source,
        INPUT,
    )
    yield (
        "dependency-name-a-list",
        {
            cy: dump_yaml(
                chart_yaml(
                    dependencies=[{"name": ["x"], "version": "0.1.0", "repository": "file://../d"}]
                )
            )
        },
        "dependencies[0].name must be a string",
        source,
        INPUT,
    )
    yield (
        "dependency-bad-repository",
        {cy: chart_with_dependency("ftp://example.com/charts")},
        "dependencies[0].repository: String should match pattern",
        source,
        INPUT,
    )
    yield (
        "dependency-bad-version",
        {cy: chart_with_dependency("https://example.com/charts", version="latest!")},
        "dependencies[0].version: String should match pattern",
        source,
        INPUT,
    )
    yield (
        "annotations-a-list",
        {cy: dump_yaml(chart_yaml(annotations=[COMPATIBILITY]))},
        "annotations must be a mapping of strings",
        source,
        INPUT,
    )
    yield (
        "annotation-a-mapping",
        {cy: dump_yaml(chart_yaml(annotations={COMPATIBILITY: {"0.1.0": ">=0.1.0"}}))},
        "annotations must be a mapping of strings",
        source,
        INPUT,
    )
    yield (
        "annotation-a-number",
        {cy: dump_yaml(chart_yaml(annotations={COMPATIBILITY: 1}))},
        "annotations must be a mapping of strings",
        source,
        INPUT,
    )
    yield (
        "no-annotations",
        {cy: dump_yaml(chart_yaml(annotations=...))},
        f"no annotations.{COMPATIBILITY}",
        source,
        INPUT,
    )
    yield (
        "no-compatibility",
        {cy: dump_yaml(chart_yaml(annotations={"other": "x"}))},
        f"no annotations.{COMPATIBILITY}",
        source,
        INPUT,
    )
    matrices = {
        "empty-string": ("", "not valid JSON"),
        "not-json": ("0.1.0 -> >=0.1.0", "not valid JSON"),
        "json-array": ('[">=0.1.0"]', "must be a JSON object of chart version"),
        "json-empty-object": ("{}", "must be a JSON object of chart version"),
        "json-null": ("null", "must be a JSON object of chart version"),
        "json-string": ('">=0.1.0"', "must be a JSON object of chart version"),
        "range-a-number": ('{"0.1.0": 5}', "must be a string of versions"),
        "range-a-list": ('{"0.1.0": [">=0.1.0"]}', "must be a string of versions"),
        "tilde-range": ('{"0.1.0": "~0.1"}', "unsupported version constraint"),
        "two-part-version": ('{"0.1.0": ">=0.1"}', "unsupported version constraint"),
        "dangling-comparator": ('{"0.1.0": ">=0.1.0, <"}', "unsupported version constraint"),
        "empty-range": ('{"0.1.0": ""}', "unsupported version constraint"),
        "arabic-indic-digits": ('{"0.1.0": ">=0.1.0, <\u0661.0.0"}', COMPATIBILITY),
        "fullwidth-digits": ('{"0.1.0": ">=\uff10.1.0"}', "is not a version constraint"),
        "nan": ('{"0.1.0": NaN}', "not valid JSON"),
        "duplicate-key": ('{"0.1.0": ">=0.1.0", "0.1.0": ">=0.2.0"}', "appears twice"),
        "nested-65": ("[" * 65 + "]" * 65, "nested more than 64 levels"),
        "nested-10000": ("[" * 10000 + "]" * 10000, "nested more than 64 levels"),
        "key-not-semver": ('{"0.1": ">=0.1.0"}', "is not a semver"),
        "key-newline": ('{"0.1.0\\n": ">=0.1.0"}', "is not a semver"),
    }
    for name, (matrix, fragment) in matrices.items():
        yield f"compatibility-{name}", {cy: chart_with_matrix(matrix)}, fragment, source, INPUT
    # The chart is readable, but does not support these CompiledArtifacts (version 0.6.0): only
    # the commands using that chart refuse.
    scope = PLATFORM if chart == "platform" else JOBS
    yield (
        "compatibility-no-entry",
        {cy: chart_with_matrix('{"9.9.9": ">=0.1.0"}')},
        "has no entry in its compatibility matrix",
        ARTIFACTS_OR_EXAMPLE,
        scope,
    )
    yield (
        "compatibility-excludes",
        {cy: chart_with_matrix('{"0.1.0": ">=0.7.0"}')},
        "supports floe-core >=0.7.0, but the CompiledArtifacts are version 0.6.0",
        ARTIFACTS_OR_EXAMPLE,
        scope,
    )
    yield (
        "compatibility-upper-bound",
        {cy: chart_with_matrix('{"0.1.0": "<0.6.0"}')},
        "but the CompiledArtifacts are version 0.6.0",
        ARTIFACTS_OR_EXAMPLE,
        scope,
    )
    # file:// dependencies
    dependency_named = f"{DIR}/dep"
    yield (
        "dependency-missing",
        {cy: chart_with_dependency("file://../dep")},
        "a file:// dependency",
        dependency_named,
        INPUT,
    )
    yield (
        "dependency-a-file",
        {cy: chart_with_dependency("file://../dep"), "dep": b"x"},
        "is a file, not a chart folder",
        dependency_named,
        INPUT,
    )
    yield (
        "dependency-empty",
        {cy: chart_with_dependency("file://../dep"), "dep": Folder()},
        "is an empty folder",
        dependency_named,
        INPUT,
    )
    yield (
        "dependency-loop",
        {cy: chart_with_dependency("file://../dep"), "dep": Symlink("dep")},
        "symbolic link loop",
        dependency_named,
        INPUT,
    )
    yield (
        "dependency-garbage",
        {cy: chart_with_dependency("file://../dep"), "dep/Chart.yaml": b"{{{"},
        "not valid YAML",
        dependency_named,
        INPUT,
    )
    yield (
        "dependency-no-name",
        {
            cy: chart_with_dependency("file://../dep"),
            "dep/Chart.yaml": dump_yaml(chart_yaml(name=...)),
        },
        "no name",
        dependency_named,
        INPUT,
    )
    yield (
        "dependency-on-itself",
        {cy: chart_with_dependency("file://.")},
        "file:// dependencies form a cycle",
        named,
        INPUT,
    )
    yield (
        "dependency-empty-path",
        {cy: chart_with_dependency("file://")},
        "file:// dependencies form a cycle",
        named,
        INPUT,
    )
    yield (
        "dependency-cycle-of-two",
        {
            cy: chart_with_dependency("file://../dep"),
            "dep/Chart.yaml": chart_with_dependency("file://../chart"),
        },
        "file:// dependencies form a cycle",
        named,
        INPUT,
    )
    yield (
        "dependency-deep-cycle",
        {
            cy: chart_with_dependency("file://../d1"),
            "d1/Chart.yaml": chart_with_dependency("file://../d2"),
            "d2/Chart.yaml": chart_with_dependency("file://../d3"),
            "d3/Chart.yaml": chart_with_dependency("file://../d1"),
        },
        "file:// dependencies form a cycle",
        f"{DIR}/d1",
        INPUT,
    )
    # values.schema.json beside a valid Chart.yaml
    schema = f"{c}/values.schema.json"
    schema_named = f"{DIR}/{schema}"
    schemas: dict[str, tuple[FileSpec, str]] = {
        "not-json": (b"{'type': 'object'}", "not valid JSON"),
        "an-array": (b"[]", "must be a JSON object"),
        "empty": (b"", "not valid JSON"),
        "latin1": (b'{"description": "caf\xe9"}', "not UTF-8"),
        "nested": (b'{"a": ' + b"[" * 100 + b"]" * 100 + b"}", "nested more than 64 levels"),
        "duplicate-key": (b'{"type": "object", "type": "array"}', "appears twice"),
        "oversize": (
            Sparse(CHART_FILE_MAX_BYTES + 1),
            "larger than the 4 MiB a values schema may have",
        ),
        "a-folder": (Folder(), "it is a folder, not a file"),
        "loop": (Symlink("values.schema.json"), "cannot read a values schema"),
    }
    for name, (spec, fragment) in schemas.items():
        yield f"values-schema-{name}", {cy: GOOD_CHART, schema: spec}, fragment, schema_named, INPUT


def chart_path_cases() -> Iterator[Case]:
    for chart in ("platform", "jobs"):
        for name, files, fragment, named, scope in _chart_file_cases(chart):
            config = example_config()
            config["charts"][chart]["path"] = (
                "chart-parent/chart" if name == "under-a-file" else "chart"
            )
            yield config_case(
                "chart_paths",
                f"{chart}-{name}",
                config,
                files=files,
                fragment=fragment,
                names=(named,),
                chart=chart,
                scope=scope,
            )
    # Charts Helm cannot render although every file we read is fine: ``values`` does not
    # render and accepts them; ``render`` refuses them, naming the chart. (floe-jobs, copied
    # with its library chart beside it, as file://../floe-common wants.)
    jobs_chart = (CHARTS / "floe-jobs" / "Chart.yaml").read_text()
    no_dependencies = (
        jobs_chart.split("dependencies:")[0]
        + jobs_chart.split("repository: file://../floe-common\n")[1]
    )
    render_only = {
        "no-dependencies-key": (("Chart.yaml", no_dependencies.encode()),),
        "no-chart-lock": (("Chart.lock", None),),
        "template-syntax-error": (("templates/hostile.yaml", b"kind: {{ .Values.image\n"),),
        "template-fails": (("templates/hostile.yaml", b'{{ fail "hostile template" }}\n'),),
        "template-unknown-function": (("templates/hostile.yaml", b"a: {{ nosuchfunction 1 }}\n"),),
        "template-missing-include": (
            ("templates/hostile.yaml", b'{{ include "no.such.template" . }}\n'),
        ),
    }
    for name, changes in render_only.items():
        config = example_config()
        config["charts"]["jobs"]["path"] = "chart"
        yield config_case(
            "chart_paths",
            f"jobs-render-{name}",
            config,
            files={
                "chart": ChartCopy("charts/floe-jobs", changes),
                "floe-common": ChartCopy("charts/floe-common"),
            },
            fragment="out of sync" if name == "no-dependencies-key" else "rendering failed",
            names=(f"{DIR}/chart",),
            chart="jobs",
            scope=RENDER,
        )


# --- encoding --------------------------------------------------------------------------------
def _positions(size: int) -> list[int]:
    return sorted({0, 1, 10, size // 4, size // 2, 3 * size // 4, size - 1, size})


INVALID_UTF8 = {
    "latin1-e-acute": b"\xe9",
    "lone-continuation": b"\x80",
    "overlong-slash": b"\xc0\xaf",
    "overlong-3-byte": b"\xe0\x80\x80",
    "utf16-surrogate": b"\xed\xa0\x80",
    "above-u10ffff": b"\xf4\x90\x80\x80",
    "byte-f5": b"\xf5",
    "byte-fe": b"\xfe",
    "byte-ff": b"\xff",
    "cp1252-quote": b"\x93",
}


def _not_utf8(family: str, document: str, text: bytes, make: Callable[..., Case]) -> Iterator[Case]:
    path = CONFIG_PATH if document == "config" else ARTIFACTS_PATH
    for name, bad in INVALID_UTF8.items():
        for position in _positions(len(text))[:: 2 if name != "latin1-e-acute" else 1]:
            content = text[:position] + bad + text[position:]
            yield make(
                family,
                f"{document}-{name}-at-{position}",
                content,
                fragment=f"not UTF-8 text: byte 0x{bad[0]:02x} at offset {position}",
                names=(path,),
            )
    # The whole file in another encoding.
    source = text.decode()
    with_accent = ("# café\n" if document == "config" else "") + source
    encodings = {
        "latin1": (with_accent.encode("latin-1") if document == "config" else None, "byte 0xe9"),
        "utf16-bom": (source.encode("utf-16"), "UTF-16 byte-order mark"),
        "utf16-be-bom": (b"\xfe\xff" + source.encode("utf-16-be"), "UTF-16 byte-order mark"),
        "utf16-le-no-bom": (
            source.encode("utf-16-le"),
            "character #x0000" if document == "config" else "not valid JSON",
        ),
        "utf16-be-no-bom": (
            source.encode("utf-16-be"),
            "character #x0000" if document == "config" else "not valid JSON",
        ),
        "utf16-le-no-bom-accent": (
            ("é" + source).encode("utf-16-le"),
            "not UTF-8 text: byte 0xe9 at offset 0",
        ),
        "utf32-bom": (source.encode("utf-32"), "not UTF-8"),
        "cp1252": ("“quoted”\n".encode("cp1252") + text, "not UTF-8 text: byte 0x93 at offset 0"),
    }
    for name, (encoded, fragment) in encodings.items():
        if encoded is not None:
            yield make(family, f"{document}-{name}", encoded, fragment=fragment, names=(path,))
    # Binary
    rng = random.Random(f"binary-{document}")
    for index in range(12):
        size = rng.choice([1, 2, 16, 100, 1000, 4096, 65536])
        content = rng.randbytes(size)
        try:
            content.decode("utf-8")
            content = b"\xff" + content
        except UnicodeDecodeError:
            pass
        yield make(
            family, f"{document}-binary-{index}", content, fragment="not UTF-8 text", names=(path,)
        )
    for name, blob in (
        (
            "elf",
            b"\x7fELF\x02\x01\x01" + bytes(9) + b"\x02\x00\x3e\x00\x01\x00\x00\x00\xc0\x10\x40\x00",
        ),
        ("gzip", b"\x1f\x8b\x08\x00" + bytes(6)),
        ("png", b"\x89PNG\r\n\x1a\n"),
    ):
        yield make(
            family, f"{document}-binary-{name}", blob, fragment="not UTF-8 text", names=(path,)
        )
    # UTF-8 cut inside a character.
    for char in ("é", "€", "𝄞"):
        encoded = char.encode()
        for cut in range(1, len(encoded)):
            tail = ("\n# " if document == "config" else " ").encode() + encoded[:cut]
            content = text + tail
            yield make(
                family,
                f"{document}-cut-{len(encoded)}-byte-char-after-{cut}",
                content,
                fragment=f"not UTF-8 text: byte 0x{encoded[0]:02x} at offset {len(content) - cut}",
                names=(path,),
            )


def encoding_cases() -> Iterator[Case]:
    yield from _not_utf8("encoding", "config", CONFIG_TEXT, config_case)
    yield from _not_utf8("encoding", "artifacts", ARTIFACTS_TEXT, artifacts_case)
    # Valid UTF-8, a document cut short.
    rng = random.Random("truncated-json")
    for cut in sorted(rng.sample(range(1, len(ARTIFACTS_TEXT) - 2), 12)):
        yield artifacts_case(
            "encoding",
            f"artifacts-truncated-at-{cut}",
            ARTIFACTS_TEXT[:cut],
            fragment="not valid JSON",
        )
    yield config_case("encoding", "config-nul", CONFIG_TEXT + b"\x00", fragment="character #x0000")
    yield config_case(
        "encoding", "config-escape-char", b"\x1b[31m" + CONFIG_TEXT, fragment="character #x001b"
    )
    yield artifacts_case(
        "encoding", "artifacts-nul", ARTIFACTS_TEXT + b"\x00", fragment="not valid JSON"
    )
    yield artifacts_case("encoding", "artifacts-empty", b"", fragment="the file is empty")
    yield artifacts_case(
        "encoding", "artifacts-whitespace", b" \n\t\n", fragment="the file is empty"
    )
    yield config_case("encoding", "config-empty", b"", fragment="the top level must be a mapping")


# --- structure: nesting, alias bombs, duplicate keys, size ----------------------------------
NEST_LEVELS = (65, 66, 100, 500, 999, 1000, 1001, 5000, 10000)


def _yaml_nests(levels: int) -> Iterator[tuple[str, str]]:
    yield "flow-list", "[" * levels + "]" * levels
    yield "flow-map", "{a: " * levels + "1" + "}" * levels
    yield "block-list", "- " * levels + "x"
    if levels <= 500:  # a block mapping of n levels has n*n bytes of indentation
        yield "block-map", "\n".join("  " * (i + 1) + "a:" for i in range(levels)) + " 1"


def _with_yaml_value(value: str, where: str) -> bytes:
    """The example config with ``value`` (YAML text) at the top level or in dev's overrides."""
    text = CONFIG_TEXT.decode()
    if value.startswith("\n"):  # a block node: indented under its key
        indent = "      " if where == "overrides" else ""
        value = value.replace("\n", "\n" + indent)
    if where == "top":
        return (text + f"hostile: {value}\n").encode()
    config = example_config()
    del config["overrides"]
    return (
        dump_yaml(config).decode() + f"overrides:\n  dev:\n    platform:\n      hostile: {value}\n"
    ).encode()


def _artifacts_with(raw: str, where: str) -> bytes:
    document = example_artifacts()
    marker = "__HOSTILE__"
    if where == "governance":
        document["governance"] = {"policy": marker}
    elif where == "data_contracts":
        document["data_contracts"] = [{"columns": marker}]
    else:
        document["x_hostile"] = marker
    return dump_json(document).replace(f'"{marker}"'.encode(), raw.encode())


def _json_nests(levels: int) -> Iterator[tuple[str, str]]:
    yield "array", "[" * levels + "]" * levels
    yield "object", '{"a":' * levels + "1" + "}" * levels
    inner = "[]" if levels % 2 else "1"
    yield "mixed", '[{"a":' * (levels // 2) + inner + "}]" * (levels // 2)
    # Brackets and escaped quotes inside strings must not fool the scanner either way.
    yield "strings", '["]]]\\"[", ' * levels + '"x"' + "]" * levels


def structure_cases() -> Iterator[Case]:
    family = "structure"
    for levels in NEST_LEVELS:
        for form, value in _yaml_nests(levels):
            for where in ("top", "overrides"):
                yield config_case(
                    family,
                    f"yaml-{form}-{levels}-{where}",
                    _with_yaml_value(("\n" if form.startswith("block") else "") + value, where),
                    fragment="nested more than 64 levels deep",
                )
    for levels in (65, 66, 100, 1000, 10000):
        for form, value in _json_nests(levels):
            for where in ("governance", "data_contracts", "top"):
                yield artifacts_case(
                    family,
                    f"json-{form}-{levels}-{where}",
                    _artifacts_with(value, where),
                    fragment="nested more than 64 levels deep",
                )
    # Alias bombs: ``levels`` anchors, each naming the one below ``fanout`` times.
    for form in ("merge", "list", "mapping"):
        for levels in (6, 7, 8, 9):
            for where in ("top", "overrides"):
                lines = ["\n  l0: &l0 {a: lol}"]
                for level in range(1, levels + 1):
                    aliases = [f"*l{level - 1}"] * 10
                    if form == "merge":
                        node = "{<<: [" + ", ".join(aliases) + "]}"
                    elif form == "list":
                        node = "[" + ", ".join(aliases) + "]"
                    else:
                        node = "{" + ", ".join(f"k{i}: {a}" for i, a in enumerate(aliases)) + "}"
                    lines.append(f"\n  l{level}: &l{level} {node}")
                yield config_case(
                    family,
                    f"alias-bomb-{form}-{levels}-{where}",
                    _with_yaml_value("".join(lines), where),
                    fragment=f"more than {MAX_YAML_VALUES} values, counting each alias",
                )
    wide = "\n  l0: &l0 [" + ", ".join(["lol"] * 100) + "]"
    wide += "\n  l1: &l1 [" + ", ".join(["*l0"] * 100) + "]"
    wide += "\n  l2: &l2 [" + ", ".join(["*l1"] * 100) + "]"
    yield config_case(
        family, "alias-bomb-wide", _with_yaml_value(wide, "top"), fragment="more than 200000 values"
    )
    for name, value in (
        ("recursive-list", "&a [*a]"),
        ("recursive-map", "&a {x: *a}"),
        ("recursive-merge", "&a {<<: *a}"),
    ):
        yield config_case(
            family,
            f"alias-{name}",
            _with_yaml_value(value, "top"),
            fragment="an alias inside the node it names",
        )
    # Duplicate keys
    text = CONFIG_TEXT.decode()
    duplicates = {
        "top-kind": text + "kind: DeploymentConfig\n",
        "top-api-version": "apiVersion: floe.dev/v1alpha1\n" + text,
        "top-cluster-mappings": text + "clusterMappings: []\n",
        "top-artifacts": text + "artifacts: {path: /etc/passwd}\n",
        "mapping-name": text.replace(
            "- name: non-prod\n", "- name: non-prod\n  name: prod-shadow\n", 1
        ),
        "chart-path": text.replace(
            "releaseName: floe-jobs\n", "releaseName: floe-jobs\n    releaseName: floe-jobz\n", 1
        ),
        "overrides-env": text + "  prod: {}\n",
        "flow-mapping": text + "hostile: {a: 1, a: 2}\n",
        "quoted-alike": text + "hostile: {'a': 1, \"a\": 2}\n",
        "bool-alike": text + "hostile: {yes: 1, true: 2}\n",
        "int-alike": text + "hostile: {1: a, 0x1: b}\n",
        "float-alike": text + "hostile: {1.0: a, 1.00: b}\n",
        "null-alike": text + "hostile: {~: a, null: b}\n",
        "deep": text + "hostile: {a: {b: {c: {d: 1, d: 2}}}}\n",
        "in-list": text + "hostile: [{a: 1, a: 1}]\n",
    }
    for name, content in duplicates.items():
        yield config_case(
            family,
            f"yaml-duplicate-{name}",
            content.encode(),
            fragment="appears twice in the same mapping",
        )
    body = ARTIFACTS_TEXT.decode()
    json_duplicates = {
        "top-version": body.replace("{", '{"version": "0.6.0",', 1),
        "escaped-alike": body.replace("{", '{"\\u0076ersion": "0.6.0",', 1),
        "metadata": body.replace('"metadata": {', '"metadata": {"product_name": "shadow",', 1),
        "model-name": body.replace(
            '"name": "stg_customers",', '"name": "stg_customers", "name": "shadow",', 1
        ),
        "plugins": body.replace('"plugins": {', '"plugins": {"compute": {},', 1),
        "deep": body.replace("{", '{"governance": {"a": {"b": {"c": 1, "c": 2}}},', 1),
        "in-array": body.replace("{", '{"data_contracts": [{"a": 1, "a": 1}],', 1),
        "empty-key": body.replace("{", '{"": 1, "": 2,', 1),
    }
    for name, content in json_duplicates.items():
        yield artifacts_case(
            family,
            f"json-duplicate-{name}",
            content.encode(),
            fragment="appears twice in the same object",
        )
    # Just over the size limits (sparse unless the content matters)
    config_over = "larger than the 1 MiB the deployment configuration may have"
    artifacts_over = "larger than the 32 MiB the CompiledArtifacts document may have"
    yield config_case(
        family, "config-1MiB-plus-1-sparse", Sparse(CONFIG_MAX_BYTES + 1), fragment=config_over
    )
    yield config_case(
        family,
        "config-1MiB-plus-4KiB-sparse",
        Sparse(CONFIG_MAX_BYTES + 4096),
        fragment=config_over,
    )
    yield config_case(
        family, "config-10GiB-sparse", Sparse(10 * 1024**3), fragment="10240 MiB, " + config_over
    )
    yield config_case(
        family,
        "config-1MiB-plus-1-comment",
        Filled(CONFIG_TEXT + b"#", CONFIG_MAX_BYTES + 1, b"#"),
        fragment=config_over,
    )
    yield config_case(
        family,
        "config-1MiB-plus-1-overrides",
        Filled(CONFIG_TEXT + b"hostile: '", CONFIG_MAX_BYTES + 1, b"x"),
        fragment=config_over,
    )
    yield config_case(
        family, "config-dev-zero", Symlink("/dev/zero"), fragment="larger than the 1 MiB"
    )
    yield config_case(
        family, "config-dev-urandom", Symlink("/dev/urandom"), fragment="larger than the 1 MiB"
    )
    yield config_case(family, "config-fifo", Fifo(), fragment="the top level must be a mapping")
    yield config_case(family, "config-a-folder", Folder(), fragment="it is a folder, not a file")
    yield config_case(
        family,
        "config-missing",
        Symlink("gone"),
        fragment="cannot read the deployment configuration",
    )
    yield artifacts_case(
        family,
        "artifacts-32MiB-plus-1-sparse",
        Sparse(ARTIFACTS_MAX_BYTES + 1),
        fragment=artifacts_over,
    )
    yield artifacts_case(
        family,
        "artifacts-64GiB-sparse",
        Sparse(64 * 1024**3),
        fragment="65536 MiB, " + artifacts_over,
    )
    yield artifacts_case(
        family,
        "artifacts-32MiB-plus-1-whitespace",
        Filled(ARTIFACTS_TEXT, ARTIFACTS_MAX_BYTES + 1),
        fragment=artifacts_over,
    )
    yield artifacts_case(
        family, "artifacts-dev-zero", Symlink("/dev/zero"), fragment="larger than the 32 MiB"
    )
    yield artifacts_case(
        family, "artifacts-dev-urandom", Symlink("/dev/urandom"), fragment="larger than the 32 MiB"
    )
    yield artifacts_case(family, "artifacts-fifo", Fifo(), fragment="the file is empty")
    yield artifacts_case(
        family, "artifacts-a-folder", Folder(), fragment="it is a folder, not a file"
    )
    yield artifacts_case(
        family,
        "artifacts-missing",
        Symlink("gone"),
        fragment="cannot read the CompiledArtifacts document",
    )
    # Within the limits, but many values: refused by the value count, not the size.
    many = "hostile: [" + ", ".join(["0"] * (MAX_YAML_VALUES + 1)) + "]\n"
    assert len(CONFIG_TEXT) + len(many) < CONFIG_MAX_BYTES
    yield config_case(
        family,
        "config-too-many-values",
        CONFIG_TEXT + many.encode(),
        fragment=f"more than {MAX_YAML_VALUES} values",
    )


# --- regex traps -----------------------------------------------------------------------------
FULLWIDTH = {code: code + 0xFEE0 for code in range(0x21, 0x7F)}
ARABIC_INDIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
DEVANAGARI = str.maketrans("0123456789", "०१२३४५६७८९")
CYRILLIC = {"e": "\u0435", "o": "\u043e", "a": "\u0430", "c": "\u0441", "p": "\u0440"}


def _homoglyph(value: str) -> str | None:
    for latin, cyrillic in CYRILLIC.items():
        if latin in value:
            return value.replace(latin, cyrillic, 1)
    return None


def _changed(value: str, new: str) -> str | None:
    return new if new != value else None


TRAPS: tuple[tuple[str, Callable[[str], str | None]], ...] = (
    ("newline", lambda v: v + "\n"),
    ("crlf", lambda v: v + "\r\n"),
    ("carriage-return", lambda v: v + "\r"),
    ("leading-newline", lambda v: "\n" + v),
    ("tab", lambda v: v + "\t"),
    ("trailing-space", lambda v: v + " "),
    ("leading-space", lambda v: " " + v),
    ("nul", lambda v: v + "\x00"),
    ("zero-width-space-end", lambda v: v + "\u200b"),
    ("zero-width-space-inside", lambda v: v[:2] + "\u200b" + v[2:]),
    ("zero-width-joiner", lambda v: v[:1] + "\u200d" + v[1:]),
    ("byte-order-mark", lambda v: "\ufeff" + v),
    ("no-break-space", lambda v: v[:1] + "\u00a0" + v[1:]),
    ("fullwidth", lambda v: _changed(v, v.translate(FULLWIDTH))),
    ("arabic-indic-digits", lambda v: _changed(v, v.translate(ARABIC_INDIC))),
    ("devanagari-digits", lambda v: _changed(v, v.translate(DEVANAGARI))),
    (
        "superscript-digit",
        lambda v: _changed(v, v.replace("1", "\u00b9", 1).replace("0", "\u2070", 1)),
    ),
    ("cyrillic-homoglyph", _homoglyph),
    ("uppercase", lambda v: _changed(v, v.upper())),
    ("dotted-capital-i", lambda v: v + "\u0130"),
    ("kelvin-sign", lambda v: _changed(v, v.replace("k", "\u212a"))),
    ("combining-accent", lambda v: v + "\u0301"),
    ("right-to-left-override", lambda v: "\u202e" + v),
    ("line-separator", lambda v: v + "\u2028"),
    ("next-line", lambda v: v + "\x85"),
)


def _custom_preset() -> dict[str, Any]:
    component = {
        "requests": {"cpu": "100m", "memory": "256Mi"},
        "limits": {"cpu": "200m", "memory": "512Mi"},
    }
    return {
        "name": "custom",
        **{c: copy.deepcopy(component) for c in ("webserver", "daemon", "userCode", "jobs")},
    }


def _set_env_name(config: dict[str, Any], value: str) -> None:
    config["clusterMappings"][0]["environments"] = [value, "staging"]
    config["redeploySchedules"].pop("dev")


def _set_preset_cpu(config: dict[str, Any], value: str) -> None:
    preset = _custom_preset()
    preset["webserver"]["requests"]["cpu"] = value
    config["clusterMappings"][0]["resources"] = preset


CONFIG_TRAP_FIELDS: dict[str, tuple[str, Callable[[dict[str, Any], str], None], str]] = {
    # field: (valid value, how to set it, what the message names)
    "environment": ("dev", _set_env_name, "clusterMappings[0].environments"),
    "namespace-template": (
        "floe-{{.environment}}",
        lambda c, v: c["clusterMappings"][0].__setitem__("namespaceTemplate", v),
        "namespaceTemplate",
    ),
    "platform-release-name": (
        "floe-platform",
        lambda c, v: c["charts"]["platform"].__setitem__("releaseName", v),
        "charts.platform.releaseName",
    ),
    "jobs-release-name": (
        "floe-jobs",
        lambda c, v: c["charts"]["jobs"].__setitem__("releaseName", v),
        "charts.jobs.releaseName",
    ),
    "preset-cpu": ("100m", _set_preset_cpu, "clusterMappings[0].resources.webserver.requests.cpu"),
    "redeploy-cron": (
        "0 6 * * 1-5",
        lambda c, v: c["redeploySchedules"].__setitem__("dev", v),
        "redeploySchedules.dev",
    ),
}


def _set_model_name(document: dict[str, Any], value: str) -> None:
    document["transforms"]["models"][0]["name"] = value


ARTIFACTS_TRAP_FIELDS: dict[str, tuple[str, Callable[[dict[str, Any], str], None], str]] = {
    "version": ("0.6.0", lambda d, v: d.__setitem__("version", v), "version"),
    "model-name": ("stg_customers", _set_model_name, "transforms.models[0].name"),
    "depends-on": (
        "stg_customers",
        lambda d, v: d["transforms"]["models"][2]["depends_on"].__setitem__(0, v),
        "transforms",
    ),
    "product-name": (
        "customer-360",
        lambda d, v: d["metadata"].__setitem__("product_name", v),
        "metadata.product_name",
    ),
    "plugin-version": (
        "0.9.0",
        lambda d, v: d["plugins"]["compute"].__setitem__("version", v),
        "plugins.compute.version",
    ),
}


# Valid as they are: dbt identifiers and product names may be uppercase.
NOT_TRAPS = {("model-name", "uppercase"), ("product-name", "uppercase")}


def regex_trap_cases() -> Iterator[Case]:
    family = "regex_traps"
    for field_name, (valid, setter, named) in CONFIG_TRAP_FIELDS.items():
        for trap, make in TRAPS:
            value = make(valid)
            if value is None:
                continue
            config = example_config()
            setter(config, value)
            yield config_case(
                family,
                f"config-{field_name}-{trap}",
                config,
                fragment=named,
                names=(CONFIG_PATH, named),
                detail=f"{named} = {value!r}",
            )
    for field_name, (valid, setter, named) in ARTIFACTS_TRAP_FIELDS.items():
        for trap, make in TRAPS:
            value = make(valid)
            if value is None or (field_name, trap) in NOT_TRAPS:
                continue
            document = example_artifacts()
            setter(document, value)
            yield artifacts_case(
                family,
                f"artifacts-{field_name}-{trap}",
                document,
                fragment=named,
                names=(ARTIFACTS_PATH, named),
                detail=f"{named} = {value!r}",
            )


# --- cron ------------------------------------------------------------------------------------
CRON_FIXED = (
    "a b c d e",
    "61 * * * *",
    "*/0 * * * *",
    "* * * 13 *",
    "0 25 * * *",
    "* * 32 * *",
    "* * * * 8",
    "1-0 * * * *",
)
CRON_FIELD_RANGES = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day-of-month", 1, 31),
    ("month", 1, 12),
    ("day-of-week", 0, 6),
)


def _bad_field_values(low: int, high: int, field_name: str) -> Iterator[tuple[str, str]]:
    yield "above", str(high + 1)
    yield "far-above", "99" if high < 99 else "100"
    yield "huge", "1000000"
    yield "below", str(low - 1)
    yield "reversed-range", f"{high}-{low}"
    yield "zero-step", "*/0"
    yield "zero-step-range", f"{low}-{high}/0"
    yield "empty-step", "*/"
    yield "empty-list-item", f"{low},,{high}"
    yield "decimal", "1.5"
    yield "arabic-indic", "\u0663"
    yield "fullwidth", "\uff13"
    yield "L", "L"
    yield "W", "1W"
    yield "hash", "1#2"
    if field_name != "month":
        yield "month-name", "JAN"
    if field_name != "day-of-week":
        yield "weekday-name", "MON"
    yield "long-name", "JANUARY" if field_name == "month" else "SUNDAY"
    if field_name not in ("day-of-month", "day-of-week"):
        yield "question-mark", "?"


def cron_expressions() -> Iterator[tuple[str, str]]:
    for index, expression in enumerate(CRON_FIXED):
        yield f"fixed-{index}", expression
    for position, (field_name, low, high) in enumerate(CRON_FIELD_RANGES):
        for name, bad in _bad_field_values(low, high, field_name):
            fields = ["0", "0", "1", "1", "0"]
            fields[position] = bad
            yield f"{field_name}-{name}", " ".join(fields)
    for count in (0, 1, 2, 3, 4, 6, 7):
        yield f"{count}-fields", " ".join(["*"] * count)
    whitespace = {
        "trailing-newline": "0 * * * *\n",
        "leading-space": " 0 * * * *",
        "trailing-space": "0 * * * * ",
        "tab": "0\t* * * *",
        "no-break-space": "0\u00a0* * * *",
        "ideographic-space": "0\u3000* * * *",
        "zero-width-space": "0 *\u200b * * *",
    }
    yield from whitespace.items()
    for index, macro in enumerate(
        (
            "@every 5m",
            "@reboot",
            "@minutely",
            "@Daily",
            "@daily\n",
            "@",
            "@yearly @daily",
            "@midnight",
        )
    ):
        yield f"macro-{index}", macro
    yield "never-30-february", "0 0 30 2 *"
    yield "never-31-february", "0 0 31 2 *"
    yield "too-long", ",".join(["0"] * 60) + " * * * *"
    yield "template", "{{ .Values.cron }}"
    yield "seconds-field", "0 0 * * * *"
    yield "quartz-year", "0 0 12 * * ? 2030"


def cron_cases() -> Iterator[Case]:
    for name, expression in cron_expressions():
        for env in ("dev", "prod"):
            config = example_config()
            config["redeploySchedules"][env] = expression
            yield config_case(
                "cron",
                f"{env}-{name}",
                config,
                fragment=f"redeploySchedules.{env}",
                names=(CONFIG_PATH, f"redeploySchedules.{env}"),
                env=env,
                detail=repr(expression),
            )


# --- presets ---------------------------------------------------------------------------------
BAD_CPU: tuple[Any, ...] = (
    "0", "0m", "0.0", "+0", "0.0001", "1001", "1000001m", "12345678901234567890",
    "1234567890123456", "-1", "-100m", "\u0661\u0660\u0660m", "\uff11\uff10\uff10m", "100m\n",
    "100 m", "1e400", "1e99", "1e-9", "", "m", "inf", "NaN", "100Mi", "1.5.0", 0, 0.5, True,
    None, [], {"cpu": "1"},
)  # fmt: skip
BAD_MEMORY: tuple[Any, ...] = (
    "0Mi", "0", "1", "1023Ki", "1000000Gi", "65Ti", "1Pi", "12345678901234567890Mi",
    "1234567890123456", "500m", "1.5", "-1Gi", "\uff11Gi", "1Gi\n", "1 Gi", "1GB", "1gi",
    "1e400", "", 1024, None,
)  # fmt: skip
COMPONENTS = ("webserver", "daemon", "userCode", "jobs")


def preset_cases() -> Iterator[Case]:
    family = "presets"
    slots = [(c, part) for c in COMPONENTS for part in ("requests", "limits")]
    for resource, bad_values in (("cpu", BAD_CPU), ("memory", BAD_MEMORY)):
        for index, bad in enumerate(bad_values):
            component, part = slots[index % len(slots)]
            config = example_config()
            preset = _custom_preset()
            preset[component][part][resource] = bad
            config["clusterMappings"][0]["resources"] = preset
            named = f"clusterMappings[0].resources.{component}.{part}.{resource}"
            yield config_case(
                family,
                f"{resource}-{index:02d}-{component}-{part}",
                config,
                fragment=named,
                names=(CONFIG_PATH, named),
                detail=f"{named} = {bad!r}",
            )
    for component in COMPONENTS:
        for resource, low, high in (("cpu", "100m", "99m"), ("memory", "256Mi", "255Mi")):
            config = example_config()
            preset = _custom_preset()
            preset[component]["requests"][resource] = low
            preset[component]["limits"][resource] = high
            config["clusterMappings"][0]["resources"] = preset
            yield config_case(
                family,
                f"limit-below-request-{component}-{resource}",
                config,
                fragment=f"limits.{resource} {high} is below requests.{resource} {low}",
                names=(CONFIG_PATH, f"clusterMappings[0].resources.{component}"),
            )
        config = example_config()
        preset = _custom_preset()
        del preset[component]
        config["clusterMappings"][0]["resources"] = preset
        yield config_case(
            family,
            f"custom-without-{component}",
            config,
            fragment="Field required",
            names=(CONFIG_PATH, f"clusterMappings[0].resources.{component}"),
        )
    for name, preset_value in (
        ("unknown", "huge"),
        ("capitalized", "Small"),
        ("newline", "small\n"),
        ("empty", ""),
        ("custom-bare", "custom"),
        ("a-number", 1),
        ("a-list", ["small"]),
        ("name-only-custom", {"name": "custom"}),
    ):
        config = example_config()
        config["clusterMappings"][1]["resources"] = preset_value
        yield config_case(
            family,
            f"preset-{name}",
            config,
            fragment="clusterMappings[1].resources",
            names=(CONFIG_PATH, "clusterMappings[1].resources"),
            env="prod",
        )


# --- label isolation -------------------------------------------------------------------------
def _label_config(
    environment: str, platform_release: str = "floe-platform", jobs_release: str = "floe-jobs"
) -> dict[str, Any]:
    config = example_config()
    config["clusterMappings"] = [
        {
            "name": "shared",
            "cluster": "floe-local",
            "environments": [environment],
            "namespaceTemplate": "floe-shared",
            "isolation": "label",
            "resources": "small",
        }
    ]
    config["charts"]["platform"]["releaseName"] = platform_release
    config["charts"]["jobs"]["releaseName"] = jobs_release
    del config["redeploySchedules"], config["overrides"]
    return config


def _environment_name(length: int, seed: int) -> str:
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyz0123456789-"
    middle = "".join(rng.choice(alphabet) for _ in range(max(length - 2, 0)))
    return ("e" + middle + "z")[:length]


def label_isolation_cases() -> Iterator[Case]:
    family = "label_isolation"
    platform_limit = 41
    for length in range(platform_limit - len("floe-platform-") + 1, 64):
        environment = _environment_name(length, length)
        yield config_case(
            family,
            f"environment-{length}-chars",
            _label_config(environment),
            fragment=f"the platform release name 'floe-platform-{environment}'",
            names=(CONFIG_PATH, f"environment {environment}"),
            env=environment,
        )
    # Short environments, long release names: the platform's limit, then Helm's for the jobs.
    for length in range(platform_limit - 3, 54):
        release = _environment_name(length, 1000 + length)
        yield config_case(
            family,
            f"platform-release-{length}-chars-env-dev",
            _label_config("dev", platform_release=release),
            fragment=f"the platform release name '{release}-dev'",
            names=(CONFIG_PATH, "environment dev"),
        )
    for length in range(50, 54):
        release = _environment_name(length, 2000 + length)
        yield config_case(
            family,
            f"jobs-release-{length}-chars-env-dev",
            _label_config("dev", platform_release="p", jobs_release=release),
            fragment=f"the jobs release name '{release}-dev'",
            names=(CONFIG_PATH, "environment dev"),
        )
    for length in (54, 63, 100):
        release = _environment_name(length, 3000 + length)
        yield config_case(
            family,
            f"jobs-release-name-{length}-chars",
            _label_config("dev", jobs_release=release),
            fragment="charts.jobs.releaseName",
            names=(CONFIG_PATH, "charts.jobs.releaseName"),
        )
    for length in (64, 100, 253):
        environment = _environment_name(length, 4000 + length)
        yield config_case(
            family,
            f"environment-name-{length}-chars",
            _label_config(environment),
            fragment="at most 63 characters",
            names=(CONFIG_PATH, "clusterMappings[0].environments"),
            env=environment,
        )


# --- overrides (values-level: exit 1) --------------------------------------------------------
LABEL_VALUE_TRAPS: tuple[tuple[str, Any], ...] = (
    ("64-chars", "a" * 64),
    ("100-chars", "b" * 100),
    ("1000-chars", "c" * 1000),
    ("space", "has space"),
    ("template-release", "{{ .Release.Name }}"),
    ("template-include", '{{ include "x" . }}'),
    ("shell-var", "${HOME}"),
    ("leading-dash", "-lead"),
    ("trailing-dot", "trail."),
    ("newline", "dev\n"),
    ("arabic-indic", "\u0661\u0660\u0660"),
    ("fullwidth", "\uff46\uff55\uff4c\uff4c"),
    ("zero-width", "zero\u200bwidth"),
    ("slash", "a/b"),
    ("colon", "a:b"),
    ("a-number", 123),
    ("a-boolean", True),
    ("a-list", ["a"]),
    ("a-mapping", {"a": "b"}),
)
LABEL_KEY_TRAPS: tuple[tuple[str, str], ...] = (
    ("bad-key", "bad key!"),
    ("leading-dash", "-bad"),
    ("trailing-dash", "bad-"),
    ("two-slashes", "a/b/c"),
    ("uppercase-prefix", "Floe.dev/x"),
    ("prefix-254", "p" * 254 + "/name"),
    ("name-64", "n" * 64),
    ("empty", ""),
    ("empty-prefix", "/name"),
    ("empty-name", "prefix.dev/"),
    ("template", "{{ .Values.key }}"),
    ("cyrillic", "ключ"),
    ("newline", "key\n"),
    ("fullwidth", "\uff4b\uff45\uff59"),
    ("zero-width", "a\u200bb"),
)
QUANTITY_TRAPS: tuple[tuple[str, str, str], ...] = (
    ("cpu-zero", "cpu", "0"),
    ("cpu-arabic-indic", "cpu", "\u0661\u0660\u0660m"),
    ("cpu-20-digits", "cpu", "12345678901234567890"),
    ("cpu-newline", "cpu", "100m\n"),
    ("memory-zero", "memory", "0Mi"),
    ("memory-huge", "memory", "1000000Gi"),
    ("memory-millibytes", "memory", "500m"),
    ("memory-fullwidth", "memory", "\uff11Gi"),
)


def _override_case(
    name: str, chart: str, overrides: dict[str, Any], pointer: str, **extra: Any
) -> Case:
    config = example_config()
    config["overrides"]["dev"] = {chart: overrides}
    return config_case(
        "overrides",
        f"{chart}-{name}",
        config,
        exit_code=EXIT_INVALID_VALUES,
        fragment=f"values of {chart} for dev fail validation",
        names=(pointer,),
        chart=chart,
        scope=PLATFORM if chart == "platform" else JOBS,
        **extra,
    )


def override_cases() -> Iterator[Case]:
    for chart in ("platform", "jobs"):
        for name, value in LABEL_VALUE_TRAPS:
            yield _override_case(
                f"label-value-{name}",
                chart,
                {"global": {"labels": {"team": value}}},
                "/global/labels/team",
            )
        for name, key in LABEL_KEY_TRAPS:
            yield _override_case(
                f"label-key-{name}", chart, {"global": {"labels": {key: "x"}}}, "/global/labels"
            )
        resources = "/dagster/webserver/resources" if chart == "platform" else "/resources"
        for name, resource, value in QUANTITY_TRAPS:
            part = {"requests": {resource: value}}
            tree: dict[str, Any] = part
            for key in reversed(resources.strip("/").split("/")):
                tree = {key: tree}
            yield _override_case(
                f"quantity-{name}", chart, tree, f"{resources}/requests/{resource}"
            )
        below = {"requests": {"cpu": "2", "memory": "2Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}
        tree = below
        for key in reversed(resources.strip("/").split("/")):
            tree = {key: tree}
        yield _override_case("limits-below-requests", chart, tree, resources)
        yield _override_case(
            "long-unknown-key", chart, {"k" * 10000: 1}, "/", detail="a 10,000-character key"
        )
        yield _override_case(
            "many-bad-labels",
            chart,
            {"global": {"labels": {f"bad key {i}!": "x" for i in range(200)}}},
            "/global/labels",
            detail="200 invalid label keys",
        )
        yield _override_case("global-a-list", chart, {"global": ["x"]}, "/global")
        yield _override_case(
            "environment-changed",
            chart,
            {"global": {"environment": "prod\n"}},
            "/global/environment",
        )
        yield _override_case(
            "dsn-in-label",
            chart,
            {"global": {"labels": {"db": "postgresql://floe:s3cr3tpw9@db:5432/x"}}},
            "/global/labels/db",
            forbidden=("s3cr3tpw9",),
        )
    yield _override_case(
        "credential-in-module",
        "platform",
        {"dagster": {"userCode": {"module": "postgresql://floe:hunter2pw7@db/x"}}},
        "/dagster/userCode/module",
        forbidden=("hunter2pw7",),
    )
    yield _override_case(
        "password-in-inline-profiles",
        "jobs",
        {
            "dbt": {
                "profiles": {
                    "inline": "p:\n  outputs:\n    dev:\n      type: postgres\n"
                    "      password: Zq8vLm2pX9\n"
                }
            }
        },
        "/dbt/profiles/inline",
        forbidden=("Zq8vLm2pX9",),
    )
    for index, expression in enumerate((*CRON_FIXED, "0 0 30 2 *", "@reboot", "0 * * * *\n")):
        yield _override_case(
            f"model-schedule-{index}",
            "jobs",
            {"models": [{"name": "stg_customers", "schedule": expression}]},
            "/models/0/schedule",
            detail=repr(expression),
        )
    yield _override_case(
        "model-name-newline", "jobs", {"models": [{"name": "stg_customers\n"}]}, "/models/0/name"
    )
    yield _override_case(
        "run-job-name-upper",
        "jobs",
        {"run": {"model": "stg_customers", "jobName": "Job"}},
        "/run/jobName",
    )


# --- system namespaces -----------------------------------------------------------------------
SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")


def system_namespace_cases() -> Iterator[Case]:
    family = "system_namespaces"
    targets: list[tuple[str, str, list[str]]] = []
    for namespace in SYSTEM_NAMESPACES:
        targets.append((f"literal-{namespace}", namespace, ["dev"]))
        targets.append((f"environment-{namespace}", "{{.environment}}", [namespace]))
        targets.append((f"spaced-placeholder-{namespace}", "{{ .environment }}", [namespace]))
    for rest in ("system", "public", "node-lease"):
        targets.append((f"kube-prefix-{rest}", "kube-{{.environment}}", [rest]))
    for name, template, environments in targets:
        for isolation in ("namespace", "label"):
            for allow in (None, False):
                config = example_config()
                mapping: dict[str, Any] = {
                    "name": "system",
                    "cluster": "floe-local",
                    "environments": environments,
                    "namespaceTemplate": template,
                    "isolation": isolation,
                    "resources": "small",
                }
                if allow is not None:
                    mapping["allowSystemNamespaces"] = allow
                config["clusterMappings"] = [mapping]
                del config["redeploySchedules"], config["overrides"]
                suffix = "" if allow is None else "-allow-false"
                yield config_case(
                    family,
                    f"{name}-{isolation}{suffix}",
                    config,
                    fragment="the system namespace",
                    names=(CONFIG_PATH, "clusterMappings[0]", "allowSystemNamespaces"),
                    env=environments[0],
                )


# --- mappings and long lists -----------------------------------------------------------------
SHORT = 1000  # characters a message about a huge list may have


def mapping_cases() -> Iterator[Case]:
    family = "mappings"
    for copies in (2, 3, 2000):
        config = example_config()
        config["clusterMappings"] = [
            {
                "name": "twin",
                "cluster": "floe-local",
                "environments": [f"env{i}"],
                "resources": "small",
            }
            for i in range(copies)
        ]
        del config["redeploySchedules"], config["overrides"]
        yield config_case(
            family,
            f"same-name-{copies}",
            config,
            fragment="cluster mapping name 'twin' is used by more than one mapping",
            names=(CONFIG_PATH,),
            env="env0",
            max_message=SHORT,
        )
    config = example_config()
    config["clusterMappings"][1]["name"] = "non-prod"
    yield config_case(
        family,
        "same-name-as-first",
        config,
        fragment="'non-prod' is used by more than one mapping",
        max_message=SHORT,
    )
    config = example_config()
    config["clusterMappings"] = [
        {"name": f"m{i}", "cluster": "floe-local", "environments": [f"e{i}"], "resources": "small"}
        for i in range(2000)
    ] * 2
    del config["redeploySchedules"], config["overrides"]
    yield config_case(
        family, "2000-names-twice", config, fragment="and 1995 more", env="e0", max_message=SHORT
    )
    config = example_config()
    config["clusterMappings"][1]["environments"] = ["prod", "dev"]
    yield config_case(
        family,
        "environment-in-two-mappings",
        config,
        fragment="each environment must be in exactly one cluster mapping: dev in non-prod, prod",
        max_message=SHORT,
    )
    config = example_config()
    config["clusterMappings"][0]["environments"] = ["dev", "dev", "staging"]
    yield config_case(
        family,
        "environment-twice",
        config,
        fragment="environment dev is listed twice",
        max_message=SHORT,
    )
    config = example_config()
    config["clusterMappings"][0]["environments"] = [f"e{i}" for i in range(5000)] * 2
    del config["redeploySchedules"], config["overrides"]
    del config["clusterMappings"][1]
    yield config_case(
        family,
        "5000-environments-twice",
        config,
        fragment="and 4995 more",
        env="e0",
        max_message=SHORT,
    )
    config = example_config()
    config["overrides"] = {f"ghost{i}": {} for i in range(5000)}
    yield config_case(
        family,
        "overrides-5000-unknown-environments",
        config,
        fragment="and 4995 more",
        max_message=SHORT,
    )
    config = example_config()
    config["redeploySchedules"] = {f"ghost{i}": "@daily" for i in range(5000)}
    yield config_case(
        family,
        "schedules-5000-unknown-environments",
        config,
        fragment="and 4995 more",
        max_message=SHORT,
    )
    config = example_config()
    config["clusterMappings"] = []
    yield config_case(family, "no-mappings", config, fragment="clusterMappings", max_message=SHORT)
    config = example_config()
    config["clusterMappings"][0]["environments"] = []
    yield config_case(
        family,
        "mapping-without-environments",
        config,
        fragment="clusterMappings[0].environments",
        max_message=SHORT,
    )
    yield config_case(
        family,
        "unknown-environment-argument",
        dump_yaml(example_config()),
        fragment="environment 'nowhere' is in no cluster mapping",
        env="nowhere",
        max_message=SHORT,
    )

    # The models' dependency graph
    def models(
        count: int,
        depends: Callable[[int], list[str]],
        name: Callable[[int], str] = lambda i: f"m{i}",
    ) -> dict[str, Any]:
        document = example_artifacts()
        document["transforms"]["models"] = [
            {"name": name(i), "compute": "duckdb", "tags": [], "depends_on": depends(i)}
            for i in range(count)
        ]
        return document

    yield artifacts_case(
        family,
        "5000-model-cycle",
        models(5000, lambda i: [f"m{(i + 1) % 5000}"]),
        fragment="dependency cycle",
        names=(ARTIFACTS_PATH, "transforms"),
        max_message=SHORT,
        detail="m0 -> m1 -> ... -> m4999 -> m0",
    )
    yield artifacts_case(
        family,
        "5000-model-cycle-reversed",
        models(5000, lambda i: [f"m{(i - 1) % 5000}"]),
        fragment="(5000 models in the cycle",
        max_message=SHORT,
    )
    yield artifacts_case(
        family,
        "5000-chain-closed-late",
        models(5000, lambda i: [f"m{i - 1}"] if i else ["m4999"]),
        fragment="dependency cycle",
        max_message=SHORT,
    )
    yield artifacts_case(
        family,
        "300-models-each-on-all-before",
        models(300, lambda i: [f"m{j}" for j in range(i)] + (["m299"] if i == 0 else [])),
        fragment="dependency cycle",
        max_message=SHORT,
        detail="300 models, 45,000 edges, one back edge",
    )
    yield artifacts_case(
        family,
        "self-dependency",
        models(3, lambda i: [f"m{i}"]),
        fragment="dependency cycle: m0 -> m0",
        max_message=SHORT,
    )
    yield artifacts_case(
        family,
        "5000-models-same-name",
        models(5000, lambda i: [], name=lambda i: "same"),
        fragment="model name same is used by more than one model",
        max_message=SHORT,
    )
    yield artifacts_case(
        family,
        "5000-names-twice",
        models(10000, lambda i: [], name=lambda i: f"m{i % 5000}"),
        fragment="and 4995 more",
        max_message=SHORT,
    )
    yield artifacts_case(
        family,
        "5000-missing-dependencies",
        models(5000, lambda i: [f"ghost{i}"]),
        fragment="which is not a model in this document",
        max_message=SHORT,
    )
    yield artifacts_case(
        family,
        "long-missing-dependency",
        models(1, lambda i: ["g" * 100000]),
        fragment="(100000 characters)",
        max_message=SHORT,
    )
    yield artifacts_case(
        family,
        "long-model-name",
        models(1, lambda i: [], name=lambda i: "m" * 100000 + "!"),
        fragment="(100001 characters)",
        max_message=SHORT,
    )


# --- Hypothesis: random mutations of the valid examples --------------------------------------
HOSTILE_STRINGS = (
    "", " ", "dev\n", "\u0661\u0660\u0660m", "\uff44\uff45\uff56", "de\u200bv",
    "{{ .Release.Name }}", "{{ fail \"x\" }}", "${HOME}", "$(id)", "a" * 5000, "\x00", "\ud800",
    "\U0001f4a5", "../../etc/passwd", "/dev/zero", "true", "null", "1e999", "NaN", "-1", "0",
    "0.5.0\n", "kube-system", "default",
    "password=hunter2", "postgresql://u:pw123456@h/db", "-----BEGIN RSA PRIVATE KEY-----",
    "Bearer abcdefghijklmnopqrstuvwxyz012345", "@reboot", "* * * * *", "1000000Gi", "0m",
    "floe-{{.environment}}", "\u202eevil", "a: b", "- x", "[", "{", "&a *a", "<<", "~",
)  # fmt: skip
HOSTILE_NUMBERS = (
    0,
    -1,
    1,
    2**31,
    2**63,
    10**100,
    -(10**30),
    0.5,
    -0.0,
    1e308,
    float("inf"),
    float("nan"),
)
HOSTILE_OTHERS: tuple[Any, ...] = (
    None, True, False, [], {}, [None], {"": None}, {"k" * 300: 1}, [[[[[[[[[[1]]]]]]]]]],
    {"a": {"b": {"c": {"d": {"e": {"f": {"g": 1}}}}}}}, ["x"] * 1000, {"__proto__": {"x": 1}},
    {"<<": {"a": 1}}, {"$ref": "#"}, {"password": "s3cr3t!s3cr3t"},
)  # fmt: skip


def _paths(node: Any, prefix: tuple = ()) -> Iterator[tuple]:
    yield prefix
    if isinstance(node, dict):
        for key, value in node.items():
            yield from _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _paths(value, (*prefix, index))


def _parent(document: Any, path: tuple) -> Any:
    for part in path[:-1]:
        document = document[part]
    return document


def _mutate(document: Any, operation: str, path: tuple, value: Any) -> str:
    """Mutate in place; returns what was done."""
    parent, last = _parent(document, path), path[-1]
    where = "/".join(map(str, path))
    if operation == "delete":
        del parent[last]
        return f"delete {where}"
    if operation == "add-key" and isinstance(parent[last], dict):
        key = value if isinstance(value, str) else "hostile"
        parent[last][key] = value
        return f"add {where}/{key!r:.40} = {value!r:.60}"
    if operation == "duplicate" and isinstance(parent[last], list) and parent[last]:
        parent[last].append(copy.deepcopy(parent[last][0]))
        return f"duplicate the first item of {where}"
    parent[last] = value
    return f"set {where} = {value!r:.60}"


def mutation_base_config() -> dict[str, Any]:
    """The example configuration with valid overrides for dev (the environment the mutations
    are run for), so that mutations reach the values of both charts too."""
    config = example_config()
    config["overrides"]["dev"] = {
        "platform": {
            "global": {"labels": {"team": "data"}},
            "dagster": {"webserver": {"replicas": 1, "resources": {"limits": {"cpu": "300m"}}}},
        },
        "jobs": {
            "global": {"labels": {"team": "data"}},
            "job": {"activeDeadlineSeconds": 1800},
            "models": [{"name": "stg_orders", "schedule": "0 6 * * 1-5"}],
        },
    }
    return config


# Draws per document, before duplicates are dropped. The draws are fixed by the seed, the
# Hypothesis version and the literals Hypothesis collects from the project's own modules (it
# mixes them into generated strings and numbers, so 'floe-platform' or 'kube-system' can become
# a mutation): a change to the product can change what a numbered mutation is, never whether
# the checks apply (a mutation may be accepted or refused, but never crash or hang).
MUTATIONS_PER_DOCUMENT = 110
MUTATION_SEED = 12


def _draw_mutations(kind: str, count: int) -> list[tuple[bytes, str]]:
    base = mutation_base_config() if kind == "config" else example_artifacts()
    paths = list(_paths(base))[1:]  # not the root
    values = st.one_of(
        st.sampled_from(HOSTILE_STRINGS),
        st.sampled_from(HOSTILE_NUMBERS),
        st.sampled_from(HOSTILE_OTHERS),
        st.text(max_size=30),
        st.integers(),
        st.floats(allow_nan=True, allow_infinity=True),
    )
    mutation = st.tuples(
        st.sampled_from(("set", "set", "set", "delete", "add-key", "duplicate")),
        st.sampled_from(paths),
        values,
    )
    drawn: list[tuple[bytes, str]] = []

    @settings(
        max_examples=count,
        derandomize=False,  # the fixed seed below: the same draws whatever the code around
        database=None,
        phases=[Phase.generate],
        suppress_health_check=list(HealthCheck),
        deadline=None,
    )
    @seed(MUTATION_SEED)
    @given(st.lists(mutation, min_size=1, max_size=3))
    def draw(mutations: list[tuple[str, tuple, Any]]) -> None:
        document = copy.deepcopy(base)
        done = []
        for operation, path, value in mutations:
            try:
                done.append(_mutate(document, operation, path, copy.deepcopy(value)))
            except (KeyError, IndexError, TypeError):
                done.append(f"skip {operation} at {'/'.join(map(str, path))} (gone)")
        if kind == "config":
            text = yaml.safe_dump(document, sort_keys=False, allow_unicode=True).encode(
                "utf-8", "surrogatepass"
            )
        else:
            text = json.dumps(document, indent=1).encode("utf-8", "surrogatepass")
        drawn.append((text, "; ".join(done)))

    draw()
    return drawn


def mutation_cases() -> Iterator[Case]:
    for kind, make in (("config", config_case), ("artifacts", artifacts_case)):
        seen: set[bytes] = set()
        for index, (content, detail) in enumerate(_draw_mutations(kind, MUTATIONS_PER_DOCUMENT)):
            if content in seen:
                continue
            seen.add(content)
            for chart in ("platform", "jobs"):
                yield make(
                    "mutations",
                    f"{kind}-{index:03d}-{chart}",
                    content,
                    exit_code=None,
                    fragment="",
                    names=(),
                    chart=chart,
                    detail=detail,
                )


# --- the corpus ------------------------------------------------------------------------------
GENERATORS: dict[str, Callable[[], Iterator[Case]]] = {
    "chart_paths": chart_path_cases,
    "encoding": encoding_cases,
    "structure": structure_cases,
    "regex_traps": regex_trap_cases,
    "cron": cron_cases,
    "presets": preset_cases,
    "label_isolation": label_isolation_cases,
    "overrides": override_cases,
    "system_namespaces": system_namespace_cases,
    "mappings": mapping_cases,
    "mutations": mutation_cases,
}


def all_cases() -> list[Case]:
    cases = [case for family in FAMILIES for case in GENERATORS[family]()]
    duplicates = [name for name, n in Counter(c.id for c in cases).items() if n > 1]
    assert not duplicates, f"case names used twice: {duplicates[:5]}"
    return cases


def family_counts(cases: Iterable[Case]) -> dict[str, int]:
    counts = Counter(case.family for case in cases)
    return {family: counts[family] for family in FAMILIES}
