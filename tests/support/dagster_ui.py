"""The webserver's GraphQL API as the tests and benchmarks read it: the queries the UI makes for
check results per partition, sensor and schedule ticks, and runs."""

from __future__ import annotations

from typing import Any

from tests.support.dagster_processes import graphql

CHECK_EXECUTIONS = """
query ($assetKey: AssetKeyInput!, $checkName: String!, $partition: String) {
  assetCheckExecutions(assetKey: $assetKey, checkName: $checkName, partition: $partition,
                       limit: 50) {
    runId status partition
    evaluation { severity description partition }
  }
}
"""
LOCATION = "{ workspaceOrError { ... on Workspace { locationEntries { name } } } }"
RUNS = """
{ runsOrError { ... on Runs { results { runId status jobName tags { key value } } } } }
"""
START_SCHEDULE = """
mutation ($selector: ScheduleSelector!) {
  startSchedule(scheduleSelector: $selector) {
    ... on ScheduleStateResult { scheduleState { status } }
    ... on PythonError { message }
  }
}
"""
SCHEDULE_TICKS = """
query ($selector: ScheduleSelector!) {
  scheduleOrError(scheduleSelector: $selector) {
    ... on Schedule { scheduleState { ticks(limit: 20) { status skipReason runIds } } }
    ... on PythonError { message }
  }
}
"""
SENSOR_TICKS = """
query ($selector: SensorSelector!) {
  sensorOrError(sensorSelector: $selector) {
    ... on Sensor {
      sensorState { status ticks(limit: 200) { status skipReason error { message } } }
    }
    ... on PythonError { message }
    ... on SensorNotFoundError { message }
  }
}
"""


PARTITION_STATUSES = """
query ($assetKey: AssetKeyInput!) {
  assetNodeOrError(assetKey: $assetKey) {
    ... on AssetNode {
      assetPartitionStatuses {
        ... on DefaultPartitionStatuses { materializedPartitions failedPartitions }
      }
    }
  }
}
"""


class DagsterUI:
    """What the UI shows of an instance, through the webserver's GraphQL API."""

    def __init__(self, graphql_url: str) -> None:
        self.url = graphql_url

    def check_executions(self, asset: str, check: str, partition: str) -> list[dict[str, Any]]:
        """Newest first."""
        variables = {"assetKey": {"path": [asset]}, "checkName": check, "partition": partition}
        return graphql(self.url, CHECK_EXECUTIONS, variables)["assetCheckExecutions"]

    def latest_check(self, asset: str, check: str, partition: str) -> dict[str, Any] | None:
        finished = [
            e
            for e in self.check_executions(asset, check, partition)
            if e["status"] in ("SUCCEEDED", "FAILED")
        ]
        return finished[0] if finished else None

    def _selector(self, **name: str) -> dict[str, str]:
        (location,) = graphql(self.url, LOCATION)["workspaceOrError"]["locationEntries"]
        return {
            "repositoryLocationName": location["name"],
            "repositoryName": "__repository__",
            **name,
        }

    def ticks(self, sensor: str) -> list[dict[str, Any]]:
        selector = self._selector(sensorName=sensor)
        found = graphql(self.url, SENSOR_TICKS, {"selector": selector})["sensorOrError"]
        assert "sensorState" in found, found
        return found["sensorState"]["ticks"]

    def start_schedule(self, schedule: str) -> None:
        selector = self._selector(scheduleName=schedule)
        started = graphql(self.url, START_SCHEDULE, {"selector": selector})["startSchedule"]
        assert started.get("scheduleState", {}).get("status") == "RUNNING", started

    def schedule_ticks(self, schedule: str) -> list[dict[str, Any]]:
        selector = self._selector(scheduleName=schedule)
        found = graphql(self.url, SCHEDULE_TICKS, {"selector": selector})["scheduleOrError"]
        assert "scheduleState" in found, found
        return found["scheduleState"]["ticks"]

    def runs(self) -> list[dict[str, Any]]:
        """Newest first, each with its tags as a dict."""
        runs = graphql(self.url, RUNS)["runsOrError"]["results"]
        return [{**run, "tags": {t["key"]: t["value"] for t in run["tags"]}} for run in runs]

    def partition_statuses(self, asset_path: list[str]) -> dict[str, list[str]]:
        """The asset's partitions by status, as the UI colours them: ``materializedPartitions``
        and ``failedPartitions``."""
        found = graphql(self.url, PARTITION_STATUSES, {"assetKey": {"path": asset_path}})
        return found["assetNodeOrError"]["assetPartitionStatuses"]
