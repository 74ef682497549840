from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand

from chat.catalogue.sync import CatalogueError, refresh_openai_compat
from chat.seed import seed_catalogue


class Command(BaseCommand):
    help = "Seed the model catalogue and (with --demo) a demo account. Safe to run again."

    def add_arguments(self, parser):
        parser.add_argument("--demo", action="store_true", help="Create the demo account.")
        parser.add_argument("--demo-email", default="demo@aihub.local")
        parser.add_argument("--demo-password", default="aihub-demo-2026")

    def handle(self, *args, demo=False, demo_email="", demo_password="", **options):
        self.stdout.write(f"catalogue: {seed_catalogue()} seed models added")
        if settings.OPENAI_COMPAT_BASE_URL:
            try:
                self.stdout.write(
                    f"openai_compat: {refresh_openai_compat()} models from {settings.OPENAI_COMPAT_BASE_URL}"
                )
            except CatalogueError as exc:
                self.stderr.write(f"openai_compat: {exc}")
        if demo:
            User = get_user_model()
            user = User.objects.filter(email=demo_email).first() or User.objects.create_user(demo_email)
            user.set_password(demo_password)
            user.save(update_fields=["password"])
            from allauth.account.models import EmailAddress

            EmailAddress.objects.update_or_create(
                user=user, email=demo_email, defaults={"verified": True, "primary": True}
            )
            self.stdout.write(f"demo account: {demo_email} / {demo_password}")
