from django.core.management.base import BaseCommand, CommandError

from chat.catalogue.models import ProviderEndpoint
from chat.catalogue.provider_keys import ProviderKeysUnavailable
from chat.catalogue.sync import REFRESHERS, CatalogueError, refresh_endpoint


class Command(BaseCommand):
    help = "Fetch the model catalogue (with prices) from the configured providers and store it."

    def add_arguments(self, parser):
        parser.add_argument(
            "--provider",
            action="append",
            help="Only this provider (repeatable; also one added in the admin). Default: every configured one.",
        )

    def handle(self, *args, provider=None, **options):
        failed = False
        for name, (refresh, configured) in REFRESHERS.items():
            if provider and name not in provider:
                continue
            if not provider and not configured():
                self.stdout.write(f"{name}: not configured, skipped")
                continue
            try:
                count = refresh()
            except CatalogueError as exc:
                failed = True
                self.stderr.write(f"{name}: {exc}")
                continue
            self.stdout.write(f"{name}: {count} models")
        for endpoint in ProviderEndpoint.objects.filter(is_active=True):
            if provider and endpoint.name not in provider:
                continue
            try:
                self.stdout.write(f"{endpoint.name}: {refresh_endpoint(endpoint)} models")
            except (CatalogueError, ProviderKeysUnavailable) as exc:
                failed = True
                self.stderr.write(f"{endpoint.name}: {exc}")
        if failed:
            raise CommandError("some providers could not be refreshed")
