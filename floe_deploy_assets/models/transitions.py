"""State machines of the seed (section 4): a move not in the table is refused, never applied."""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum
from typing import TypeVar

S = TypeVar("S", bound=StrEnum)


class IllegalTransitionError(ValueError):
    """A status change the seed's state machine does not allow."""


def check_transition(
    entity: str,
    current: S | None,
    target: S,
    allowed: Mapping[S | None, frozenset[S]],
) -> None:
    """Raise unless ``current -> target`` is in ``allowed`` (None is the not-yet-created state)."""
    if target not in allowed.get(current, frozenset()):
        moves = ", ".join(sorted(allowed.get(current, frozenset()))) or "none (final)"
        origin = "creation" if current is None else current
        raise IllegalTransitionError(
            f"{entity} cannot move from {origin} to {target}; allowed from {origin}: {moves}"
        )
