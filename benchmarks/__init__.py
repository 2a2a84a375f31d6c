"""Benchmarks, run from the repository's root as ``python -m benchmarks.<name>`` (a package, so
that they can import each other and mypy knows each file under one module name)."""
