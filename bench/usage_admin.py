"""Benchmark (not a test): seed N usage rows (and their daily rollups), time the usage admin, the
usage/ops pages and admission with quotas, and write the figures into BENCHMARKS.md (its own section,
replaced on each run).

    DATABASE_URL=postgres://…/aihub_billing_bench python manage.py migrate
    DATABASE_URL=postgres://…/aihub_billing_bench REDIS_URL=redis://…/7 python bench/usage_admin.py --rows 1000000

On PostgreSQL the rows are loaded with COPY (one upstream attempt each, inserted from them in SQL), else
with bulk_create in batches; the rollups are then computed from the rows (billing.rollups.rebuild), and
the tables vacuumed and analysed as autovacuum would after a bulk load.

Seeded rows belong to users named bench-*@bench.invalid and are deleted afterwards (--keep keeps
them). Pages are requested in-process through the full middleware stack as a superuser.

`--admission-only` times admission alone and rewrites only its part of the section: it keeps the seeded rows
and reuses them on the next run (seeding once, ~90 s at 1,000,000 rows), so reruns take seconds.
"""

from __future__ import annotations

import os
import platform
import random
import re
import statistics
import sys
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import django

# Run as a script from the repository: the project on the path and Django set up before its models load.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "aihub.settings")
django.setup()

from django.conf import settings  # noqa: E402
from django.contrib.auth import get_user_model  # noqa: E402
from django.core.management.base import BaseCommand  # noqa: E402
from django.db import connection  # noqa: E402
from django.test import Client  # noqa: E402
from django.test.utils import CaptureQueriesContext  # noqa: E402
from django.utils import timezone  # noqa: E402

from billing import limits, rollups  # noqa: E402
from billing.models import Plan, Subscription, UpstreamAttempt, UsageDaily, UsageRecord  # noqa: E402
from billing.subscriptions import current_subscription  # noqa: E402

BENCH_DOMAIN = "bench.invalid"
BENCH_PLAN = "bench-quota"
ADMISSION_NOTE = (
    "Admission (`billing.limits.admit`, before every chat or API request) on a plan with limits, on "
    "PostgreSQL with the rate limiter in Redis: one multi-statement query (BEGIN, the subscription's row "
    "lock, then in statements of their own the caller's expired reservations deleted, the key's budget, the "
    "reservations' sums and the period's usage from the daily rollups, and the reservation's insert), the "
    "checks in Python, the rate limits in one Redis script (taken last: a request refused for quota uses "
    "none), then COMMIT without waiting for the WAL flush (`synchronous_commit` off for that transaction: "
    "a reservation lost in a database crash is harmless, see `billing/limits.py`). The usage of the "
    "period's first day before its start (sums that can no longer change) is cached in Redis: one more "
    "round trip. A process remembers each limited caller's subscription from its last admission, so the "
    "unlocked read that finds whether a caller is limited is spent once; the locked read decides. On "
    "SQLite, or inside a caller's transaction, the same checks run through the ORM in Django's `atomic`. "
    "A plan with no limits (Enterprise) is admitted with one unlocked read and no reservation. The release "
    "is timed apart: a request releases its reservation in its usage row's transaction (billing.metering). "
    "Before (2026-12-02, at 4a7a18c, same command, load average 4.9): 14.8 ms median, 28.0 ms p95, 7 SQL "
    "statements (the unlocked read, BEGIN, the lock, the reservations' sums, the rollups' sum, the insert, "
    "COMMIT, which waited for the WAL flush) and 2 Redis round trips; 23 ms median in the first run at load "
    "average 8.2."
)
PAGES_NOTE = (
    "The usage pages read the daily rollups (`billing.rollups`, one row per day, key, model and provider; "
    "whole days only for the dashboard's date ranges). Before the rollups, at 100,000 rows (2026-11-27, load "
    "average 2.5): the dashboard took 198 ms, admission with quotas 17 ms median (189 ms slowest), growing "
    "with the caller's rows. The usage admin's list and `/ops/` still count and page the rows themselves: "
    "slow at this size (the admin's totals come from the rollups when filtered by provider and dates only)."
)
SECTION = "## Usage admin and dashboards with {rows} usage rows"
ADMISSION_HEADING = "### Admission with {rows} usage rows"
MODELS = [
    "openai/gpt-4o-mini",
    "anthropic/claude-3.5-haiku",
    "google/gemini-2.0-flash-001",
    "meta-llama/llama-3.3-70b-instruct:free",
    "gemini/gemini-2.0-flash",
    "local/smollm2-135m-instruct",
]
PROVIDERS = ["openrouter", "gemini", "openai_compat", "local"]
OUTCOMES = ["ok"] * 18 + ["http_500", "timeout"]
STATUSES = ["complete"] * 18 + ["failed", "stopped"]
PAGES = [
    ("usage admin, first page", "/admin/billing/usagerecord/"),
    (
        "usage admin, status + provider filters",
        "/admin/billing/usagerecord/?status__exact=complete&provider=openrouter",
    ),
    (
        "usage admin, date hierarchy (a month)",
        "/admin/billing/usagerecord/?created_at__year={year}&created_at__month={month}",
    ),
    ("usage admin, search by email", "/admin/billing/usagerecord/?q=bench-7%40"),
    ("usage admin, page 50", "/admin/billing/usagerecord/?p=50"),
    ("usage admin, one row", "/admin/billing/usagerecord/{pk}/change/"),
    ("subscription admin", "/admin/billing/subscription/"),
    ("operator overview (/ops/)", "/ops/"),
    ("usage dashboard, heaviest user, 90 days", "/usage/?start={start}&end={end}"),
    # The same page for a person without usage: what it costs whatever the figures (session, layout, chart).
    ("usage dashboard, a user without usage, 90 days", "/usage/?start={start}&end={end}"),
]


def _ms(seconds: float) -> str:
    if seconds < 0.01:
        return f"{seconds * 1000:.2f} ms" if seconds < 0.001 else f"{seconds * 1000:.1f} ms"
    return f"{seconds * 1000:.0f} ms"


def _p95(timings: list[float]) -> float:
    return statistics.quantiles(timings, n=20)[-1]


def _database() -> str:
    return connection.vendor + (f" {connection.pg_version // 10000}" if connection.vendor == "postgresql" else "")


class _Timings:
    """Wall and CPU time (of this process: its share of the work, whatever the machine's load) of each call
    made while it is entered."""

    def __init__(self):
        self.wall: list[float] = []
        self.cpu: list[float] = []

    def __enter__(self):
        self._started = (time.perf_counter(), time.process_time())

    def __exit__(self, *exc):
        self.wall.append(time.perf_counter() - self._started[0])
        self.cpu.append(time.process_time() - self._started[1])


class _RedisRoundTrips:
    """Counts the commands (or pipelines) sent to Redis while it is entered: its round trips."""

    def __enter__(self):
        from redis.connection import AbstractConnection

        self.count = 0
        self._send = AbstractConnection.send_packed_command

        def counted(connection, command, check_health=True):
            self.count += 1
            return self._send(connection, command, check_health)

        AbstractConnection.send_packed_command = counted
        return self

    def __exit__(self, *exc):
        from redis.connection import AbstractConnection

        AbstractConnection.send_packed_command = self._send


class Command(BaseCommand):
    help = "Seed usage rows and time the admin pages over them; writes BENCHMARKS.md."

    def add_arguments(self, parser):
        parser.add_argument("--rows", type=int, default=100_000)
        parser.add_argument("--users", type=int, default=50)
        parser.add_argument("--repeat", type=int, default=5)
        parser.add_argument("--keep", action="store_true", help="keep the seeded rows")
        parser.add_argument(
            "--admission-only",
            action="store_true",
            help="time admission only, on the rows kept by a previous run (seeded and kept if there are none)",
        )
        parser.add_argument("--out", default=str(Path(settings.BASE_DIR) / "BENCHMARKS.md"))

    def handle(self, *, rows, users, repeat, keep, admission_only, out, **options):
        settings.DEBUG = False  # time pages as production serves them (no query log, no debug pages)
        User = get_user_model()
        if admission_only:
            heavy = User.objects.filter(email=f"bench-0@{BENCH_DOMAIN}").first()
            seeded = heavy is not None and UsageRecord.objects.filter(user__email__endswith=f"@{BENCH_DOMAIN}").count()
            if seeded == rows:
                self.stdout.write(f"reusing the {rows} seeded usage rows kept by a previous run")
                results = self._time_admission(heavy, repeat)
                self._write_admission(out, rows, repeat, results)
                return
            keep = True
        self._cleanup(User)
        people = [
            User.objects.create_user(f"bench-{n}@{BENCH_DOMAIN}", "bench-password-not-used") for n in range(users)
        ]
        operator = User.objects.create_superuser(f"bench-operator@{BENCH_DOMAIN}", "bench-password-not-used")
        started = time.monotonic()
        self._seed(people, rows)
        seeded_in = time.monotonic() - started
        self.stdout.write(f"seeded {rows} usage rows (+ attempts, rollups) in {seeded_in:.1f} s")
        if admission_only:
            results = self._time_admission(people[0], repeat)
            self._write_admission(out, rows, repeat, results)
            return
        checked = time.monotonic()
        differences = rollups.differences()
        self.stdout.write(
            f"check_rollups: {len(differences)} difference(s) over {UsageDaily.objects.count():,} rollup rows "
            f"({time.monotonic() - checked:.1f} s)"
        )

        client = Client(HTTP_HOST="localhost")
        client.force_login(operator)
        heavy = people[0]
        client_user = Client(HTTP_HOST="localhost")
        client_user.force_login(heavy)
        client_without_usage = Client(HTTP_HOST="localhost")
        client_without_usage.force_login(User.objects.create_user(f"bench-none@{BENCH_DOMAIN}", "not-used-password"))
        today = timezone.now().date()
        values = {
            "year": today.year,
            "month": today.month,
            "pk": UsageRecord.objects.filter(user=heavy).first().pk,
            "start": today - timedelta(days=89),
            "end": today,
        }
        results = []
        for label, url in PAGES:
            url = url.format(**values)
            browser = client if not url.startswith("/usage/") else client_user
            if "without usage" in label:
                browser = client_without_usage
            results.append((label, url, *self._time(browser, url, repeat)))
            self.stdout.write(f"{results[-1][2] * 1000:8.1f} ms median  {results[-1][4]:3d} queries  {label}")
        admission = self._time_admission(heavy, repeat)
        self._write(out, rows, users, repeat, seeded_in, results, admission)
        if not keep:
            self._cleanup(User)

    def _seed(self, people, rows):
        rng = random.Random(7)
        now = timezone.now()

        def fields():
            for _n in range(rows):
                prompt, completion = rng.randint(10, 4000), rng.randint(1, 2000)
                yield {
                    "request_id": uuid.UUID(int=rng.getrandbits(128), version=4),
                    # A skewed population: the first users make most requests.
                    "user_id": people[min(int(rng.paretovariate(1.2)) - 1, len(people) - 1)].pk,
                    "model_slug": rng.choice(MODELS),
                    "provider": rng.choice(PROVIDERS),
                    "prompt_tokens": prompt,
                    "completion_tokens": completion,
                    "cost": Decimal(prompt + completion) / Decimal(1_000_000),
                    "latency_ms": rng.randint(50, 9000),
                    "ttft_ms": rng.randint(20, 900),
                    "status": rng.choice(STATUSES),
                    "created_at": now - timedelta(seconds=rng.randint(0, 90 * 86400)),
                }

        if connection.vendor == "postgresql":
            self._copy(fields())
        else:
            self._bulk_create(fields(), rng)
        rollups.rebuild()
        if connection.vendor == "postgresql":  # what autovacuum does soon after a bulk load
            with connection.cursor() as cursor:
                for table in ("billing_usagerecord", "billing_upstreamattempt", "billing_usagedaily", "accounts_user"):
                    cursor.execute(f"VACUUM ANALYZE {table}")

    def _copy(self, rows):
        """COPY the rows in, then one upstream attempt per row in one INSERT ... SELECT."""
        columns = [
            "request_id", "user_id", "model_slug", "provider", "prompt_tokens", "completion_tokens", "cost",
            "latency_ms", "ttft_ms", "status", "created_at",
        ]  # fmt: skip
        # The columns with Python defaults only (none in the database): the same values on every row.
        defaults = {
            "tokens_source": "estimated",
            "cost_source": "estimated",
            "input_price_per_m": 0,
            "output_price_per_m": 0,
            "over_reservation": False,
            "purpose": UsageRecord.Purpose.REQUEST.value,
        }
        with connection.cursor() as cursor:
            cursor.execute("SELECT max(id) FROM billing_usagerecord")
            before = cursor.fetchone()[0] or 0
            copy_sql = f"COPY billing_usagerecord ({', '.join([*columns, *defaults])}) FROM STDIN"
            with cursor.cursor.copy(copy_sql) as copy:
                for row in rows:
                    copy.write_row([*(row[c] for c in columns), *defaults.values()])
            cursor.execute(
                "INSERT INTO billing_upstreamattempt (usage_id, provider, model_slug, outcome, latency_ms, error) "
                "SELECT id, provider, model_slug, CASE WHEN random() < 0.9 THEN 'ok' WHEN random() < 0.5 "
                "THEN 'http_500' ELSE 'timeout' END, latency_ms, '' FROM billing_usagerecord WHERE id > %s",
                [before],
            )

    def _bulk_create(self, rows, rng):
        # created_at is auto_now_add; the benchmark spreads rows over 90 days, so it sets them itself.
        field = UsageRecord._meta.get_field("created_at")
        field.auto_now_add = False
        try:
            batch: list[UsageRecord] = []
            for row in rows:
                batch.append(UsageRecord(**row))
                if len(batch) == 5000:
                    self._insert(batch, rng)
                    batch = []
            self._insert(batch, rng)
        finally:
            field.auto_now_add = True

    def _insert(self, batch, rng):
        created = UsageRecord.objects.bulk_create(batch)
        UpstreamAttempt.objects.bulk_create(
            UpstreamAttempt(
                usage=r,
                provider=r.provider,
                model_slug=r.model_slug,
                outcome=rng.choice(OUTCOMES),
                latency_ms=r.latency_ms,
            )
            for r in created
        )

    def _time(self, client, url, repeat):
        response = client.get(url)  # warm-up (templates, caches)
        assert response.status_code == 200, (url, response.status_code)
        timings = []
        for _ in range(repeat):
            started = time.perf_counter()
            response = client.get(url)
            timings.append(time.perf_counter() - started)
        with CaptureQueriesContext(connection) as queries:
            client.get(url)
        return statistics.median(timings), max(timings), len(queries)

    def _time_admission(self, person, repeat):
        """Admission (billing.limits.admit) for the heaviest user, then its release timed apart (a request
        releases its reservation in its usage row's transaction, not on its own): on a plan with quotas and
        rate limits it reads the period's usage; on Enterprise (no limit, no key budget) it does not."""
        subscription = current_subscription(person)
        since = timezone.now() - timedelta(days=30)  # a period well into its month
        Subscription.objects.filter(pk=subscription.pk).update(current_period_start=since)
        in_period = UsageRecord.objects.filter(user=person, created_at__gte=since).count()
        quota_plan, _ = Plan.objects.update_or_create(
            slug=BENCH_PLAN,
            defaults={
                "name": "Bench quota",
                "monthly_price": Decimal(0),
                "monthly_token_quota": 10**12,
                "monthly_credit_quota": Decimal(10**9),
                "max_concurrent_streams": 10,
                "requests_per_minute": 10**6,
                "tokens_per_minute": 10**9,
                "is_public": False,
            },
        )
        samples = repeat * 200  # admission is quick: many samples for a steady median and p95
        results = []

        def admit():
            return limits.admit(
                user=person, model=None, candidates=[], params={}, messages=[{"role": "user", "content": "Say hello"}]
            )

        for plan in (quota_plan, Plan.objects.get(slug="enterprise")):
            Subscription.objects.filter(pk=subscription.pk).update(plan=plan)
            for _ in range(20):  # warm-up: connections, caches, the rate limiter's script
                limits.release(admit())
            admitting, releasing = _Timings(), _Timings()
            for _ in range(samples):
                with admitting:
                    admission = admit()
                with releasing:
                    limits.release(admission)
            with CaptureQueriesContext(connection) as queries, _RedisRoundTrips() as trips:
                admission = admit()
            with CaptureQueriesContext(connection) as release_queries:
                limits.release(admission)
            name = "with quotas, a parallel limit and rate limits" if plan == quota_plan else "Enterprise (no limits)"
            label = f"admission, plan {name}, {in_period:,} usage rows this period"
            results.append((label, "billing.limits.admit", admitting, len(queries), trips.count))
            if plan == quota_plan:  # (Enterprise reserves nothing: no release)
                results.append(
                    (
                        f"release of its reservation (plan {name})",
                        "billing.limits.release",
                        releasing,
                        len(release_queries),
                        0,
                    )
                )
            if plan == quota_plan:
                results.append(self._time_quota_read(person, samples, in_period))
        for label, _url, timings, statements, trips in results:
            self.stdout.write(
                f"{statistics.median(timings.wall) * 1000:8.2f} ms median {_p95(timings.wall) * 1000:8.2f} ms p95 "
                f"{statistics.median(timings.cpu) * 1000:8.2f} ms CPU {statements:3d} statements {trips} Redis  {label}"
            )
        return results

    def _time_quota_read(self, person, samples, in_period):
        """The quota part of admission alone: the period's tokens and spend (billing.limits._used_this_period)."""
        subscription = current_subscription(person)
        timings = _Timings()
        for _ in range(samples):
            with timings:
                limits._used_this_period(subscription, person, None, None)
        with CaptureQueriesContext(connection) as queries, _RedisRoundTrips() as trips:
            limits._used_this_period(subscription, person, None, None)
        label = (
            f"the quota read alone through the ORM (SQLite's path; on PostgreSQL it is part of admission's one "
            f"query), {in_period:,} usage rows this period"
        )
        return (label, "billing.limits._used_this_period", timings, len(queries), trips.count)

    def _admission_lines(self, rows, repeat, results) -> list[str]:
        samples = len(results[0][2].wall)
        return [
            ADMISSION_HEADING.format(rows=f"{rows:,}"),
            "",
            f"`python bench/usage_admin.py --rows {rows} --admission-only` (seeds as above once and keeps the rows; "
            f"reruns reuse them and take seconds). {samples} admissions of the heaviest user after 20 for warm-up, "
            f"each released before the next, in one process on this database ({_database()}) and "
            f"{'Redis (rate limiter and cache)' if settings.REDIS_URL else 'no Redis (database rate limiter)'}; "
            f"measured {timezone.now():%Y-%m-%d %H:%M} UTC on {os.cpu_count()} cores, "
            f"load average {os.getloadavg()[0]:.1f} from other work on the machine.",
            "",
            "| call | median | p95 | slowest | CPU of this process, median | SQL statements | Redis round trips |",
            "|---|---:|---:|---:|---:|---:|---:|",
            *[
                f"| {label} (`{url}`) | {_ms(statistics.median(timings.wall))} | {_ms(_p95(timings.wall))} | "
                f"{_ms(max(timings.wall))} | {_ms(statistics.median(timings.cpu))} | {statements} | {trips} |"
                for label, url, timings, statements, trips in results
            ],
            "",
            ADMISSION_NOTE,
            "",
            *self._targets({label: statistics.median(timings.wall) for label, _u, timings, _s, _t in results}),
            *self._where_the_time_goes(results[0]),
            "",
        ]

    def _where_the_time_goes(self, result) -> list[str]:
        label, _url, timings, statements, trips = result
        wall, cpu = statistics.median(timings.wall), statistics.median(timings.cpu)
        return [
            f"- of which this process's CPU (median): {_ms(cpu)}; the other {_ms(wall - cpu)} is waiting: for "
            f"PostgreSQL ({statements} statements) and Redis ({trips} round trips) to answer, and for a core "
            f"on a machine at load average {os.getloadavg()[0]:.1f}",
        ]

    def _write_admission(self, out, rows, repeat, results):
        """Only the admission part of this benchmark's section (a full run writes the whole section)."""
        path = Path(out)
        text = path.read_text() if path.exists() else "# Benchmarks\n\n"
        section = "\n".join(self._admission_lines(rows, repeat, results)) + "\n"
        pattern = re.compile(r"^### Admission with .*?(?=^##|\Z)", re.S | re.M)
        usage_section = re.compile(r"^## Usage admin and dashboards with .*?(?=^## |\Z)", re.S | re.M)
        if pattern.search(text):
            text = pattern.sub(lambda _match: section, text, count=1)
        elif found := usage_section.search(text):  # at the end of this benchmark's section
            text = text[: found.end()].rstrip("\n") + "\n\n" + section + "\n" + text[found.end() :]
        else:
            text = text.rstrip("\n") + "\n\n" + section
        path.write_text(text)
        self.stdout.write(f"wrote {path}")

    def _write(self, out, rows, users, repeat, seeded_in, results, admission):
        lines = [
            SECTION.format(rows=f"{rows:,}"),
            "",
            f"`python bench/usage_admin.py --rows {rows}` ({_database()}, Python {platform.python_version()}, "
            f"{users} users with a skewed share of the rows, one upstream attempt per row, rows spread over 90 days, "
            f"loaded with {'COPY' if connection.vendor == 'postgresql' else 'bulk_create'}, rollups computed from "
            f"them, tables vacuumed and analysed after the load as autovacuum would; "
            f"median and slowest of {repeat} requests through the full middleware stack, after a warm-up; "
            f"measured {timezone.now():%Y-%m-%d} on {os.cpu_count()} cores, load average "
            f"{os.getloadavg()[0]:.1f} from other work on the machine). Seeding took {seeded_in:.0f} s.",
            "",
            "| page | median | slowest | queries |",
            "|---|---:|---:|---:|",
            *[
                f"| {label} (`{url}`) | {_ms(median)} | {_ms(slowest)} | {queries} |"
                for label, url, median, slowest, queries in results
            ],
            "",
            PAGES_NOTE,
            "",
            *self._targets({label: median for label, _url, median, _slowest, _queries in results}),
            "",
            *self._admission_lines(rows, repeat, admission),
        ]
        path = Path(out)
        text = path.read_text() if path.exists() else "# Benchmarks\n\n"
        # Replace this benchmark's own section (from its heading to the next one), leave the rest alone.
        pattern = re.compile(r"^## Usage admin and dashboards with .*?(?=^## |\Z)", re.S | re.M)
        section = "\n".join(lines) + "\n"
        if pattern.search(text):
            text = pattern.sub(lambda _match: section, text, count=1)
        else:
            text = text.rstrip("\n") + "\n\n" + section
        path.write_text(text)
        self.stdout.write(f"wrote {path}")

    def _targets(self, medians: dict[str, float]) -> list[str]:
        """Issue 9's targets against the medians measured: met, or missed by how much."""
        lines = ["Targets (issue 9, medians):"]
        for prefix, target in [
            ("usage dashboard, heaviest user", 0.050),
            ("admission, plan with quotas", 0.002),
        ]:
            found = next((median for label, median in medians.items() if label.startswith(prefix)), None)
            if found is None:
                continue
            verdict = "met" if found <= target else f"missed by {_ms(found - target)} ({found / target:.1f}x)"
            lines.append(f"- {prefix}: {_ms(found)} against {_ms(target)}: {verdict}")
        return lines if len(lines) > 1 else []

    def _cleanup(self, User):
        doomed = User.objects.filter(email__endswith=f"@{BENCH_DOMAIN}")
        # Deleted in SQL: the ORM's delete would load every seeded row to collect its relations first.
        rows = UsageRecord.objects.filter(user__in=doomed)
        UpstreamAttempt.objects.filter(usage__in=rows)._raw_delete(connection.alias)
        rows._raw_delete(connection.alias)
        UsageDaily.objects.filter(user__in=doomed)._raw_delete(connection.alias)
        doomed.delete()
        Plan.objects.filter(slug=BENCH_PLAN).delete()


if __name__ == "__main__":
    Command().run_from_argv(["usage_admin.py", "usage_admin", *sys.argv[1:]])
