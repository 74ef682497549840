"""manage.py reconcile --month YYYY-MM: our cost against the providers' reported cost, for one month."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from billing.reconciliation import month_bounds, reconcile


class Command(BaseCommand):
    help = "Compare our computed cost with the cost providers reported, per provider and model, for a month."

    def add_arguments(self, parser):
        parser.add_argument("--month", required=True, help="YYYY-MM (UTC)")

    def handle(self, *args, month: str, **options):
        try:
            since, until = month_bounds(month)
        except ValueError:
            raise CommandError(f"--month must be YYYY-MM, not {month!r}") from None
        result = reconcile(since, until)
        self.stdout.write("provider\tmodel\trequests\tour_cost\treported_cost\tdifference\tunreported")
        for row in result.per_model:
            self.stdout.write(
                f"{row['provider'] or '-'}\t{row['model_slug'] or '-'}\t{row['requests']}\t{row['our_cost']}\t"
                f"{row['provider_cost'] if row['provider_cost'] is not None else '-'}\t{row['difference']}\t"
                f"{row['unreported']}"
            )
        self.stdout.write(f"{len(result.differing)} request(s) differing from the reported cost")
        for record in result.differing:
            self.stdout.write(
                f"  {record.request_id}\t{record.model_slug}\tours {record.cost}\treported {record.reported_cost}"
            )
        self.stdout.write(f"{len(result.over_reservation)} request(s) over their reservation (charge capped)")
        for record in result.over_reservation:
            self.stdout.write(f"  {record.request_id}\t{record.model_slug}\tcharged {record.cost}")
