"""Our cron check refuses whatever Dagster's refuses, without importing Dagster (issue 14:
`values` must start fast, and importing dagster costs a third of a second).

``models.rules.cron_problem`` accepts robfig's grammar (what Kubernetes' CronJob reads) and then
refuses what Dagster's ``is_valid_cron_string`` refuses within it: days 30 and 31 of February
alone, which never come. Here both are asked about thousands of expressions drawn from that
grammar, weighted towards February and the days it lacks, with names, ranges, lists, steps and
'?': whenever Dagster refuses one, ours must too, and ours refuses nothing else within the
grammar but schedules that name only those days (Dagster's vendored croniter reads some of them,
"30-30" for one, as every day).
"""

from __future__ import annotations

from dagster._utils.schedules import is_valid_cron_string
from hypothesis import given, settings
from hypothesis import strategies as st

from floe_deploy_assets.models.rules import CRON_FIELDS, cron_problem


def _item(low: int, high: int, names: tuple[str, ...], favourites: list[int]) -> st.SearchStrategy:
    number = st.one_of(st.sampled_from(favourites), st.integers(low, high))

    def word(value: int) -> str:
        offset = 1 if names and names[0] == "jan" else 0
        if names and low <= value <= high and value - offset < len(names):
            return names[value - offset]
        return str(value)

    single = number.map(str) | (number.map(word) if names else number.map(str))
    ranged = st.tuples(number, number).map(lambda pair: f"{min(pair)}-{max(pair)}")
    base = st.one_of(st.just("*"), single, ranged)
    step = st.one_of(st.just(""), st.integers(1, 40).map(lambda n: f"/{n}"))
    return st.tuples(base, step).map("".join)


def _field(index: int) -> st.SearchStrategy:
    _, low, high, names, question = CRON_FIELDS[index]
    favourites = {2: [29, 30, 31], 3: [2, 2, 2, 1, 3]}.get(index, [low, high])
    items = st.lists(_item(low, high, names, favourites), min_size=1, max_size=3).map(",".join)
    # February and its missing days, alone and often: where Dagster refuses.
    alone = {2: ["30", "31", "30/2", "31/1"], 3: ["2", "FEB", "feb", "2/12", "2-2"]}.get(index)
    if alone:
        items = st.one_of(st.sampled_from(alone), items)
    return st.one_of(st.just("?"), items) if question else items


EXPRESSIONS = st.tuples(*(_field(i) for i in range(5))).map(" ".join)


@settings(max_examples=4000, derandomize=True, deadline=None)
@given(EXPRESSIONS)
def test_within_the_grammar_whatever_dagster_refuses_is_refused(expression: str):
    problem = cron_problem(expression)
    if problem is not None and "never comes" not in problem:
        return  # outside robfig's grammar (a reversed range, say): Kubernetes refuses it
    if not is_valid_cron_string(expression):
        assert problem is not None, expression
    if problem is not None:  # and only a schedule that never fires
        _, _, day_of_month, month, _ = expression.split()
        assert _selects(month, 12, MONTHS) == {2}, expression
        assert _selects(day_of_month, 31, ()) <= {30, 31}, expression


MONTHS = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")


def _selects(field: str, high: int, names: tuple[str, ...]) -> set[int]:
    """The oracle: which of 1..high a month or day-of-month field selects, by brute force (each
    value tried against each item), not by the parser under test."""

    def number(text: str) -> int:
        return names.index(text.lower()) + 1 if text.lower() in names else int(text)

    def matches(value: int, item: str) -> bool:
        span, _, step = item.partition("/")
        first, last = (1, high) if span in ("*", "?") else (number(span.split("-")[0]), None)
        if last is None:
            last = number(span.split("-")[1]) if "-" in span else (high if step else first)
        return first <= value <= last and (value - first) % int(step or 1) == 0

    return {v for v in range(1, high + 1) if any(matches(v, i) for i in field.split(","))}


def test_the_days_february_lacks_are_refused_and_the_29th_is_not():
    for expression in ("0 0 30 2 *", "0 0 31 FEB *", "0 0 31 2/12 ?"):  # Dagster's refusals
        problem = cron_problem(expression)
        assert problem is not None and "February, which never comes" in problem, expression
        assert not is_valid_cron_string(expression), expression
    for expression in ("0 0 30-30 2-2 *", "0 0 30,31 2 *"):  # never fire; Dagster reads them
        assert "never comes" in (cron_problem(expression) or ""), expression
    for expression in ("0 0 29 2 *", "0 0 29-31 2 *", "0 0 30 1-2 *", "0 0 30 * *"):
        assert cron_problem(expression) is None, expression
        assert is_valid_cron_string(expression), expression
