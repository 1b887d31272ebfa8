"""SQL text for LanceDB predicates: quoted literals, timestamps and metadata filters. No caller text reaches the
SQL unescaped."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from backends.types import FILTER_COLUMNS, Filters


def sql_literal(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def filter_predicate(filters: Filters | None) -> str | None:
    """The SQL predicate for ``filters``, or None for no filter. Column names come from ``FILTER_COLUMNS`` only and
    every value is quoted with :func:`sql_literal`, so no caller text reaches the SQL unescaped."""
    if not filters:
        return None
    unknown = sorted(set(filters) - set(FILTER_COLUMNS))
    if unknown:
        raise ValueError(f"cannot filter on {unknown}; allowed columns: {', '.join(FILTER_COLUMNS)}")
    clauses = []
    for column in FILTER_COLUMNS:
        if column in filters:
            values = _filter_values(column, filters[column])
            literals = ", ".join(sql_literal(v) for v in values)
            clauses.append(f"{column} = {literals}" if len(values) == 1 else f"{column} IN ({literals})")
    return " AND ".join(clauses)


def _filter_values(column: str, value: object) -> list[str]:
    """The filter's values as a list, checked at run time too: filters may come straight from a request body."""
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, Sequence) or not all(isinstance(v, str) for v in values):
        raise ValueError(f"filter on {column!r} must be a string or a list of strings, not {value!r}")
    if not values:
        raise ValueError(f"filter on {column!r} has no values: it would match nothing; leave the column out instead")
    return list(values)


def timestamp_literal(moment: datetime) -> str:
    """A UTC timestamp (microseconds) comparable with a ``timestamp("us", tz="UTC")`` column."""
    return f"arrow_cast({int(moment.timestamp() * 1_000_000)}, 'Timestamp(Microsecond, Some(\"UTC\"))')"
