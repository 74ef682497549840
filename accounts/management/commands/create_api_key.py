from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError

from accounts.api_keys import issue_key


class Command(BaseCommand):
    help = "Issue an API key for a user. The key is printed alone on the last line (it is not stored)."

    def add_arguments(self, parser):
        parser.add_argument("--email", required=True, help="The user's email address.")
        parser.add_argument("--name", default="created by manage.py", help="What the key is for.")

    def handle(self, *args, email: str, name: str, **options):
        user = get_user_model().objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"No user with the email address {email}.")
        api_key, raw_key = issue_key(user, name)
        self.stderr.write(f"API key '{api_key.name}' ({api_key.prefix}…) issued for {user.email}.")
        self.stdout.write(raw_key)
