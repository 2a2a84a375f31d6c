"""Validation rules as strict as the tools that consume what we validate: Kubernetes (label keys
and values, cron schedules of CronJobs), Dagster (cron schedules), Helm (the values schema's
patterns, read by Go's regexp).

Regular expressions. Three engines read our patterns: Python's ``re`` (our own checks), Rust's
``regex`` (pydantic's ``Field(pattern=...)``) and Go's RE2 (Helm's schema validation). They
disagree on two things that matter here: ``\\d``, ``\\w`` and ``\\s`` are Unicode in Python
and Rust (Arabic-Indic digits are digits there) and ASCII in Go; and Python's ``$`` also matches
before a final newline (``"0.5.0\\n"``), where Rust's and Go's match only at the end of the
text. So every pattern is written in the subset on which they agree: explicit ASCII classes
(``[0-9]``, never ``\\d``, ``\\w``, ``\\s``, ``\\b``), no lookaround, ``^``/``$`` as the
only anchors; Python code matches with ``fullmatch`` (and ``re.ASCII``), and the values check
reads ``$`` as Go does (``floe_deploy_assets/values/validation.py``).
``PORTABLE_REGEX_FORBIDDEN`` lists what the tests refuse in a pattern.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# Escapes and groups whose meaning differs between Python's re, Rust's regex and Go's RE2, or
# that RE2 lacks (lookaround, \Z); a pattern using one of them is not portable.
PORTABLE_REGEX_FORBIDDEN = (
    r"\d", r"\D", r"\w", r"\W", r"\s", r"\S", r"\b", r"\B", r"\A", r"\Z", r"\z",
    "(?=", "(?!", "(?<", "(?P", "(?i", "(?m", "(?s", "(?x",
)  # fmt: skip


# --- messages --------------------------------------------------------------------------------
SUMMARY_LIMIT = 5
ECHO_LIMIT = 64


# Keywords of the values schemas that the values check enforces beyond JSON Schema
# (values/chart_values.py writes them, values/validation.py reads them).
CRON_FORMAT = "cron"
LIMITS_KEYWORD = "x-limits-cover-requests"


def summarize(items: Iterable[str], limit: int = SUMMARY_LIMIT, sep: str = ", ") -> str:
    """``a, b, c, d, e and 4995 more``: a list in a message stays short, whatever its size."""
    items = list(items)
    shown = sep.join(items[:limit])
    return f"{shown} and {len(items) - limit} more" if len(items) > limit else shown


def echo(text: str, limit: int = ECHO_LIMIT) -> str:
    """A user's string quoted in a message, cut when it is long."""
    return repr(text) if len(text) <= limit else f"{text[:limit]!r}... ({len(text)} characters)"


# --- Kubernetes labels -----------------------------------------------------------------------
# Kubernetes' IsQualifiedName (keys) and IsValidLabelValue (values), k8s.io/apimachinery.
DNS1123_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
DNS1123_SUBDOMAIN_MAX = 253
LABEL_NAME_MAX = 63
_LABEL_NAME = "[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?"
LABEL_NAME_PATTERN = _LABEL_NAME  # a label's name part, a label value, a Dagster tag key
_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"
# The shape of a key; the prefix's 253 characters are LABEL_KEY_LENGTH_PATTERN's.
LABEL_KEY_PATTERN = f"^({_SUBDOMAIN}/)?{_LABEL_NAME}$"
LABEL_KEY_LENGTH_PATTERN = f"^([^/]{{1,{DNS1123_SUBDOMAIN_MAX}}}/)?[^/]{{1,{LABEL_NAME_MAX}}}$"
LABEL_VALUE_PATTERN = f"^({_LABEL_NAME})?$"


def label_key_problem(key: str) -> str | None:
    """Why Kubernetes would refuse ``key`` as a label (or annotation) key, or None."""
    prefix, _, name = key.rpartition("/")
    if "/" in prefix:
        return "has more than one '/'"
    if not re.fullmatch(_LABEL_NAME, name, re.ASCII):
        return (
            f"name part must be 1 to {LABEL_NAME_MAX} characters: letters, digits, '-', '_' and "
            "'.', starting and ending with a letter or digit"
        )
    if "/" in key and (
        len(prefix) > DNS1123_SUBDOMAIN_MAX or not re.fullmatch(_SUBDOMAIN, prefix, re.ASCII)
    ):
        return (
            f"prefix must be a DNS-1123 subdomain of at most {DNS1123_SUBDOMAIN_MAX} "
            "characters (lowercase letters, digits, '-' and '.')"
        )
    return None


def label_value_problem(value: str) -> str | None:
    """Why Kubernetes would refuse ``value`` as a label value, or None."""
    if value and not re.fullmatch(_LABEL_NAME, value, re.ASCII):
        return (
            f"must be empty or 1 to {LABEL_NAME_MAX} characters: letters, digits, '-', '_' and "
            "'.', starting and ending with a letter or digit"
        )
    return None


# --- cron ------------------------------------------------------------------------------------
# What both consumers accept: Kubernetes' CronJob parser (robfig/cron v3, ParseStandard) and
# Dagster's (dagster._utils.schedules.is_valid_cron_string, a vendored croniter). Kubernetes
# refuses what croniter reads leniently (a reversed range "1-0", day of week 7, "L", "#", any
# Unicode digit), Dagster refuses what robfig reads (30 February, "?" in the minute), so a
# schedule must pass both: this parser is robfig's grammar, then Dagster's one extra refusal
# within it, a day that never comes (day 30 or 31 in February alone), said here rather than
# asked of Dagster, whose import costs a third of a second in every command that reads a
# configuration. It is said a little more widely than Dagster's vendored croniter says it
# (which reads "30-30" as every day): whatever names only days 30 and 31 of February never
# fires. tests/unit/test_cron_equivalence.py checks, on thousands of expressions of the
# grammar, that whatever Dagster refuses is refused here.
CRON_MAX_LENGTH = 100
CRON_DESCRIPTORS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@hourly")
MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
WEEKDAYS = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
# (field, lowest, highest, names, "?" allowed)
CRON_FIELDS: tuple[tuple[str, int, int, tuple[str, ...], bool], ...] = (
    ("minute", 0, 59, (), False),
    ("hour", 0, 23, (), False),
    ("day of month", 1, 31, (), True),
    ("month", 1, 12, MONTHS, False),
    ("day of week", 0, 6, WEEKDAYS, True),
)
CRON_HELP = (
    "five fields separated by spaces: minute 0-59, hour 0-23, day of month 1-31, month 1-12 or "
    "JAN-DEC, day of week 0-6 or SUN-SAT (0 is Sunday); each a '*', a number, a range 'a-b' "
    "or a list 'a,b', with an optional step '/n'; or one of " + ", ".join(CRON_DESCRIPTORS)
)
_CRON_ITEM = re.compile(r"(?:([*?])|([0-9A-Za-z]+)(?:-([0-9A-Za-z]+))?)(?:/([0-9]+))?", re.ASCII)


def _cron_value(text: str, field: str, low: int, high: int, names: tuple[str, ...]) -> int:
    if text.lower() in names:
        return names.index(text.lower()) + (1 if field == "month" else 0)
    if not re.fullmatch("[0-9]{1,3}", text, re.ASCII):
        raise ValueError(f"{field} {echo(text)} is not a number from {low} to {high}")
    value = int(text)
    if not low <= value <= high:
        raise ValueError(f"{field} {value} is out of range {low}-{high}")
    return value


def _cron_field_values(
    text: str, field: str, low: int, high: int, names: tuple[str, ...], question: bool
) -> set[int] | None:
    """The values a field of robfig's grammar stands for (None: every value, '*' or '?');
    raises ValueError saying what is wrong with it."""
    values: set[int] = set()
    for item in text.split(","):
        match = _CRON_ITEM.fullmatch(item)
        if not match:
            raise ValueError(f"{field} item {echo(item)} is not '*', 'a', 'a-b' or one with '/n'")
        wildcard, start, end, step = match.groups()
        if wildcard == "?" and not question:
            raise ValueError(
                f"'?' is only allowed in the day of month and day of week, not {field}"
            )
        first, last = low, high
        if start is not None:
            first = last = _cron_value(start, field, low, high, names)
            if end is not None:
                last = _cron_value(end, field, low, high, names)
                if first > last:
                    raise ValueError(
                        f"{field} range {echo(item)} goes backwards ({first} > {last})"
                    )
            elif step is not None:
                last = high  # "a/n": from a to the field's highest, every n
        if step is not None and int(step) == 0:
            raise ValueError(f"{field} step must be a positive number, not 0")
        if wildcard is not None and step is None:
            return None
        values.update(range(first, last + 1, int(step or 1)))
    return values


def cron_problem(expression: str) -> str | None:
    """Why Kubernetes or Dagster would refuse the cron expression, or None."""
    if len(expression) > CRON_MAX_LENGTH:
        return f"is {len(expression)} characters long, more than {CRON_MAX_LENGTH}"
    if expression.startswith("@"):
        if expression not in CRON_DESCRIPTORS:
            return f"{echo(expression)} is not a cron expression: {CRON_HELP}"
    else:
        if not re.fullmatch("[!-~]+( +[!-~]+)*", expression, re.ASCII):
            return (
                f"{echo(expression)} is not a cron expression: printable ASCII fields separated "
                "by spaces, nothing before or after them"
            )
        fields = expression.split()
        if len(fields) != len(CRON_FIELDS):
            return f"{echo(expression)} has {len(fields)} fields, not five: {CRON_HELP}"
        try:
            values = [
                _cron_field_values(text, *spec)
                for text, spec in zip(fields, CRON_FIELDS, strict=True)
            ]
        except ValueError as error:
            return f"{echo(expression)} is not a valid cron expression: {error}"
        _, _, day_of_month, month, _ = values
        if month == {2} and day_of_month is not None and day_of_month <= {30, 31}:
            days = " and ".join(str(day) for day in sorted(day_of_month))
            return (
                f"{echo(expression)} names only day {days} of February, which never comes "
                "(Dagster's cron parser refuses it)"
            )
    return None
