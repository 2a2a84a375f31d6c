"""The Dagster layer: resources, assets, checks, sensors, schedules and jobs, wired to the plain
modules below it (which never import Dagster)."""
