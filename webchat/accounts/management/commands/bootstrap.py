"""First-start setup for `make run`: the first admin account and the site URL."""

import secrets

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand


class Command(BaseCommand):
    help = "Create the first admin account if there is none and print where the site is."

    def add_arguments(self, parser):
        parser.add_argument("--url", default="http://127.0.0.1:8000/")

    def handle(self, *args, url: str, **options):
        User = get_user_model()
        credentials = settings.VAR_DIR / "admin-credentials.txt"
        if not User.objects.filter(is_superuser=True).exists():
            password = secrets.token_urlsafe(12)
            User.objects.create_superuser("admin", email="", password=password)
            credentials.parent.mkdir(parents=True, exist_ok=True)
            credentials.write_text(f"username: admin\npassword: {password}\n")
            credentials.chmod(0o600)
            self.stdout.write(self.style.SUCCESS("Created the first admin account."))
            self.stdout.write(f"  username: admin\n  password: {password}")
            self.stdout.write(
                f"  (also saved in {credentials}; change it at {url}accounts/password/change/)"
            )
        elif credentials.exists():
            self.stdout.write(f"Admin account: see {credentials}")
        else:
            self.stdout.write(
                "Admin account exists (create more with `python manage.py createsuperuser`)."
            )
        self.stdout.write(self.style.SUCCESS(f"\n  webchat is starting at {url}"))
        self.stdout.write(f"  admin: {url}admin/   health: {url}healthz\n")
