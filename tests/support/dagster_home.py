"""The instance's dagster.yaml for the tests that run Dagster on SQLite or on PostgreSQL."""

from __future__ import annotations

from typing import Any

import yaml


def dagster_yaml(storage: str, postgres_url: str | None = None) -> str:
    """dagster.yaml text for ``storage`` "sqlite" or "postgres" (then ``postgres_url`` is needed).

    SQLite is Dagster's default storage (files under DAGSTER_HOME), so it needs no section. A pool
    without its own limit runs one op at a time; telemetry is off (tests make no network calls).
    Run monitoring and the run coordinator keep Dagster's defaults."""
    config: dict[str, Any] = {
        "concurrency": {"pools": {"default_limit": 1}},
        "telemetry": {"enabled": False},
    }
    if storage == "postgres":
        if not postgres_url:
            raise ValueError("PostgreSQL storage needs a postgres_url")
        # SQLAlchemy 2.1 maps a bare postgresql:// to psycopg 3, which is not installed:
        # dagster-postgres depends on (and is tested with) psycopg2, so name that driver.
        if postgres_url.startswith("postgresql://"):
            postgres_url = "postgresql+psycopg2://" + postgres_url.removeprefix("postgresql://")
        config["storage"] = {"postgres": {"postgres_url": postgres_url}}
    elif storage != "sqlite":
        raise ValueError(f"storage must be 'sqlite' or 'postgres', not {storage!r}")
    return yaml.safe_dump(config, sort_keys=False)
