"""`migrate` then `seed`, one process at a time: several replicas starting together would otherwise
apply the same migration at once and fail. On PostgreSQL a session advisory lock serialises them
(the ones that wait then find nothing to do); SQLite serves one host, whose writes it serialises."""

from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connection

# Any constant shared by every AI Hub process: pg_advisory_lock's key.
LOCK_KEY = 0x41_49_48_55_42  # "AIHUB"


class Command(BaseCommand):
    help = "Apply migrations and seed the catalogue under a database-wide lock (safe with many replicas)."

    def handle(self, *args, **options):
        if connection.vendor != "postgresql":
            self._migrate()
            return
        with connection.cursor() as cursor:
            self.stdout.write("waiting for the migration lock")
            cursor.execute("SELECT pg_advisory_lock(%s)", [LOCK_KEY])
            try:
                self._migrate()
            finally:
                cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK_KEY])

    def _migrate(self):
        call_command("migrate", interactive=False, verbosity=1)
        call_command("seed")
