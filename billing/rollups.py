"""Daily rollups of the usage rows (UsageDaily: per UTC day, user, API key, model and provider), and the
figures read through them.

`add` is called by metering in the transaction that writes a usage row: the rollup changes if and only
if the row is written (a settlement that is a no-op rolls back with the row it tried to write), so the
rollups always equal the rows' sums and no reader ever misses usage not yet rolled up.

`usage(...).between(since, until)` answers the figures any page or check needs with the names of
UsageRecord's queryset (totals, grouped, by_model, by_day, ...): whole days from the rollups, and the part
of a day a range starts or ends inside of from the usage rows of that part (or the day's rollup less the
rows of the other part, whichever part is shorter). Totals over a range that started inside a day some
minutes ago (a plan period: admission's quota read) take that day's rollup less its rows before the start,
whose sums can no longer change and are kept by each process: one query over the rollups, whatever the caller's history.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import cached_property
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from aihub import shared_state

from .models import FIGURES, FiguresQuerySet, Groupings, UsageDaily, UsageRecord

_COLUMNS = "user_id, day, api_key_id, model_slug, provider, request_count, prompt_tokens, completion_tokens, total_cost"
_CONFLICT = {
    True: "(user_id, day, api_key_id, model_slug, provider) WHERE api_key_id IS NOT NULL",
    False: "(user_id, day, model_slug, provider) WHERE api_key_id IS NULL",
}
_ADD = """
    ON CONFLICT {target} DO UPDATE SET
        request_count = billing_usagedaily.request_count + excluded.request_count,
        prompt_tokens = billing_usagedaily.prompt_tokens + excluded.prompt_tokens,
        completion_tokens = billing_usagedaily.completion_tokens + excluded.completion_tokens,
        total_cost = billing_usagedaily.total_cost + excluded.total_cost
"""


def add(record: UsageRecord) -> None:
    """Add one usage row to its day's rollup: one upsert (INSERT ... ON CONFLICT DO UPDATE, atomic on
    PostgreSQL and SQLite alike). Call it in the transaction that writes the row."""
    with connection.cursor() as cursor:
        cursor.execute(*add_sql(record))


def add_sql(record: UsageRecord) -> tuple[str, list[Any]]:
    """`add`'s upsert as SQL and its parameters (metering sends it with the row's own insert)."""
    keyed = record.api_key_id is not None
    return (
        f'INSERT INTO "billing_usagedaily" ({_COLUMNS}) VALUES (%s, %s, %s, %s, %s, 1, %s, %s, %s)'
        + _ADD.format(target=_CONFLICT[keyed]),
        [
            record.user_id,
            record.created_at.astimezone(UTC).date(),
            record.api_key_id,
            record.model_slug,
            record.provider,
            record.prompt_tokens,
            record.completion_tokens,
            record.cost,
        ],
    )


def _sums_select(where: str) -> str:
    """The usage rows' sums per rollup key, as rows of UsageDaily's columns (SQL; `where` filters the rows)."""
    day = "DATE(created_at)" if connection.vendor == "sqlite" else "(created_at AT TIME ZONE 'UTC')::date"
    return (
        f"SELECT user_id, {day}, api_key_id, model_slug, provider, COUNT(*), SUM(prompt_tokens), "
        f"SUM(completion_tokens), SUM(cost) FROM billing_usagerecord WHERE {where} "
        f"GROUP BY user_id, {day}, api_key_id, model_slug, provider"
    )


def rebuild() -> None:
    """Every rollup computed afresh from the usage rows (the backfill; bulk loads). Takes the usage table's
    lock for its duration on PostgreSQL, so no settlement lands between the delete and the sums."""
    shared_state.bump(GENERATION_KEY)
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("LOCK TABLE billing_usagerecord IN SHARE MODE")
        cursor.execute("DELETE FROM billing_usagedaily")
        for keyed in (True, False):
            where = f"api_key_id IS {'NOT ' if keyed else ''}NULL"
            cursor.execute(f"INSERT INTO billing_usagedaily ({_COLUMNS}) {_sums_select(where)}")


def fold_key(api_key_id: int) -> None:
    """Before an API key is deleted (its usage rows then lose their key): its rollups join the keyless ones."""
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO billing_usagedaily ({_COLUMNS}) SELECT user_id, day, NULL, model_slug, provider, "
            "request_count, prompt_tokens, completion_tokens, total_cost FROM billing_usagedaily "
            "WHERE api_key_id = %s" + _ADD.format(target=_CONFLICT[False]),
            [api_key_id],
        )
        UsageDaily.objects.filter(api_key_id=api_key_id).delete()


@dataclass
class Difference:
    key: tuple
    rolled_up: dict
    rows: dict


def differences() -> list[Difference]:
    """Where the rollups and the usage rows' sums disagree (none, when all is well): per rollup key."""
    key = ("user_id", "day", "api_key_id", "model_slug", "provider")
    names = ("requests", "input_tokens", "output_tokens", "cost")
    rolled = {tuple(row[k] for k in key): row for row in UsageDaily.objects.grouped(*key, names=names)}
    summed = {tuple(row[k] for k in key): row for row in UsageRecord.objects.grouped(*key, names=names)}
    found = []
    for k in sorted(set(rolled) | set(summed), key=str):
        ours = {n: rolled[k][n] for n in names} if k in rolled else dict.fromkeys(names, 0)
        theirs = {n: summed[k][n] for n in names} if k in summed else dict.fromkeys(names, 0)
        if ours != theirs:
            found.append(Difference(k, ours, theirs))
    return found


# Reading -----------------------------------------------------------------------------------------------

_ROLLUP_FILTERS = {"user", "user_id", "api_key", "api_key_id", "model_slug", "provider"}


def _midnight(day: date) -> datetime:
    return datetime.combine(day, time.min, tzinfo=UTC)


# Rows are written with created_at = now: after this long (transactions are short), none is still to
# commit with an earlier time, so sums of rows before then can be cached.
SETTLED_AFTER = timedelta(minutes=5)
# A shared version (aihub.shared_state) that rebuild() moves on: rows were rewritten, kept sums are void.
GENERATION_KEY = "rollups:version"  # not "rollups:generation": that held a pickled string before 2026-12-03
# Sums that can no longer change, kept by this process under their part's cache key: (generation, sums).
_kept_sums: dict[str, tuple[int, dict[str, Any]]] = {}
KEPT_SUMS_MAX = 10_000  # a period's start per limited caller: cleared when full


@dataclass
class Part:
    """Usage rows or rollups of one owner (`filters`) over a range: from `start` up to, not including, `end`
    (days of the rollups, moments of the usage rows; None: unbounded), added (sign 1) or taken away (-1)."""

    model: type[UsageRecord] | type[UsageDaily]
    filters: dict[str, Any]
    sign: int
    start: date | datetime | None = None
    end: date | datetime | None = None
    cache_key: str | None = None  # the rows' sums can no longer change: kept under this key (_kept_sums)

    @cached_property
    def rows(self) -> FiguresQuerySet:
        """The queryset, built when first needed (admission writes its SQL from the range: billing.limits)."""
        rows: Any = self.model.objects.filter(**self.filters)
        return rows.between(self.start, self.end) if self.start is not None else rows

    def totals(self, names: tuple[str, ...]) -> dict:
        if self.cache_key is None:
            return self.rows.totals(*names)
        # Read before the sums: a rebuild racing them leaves them tagged with the version it made void.
        generation = shared_state.version(GENERATION_KEY)
        kept = _kept_sums.get(self.cache_key)
        if kept is None or kept[0] != generation:
            if len(_kept_sums) >= KEPT_SUMS_MAX:
                _kept_sums.clear()
            kept = _kept_sums[self.cache_key] = (generation, self.rows.totals())
        return {name: kept[1][name] for name in names}


@dataclass
class Usage(Groupings):
    """The usage of the rows matching `filters` (any of user, api_key, model_slug, provider), over a range:
    the figures of UsageRecord's queryset, read from the rollups where whole days allow."""

    filters: dict[str, Any]
    since: datetime | None = None
    until: datetime | None = None

    def between(self, since: datetime, until: datetime | None = None) -> Usage:
        return Usage(self.filters, since, until)

    def parts(self, *, cached_head: bool = False) -> list[Part]:
        """The querysets to add (sign 1) or take away (-1): rollups for the whole days, usage rows for the
        ends that fall inside a day. `cached_head`: a range that started inside a day a while ago reads that
        day's rollup less the rows before its start, which can no longer change (a cacheable part)."""
        if self.since is None:
            return [Part(UsageDaily, self.filters, 1)]

        def of_rows(start: datetime, end: datetime | None, sign: int = 1, cache_key: str | None = None) -> Part:
            return Part(UsageRecord, self.filters, sign, start, end, cache_key)

        def of_days(start: date, end: date | None) -> Part:
            return Part(UsageDaily, self.filters, 1, start, end)

        since, until = self.since.astimezone(UTC), self.until.astimezone(UTC) if self.until else None
        first = since.date() if since == _midnight(since.date()) else since.date() + timedelta(days=1)
        last = until.date() if until is not None else None  # rollups up to, not including, this day
        if last is not None and last < first:  # inside one day
            return [of_rows(since, until)]
        if since.date() == first:
            parts = [of_days(first, last)]
        elif cached_head and timezone.now() - since > SETTLED_AFTER:
            parts = [
                of_days(since.date(), last),
                of_rows(_midnight(since.date()), since, -1, self._cache_key("before", since)),
            ]
        elif _midnight(first) - since <= timedelta(hours=12):  # the shorter part of the day from the rows
            parts = [of_days(first, last), of_rows(since, _midnight(first))]
        else:
            parts = [of_days(since.date(), last), of_rows(_midnight(since.date()), since, -1)]
        if until is not None and last is not None and until != _midnight(last):  # it ends inside a day
            parts.append(of_rows(_midnight(last), until))
        return parts

    def _cache_key(self, part: str, moment: datetime) -> str:
        owners = ",".join(f"{name}={getattr(value, 'pk', value)}" for name, value in sorted(self.filters.items()))
        return f"rollups:{part}:{owners}:{moment.timestamp()}"

    def totals(self, *names: str) -> dict:
        names = names or FIGURES
        found: dict[str, Any] = dict.fromkeys(names, 0)
        for part in self.parts(cached_head=True):
            for name, value in part.totals(names).items():
                found[name] += part.sign * value
        if "cost" in found:
            found["cost"] = Decimal(found["cost"])
        return found

    def grouped(self, *fields: str, names: Iterable[str] = FIGURES) -> Figures:
        return _merged(((part.rows.grouped(*fields, names=names), part.sign) for part in self.parts()), fields, names)


def _merged(
    signed_rows: Iterable[tuple[Iterable[dict], int]], fields: tuple[str, ...], names: Iterable[str]
) -> Figures:
    """Rows of figures summed (or taken away: sign -1) per value of `fields`; groups left with nothing dropped."""
    names = tuple(names)
    merged: dict[tuple, dict] = {}
    for rows, sign in signed_rows:
        for row in rows:
            key = tuple(row[f] for f in fields)
            into = merged.setdefault(key, {**{f: row[f] for f in fields}, **dict.fromkeys(names, 0)})
            for name in names:
                into[name] += sign * row[name]
    return Figures(row for row in merged.values() if any(row[name] for name in names))


class Figures(Groupings, list):
    """Grouped figures, ordered like a queryset (order_by("-tokens", "model_slug")), and grouped again by
    fewer fields with the same names: one read of the finest grouping a page needs serves all of it."""

    def order_by(self, *fields: str) -> Figures:
        rows = list(self)
        for name in reversed(fields):  # stable sorts, the last key first
            key = name.lstrip("-")
            rows.sort(
                key=lambda row: (row[key] is None, row[key] if row[key] is not None else 0),
                reverse=name.startswith("-"),
            )
        return Figures(rows)

    def grouped(self, *fields: str, names: Iterable[str] = FIGURES) -> Figures:
        return _merged([(self, 1)], fields, names)

    def totals(self, *names: str) -> dict:
        found: dict[str, Any] = dict.fromkeys(names or FIGURES, 0)
        for row in self:
            for name in found:
                found[name] += row[name]
        if "cost" in found:
            found["cost"] = Decimal(found["cost"])
        return found


def usage(**filters: Any) -> Usage:
    """The usage of one user, API key, model or provider (or of everyone: no filters)."""
    unknown = set(filters) - _ROLLUP_FILTERS
    if unknown:
        raise ValueError(f"rollups are per user, key, model and provider, not {sorted(unknown)}")
    return Usage(filters)
