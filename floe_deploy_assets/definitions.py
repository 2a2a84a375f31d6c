"""The Dagster code location. Assets, checks, sensors and schedules arrive in later issues."""

import dagster as dg

defs = dg.Definitions()
