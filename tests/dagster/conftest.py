"""Fixtures for the Dagster tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.support.postgres import postgres_server


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """``postgresql://user:pass@127.0.0.1:PORT/db`` of a throwaway server for the whole session
    (Debian's PostgreSQL, apt-installed on first use); stopped and deleted at the end."""
    with postgres_server() as url:
        yield url
