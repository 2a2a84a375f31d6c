"""What to do with a failed release: a module of its own, so that the command line's
``--remediation`` choices cost no import of the release models."""

from enum import StrEnum


class Remediation(StrEnum):
    """What to do with a failed release."""

    RETRY = "retry"
    ROLLBACK = "rollback"
    HOLD = "hold"
