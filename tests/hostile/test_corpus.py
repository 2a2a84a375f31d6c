"""Every case of the hostile-input corpus (``corpus.py``, issue 12) through the command line.

In-process, through ``floe_deploy_assets.cli.main`` (what the ``floe-deploy`` executable calls),
with stdout and stderr captured as strict UTF-8 streams, as a terminal's are: each case is run
with ``values`` and ``render``; a sample also with ``deploy --dry-run`` and ``run-models``
against a kubeconfig whose server is 127.0.0.1:9 (nothing listens there), which must refuse the
input before they contact any cluster; and one case per family through
``dagster definitions validate`` as a subprocess, as users load the code location.

Each run has a deadline (``DEADLINE`` seconds, SIGALRM in the main thread): a hang fails the
case by name. A refusal must have the case's exit code (1: the values fail validation, 2: bad
input), its message fragment, name the file or field, stay short, and hold no traceback; a
random mutation may also be accepted. ``test_summary`` (last) prints the counts per family,
tracebacks, hangs and the slowest case.
"""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from floe_deploy_assets import cli
from floe_deploy_assets.cli import EXIT_NOT_DEPLOYED
from tests.hostile.corpus import (
    EXIT_BAD_INPUT,
    EXIT_INVALID_VALUES,
    EXIT_OK,
    FAMILIES,
    ROOT,
    Case,
    _custom_preset,
    _label_config,
    all_cases,
    config_case,
    example_config,
    family_counts,
    materialize,
    mutation_base_config,
)

DEADLINE = 10.0  # seconds one command may take on one case
SUBPROCESS_DEADLINE = 120.0  # dagster definitions validate, started cold, several at once
MINIMUM_CASES = 800
CASES = all_cases()
NOWHERE_KUBECONFIG = """\
apiVersion: v1
kind: Config
clusters:
- name: nowhere
  cluster: {server: "https://127.0.0.1:9", insecure-skip-tls-verify: true}
users:
- name: nobody
  user: {token: not-a-token}
contexts:
- name: floe-local
  context: {cluster: nowhere, user: nobody}
current-context: floe-local
"""
# What a command says when it did try the cluster.
CLUSTER_WORDS = ("127.0.0.1:9", "unreachable", "connection refused", "Connection refused")


# --- running one command ---------------------------------------------------------------------
class CaseHungError(BaseException):
    """Raised by SIGALRM into the command: a BaseException, so no ``except Exception`` in the
    code under test can swallow it."""


@contextlib.contextmanager
def deadline(seconds: float) -> Iterator[None]:
    """SIGALRM after ``seconds``; pytest-timeout's own alarm (if armed) is put back after."""

    def expire(signum: int, frame: object) -> None:
        raise CaseHungError

    previous = signal.signal(signal.SIGALRM, expire)
    outer, _ = signal.setitimer(signal.ITIMER_REAL, seconds)
    start = time.monotonic()
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        if outer:
            signal.setitimer(signal.ITIMER_REAL, max(outer - (time.monotonic() - start), 0.001))


@dataclass
class Outcome:
    exit_code: int | None
    stdout: str
    stderr: str
    seconds: float
    traceback: str | None = None
    hung: bool = False

    @property
    def output(self) -> str:
        return self.stderr + self.stdout


def _stream() -> io.TextIOWrapper:
    # As a terminal's: UTF-8, strict (a lone surrogate printed is an error, as it would be).
    return io.TextIOWrapper(io.BytesIO(), encoding="utf-8", errors="strict", write_through=True)


def _text(stream: io.TextIOWrapper) -> str:
    buffer = stream.buffer
    assert isinstance(buffer, io.BytesIO)
    return buffer.getvalue().decode("utf-8", "replace")


def run_cli(argv: list[str], seconds: float = DEADLINE) -> Outcome:
    stdout, stderr = _stream(), _stream()
    code: int | None = None
    failure: str | None = None
    hung = False
    start = time.perf_counter()
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
        try:
            with deadline(seconds):
                code = cli.main(argv)
        except CaseHungError:
            hung = True
        except SystemExit as exit_:  # argparse, or an explicit exit
            code = exit_.code if isinstance(exit_.code, int) else 1
        except BaseException:  # what would reach the user as a traceback
            failure = traceback.format_exc()
    seconds = time.perf_counter() - start
    return Outcome(code, _text(stdout), _text(stderr), seconds, failure, hung)


@dataclass(frozen=True)
class Record:
    case: Case
    command: str
    seconds: float
    exit_code: int | None
    traceback: bool
    hung: bool


RECORDS: list[Record] = []


def run_case(case: Case, command: str, directory: Path, kubeconfig: Path | None = None) -> Outcome:
    materialize(case, directory)
    outcome = run_cli(case.argv_for(command, directory, kubeconfig))
    failed = outcome.traceback is not None or "Traceback" in outcome.output
    RECORDS.append(Record(case, command, outcome.seconds, outcome.exit_code, failed, outcome.hung))
    return outcome


def _cut(text: str, limit: int = 1500) -> str:
    if len(text) <= limit:
        return text
    return f"{text[: limit - 300]}\n[... {len(text) - limit} characters ...]\n{text[-300:]}"


def problems(case: Case, command: str, outcome: Outcome, directory: Path) -> list[str]:
    """What is wrong with the command's answer to the case (nothing: an empty list)."""
    if outcome.hung:
        return [f"no answer within {DEADLINE:.0f} s (a hang)"]
    if outcome.traceback is not None:
        return [f"raised instead of refusing:\n{outcome.traceback}"]
    if "Traceback" in outcome.output:
        return [f"a traceback in the output:\n{_cut(outcome.output)}"]
    found = []
    expected = case.expected_exit(command)
    message = outcome.stderr
    code = outcome.exit_code
    if expected is None:  # a mutation: accepted, or refused as any other bad input is
        if code not in (EXIT_OK, EXIT_INVALID_VALUES, EXIT_BAD_INPUT):
            found.append(f"exit {code}")
        if code == EXIT_BAD_INPUT and not any(p in message for p in (str(directory), str(ROOT))):
            found.append("the message names no file")
        if code == EXIT_INVALID_VALUES and "fail validation" not in message:
            found.append("exit 1 without the findings")
    elif code != expected:
        found.append(f"exit {code}, expected {expected}")
    if code in (EXIT_INVALID_VALUES, EXIT_BAD_INPUT) and not found:
        if case.fragment not in message:
            found.append(f"the message does not say {case.fragment!r}")
        found += [
            f"the message does not name {name!r}"
            for name in case.expected_names(directory)
            if name not in message
        ]
        if code == EXIT_BAD_INPUT and not message.startswith("floe-deploy: "):
            found.append("the message does not start with 'floe-deploy: '")
        if len(outcome.output) > case.max_message:
            found.append(
                f"{len(outcome.output)} characters of output, more than {case.max_message}"
            )
    found += [
        f"the output shows {secret!r}" for secret in case.forbidden if secret in outcome.output
    ]
    if found:
        found.append(f"output:\n{_cut(outcome.output)}")
    return found


def check(case: Case, command: str, outcome: Outcome, directory: Path) -> None:
    found = problems(case, command, outcome, directory)
    if found:
        what = f"{case.id} with {command}" + (f" ({case.detail})" if case.detail else "")
        pytest.fail(f"{what}: " + "\n".join(found), pytrace=False)


@pytest.fixture(scope="module")
def kubeconfig(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("kube") / "nowhere.yaml"
    path.write_text(NOWHERE_KUBECONFIG)
    return path


# --- every case with values and render -------------------------------------------------------
@pytest.mark.parametrize("command", ["values", "render"])
@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_case(case: Case, command: str, tmp_path: Path) -> None:
    directory = tmp_path.resolve()
    check(case, command, run_case(case, command, directory), directory)
    # Passed: its files go (a failed case keeps them, in pytest's temporary folder, to look at).
    shutil.rmtree(directory, ignore_errors=True)


# --- a sample with deploy --dry-run and run-models: refused before any cluster ---------------
def _sample(command: str, per_family: int = 6) -> list[Case]:
    chosen = []
    for family in FAMILIES:
        refused = [c for c in CASES if c.family == family and c.refused_by(command)]
        if refused:
            step = max(1, len(refused) // per_family)
            chosen += refused[::step][: per_family + 1]
    return chosen


CLUSTER_SAMPLE = [
    (case, command) for command in ("deploy", "run-models") for case in _sample(command)
]


@pytest.mark.parametrize(
    ("case", "command"),
    CLUSTER_SAMPLE,
    ids=[f"{case.id}-{command}" for case, command in CLUSTER_SAMPLE],
)
def test_refused_before_the_cluster(
    case: Case, command: str, tmp_path: Path, kubeconfig: Path
) -> None:
    directory = tmp_path.resolve()
    outcome = run_case(case, command, directory, kubeconfig)
    tried = [word for word in CLUSTER_WORDS if word in outcome.output]
    if outcome.exit_code == EXIT_NOT_DEPLOYED or tried:
        pytest.fail(
            f"{case.id} with {command}: went to the cluster (exit {outcome.exit_code}) instead "
            f"of refusing the input first:\n{_cut(outcome.output)}",
            pytrace=False,
        )
    check(case, command, outcome, directory)


# --- the code location: one case per family through dagster definitions validate -------------
DAGSTER_SAMPLE = (
    "chart_paths/platform-symlink-loop",
    "encoding/config-utf16-bom",
    "structure/alias-bomb-merge-9-top",
    "regex_traps/config-environment-newline",
    "cron/dev-fixed-1",
    "presets/cpu-00-webserver-requests",
    "label_isolation/environment-40-chars",
    "system_namespaces/literal-kube-system-namespace",
    "mappings/5000-model-cycle",
)
BY_ID = {case.id: case for case in CASES}


@pytest.fixture(scope="module")
def validations(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[dict[str, tuple[Path, subprocess.Popen]]]:
    """All sample validations started at once (each is a cold Dagster start of a few seconds)."""
    dagster = str(Path(sys.executable).with_name("dagster"))
    started = {}
    for case_id in DAGSTER_SAMPLE:
        directory = tmp_path_factory.mktemp("dagster").resolve()
        case = BY_ID[case_id]
        materialize(case, directory)
        home = directory / "dagster-home"
        home.mkdir()
        config = case.argv_for("values", directory)[2]
        env = {**os.environ, "FLOE_DEPLOY_CONFIG": config, "DAGSTER_HOME": str(home)}
        started[case_id] = (
            directory,
            subprocess.Popen(
                [dagster, "definitions", "validate", "-w", "workspace.yaml"],
                cwd=ROOT,
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
                errors="replace",
            ),
        )
    yield started
    for _, process in started.values():
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.parametrize("case_id", DAGSTER_SAMPLE)
def test_code_location_refuses(case_id: str, validations: dict) -> None:
    directory, process = validations[case_id]
    case = BY_ID[case_id]
    start = time.perf_counter()
    try:
        output, _ = process.communicate(timeout=SUBPROCESS_DEADLINE)
    except subprocess.TimeoutExpired:
        process.kill()
        RECORDS.append(Record(case, "dagster", SUBPROCESS_DEADLINE, None, False, True))
        pytest.fail(f"{case_id}: dagster definitions validate hung ({SUBPROCESS_DEADLINE:.0f} s)")
    traced = "Traceback" in output or "Stack Trace" in output
    seconds = time.perf_counter() - start
    RECORDS.append(Record(case, "dagster", seconds, process.returncode, traced, False))
    assert process.returncode != 0, f"{case_id}: the code location loaded:\n{output[-3000:]}"
    assert not traced, f"{case_id}: a stack trace:\n{_cut(output)}"
    assert case.fragment in output, f"{case_id}: {case.fragment!r} not in:\n{output[-3000:]}"
    for name in case.expected_names(directory):
        assert name in output, f"{case_id}: {name!r} not in:\n{output[-3000:]}"


# --- the inputs the corpus breaks are valid as they are --------------------------------------
def _valid_cases() -> list[Case]:
    custom = example_config()
    custom["clusterMappings"][0]["resources"] = _custom_preset()
    label = _label_config("dev")
    cases = []
    configs = {
        "example": example_config(),
        "custom-preset": custom,
        "label": label,
        "mutation-base": mutation_base_config(),
    }
    for name, config in configs.items():
        for chart in ("platform", "jobs"):
            cases.append(
                config_case(
                    "valid",
                    f"{name}-{chart}",
                    config,
                    fragment="",
                    names=(),
                    exit_code=EXIT_OK,
                    chart=chart,
                )
            )
    return cases


@pytest.mark.parametrize("command", ["values", "render"])
@pytest.mark.parametrize("case", _valid_cases(), ids=lambda case: case.id)
def test_the_inputs_before_they_are_broken_are_accepted(
    case: Case, command: str, tmp_path: Path
) -> None:
    directory = tmp_path.resolve()
    materialize(case, directory)
    outcome = run_cli(case.argv_for(command, directory))
    assert outcome.exit_code == EXIT_OK, outcome.output[:3000]


# --- the harness itself: a hang and a crash are failures, not passes -------------------------
def test_the_harness_turns_a_hang_and_a_crash_into_failures(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    case = BY_ID["mappings/environment-twice"]

    def hang(argv: object) -> int:
        time.sleep(30)
        return 0

    monkeypatch.setattr(cli, "main", hang)
    start = time.monotonic()
    hung = run_cli(["values"], seconds=0.5)
    assert hung.hung and time.monotonic() - start < 5
    assert problems(case, "values", hung, ROOT) == [f"no answer within {DEADLINE:.0f} s (a hang)"]

    def crash(argv: object) -> int:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr(cli, "main", crash)
    crashed = run_cli(["values"])
    assert crashed.traceback and "RecursionError" in crashed.traceback
    assert problems(case, "values", crashed, ROOT)[0].startswith("raised instead of refusing")

    def surrogate(argv: object) -> int:
        print("\ud800")  # what a terminal cannot take fails here as it would there
        return 0

    monkeypatch.setattr(cli, "main", surrogate)
    assert "UnicodeEncodeError" in (run_cli(["values"]).traceback or "")


# --- the summary -----------------------------------------------------------------------------
def test_summary(capsys: pytest.CaptureFixture[str]) -> None:
    """Last in the file: what the run did, per family."""
    counts = family_counts(CASES)
    in_process = [r for r in RECORDS if r.command != "dagster"]
    lines = [
        "",
        f"hostile corpus: {len(CASES)} cases "
        + ", ".join(f"{family} {count}" for family, count in counts.items()),
    ]
    by_command: dict[str, list[Record]] = {}
    for record in RECORDS:
        by_command.setdefault(record.command, []).append(record)
    for command, records in by_command.items():
        exits: dict[object, int] = {}
        for record in records:
            exits[record.exit_code] = exits.get(record.exit_code, 0) + 1
        shown = ", ".join(f"exit {code}: {n}" for code, n in sorted(exits.items(), key=str))
        lines.append(
            f"  {command}: {len(records)} runs ({shown}), {sum(r.seconds for r in records):.1f} s"
        )
    lines.append(
        f"  tracebacks: {sum(r.traceback for r in RECORDS)}, hangs: {sum(r.hung for r in RECORDS)}"
    )
    if in_process:
        slowest = max(in_process, key=lambda r: r.seconds)
        lines.append(
            f"  slowest in-process run: {slowest.case.id} with {slowest.command}: "
            f"{slowest.seconds:.2f} s"
        )
    with capsys.disabled():
        print("\n".join(lines))
    assert len(CASES) >= MINIMUM_CASES
    assert all(counts.values()), counts
