"""The base of every domain model: immutable, strict, camelCase on the wire.

The seed data model names fields in camelCase (``namespaceTemplate``); Python code uses
snake_case attributes. Unknown keys are errors, so a typo in a configuration file is caught
instead of silently ignored.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, ValidationError
from pydantic.alias_generators import to_camel


class FloeModel(BaseModel):
    # defer_build: a model's validator is built when it is first used, not at import, so a
    # command pays only for the models it reads (``floe-deploy values`` starts ~0.1 s sooner).
    model_config = ConfigDict(
        frozen=True,
        extra="forbid",
        alias_generator=to_camel,
        populate_by_name=True,
        defer_build=True,
    )

    def to_document(self) -> dict:
        """The model as its YAML/JSON document (camelCase keys, JSON types)."""
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


def error_location(loc: tuple[int | str, ...]) -> str:
    """A pydantic error location as a path: ``clusterMappings[0].namespaceTemplate``."""
    path = ""
    for part in loc:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path or "(document)"


def format_validation_error(source: str, error: ValidationError) -> str:
    """One line per problem, naming the file and field; input values are never echoed, since
    they may be credentials."""
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        message = problem["msg"].removeprefix("Value error, ")
        lines.append(f"{source}: {error_location(problem['loc'])}: {message}")
    return "\n".join(lines)
