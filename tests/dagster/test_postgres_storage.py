"""A Dagster instance on each storage the daemon and webserver tests use: SQLite (Dagster's default)
and PostgreSQL (dagster-postgres on a throwaway Debian server, the ``postgres_url`` fixture)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from dagster._core.events import DagsterEventType

from tests.support.dagster_home import dagster_yaml

STORAGE_CLASSES = {"sqlite": "SqliteEventLogStorage", "postgres": "PostgresEventLogStorage"}


@pytest.fixture(params=["sqlite", "postgres"])
def instance(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[dg.DagsterInstance]:
    """An instance on a fresh DAGSTER_HOME; the PostgreSQL database is shared by the session."""
    url = request.getfixturevalue("postgres_url") if request.param == "postgres" else None
    (tmp_path / "dagster.yaml").write_text(dagster_yaml(request.param, url))
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        assert type(instance.event_log_storage).__name__ == STORAGE_CLASSES[request.param]
        # A new database gets the current schema; upgrade() is what `dagster instance migrate`
        # runs, and must be a no-op here.
        instance.upgrade()
        yield instance


def _new_key() -> dg.AssetKey:
    # Unique per test: the PostgreSQL database outlives each test.
    return dg.AssetKey(["floe", f"asset_{uuid.uuid4().hex[:8]}"])


def test_instance_reads_its_config(instance: dg.DagsterInstance) -> None:
    assert instance.get_concurrency_config().pool_config.default_pool_limit == 1


def test_runless_observation_is_read_back(instance: dg.DagsterInstance) -> None:
    key = _new_key()
    instance.report_runless_asset_event(dg.AssetObservation(key, metadata={"revision": 3}))

    records = instance.fetch_observations(key, limit=10).records
    assert len(records) == 1
    observation = records[0].asset_observation
    assert observation is not None
    assert observation.metadata["revision"] == dg.IntMetadataValue(3)


def test_duplicate_runless_check_evaluations(instance: dg.DagsterInstance) -> None:
    """Records (prints) what two runless evaluations of one check on one partition do; asserts
    nothing about it. Run with -rP (or -s) to see it.

    Dagster stores a runless evaluation with run_id "" (not NULL), so its row in
    asset_check_executions may collide on idx_asset_check_executions_unique
    (asset_key, check_name, run_id, partition) when the partition is not NULL either."""
    for partition in ("2024-01-01", None):
        key = _new_key()
        outcomes = []
        for passed in (False, True):
            evaluation = dg.AssetCheckEvaluation(
                asset_key=key, check_name="fresh", passed=passed, partition=partition
            )
            try:
                instance.report_runless_asset_event(evaluation)
                outcomes.append("stored")
            except Exception as error:  # recorded, not judged
                outcomes.append(f"{type(error).__name__}: {str(error).splitlines()[0]}")
        events = [
            entry
            for entry in instance.all_logs("", of_type=DagsterEventType.ASSET_CHECK_EVALUATION)
            if entry.dagster_event is not None
            and entry.dagster_event.event_specific_data.asset_key == key  # type: ignore[union-attr]
        ]
        executions = instance.event_log_storage.get_asset_check_execution_history(
            dg.AssetCheckKey(key, "fresh"), limit=10
        )
        print(
            f"[{type(instance.event_log_storage).__name__}] partition={partition!r}: "
            f"reports -> {outcomes}; evaluation events in the event log: {len(events)}; "
            f"check executions: {[(e.status.value, e.partition) for e in executions]}"
        )
