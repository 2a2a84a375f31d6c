"""The ``--write`` / ``--check`` command shared by the generators of committed files (values
schemas and defaults, chart READMEs): one map of path -> content, written or compared."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path


def stale(files: dict[Path, str]) -> list[Path]:
    """The files that are missing or differ from what would be generated."""
    return [
        path for path, content in files.items() if not path.is_file() or path.read_text() != content
    ]


def generator_command(
    argv: list[str] | None,
    *,
    description: str,
    files: Callable[[], dict[Path, str]],
    display: Callable[[Path], str],
    source: str,
    regenerate: str,
) -> int:
    parser = argparse.ArgumentParser(description=description)
    action = parser.add_mutually_exclusive_group(required=True)
    action.add_argument("--write", action="store_true", help="write the generated files")
    action.add_argument("--check", action="store_true", help="exit 1 when a file is stale")
    args = parser.parse_args(argv)
    generated = files()
    if args.write:
        for path, content in generated.items():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(content)
            print(f"wrote {display(path)}")
        return 0
    out_of_date = stale(generated)
    for path in out_of_date:
        print(
            f"{display(path)} is missing or out of date with its {source}",
            file=sys.stderr,
        )
    if out_of_date:
        print(f"regenerate with: {regenerate}", file=sys.stderr)
        return 1
    return 0
