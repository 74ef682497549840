"""manage.py check_rollups: prove the daily rollups equal the usage rows' sums (exit 1 with the differences)."""

from __future__ import annotations

import sys

from django.core.management.base import BaseCommand

from billing import rollups


class Command(BaseCommand):
    help = "Compare the daily usage rollups with the sums of the usage rows; exit 1 listing any difference."

    def add_arguments(self, parser):
        parser.add_argument("--rebuild", action="store_true", help="then recompute every rollup from the rows")

    def handle(self, *args, rebuild: bool, **options):
        found = rollups.differences()
        for difference in found:
            user, day, api_key, model, provider = difference.key
            self.stdout.write(
                f"user {user} {day} key {api_key or '-'} {model or '-'} {provider or '-'}: "
                f"rollup {difference.rolled_up} != rows {difference.rows}"
            )
        if not found:
            self.stdout.write("rollups equal the usage rows' sums")
            return
        self.stdout.write(f"{len(found)} rollup(s) differ from the usage rows")
        if rebuild:
            rollups.rebuild()
            self.stdout.write("rollups rebuilt from the usage rows")
        sys.exit(1)
